"""Provenance of a record: the software and machine that made it (versions, git state, device name)."""

from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path

import torch
import torchvision

from rdbench import __version__
from rdbench.records.arithmetic import arithmetic_fingerprint

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the rdbench package folder


def git_state(cwd: Path | None = None) -> dict:
    """Commit and dirty flag of the rdbench checkout; None when rdbench is not run from its own git
    checkout (an installed copy inside some other repository must not report that repository)."""
    here = cwd or PACKAGE_DIR

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


def device_name(device: torch.device) -> str:
    """The accelerator's marketing name, or the CPU's (what a reader compares timings by)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return _cpu_model() or platform.processor() or platform.machine() or "cpu"


def _cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    # platform.processor() is "x86_64" on Linux: two CPUs of one record set can differ 100x in bf16. psutil
    # has no model name and py-cpuinfo takes 1.7 s per process for this one line, so it is read here.
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return None
    found = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")]
    return found[0] if found and found[0] else None


@functools.cache
def bf16_native(device_type: str) -> bool:
    """Whether bfloat16 math runs at hardware speed here. On the CPU oneDNN's own test (AVX512 or AMX);
    without it torch emulates bf16, measured 120x slower than float32 (a 1024^2 matmul: 0.85 vs 103 GFLOP/s
    on a 2-core AVX2 EPYC), so a bf16 run there is a mistake worth a warning, not a speed-up."""
    if device_type == "cuda":
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # torch without the argument
            return torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def environment(device: torch.device | None = None) -> dict:
    env = {"rdbench": __version__, "python": platform.python_version(), "torch": torch.__version__,
           "torchvision": torchvision.__version__, "cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
           "platform": platform.platform(), "threads": torch.get_num_threads(), **git_state()}
    if device is not None:
        env["device"] = str(device)
        env["device_name"] = device_name(device)
        env["arithmetic"] = arithmetic_fingerprint(device)  # what a baseline's rerun rule compares: kernels' rounding
        if device.type == "cpu":  # the instruction set the kernels ran with: timings and bf16 depend on it
            env["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
            env["bf16_native"] = bf16_native("cpu")
        if device.type == "cuda":
            env["cudnn_deterministic"] = torch.backends.cudnn.deterministic
            env["cudnn_benchmark"] = torch.backends.cudnn.benchmark
            env["deterministic_algorithms"] = torch.are_deterministic_algorithms_enabled()
    return env


# Code that shows numbers but cannot change them: the report (templates, CSS, figures) and the command line
# (which builds configs, whose hash already says what a run was asked for). Editing it must not make records stale
# or throw away resume checkpoints; it has a fingerprint of its own, kept in every record.
PRESENTATION = ("rdbench/report/", "rdbench/cli/")


def _source_files(presentation: bool = False) -> list[tuple[str, Path]]:
    """(name in the fingerprint, file) of the code that decides a run's numbers: the rdbench package and the
    installed protocol modules, wherever they are installed (no git needed), without the presentation code
    (``PRESENTATION``); ``presentation``: that code only."""
    import importlib.util

    roots = [("rdbench", PACKAGE_DIR)]
    spec = importlib.util.find_spec("rdbench_protocols")  # locates without importing it
    if spec is not None and spec.submodule_search_locations:
        roots.append(("rdbench_protocols", Path(next(iter(spec.submodule_search_locations)))))
    out = []
    for name, root in roots:
        for path in sorted(root.rglob("*")):
            rel = f"{name}/{path.relative_to(root).as_posix()}"
            if path.suffix in (".py", ".json", ".j2", ".css") and "__pycache__" not in path.parts \
                    and rel.startswith(PRESENTATION) == presentation:
                out.append((rel, path))
    return out


def _fingerprint(files: list[tuple[str, Path]]) -> str:
    import hashlib

    h = hashlib.sha256()
    for name, path in files:
        h.update(f"{name}\0{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    return h.hexdigest()


@functools.cache
def code_fingerprint() -> str:
    """sha256 over (name, sha256 of the content) of every source file that can change a number (all but
    ``PRESENTATION``): equal code, equal fingerprint. Staleness and checkpoint reuse follow it. Taken once per
    process: the code that runs is the code imported, even if the files are edited during a sweep."""
    return _fingerprint(_source_files())


@functools.cache
def presentation_fingerprint() -> str:
    """The same over the presentation code (report and command line): recorded, never a reason to rerun."""
    return _fingerprint(_source_files(presentation=True))


def code_block() -> dict:
    """The ``code`` block of a record: what ran, whether or not it is a git checkout."""
    git = git_state()
    return {"fingerprint": code_fingerprint(), "presentation": presentation_fingerprint(), "version": __version__,
            "git_commit": git["commit"], "dirty": git["dirty"]}
