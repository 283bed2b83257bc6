"""Run records: one JSON file per run, written atomically, carrying its full provenance."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import torch
import torchvision

from rdbench import __version__
from rdbench.config import RunConfig

SCHEMA_VERSION = 1


def git_state(cwd: Path | None = None) -> dict:
    """Commit and dirty flag of the rdbench checkout; None when rdbench is not run from its own git
    checkout (an installed copy inside some other repository must not report that repository)."""
    here = cwd or Path(__file__).resolve().parents[1]  # the rdbench package folder

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != here.parent.resolve():
            return {"commit": None, "dirty": None}
        # untracked files count: a new protocol module changes what a run does
        dirty = bool(git("status", "--porcelain", "--", str(here.parent / "rdbench"), str(here.parent / "protocols")))
        return {"commit": git("rev-parse", "HEAD"), "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def environment(device: torch.device | None = None) -> dict:
    from rdbench.engine.device import device_name

    env = {"rdbench": __version__, "python": platform.python_version(), "torch": torch.__version__,
           "torchvision": torchvision.__version__, "cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
           "platform": platform.platform(), "threads": torch.get_num_threads(), **git_state()}
    if device is not None:
        env["device"] = str(device)
        env["device_name"] = device_name(device)
        if device.type == "cuda":
            env["cudnn_deterministic"] = torch.backends.cudnn.deterministic
            env["cudnn_benchmark"] = torch.backends.cudnn.benchmark
            env["deterministic_algorithms"] = torch.are_deterministic_algorithms_enabled()
    return env


def record_filename(config: RunConfig) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in
                   f"{config.protocol}_{config.category}_{config.backbone}")
    return f"{safe}_{config.hash()}.json"


def record_path(results_dir: Path, config: RunConfig) -> Path:
    return Path(results_dir) / "runs" / record_filename(config)


def new_record(config: RunConfig) -> dict:
    return {"schema_version": SCHEMA_VERSION, "config": config.to_dict(), "config_hash": config.hash(),
            "seed": config.seed, "status": "running", "error": None,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def check_writable(folder: Path) -> None:
    """Fail before any work when records could not be written there."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise OSError(f"cannot write run records to {folder}: {exc.strerror}; choose a writable "
                      f"--results folder") from None


def write_record(record: dict, path: Path) -> Path:
    """Write atomically: a temp file in the same folder, fsync, then rename over the target, so a
    crash or a full disk never leaves a partial record and never damages an earlier one."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OSError(f"cannot write run records to {path.parent}: {exc.strerror}; choose a writable "
                      f"--results folder") from None
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=1, allow_nan=True)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; records are for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_record(path: Path) -> dict:
    with open(path) as f:
        rec = json.load(f)
    if not isinstance(rec, dict) or "config" not in rec or "status" not in rec:
        raise ValueError(f"{path} is not an rdbench run record (no config/status)")
    return rec


def read_records(results_dir: Path) -> list[dict]:
    """All readable records under ``results_dir/runs``; unreadable ones are reported on stderr."""
    out = []
    for p in sorted((Path(results_dir) / "runs").glob("*.json")):
        try:
            out.append(read_record(p))
        except (OSError, ValueError) as exc:
            print(f"warning: skipping unreadable record {p}: {exc}", file=sys.stderr)
    return out


def records_frame(results_dir: Path):
    """Flatten records into a pandas DataFrame (one row per run: config, status, metrics)."""
    import pandas as pd

    rows = []
    for r in read_records(results_dir):
        row = {k: v for k, v in r["config"].items() if k != "extra"}
        row.update({"config_hash": r["config_hash"], "status": r["status"], "error": r.get("error")})
        row.update(r.get("metrics") or {})
        row["teacher_weights"] = (r.get("teacher_weights") or {}).get("kind")
        rows.append(row)
    return pd.DataFrame(rows)
