"""The ``faces`` scene family: talking-head-like portraits.

A head (an ellipse seen as an ellipsoid), hair, ears, brows, eyes with irises, a nose and a
mouth with lips and teeth, on a neck and shoulders, in front of a textured background.
Motion: head translation, roll, scale, a small 3-D-like yaw and pitch (features at depth
shift with the turn, ears slide behind the head), blinks, a talking mouth, raised brows,
gaze, and in some videos a hand passing in front of the face.

Keypoints (``K = 12``); ``_l``/``_r`` are the image's left and right when the head faces
the camera:

====  ==========  ===================================================  =================
 k    name        where                                                part that shows it
====  ==========  ===================================================  =================
 0    brow_l      middle of the left brow                              brow_l
 1    brow_r      middle of the right brow                             brow_r
 2    eye_l       centre of the left eye opening                       eye_l
 3    eye_r       centre of the right eye opening                      eye_r
 4    nose_tip    lower middle of the nose                             nose
 5    mouth_l     left mouth corner (on the lips)                      mouth
 6    mouth_r     right mouth corner (on the lips)                     mouth
 7    lip_upper   middle of the upper lip                              mouth
 8    lip_lower   middle of the lower lip                              mouth
 9    chin        bottom of the face                                   head
 10   ear_l       centre of the left ear                               ear_l
 11   ear_r       centre of the right ear                              ear_r
====  ==========  ===================================================  =================

A keypoint is not visible when another part is in front of it (the hand; an ear behind
the head when the head turns away) or when it leaves the frame.
"""

import numpy as np

from kmt.data.render import (F32, Box, Capsule, Ellipse, HalfPlane, Intersect, Layer, Paint,
                             channel, hsv_to_rgb, oscillate, random_colour, sample_texture)

NAME = "faces"
KEYPOINT_NAMES = ("brow_l", "brow_r", "eye_l", "eye_r", "nose_tip", "mouth_l", "mouth_r",
                  "lip_upper", "lip_lower", "chin", "ear_l", "ear_r")
PART_NAMES = ("background", "body", "neck", "hair", "ear_l", "ear_r", "head", "brow_l", "brow_r",
              "eye_l", "eye_r", "nose", "mouth", "hand")
_OWNER = ("brow_l", "brow_r", "eye_l", "eye_r", "nose", "mouth", "mouth", "mouth", "mouth",
          "head", "ear_l", "ear_r")
OWNERS = np.array([[p == o for p in PART_NAMES] for o in _OWNER])
_L = {p: i for i, p in enumerate(PART_NAMES)}

SKIN_TONES = np.array([[0.98, 0.87, 0.77], [0.94, 0.77, 0.63], [0.84, 0.63, 0.47], [0.68, 0.47, 0.32],
                  [0.48, 0.32, 0.21], [0.32, 0.21, 0.15]], F32)
HAIR_COLOURS = np.array([[0.07, 0.05, 0.05], [0.28, 0.17, 0.09], [0.52, 0.33, 0.15], [0.86, 0.72, 0.42],
                  [0.62, 0.26, 0.10], [0.68, 0.68, 0.68]], F32)
EYE_COLOURS = np.array([[0.36, 0.21, 0.10], [0.20, 0.42, 0.72], [0.24, 0.50, 0.30], [0.42, 0.46, 0.50]], F32)
_CHANNELS = ("cx", "cy", "scale", "roll", "yaw", "pitch", "mouth", "brow", "gaze_x", "gaze_y")


def _f(x):
    return np.asarray(x, F32)


def sample_identity(rng):
    """Appearance and build of one person, as a nested dict of float32 arrays.

    ``build`` (proportions, in units of the head's half width ``head_rx`` or half height
    ``head_ry``) decides where keypoints fall; everything else is appearance only.
    """
    pos = rng.uniform(0, len(SKIN_TONES) - 1)
    lo = int(pos)
    skin = (SKIN_TONES[lo] + (pos - lo) * (SKIN_TONES[min(lo + 1, len(SKIN_TONES) - 1)] - SKIN_TONES[lo]))
    skin = np.clip(skin * rng.uniform(0.94, 1.06, 3), 0, 1).astype(F32)
    hair = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] if rng.uniform() < 0.8 else random_colour(rng, v=(0.2, 0.8))
    head_rx = rng.uniform(0.34, 0.44)
    build = {
        "head_rx": head_rx, "head_ry": head_rx * rng.uniform(1.15, 1.35), "head_y": rng.uniform(-0.2, -0.1),
        "eye_dx": rng.uniform(0.34, 0.44), "eye_y": rng.uniform(-0.16, -0.02),
        "eye_rx": rng.uniform(0.15, 0.2), "eye_ry": rng.uniform(0.09, 0.13), "iris": rng.uniform(0.07, 0.1),
        "brow_dy": rng.uniform(0.17, 0.24), "brow_len": rng.uniform(0.17, 0.25),
        "brow_w": rng.uniform(0.035, 0.06), "brow_tilt": rng.uniform(-0.04, 0.06),
        "nose_y": rng.uniform(0.16, 0.28), "nose_rx": rng.uniform(0.09, 0.14),
        "nose_ry": rng.uniform(0.13, 0.2), "nose_len": rng.uniform(0.15, 0.35),
        "mouth_y": rng.uniform(0.48, 0.6), "mouth_w": rng.uniform(0.26, 0.38),
        "lip_h": rng.uniform(0.06, 0.1), "mouth_open": rng.uniform(0.1, 0.18),
        "ear_rx": rng.uniform(0.1, 0.16), "ear_ry": rng.uniform(0.18, 0.26), "ear_y": rng.uniform(-0.05, 0.1),
        "hairline": rng.uniform(-0.8, -0.55), "hair_tilt": rng.uniform(-0.25, 0.25),
        "hair_volume": rng.uniform(1.03, 1.12), "long_hair": float(rng.uniform() < 0.4),
        "hair_len": rng.uniform(0.4, 1.0), "neck_w": rng.uniform(0.38, 0.52),
        "shoulder_w": rng.uniform(0.75, 1.05),
    }
    lips = np.clip(skin * 0.75 + np.array([0.2, -0.05, -0.02]) * rng.uniform(0.5, 1.5), 0, 1)
    clothes = random_colour(rng)
    return {
        "skin": skin, "skin2": _f(skin * rng.uniform(0.85, 0.95)),
        "skin_tex": sample_texture(rng, "noise", (6.0, 14.0)),
        "hair": _f(hair), "hair2": _f(np.clip(hair * rng.uniform(1.2, 1.6) + 0.05, 0, 1)),
        "hair_tex": sample_texture(rng, "stripes", (25.0, 45.0), gain=1.2),
        "eyes": _f(EYE_COLOURS[rng.integers(len(EYE_COLOURS))] * rng.uniform(0.8, 1.2)),
        "sclera": _f(hsv_to_rgb(rng.uniform(0.05, 0.15), rng.uniform(0.0, 0.12), rng.uniform(0.88, 0.98))),
        "lips": _f(lips),
        "clothes": clothes, "clothes2": _f(np.clip(clothes * rng.uniform(0.4, 1.6, 3), 0, 1)),
        "clothes_tex": sample_texture(rng, None, (8.0, 25.0)),
        "bg": random_colour(rng, s=(0.1, 0.7)), "bg2": random_colour(rng, s=(0.1, 0.7)),
        "bg_tex": sample_texture(rng, None, (3.0, 12.0)),
        "build": {k: _f(v) for k, v in build.items()},
    }


def sample_motion(rng):
    """Head and face motion as coefficients; evaluate it at any frame with :func:`pose`."""
    coef = np.array([
        channel(rng, (-0.08, 0.08), (0.0, 0.08), (40, 120), (0.0, 0.03), (10, 30)),  # cx
        channel(rng, (-0.05, 0.05), (0.0, 0.05), (40, 120), (0.0, 0.02), (10, 30)),  # cy
        channel(rng, (0.9, 1.1), (0.0, 0.06), (40, 120)),  # scale
        channel(rng, (-0.1, 0.1), (0.0, 0.15), (30, 90), (0.0, 0.05), (10, 30)),  # roll
        channel(rng, (-0.15, 0.15), (0.0, 0.35), (30, 90), (0.0, 0.1), (10, 30)),  # yaw
        channel(rng, (-0.04, 0.04), (0.0, 0.08), (30, 90)),  # pitch
        channel(rng, (0.1, 0.4), (0.2, 0.45), (5, 12), (0.0, 0.3), (3, 8)),  # mouth
        channel(rng, (0.0, 0.5), (0.0, 0.4), (20, 60)),  # brow
        channel(rng, (-0.3, 0.3), (0.0, 0.6), (20, 60)),  # gaze x
        channel(rng, (-0.2, 0.2), (0.0, 0.3), (20, 60)),  # gaze y
    ], F32)
    period = rng.uniform(30, 90)
    blink = [period, rng.uniform(0, period), rng.uniform(0.75, 0.85)]
    period = rng.uniform(40, 90)
    angle = rng.uniform(0, 2 * np.pi)
    hand = [float(rng.uniform() < 0.35), period, rng.uniform(0, period), angle,
            rng.uniform(-0.25, 0.25), rng.uniform(-0.3, 0.2), rng.uniform(-0.6, 0.6)]
    return {"coef": coef, "blink": _f(blink), "hand": _f(hand)}


def pose(motion, t):
    """Per-frame pose from stacked motions (leading ``N``) at frame times ``t (N,)``."""
    c = oscillate(motion["coef"], t)
    p = {name: c[:, i] for i, name in enumerate(_CHANNELS)}
    p["mouth"] = np.clip(p["mouth"], 0.0, 1.0)
    p["brow"] = np.clip(p["brow"], 0.0, 1.0)
    p["gaze_x"], p["gaze_y"] = np.clip(p["gaze_x"], -1, 1), np.clip(p["gaze_y"], -1, 1)
    t = np.asarray(t, np.float64)
    period, phase, depth = (motion["blink"][:, i].astype(np.float64) for i in range(3))
    x = (t + phase) % period - period / 2
    p["open"] = (1.0 - depth * np.exp(-0.5 * (x / 1.3) ** 2)).astype(F32)
    h = motion["hand"].astype(np.float64)
    u = ((t + h[:, 2]) % h[:, 1]) / h[:, 1]
    reach = np.clip(2.2 * (1.0 - np.abs(2.0 * u - 1.0)) - 0.6, 0.0, 1.0)
    reach = reach * reach * (3.0 - 2.0 * reach)
    start = 1.9 * np.stack([np.cos(h[:, 3]), np.sin(h[:, 3])], -1)
    target = h[:, 4:6]
    pos = start + reach[:, None] * (target - start)
    p["hand_on"] = (h[:, 0] > 0.5) & (reach > 0.0)
    p["hand_x"], p["hand_y"] = pos[:, 0].astype(F32), pos[:, 1].astype(F32)
    p["hand_angle"] = (h[:, 6] + 0.3 * (1 - reach)).astype(F32)
    out = start - target
    out /= np.linalg.norm(out, axis=-1, keepdims=True)
    p["hand_dx"], p["hand_dy"] = out[:, 0].astype(F32), out[:, 1].astype(F32)
    return p


def scene(identity, p):
    """Layers (back to front), background paint and ``(N, K, 2)`` world keypoints."""
    b = identity["build"]
    n = p["cx"].shape[0]
    zero, one = np.zeros(n, F32), np.ones(n, F32)
    s = p["scale"]
    rx, ry = b["head_rx"] * s, b["head_ry"] * s
    cx, cy = p["cx"], p["cy"] + b["head_y"]
    roll, yaw, pitch = p["roll"], p["yaw"], p["pitch"]
    cr, sr, cyaw, syaw = np.cos(roll), np.sin(roll), np.cos(yaw), np.sin(yaw)

    def rot(u, v):
        return cr * u - sr * v, sr * u + cr * v

    def world(x, y, z):
        xl = x * cyaw + z * syaw
        yl = y * np.cos(pitch) + z * np.sin(pitch)
        dx, dy = rot(xl, yl)
        return cx + dx, cy + dy

    def depth(x, y):
        return rx * np.sqrt(np.maximum(0.05, 1.0 - (x / rx) ** 2 - (y / ry) ** 2))

    def fore(x, z):
        theta = np.arctan2(x, z)
        return np.clip(np.cos(yaw + theta) / np.cos(theta), 0.25, 1.2)

    def flat(c, **kw):
        return Paint(np.broadcast_to(c, (n, 3)) if np.ndim(c) == 1 else c, **kw)

    skin = identity["skin"]
    skin_paint = Paint(skin, identity["skin2"], identity["skin_tex"], (*world(zero, zero, rx), roll, s),
                       shade=0.25 * one, shade_width=0.5 * rx)
    layers, kps = [], {}

    bx, by = cx + 0.15 * rx * syaw, cy + 1.3 * ry + 0.55
    layers.append(Layer(Box(bx, by, b["shoulder_w"] * s, 0.55 * one, 0.3 * roll, 0.25 * s),
                        Paint(identity["clothes"], identity["clothes2"], identity["clothes_tex"],
                              (bx, by, 0.3 * roll, s)), _L["body"]))
    hair_paint = Paint(identity["hair"], identity["hair2"], identity["hair_tex"], (cx, cy, roll, s))
    hx, hy = rot(zero, 0.5 * b["hair_len"] * ry)
    layers.append(Layer(Ellipse(cx + hx, cy + hy, 1.2 * rx, ry * (1.0 + 0.5 * b["hair_len"]), roll),
                        hair_paint, _L["hair"], b["long_hair"] > 0.5))
    nx, ny = rot(zero, 0.9 * ry)
    layers.append(Layer(Box(cx + nx, cy + ny, b["neck_w"] * rx, 0.6 * ry, 0.5 * roll),
                        flat(skin * 0.82), _L["neck"]))
    for side, name in ((-1.0, "ear_l"), (1.0, "ear_r")):
        ex, ey = world(side * (rx + 0.45 * b["ear_rx"] * rx), b["ear_y"] * ry, -0.3 * rx)
        layers.append(Layer(Ellipse(ex, ey, b["ear_rx"] * rx, b["ear_ry"] * ry, roll),
                            Paint(skin * 0.9, shade=0.3 * one, shade_width=0.5 * b["ear_rx"] * rx), _L[name]))
        kps[name] = (ex, ey)
    layers.append(Layer(Ellipse(cx, cy, rx, ry, roll), skin_paint, _L["head"]))
    hl_y = b["hairline"] * ry * np.cos(pitch) + 0.6 * rx * np.sin(pitch)
    px, py = world(zero, hl_y, zero)
    ox, oy = rot(zero, -0.04 * ry)
    cap = Intersect(Ellipse(cx + ox, cy + oy, rx * b["hair_volume"], ry * b["hair_volume"], roll),
                    HalfPlane(px, py, roll + np.pi / 2 + b["hair_tilt"]))
    layers.append(Layer(cap, hair_paint, _L["hair"]))

    brow_colour = identity["hair"] * 0.6
    for side, name in ((-1.0, "brow_l"), (1.0, "brow_r")):
        x0 = side * b["eye_dx"] * rx
        y0 = b["eye_y"] * ry - b["brow_dy"] * ry - p["brow"] * 0.06 * ry
        half = b["brow_len"] * rx
        xa, ya = x0 - side * half, y0 + b["brow_tilt"] * ry
        xb, yb = x0 + side * half, y0 - 0.3 * b["brow_tilt"] * ry
        za, zb = depth(xa, ya), depth(xb, yb)
        (ax, ay), (bx_, by_) = world(xa, ya, za), world(xb, yb, zb)
        layers.append(Layer(Capsule(ax, ay, bx_, by_, b["brow_w"] * rx), flat(brow_colour), _L[name]))
        kps[name] = ((ax + bx_) / 2, (ay + by_) / 2)
    for side, name in ((-1.0, "eye_l"), (1.0, "eye_r")):
        x0, y0 = side * b["eye_dx"] * rx, b["eye_y"] * ry
        z0 = depth(x0, y0)
        ex, ey = world(x0, y0, z0)
        erx, ery = b["eye_rx"] * rx * fore(x0, z0), b["eye_ry"] * rx * p["open"]
        lash = 0.03 * rx
        layers.append(Layer(Ellipse(ex, ey, erx + lash, ery + lash, roll), flat(identity["hair"] * 0.4),
                            _L[name]))
        sclera = Ellipse(ex, ey, erx, ery, roll)
        layers.append(Layer(sclera, flat(identity["sclera"]), _L[name]))
        gx, gy = rot(p["gaze_x"] * 0.45 * erx, p["gaze_y"] * 0.3 * b["eye_ry"] * rx)
        ir = b["iris"] * rx
        layers.append(Layer(Intersect(Ellipse(ex + gx, ey + gy, ir * fore(x0, z0), ir, roll), sclera),
                            flat(identity["eyes"]), _L[name]))
        layers.append(Layer(Intersect(Ellipse(ex + gx, ey + gy, 0.45 * ir * fore(x0, z0), 0.45 * ir, roll),
                                      sclera), flat(identity["eyes"] * 0.15), _L[name]))
        kps[name] = (ex, ey)

    y0 = b["nose_y"] * ry
    z0 = depth(zero, y0) + b["nose_len"] * rx
    nx, ny = world(zero, y0, z0)
    nrx, nry = b["nose_rx"] * rx * fore(zero, z0), b["nose_ry"] * rx
    layers.append(Layer(Ellipse(nx, ny, nrx, nry, roll),
                        Paint(skin * 0.88, shade=0.3 * one, shade_width=nrx), _L["nose"]))
    tx, ty = rot(zero, 0.55 * nry)
    kps["nose_tip"] = (nx + tx, ny + ty)

    y0 = b["mouth_y"] * ry
    z0 = depth(zero, y0) + 0.05 * rx
    mx, my = world(zero, y0, z0)
    mw = b["mouth_w"] * rx * fore(zero, z0)
    gap, lip = p["mouth"] * b["mouth_open"] * rx, b["lip_h"] * rx
    layers.append(Layer(Ellipse(mx, my, mw, lip + gap, roll), flat(identity["lips"]), _L["mouth"]))
    inner = Ellipse(mx, my, 0.82 * mw, gap, roll)
    layers.append(Layer(inner, flat(np.array([0.22, 0.05, 0.07], F32)), _L["mouth"]))
    ux, uy = rot(zero, -0.75 * gap)
    layers.append(Layer(Intersect(Box(mx + ux, my + uy, 0.6 * mw, 0.45 * gap, roll), inner),
                        flat(np.array([0.95, 0.94, 0.9], F32)), _L["mouth"]))
    for side, name in ((-1.0, "mouth_l"), (1.0, "mouth_r")):
        dx, dy = rot(side * 0.8 * mw, zero)
        kps[name] = (mx + dx, my + dy)
    for side, name in ((-1.0, "lip_upper"), (1.0, "lip_lower")):
        dx, dy = rot(zero, side * (gap + 0.5 * lip))
        kps[name] = (mx + dx, my + dy)
    kps["chin"] = world(zero, 0.9 * ry, depth(zero, 0.9 * ry))

    hx, hy, ha = p["hand_x"], p["hand_y"], p["hand_angle"]
    hand_paint = Paint(skin, identity["skin2"], identity["skin_tex"], (hx, hy, ha, s),
                       shade=0.2 * one, shade_width=0.3 * rx)
    layers.append(Layer(Capsule(hx, hy, hx + 2.0 * p["hand_dx"], hy + 2.0 * p["hand_dy"], 0.3 * rx),
                        hand_paint, _L["hand"], p["hand_on"]))
    layers.append(Layer(Box(hx, hy, 0.4 * rx, 0.55 * rx, ha, 0.2 * rx), hand_paint, _L["hand"], p["hand_on"]))

    background = Paint(identity["bg"], identity["bg2"], identity["bg_tex"], (zero, zero, zero, one))
    keypoints = np.stack([np.stack(kps[k], -1) for k in KEYPOINT_NAMES], 1).astype(F32)
    return layers, background, keypoints
