"""The zip archives kmt writes: ``.kmt`` checkpoints and ``.kmt-eval`` evaluator files.

Both are a zip of one JSON description (which names the format and its version) and a few
members (weights, configs, arrays). This module owns what they share:

* :func:`write_archive` writes the members to a temporary file beside the target and
  renames it into place, so a file on disk is always complete; on any failure the
  temporary file is removed and nothing is left where kmt would read it;
* :func:`read_description` opens an archive, checks that it is a zip holding the
  description member, that the format name is the expected one and that the version is
  not newer than this kmt reads, with errors that name the file and what was found.
"""

import json
import os
import tempfile
import zipfile

__all__ = ["write_archive", "open_archive", "read_description"]


def write_archive(path, members):
    """Write ``members`` (``{name: bytes or str}``, in order) as a zip at ``path``, atomically.

    The folder is created if needed; the file gets the usual permissions (``0o666`` less the
    umask), so it can be shared like any other file. Returns ``path``.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    suffix = os.path.splitext(path)[1] or ".zip"
    handle, temporary = tempfile.mkstemp(prefix=".partial-", suffix=suffix, dir=folder)
    os.close(handle)
    try:
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, data in members.items():
                archive.writestr(name, data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    return path


def open_archive(path, description, kind, hint=""):
    """The open :class:`zipfile.ZipFile` at ``path``, checked to hold the member ``description``.

    Args:
        path: the file.
        description: the JSON member every archive of this kind holds.
        kind: what the file should be, for messages (e.g. ``"kmt checkpoint (a .kmt zip archive)"``).
        hint: a sentence added when the file is not a zip at all (e.g. how to convert it).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not a zip archive, or a zip without ``description``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No {kind.split(' (')[0]} at {path!r}.")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path!r} is not a {kind}." + (f" {hint}" if hint else ""))
    archive = zipfile.ZipFile(path)
    if description not in archive.namelist():
        archive.close()
        raise ValueError(f"{path!r} is a zip archive but not a {kind.split(' (')[0]} (no {description} inside).")
    return archive


def read_description(archive, path, description, format_name, version):
    """The parsed JSON ``description`` of an open archive, checked for format name and version."""
    data = json.loads(archive.read(description))
    if data.get("format") != format_name or not isinstance(data.get("version"), int) or data["version"] > version:
        raise ValueError(f"{path!r} has format {data.get('format')!r} version {data.get('version')!r}; this kmt "
                         f"reads {format_name!r} up to version {version}.")
    return data
