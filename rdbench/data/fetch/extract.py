"""Archives unpacked without letting a member escape: every member is checked before it is written (absolute
names, ``..``, links leading out, devices and fifos refused), tarfile's ``data`` filter applied on top where
Python has it; everything lands in a temporary folder beside the target, renamed into place only when whole,
so a failed extraction leaves the target as it was."""

from __future__ import annotations

import gzip
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

from rdbench.data.fetch.download import FetchError

_HAS_DATA_FILTER = hasattr(tarfile, "data_filter")  # Python 3.12, and 3.8-3.11 security releases of 2023
_FILTER_ERROR = getattr(tarfile, "FilterError", ())  # () matches nothing where the filter does not exist


class RefusedArchive(FetchError):
    """An archive with a member that would escape its folder: the archive itself is deleted (not worth keeping)."""


def _unsafe_name(name: str) -> str | None:
    """Why an archive member's name would land outside the folder, or None."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in name.replace("\\", "/").split("/"):
        return "'..' in the path"
    return None


def _unsafe_tar_member(m: tarfile.TarInfo) -> str | None:
    why = _unsafe_name(m.name)
    if why:
        return why
    if m.ischr() or m.isblk() or m.isfifo() or m.isdev():
        return "device or fifo"
    if m.issym() or m.islnk():
        if m.linkname.startswith(("/", "\\")):
            return f"link to the absolute path {m.linkname}"
        # a symlink resolves from its own folder, a hard link from the archive's top
        base = posixpath.dirname(m.name) if m.issym() else ""
        target = posixpath.normpath(posixpath.join(base, m.linkname))
        if target == ".." or target.startswith("../"):
            return f"link to {m.linkname}, outside the folder"
    return None


def _checked(tar: tarfile.TarFile, archive: Path) -> Iterator[tarfile.TarInfo]:
    for m in tar:  # lazily: one pass over a compressed stream
        why = _unsafe_tar_member(m)
        if why:
            raise RefusedArchive(f"{archive.name}: refused member {m.name!r} ({why}); nothing was installed. The "
                                 "archive is not the published one or was tampered with.")  # fmt: skip
        yield m


def extract_tar(archive: Path, dest: Path) -> None:
    with tarfile.open(archive, "r:*") as tar:
        try:
            if _HAS_DATA_FILTER:
                tar.extractall(dest, members=_checked(tar, archive), filter="data")
            else:
                tar.extractall(dest, members=_checked(tar, archive))
        except _FILTER_ERROR as exc:  # the data filter's own refusals, beyond the checks above
            raise RefusedArchive(f"{archive.name}: refused member {exc.tarinfo.name!r} ({exc}); nothing was "
                                 "installed.") from None
        except tarfile.TarError as exc:  # ReadError, CompressionError, ...
            raise FetchError(f"{archive.name}: cannot extract ({type(exc).__name__}: {exc}); nothing was "
                             "installed.") from None


def extract_zip(archive: Path, dest: Path) -> None:
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise FetchError(f"{archive.name}: not a zip file ({exc}); nothing was installed.") from None
    with zf:
        for info in zf.infolist():  # the central directory: every name is checked before anything is written
            why = _unsafe_name(info.filename)
            if why is None and stat.S_ISLNK(info.external_attr >> 16):
                why = "symbolic link"
            if why:
                raise RefusedArchive(f"{archive.name}: refused member {info.filename!r} ({why}); nothing was "
                                     "installed.")  # fmt: skip
        zf.extractall(dest)


def unpack(archive: Path, kind: str, dest: Path) -> None:
    if kind == "zip":
        extract_zip(archive, dest)
    elif kind.startswith("tar"):
        extract_tar(archive, dest)
    else:
        raise ValueError(f"not an archive type: {kind}")


def gunzip(src: Path, dest: Path) -> None:
    with gzip.open(src, "rb") as fin, open(dest, "wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)


def staging(target: Path) -> Path:
    """A fresh temporary folder beside ``target`` (same file system, so the final rename is atomic)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name or 'fetch'}-", suffix=".tmp", dir=target.parent))


def install(tmp: Path, produced: Path, target: Path) -> None:
    """Rename ``produced`` (inside ``tmp``, or ``tmp`` itself) to ``target``, then drop what is left of ``tmp``."""
    try:
        if target.exists():
            raise FetchError(f"{target} appeared while fetching; it was left as it is.")
        produced.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def extract_into(archive: Path, kind: str, target: Path, yields: str) -> Path:
    """Unpack ``archive`` and make its folder ``yields`` ("" = its top level; a lone top folder is unwrapped)
    the new ``target``. On any failure the temporary folder goes and ``target`` stays as it was."""
    tmp = staging(target)
    try:
        unpack(archive, kind, tmp)
        produced = tmp / yields if yields else tmp
        if not yields:
            top = [p for p in tmp.iterdir() if not p.name.startswith(".")]
            if len(top) == 1 and top[0].is_dir():
                produced = top[0]
        if not produced.is_dir():
            found = ", ".join(sorted(p.name for p in tmp.iterdir())[:8]) or "nothing"
            raise FetchError(f"{archive.name} has no folder {yields}/ at its top (found: {found}); nothing was "
                             "installed.")  # fmt: skip
    except RefusedArchive as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        archive.unlink(missing_ok=True)
        raise RefusedArchive(f"{exc} {archive} was deleted.") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    install(tmp, produced, target)
    return target
