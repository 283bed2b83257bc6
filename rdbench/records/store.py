"""The record store: where a run's record lives, atomic JSON writes, and reading records back (typed)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from rdbench.config import RunConfig
from rdbench.records.schema import RecordError, RunRecord

SCORES_SUFFIX = ".scores.npz"


def record_filename(config: RunConfig) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in
                   f"{config.protocol}_{config.category}_{config.backbone}")
    return f"{safe}_{config.hash()}.json"


def record_path(results_dir: Path | str, config: RunConfig) -> Path:
    return Path(results_dir) / "runs" / record_filename(config)


def check_writable(folder: Path) -> None:
    """Fail before any work when records could not be written there."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise OSError(f"cannot write run records to {folder}: {exc.strerror}; choose a writable "
                      f"--results folder") from None


def replace_atomically(path: Path, write: Callable[[IO], None], binary: bool = False, digest: bool = False,
                       what: str = "run records", where: str = "--results folder") -> str | None:
    """Write through ``write(file)`` into a temp file in the same folder, fsync, then rename over ``path``, so a
    crash or a full disk never leaves a partial file (the temp file is removed) and never damages an earlier one.
    The one way rdbench replaces a file: records, sidecars, checkpoints, models. ``digest``: returns the sha256 of
    the temp file read back after the fsync, the very bytes the rename puts in place (a digest of the stream as
    written would not do: zip writers such as np.savez seek back to fill in headers). ``what``/``where`` name the
    files and the option to change in the error of a folder that cannot be written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OSError(f"cannot write {what} to {path.parent}: {exc.strerror}; choose a writable {where}") from None
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        sha = file_sha256(tmp) if digest else None
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; records and their sidecars are for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return sha


def file_sha256(path: Path | str) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_json(obj: Any, path: Path | str) -> Path:
    """Write atomically (``replace_atomically``)."""
    path = Path(path)
    replace_atomically(path, lambda f: json.dump(obj, f, indent=1, allow_nan=True))
    return path


def scores_path(record_json: Path | str) -> Path:
    """The sidecar of a record file: ``runs/<stem>.json`` -> ``runs/<stem>.scores.npz``."""
    p = Path(record_json)
    return p.with_name(p.stem + SCORES_SUFFIX)


def sidecar_of(record: RunRecord, results_dir: Path | str) -> Path | None:
    """The sidecar a record read from ``<results_dir>/runs`` names (``scores_file``, a name beside the record), or
    None when it names none (records written before sidecars, or whose intervals could not be computed)."""
    return Path(results_dir) / "runs" / Path(record.scores_file).name if record.scores_file else None


def write_record(record: RunRecord, path: Path | str) -> Path:
    """The record's JSON and, when it carries its scores (``record.scores``: anything with ``to_npz(file)``),
    their sidecar first, so a record never names a sidecar that is not there; the record keeps the sidecar's
    sha256 (``scores_sha256``), so a sidecar that is not the one written with it is told apart."""
    path = Path(path)
    if record.scores is not None:
        side = scores_path(path)
        record.scores_sha256 = replace_atomically(side, record.scores.to_npz, binary=True, digest=True)
        record.scores_file = side.name
    return write_json(record.to_dict(), path)


def read_record(path: Path | str) -> RunRecord:
    """One record; OSError when unreadable, RecordError (a ValueError) when not a record or not JSON."""
    with open(path) as f:
        try:
            data = json.load(f)
        except ValueError as exc:
            raise RecordError(f"{path} is not valid JSON: {exc}") from None
    return RunRecord.from_dict(data, where=str(path))


def read_records(results_dir: Path | str) -> list[RunRecord]:
    """All readable records under ``results_dir/runs``; each unreadable one is a warning (the report lists
    them) and is skipped."""
    out = []
    for p in sorted((Path(results_dir) / "runs").glob("*.json")):
        try:
            out.append(read_record(p))
        except (OSError, ValueError) as exc:
            warnings.warn(f"skipping unreadable record {p}: {exc}", stacklevel=2)
    return out


def _previous_ok(path: Path) -> bool:
    try:
        return read_record(path).ok
    except (OSError, ValueError):
        return False


def store_record(record: RunRecord, results_dir: Path | str) -> RunRecord:
    """Write a record where it belongs and return it with ``record_path`` set. A failure never replaces an
    earlier successful record of the same config: it goes to ``runs/failed/`` instead."""
    path = record_path(results_dir, record.config)
    if not record.ok and _previous_ok(path):
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        path = path.parent / "failed" / f"{path.stem}.{stamp}.json"
    record.record_path = str(path)
    write_record(record, path)
    return record
