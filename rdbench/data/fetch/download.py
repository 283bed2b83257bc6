"""One file from a URL into a folder: streamed to ``<name>.part`` with a bar, continued with an HTTP Range
request after a dropped connection (in this run or a later one), its digest checked before it takes its name.
A file already there under its name (placed by hand on a machine without internet) is checked, not fetched."""

from __future__ import annotations

import hashlib
import http.client
import re
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from rdbench.data.fetch.sources import Remote

CHUNK = 1 << 20
STALLS = 3  # attempts in a row that add no byte before a dropped download gives up (the .part is kept)


class FetchError(RuntimeError):
    """A download, digest check or extraction failed; the message says what happened and what to do."""


class _Dropped(Exception):
    """The connection ended before the whole file came; the caller continues with a Range request."""


def format_bytes(n: float) -> str:
    for unit, size in (("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def file_digest(path: Path, algorithm: str) -> str:
    h = hashlib.md5(usedforsecurity=False) if algorithm == "md5" else hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def check_digest(path: Path, remote: Remote) -> None:
    """Raise FetchError naming both digests, after deleting ``path``, when it is not the published file."""
    actual = file_digest(path, remote.algorithm)
    expected = remote.digest.lower()
    # torch.hub's check_hash: the file's sha256 must start with the hex of its name (resnet18-f37072fd.pth)
    ok = actual.startswith(expected) if remote.algorithm == "sha256-prefix" else actual == expected
    if ok:
        return
    path.unlink(missing_ok=True)
    algo = "sha256 (prefix)" if remote.algorithm == "sha256-prefix" else remote.algorithm
    raise FetchError(f"{remote.filename}: {algo} mismatch: expected {expected}, got {actual} (from {remote.url}); "
                     f"{path} was deleted. Fetch again; if it fails again, the server sends another file (check --url)."
                     f" Digest published in {remote.origin}.")  # fmt: skip


def check_space(folder: Path, need: int, what: str) -> None:
    free = shutil.disk_usage(folder).free
    if need > free:
        raise FetchError(f"not enough disk space for {what} in {folder}: {format_bytes(free)} free, about "
                         f"{format_bytes(need)} needed. Free some space or pass --root on a larger disk.")


def offline_message(remote: Remote, folder: Path, why: object) -> str:
    return (f"cannot download {remote.url} ({why}).\nWithout internet here: download that URL on a machine that has "
            f"it and place the file as\n  {folder / remote.filename}\n(the file {remote.filename} in the folder "
            f"{folder}); the same rdbench fetch command then checks its {remote.algorithm} and uses it.")  # fmt: skip


def fetch_file(remote: Remote, folder: Path, progress: bool = True, timeout: float = 60.0) -> Path:
    """``folder/<remote.filename>``, downloaded unless already there, its digest checked either way."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / remote.filename
    if final.is_file():
        check_digest(final, remote)
        return final
    part = final.with_name(final.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    check_space(folder, max(remote.size - have, 0) + remote.unpacked, remote.filename)
    stalls = 0
    while True:
        before = part.stat().st_size if part.is_file() else 0
        try:
            _stream(remote, part, folder, progress, timeout)
            break
        except _Dropped as exc:
            now = part.stat().st_size if part.is_file() else 0
            stalls = 0 if now > before else stalls + 1
            if stalls >= STALLS:
                raise FetchError(offline_message(remote, folder, f"the connection keeps dropping: {exc}; {part} "
                                 f"keeps the {format_bytes(now)} received, the next run continues it")) from None
    check_digest(part, remote)
    part.replace(final)
    return final


def _total(resp: http.client.HTTPResponse, start: int) -> int | None:
    """The whole file's size: Content-Range's total on a 206, else start + Content-Length."""
    m = re.match(r"bytes (\d+)-\d+/(\d+)", resp.headers.get("Content-Range", ""))
    if m:
        return int(m.group(2))
    length = resp.headers.get("Content-Length")
    return start + int(length) if length and length.isdigit() else None


def _open(remote: Remote, have: int, folder: Path, timeout: float):
    headers = {"User-Agent": "rdbench-fetch", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(remote.url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: the .part is whole (its digest decides)
            return None
        raise FetchError(offline_message(remote, folder, f"HTTP {exc.code} {exc.reason}")) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:  # refused, no DNS, no route, timeout
        raise FetchError(offline_message(remote, folder, getattr(exc, "reason", None) or exc)) from None


def _stream(remote: Remote, part: Path, folder: Path, progress: bool, timeout: float) -> None:
    have = part.stat().st_size if part.is_file() else 0
    resp = _open(remote, have, folder, timeout)
    if resp is None:
        return
    with resp:
        start = have if resp.status == 206 else 0  # a 200 ignored the Range: the whole file comes again
        m = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
        if resp.status == 206 and (not m or int(m.group(1)) != have):
            part.unlink(missing_ok=True)  # a range we did not ask for: start over rather than splice wrong bytes
            raise _Dropped("the server answered another range")
        total = _total(resp, start)
        if total and start == 0:
            check_space(folder, total + remote.unpacked, remote.filename)
        received = start
        bar = tqdm(total=total or remote.size or None, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                   desc=remote.filename, disable=not progress, leave=False)
        try:
            with open(part, "ab" if start else "wb") as f:
                while True:
                    try:
                        chunk = resp.read(CHUNK)
                    except (OSError, http.client.HTTPException) as exc:  # reset, timeout, IncompleteRead
                        raise _Dropped(f"{type(exc).__name__} after {format_bytes(received)}") from None
                    if not chunk:
                        break
                    f.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        finally:
            bar.close()
    if total is not None and received < total:  # http.client returns b"" when a Content-Length body ends early
        raise _Dropped(f"connection closed after {format_bytes(received)} of {format_bytes(total)}")
