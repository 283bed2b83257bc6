"""Data fingerprints: which bytes a run read, as one sha256, with a digest cache so a sweep hashes each file once.

``fingerprint = sha256`` over the sorted lines ``<relative path>\\0<size>\\0<sha256 of the content>``: the same
files at another path give the same fingerprint, and any changed, added or removed file changes it. Digests
are cached in ``<results>/.fingerprints.json`` keyed by (absolute path, size, mtime in ns): a second sweep over
MVTec AD only stats its files. A file rewritten with the same size inside the same mtime tick would be missed;
filesystems with coarse timestamps make that possible but it needs a deliberate same-size rewrite.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable
from pathlib import Path

from rdbench.records.store import write_json

CACHE_NAME = ".fingerprints.json"
_CHUNK = 1 << 20
_lock = threading.Lock()  # one process may fingerprint from several threads (e.g. the driver and a bar)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


class DigestCache:
    """File digests by (path, size, mtime_ns), loaded from and saved to one JSON file (None: in memory only)."""

    def __init__(self, path: Path | str | None):
        self.path = Path(path) if path is not None else None
        self.entries: dict[str, list] = {}
        self.hashed = self.reused = 0
        if self.path is not None and self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
                self.entries = {k: v for k, v in data.get("files", {}).items() if isinstance(v, list) and len(v) == 3}
            except (OSError, ValueError, AttributeError):
                self.entries = {}  # a damaged cache costs one full read, never a wrong digest

    def digest(self, path: Path) -> tuple[int, str]:
        st = path.stat()
        key = str(path.resolve())
        hit = self.entries.get(key)
        if hit is not None and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            self.reused += 1
            return st.st_size, hit[2]
        digest = file_sha256(path)
        self.entries[key] = [st.st_size, st.st_mtime_ns, digest]
        self.hashed += 1
        return st.st_size, digest

    def save(self) -> None:
        if self.path is None or not self.hashed:
            return
        with _lock:
            merged = DigestCache(self.path).entries  # another process may have added entries meanwhile
            merged.update(self.entries)
            try:
                write_json({"format": "rdbench.fingerprints/1", "files": merged}, self.path)
            except OSError:
                pass  # the cache is an optimisation: a read-only results folder still fingerprints


def data_fingerprint(root: Path | str, files: Iterable[Path | str], cache: DigestCache | None = None) -> dict:
    """{"fingerprint", "files", "bytes"} of ``files`` (hashed relative to ``root``)."""
    root = Path(root)
    cache = cache if cache is not None else DigestCache(None)
    lines, total = [], 0
    for f in sorted({Path(p) for p in files}):
        size, digest = cache.digest(f)
        total += size
        try:
            rel = f.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:  # a file outside the root (e.g. a shared clutter folder): keep its own name
            rel = f.name
        lines.append(f"{rel}\0{size}\0{digest}\n")
    h = hashlib.sha256("".join(lines).encode())
    return {"fingerprint": h.hexdigest(), "files": len(lines), "bytes": total}


def results_cache(results_dir: Path | str) -> DigestCache:
    return DigestCache(Path(results_dir) / CACHE_NAME)


__all__ = ["CACHE_NAME", "DigestCache", "data_fingerprint", "file_sha256", "results_cache"]
