"""kmt.data.video_io: every on-disk layout written and read back; bad files named in errors."""

import os
import subprocess

import imageio.v3 as iio
import numpy as np
import pytest

from kmt.data import video_io
from kmt.data.video_io import VideoReadError, num_frames, read_frames, read_video, write_video

# ffmpeg runs as a subprocess; JAX warns about any fork, harmless for fork + exec.
pytestmark = pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")

T, H, W = 6, 32, 48  # not square, so swapped axes would show


@pytest.fixture(scope="module")
def clip():
    """Smooth, moving colour gradients: easy on lossy codecs, every frame different."""
    rows, cols = np.mgrid[0:H, 0:W] / np.array([H, W])[:, None, None]
    t = np.arange(T)[:, None, None] / T
    return np.stack([0.5 + 0.4 * np.sin(2 * np.pi * (cols + t)),
                     0.5 + 0.4 * np.cos(2 * np.pi * (rows - t)),
                     np.broadcast_to(0.2 + 0.6 * t, (T, H, W))], -1).astype(np.float32)


def quantised(x):
    return video_io.to_uint8(x) / np.float32(255)


@pytest.mark.parametrize("name,tolerance", [("video", 0.0), ("video.png", 0.0), ("video.jpg", 0.03),
                                            ("video.mp4", 0.03), ("video.mov", 0.03), ("video.gif", 0.03)])
def test_round_trip_every_layout(tmp_path, clip, name, tolerance):
    path = str(tmp_path / name)
    write_video(path, clip, fps=10)
    assert os.path.isdir(path) == (name == "video")
    back = read_video(path, frame_shape=(H, W, 3))
    assert back.shape == clip.shape and back.dtype == np.float32
    err = np.abs(back - quantised(clip))
    if tolerance == 0.0:
        np.testing.assert_allclose(back, quantised(clip), atol=1e-6)
    else:
        assert err.mean() < tolerance, f"{name}: mean error {err.mean():.4f}"
        assert np.abs(back.mean((1, 2, 3)) - clip.mean((1, 2, 3))).max() < tolerance  # frame order kept
    assert num_frames(path, (H, W, 3)) == T
    np.testing.assert_allclose(read_frames(path, [4, 1], (H, W, 3)), back[[4, 1]], atol=1e-6)


def test_folder_frames_are_in_natural_order_and_grey_becomes_rgb(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in (1, 2, 10):
        iio.imwrite(folder / f"{i}.png", np.full((4, 5), i * 20, np.uint8))
    video = read_video(str(folder))
    assert video.shape == (3, 4, 5, 3)
    np.testing.assert_allclose(video[:, 0, 0, 0] * 255, [20, 40, 200], atol=1e-4)
    assert (video[..., 0] == video[..., 2]).all()


def test_alpha_is_dropped_and_stacked_frames_default_to_square(tmp_path):
    rgba = np.zeros((8, 24, 4), np.uint8)
    rgba[..., 0] = np.repeat(np.arange(3) * 100, 8)[None, :]
    rgba[..., 3] = 255
    iio.imwrite(tmp_path / "s.png", rgba)
    video = read_video(str(tmp_path / "s.png"))
    assert video.shape == (3, 8, 8, 3)
    np.testing.assert_allclose(video[:, 0, 0, 0] * 255, [0, 100, 200], atol=1e-4)


def test_sixteen_bit_frames(tmp_path):
    folder = tmp_path / "v16"
    folder.mkdir()
    iio.imwrite(folder / "0.png", np.full((4, 4), 65535, np.uint16))
    iio.imwrite(folder / "1.png", np.full((4, 4), 32768, np.uint16))
    video = read_video(str(folder))
    assert video.shape == (2, 4, 4, 3)
    np.testing.assert_allclose(video[:, 0, 0, 0], [1.0, 32768 / 65535])


def test_stacked_image_of_the_wrong_width_is_named(tmp_path, clip):
    path = str(tmp_path / "stacked.png")
    write_video(path, clip)
    with pytest.raises(VideoReadError, match=r"stacked\.png.*not a multiple of the frame width 20"):
        read_video(path, frame_shape=(H, 20, 3))


@pytest.mark.parametrize("name,content", [("broken.mp4", b"not a video at all" * 20),
                                          ("empty.mp4", b""),
                                          ("broken.gif", b"GIF89a" + b"\x00" * 30),
                                          ("broken.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 30)])
def test_corrupt_or_empty_files_are_named(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    for read in (read_video, lambda p: read_frames(p, [0]), num_frames):
        with pytest.raises(VideoReadError, match=name.replace(".", r"\.")) as info:
            read(str(path))
        assert isinstance(info.value, ValueError) and info.value.path == str(path)
        assert len(str(info.value)) < 400, "the ffmpeg banner must not flood the message"


def test_truncated_mp4_is_named(tmp_path, clip):
    path = str(tmp_path / "cut.mp4")
    write_video(path, clip)
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(VideoReadError, match=r"cut\.mp4"):
        read_video(path)
    with pytest.raises(VideoReadError, match=r"cut\.mp4"):
        read_frames(path, [1])


def test_bad_frame_in_a_folder_and_empty_folder_are_named(tmp_path, clip):
    folder = str(tmp_path / "v")
    write_video(folder, clip)
    with open(os.path.join(folder, "0000003.png"), "wb") as f:
        f.write(b"garbage")
    with pytest.raises(VideoReadError, match=r"0000003\.png"):
        read_video(folder)
    os.makedirs(tmp_path / "none")
    with pytest.raises(VideoReadError, match="holds no frames"):
        read_video(str(tmp_path / "none"))
    with pytest.raises(VideoReadError, match="no such file"):
        read_video(str(tmp_path / "missing.mp4"))


def test_frames_of_different_sizes_in_a_folder_are_named(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    iio.imwrite(folder / "0.png", np.zeros((4, 4, 3), np.uint8))
    iio.imwrite(folder / "1.png", np.zeros((5, 4, 3), np.uint8))
    with pytest.raises(VideoReadError, match=r"1\.png.*differs"):
        read_video(str(folder))


def test_other_files_in_a_frame_folder_are_warned_about(tmp_path, clip):
    folder = str(tmp_path / "v")
    write_video(folder, clip)
    with open(os.path.join(folder, "notes.txt"), "w") as f:
        f.write("x")
    with pytest.warns(UserWarning, match="notes.txt"):
        assert read_video(folder).shape == clip.shape


def test_unknown_layouts_and_unwritable_shapes(tmp_path, clip):
    (tmp_path / "clip.avi").write_bytes(b"x")
    with pytest.raises(VideoReadError, match=r"clip\.avi.*unknown extension"):
        read_video(str(tmp_path / "clip.avi"))
    with pytest.raises(ValueError, match="even frame height and width"):
        write_video(str(tmp_path / "odd.mp4"), clip[:, :31])
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        write_video(str(tmp_path / "x.gif"), clip[0])
    with pytest.raises(ValueError, match="cannot write"):
        write_video(str(tmp_path / "x.avi"), clip)


def test_gif_that_merges_identical_frames_warns(tmp_path, clip):
    still = np.repeat(clip[:1], 3, axis=0)
    with pytest.warns(UserWarning, match="holds 1 frames, not 3"):
        write_video(str(tmp_path / "still.gif"), still)


def test_uint8_conversion_rounds():
    np.testing.assert_array_equal(video_io.to_uint8(np.array([0.0, 0.5 / 255, 1.2, -1.0])), [0, 1, 255, 0])


def imageio_ffmpeg_decode(path):
    """Every frame as imageio-ffmpeg decodes it, (T, H, W, 3) uint8: an independent reference."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(path, pix_fmt="rgb24")
    width, height = next(reader)["size"]
    frames = np.stack([np.frombuffer(buf, np.uint8).reshape(height, width, 3) for buf in reader])
    reader.close()
    return frames


@pytest.mark.parametrize("name", ["video.mp4", "video.mov", "video.gif", "video", "video.png"])
def test_read_frames_gives_the_frames_of_a_whole_decode(tmp_path, clip, name):
    path = str(tmp_path / name)
    write_video(path, clip, fps=10)
    whole = read_video(path, (H, W, 3))
    if name.endswith((".mp4", ".mov")):
        np.testing.assert_array_equal(video_io.to_uint8(whole), imageio_ffmpeg_decode(path))
    if name.endswith(".gif"):
        np.testing.assert_array_equal(video_io.to_uint8(whole), iio.imread(path, index=None, plugin="pillow"))
    assert num_frames(path, (H, W, 3)) == len(whole) == T
    for indices in ([4, 1, 1, -1, 0], [T - 1], [0, 0], np.arange(T)[::-1]):
        got = read_frames(path, indices, (H, W, 3))
        assert got.dtype == np.float32 and got.shape == (len(indices), H, W, 3)
        np.testing.assert_array_equal(got, whole[np.asarray(indices)])
    out_of_range = rf"frame indices \[{T}, -{T + 1}\] out of range for .*{name}.* with {T} frames"
    with pytest.raises(IndexError, match=out_of_range):
        read_frames(path, [1, T, -T - 1], (H, W, 3))
    with pytest.raises(ValueError, match="indices must name at least one frame"):
        read_frames(path, [], (H, W, 3))


@pytest.fixture
def ffmpeg_runs(monkeypatch):
    """The ffmpeg command lines kmt runs, recorded."""
    runs, run = [], subprocess.run

    def recording_run(command, *args, **kwargs):
        runs.append([str(c) for c in command])
        return run(command, *args, **kwargs)

    monkeypatch.setattr(video_io.subprocess, "run", recording_run)
    return runs


def test_a_video_file_is_counted_once_and_decoded_only_up_to_the_last_frame_asked(tmp_path, ffmpeg_runs):
    path = str(tmp_path / "long.mp4")
    frames = np.repeat(np.linspace(0, 1, 40, dtype=np.float32)[:, None, None, None], 4, axis=1)
    write_video(path, np.broadcast_to(frames, (40, 4, 4, 3)))
    assert num_frames(path) == 40 and num_frames(path) == 40
    assert len(ffmpeg_runs) == 1 and "copy" in ffmpeg_runs[0], "counted from the packets, once"
    whole = read_video(path)
    ffmpeg_runs.clear()
    np.testing.assert_array_equal(read_frames(path, [30, 2, 30]), whole[[30, 2, 30]])
    assert len(ffmpeg_runs) == 1, "the frame count is remembered"
    command = ffmpeg_runs[0]
    assert command[command.index("-vf") + 1] == "select=eq(n\\,2)+eq(n\\,30)"
    assert command[command.index("-frames:v") + 1] == "2", "ffmpeg stops after the last frame asked for"
    write_video(path, np.broadcast_to(frames[:12], (12, 4, 4, 3)))  # another version of the file
    assert num_frames(path) == 12


def test_a_file_that_decodes_fewer_frames_than_it_lists_is_corrected(tmp_path, clip, monkeypatch):
    path = str(tmp_path / "short.mp4")
    write_video(path, clip)
    count = video_io._count_ffmpeg_frames
    monkeypatch.setattr(video_io, "_count_ffmpeg_frames",
                        lambda p, decode=False: count(p, decode) + (0 if decode else 3))
    assert num_frames(path) == T + 3
    np.testing.assert_array_equal(read_frames(path, [T - 1]), read_video(path)[[T - 1]])
    with pytest.raises(VideoReadError, match=rf"short\.mp4.*frame {T + 1} is past the end: the container lists "
                                             rf"{T + 3} frames but {T} decode"):
        read_frames(path, [1, T + 1])
    assert num_frames(path) == T
    with pytest.raises(IndexError, match="out of range"):
        read_frames(path, [T + 1])


def test_read_frames_many_decodes_the_video_files_together(tmp_path, clip, ffmpeg_runs):
    requests = []
    for k, name in enumerate(["a.mp4", "b.mov", "c.gif", "d", "e.mp4"]):
        path = str(tmp_path / name)
        write_video(path, clip[::-1] if k % 2 else clip)
        requests.append((path, [[4, 1], [0, 0, 5], [2, 3], [-1], [5, 1, 3]][k]))
    expected = [read_frames(path, indices) for path, indices in requests]
    ffmpeg_runs.clear()
    got = video_io.read_frames_many(requests)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)
    assert len(ffmpeg_runs) == 1 and sum(arg == "-i" for arg in ffmpeg_runs[0]) == 3, "one run for a, b and e"
    assert video_io.read_frames_many([]) == []


def test_read_frames_many_names_a_bad_file_among_good_ones(tmp_path, clip, monkeypatch):
    good, broken, short = (str(tmp_path / n) for n in ("good.mp4", "broken.mp4", "short.mp4"))
    write_video(good, clip)
    write_video(short, clip)
    with open(broken, "wb") as f:
        f.write(b"not a video at all" * 20)
    with pytest.raises(VideoReadError, match=r"broken\.mp4"):
        video_io.read_frames_many([(good, [1]), (broken, [0]), (good, [2])])
    with pytest.raises(IndexError, match=rf"frame indices \[{T}\] out of range for .*good\.mp4"):
        video_io.read_frames_many([(good, [T]), (short, [0])])
    count = video_io._count_ffmpeg_frames
    monkeypatch.setattr(video_io, "_count_ffmpeg_frames",
                        lambda p, decode=False: count(p, decode) + (2 if p == short and not decode else 0))
    with pytest.raises(VideoReadError, match=rf"short\.mp4.*frame {T + 1} is past the end"):
        video_io.read_frames_many([(good, [1]), (short, [0, T + 1])])
    assert [len(f) for f in video_io.read_frames_many([(good, [1]), (short, [0, T - 1])])] == [1, 2]
