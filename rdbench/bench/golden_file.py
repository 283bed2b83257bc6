"""The golden file (``results/baselines/golden.json``) and the comparison of a fresh suite run with it.

``check`` holds every value at a relative 1e-9 (and 1e-12 absolute, for values near 0): float64 rounding of
differently ordered sums is ~1e-16, and a few training steps amplify it to ~1e-13 at most (the float64 parity of
rdbench with the authors' code, on another machine: 5e-13), while the smallest change the tests plant (a Gaussian
sigma, Adam's lr or a mask threshold moved by 1e-6) moves a value by 1e-8 or more. For each case it names the
first stage that moved (``rdbench.bench.golden.STAGES``) with its old and new values.

``save`` replaces the values and appends a reason to the file's history (date, rdbench version and commit, the
machine, and what moved), so that an intended change of the numbers is a reviewed line in a diff, not a silent
re-save.
"""

from __future__ import annotations

import json
import math
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from rdbench.bench.golden import CASES, STAGES, SuiteResult
from rdbench.records.provenance import PACKAGE_DIR, code_block, device_name
from rdbench.records.store import write_json

FORMAT = "rdbench.golden/1"
REL, ABS = 1e-9, 1e-12
DEFAULT_GOLDEN = PACKAGE_DIR.parent / "results" / "baselines" / "golden.json"  # committed beside the package


class GoldenFileError(ValueError):
    """A golden file that cannot be read or used (missing, not JSON, another format)."""


def flatten(value, prefix: str = "") -> dict[str, object]:
    """Nested dicts and lists -> {"a.b[2]": leaf}: one comparable value per key."""
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, (list, tuple)):
        out = {}
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def _same(old, new) -> bool:
    if isinstance(old, bool) or isinstance(new, bool) or not isinstance(old, (int, float)) \
            or not isinstance(new, (int, float)):
        return old == new
    if math.isnan(old) or math.isnan(new):
        return math.isnan(old) and math.isnan(new)
    return abs(new - old) <= ABS + REL * abs(old)


@dataclass
class Moved:
    """The first stage of a case whose values differ, and its first differing value."""
    case: str
    stage: str
    key: str
    old: object
    new: object
    differing: int  # values of that stage that differ
    later: list[str] = field(default_factory=list)  # the later stages that differ too

    def describe(self) -> str:
        def show(v):
            return "absent" if v is _ABSENT else repr(v) if not isinstance(v, float) else f"{v:.15g}"

        more = f" ({self.differing} value(s) of this stage differ)" if self.differing > 1 else ""
        after = f"; later stages that differ: {', '.join(self.later)}" if self.later else ""
        return f"{self.case}: first moved at stage '{self.stage}': {self.key} {show(self.old)} -> {show(self.new)}" \
               f"{more}{after}"

    def to_dict(self) -> dict:
        return {"case": self.case, "stage": self.stage, "key": self.key,
                "old": None if self.old is _ABSENT else self.old, "new": None if self.new is _ABSENT else self.new,
                "differing": self.differing, "later_stages": self.later}


_ABSENT = object()


def first_moved(case: str, old: dict, new: dict) -> Moved | None:
    """Where ``new`` (stage -> values) first differs from ``old``, in STAGES order, or None."""
    found: Moved | None = None
    for stage in STAGES:
        a, b = flatten(old.get(stage, {})), flatten(new.get(stage, {}))
        bad = [k for k in [*a, *(k for k in b if k not in a)] if not _same(a.get(k, _ABSENT), b.get(k, _ABSENT))]
        if not bad:
            continue
        if found is None:
            found = Moved(case, stage, bad[0], a.get(bad[0], _ABSENT), b.get(bad[0], _ABSENT), len(bad))
        else:
            found.later.append(stage)
    return found


def compare(golden: dict, fresh: dict[str, dict]) -> list[Moved]:
    """Every case of the golden file against the fresh values; a case on one side only is a difference too."""
    out = []
    for name in [*golden, *(n for n in fresh if n not in golden)]:
        if name not in fresh:
            out.append(Moved(name, "case", "", "in the golden file", "not in this suite", 1))
        elif name not in golden:
            out.append(Moved(name, "case", "", "not in the golden file", "in this suite", 1))
        elif (m := first_moved(name, golden[name]["stages"], fresh[name])) is not None:
            out.append(m)
    return out


def relations(fresh: dict[str, dict]) -> list[Moved]:
    """The cases that must equal another by construction (``Case.same_as``) and do not."""
    out = []
    for case in CASES:
        if case.same_as and case.name in fresh and case.same_as in fresh:
            m = first_moved(f"{case.name} vs {case.same_as}", fresh[case.same_as], fresh[case.name])
            if m is not None:
                out.append(m)
    return out


def machine() -> dict:
    """What ran the suite (for the history; the check itself must not depend on it)."""
    cpu = torch.device("cpu")
    return {"cpu": device_name(cpu), "kernels": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version()}


def load(path: Path | str) -> dict:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise GoldenFileError(f"no golden file at {path}: make one with `rdbench golden save --out {path} "
                              f"--reason TEXT`") from None
    except (OSError, ValueError) as exc:
        raise GoldenFileError(f"{path} is not a readable golden file: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("cases"), dict):
        raise GoldenFileError(f"{path} is not a golden file of format {FORMAT} (format "
                              f"{data.get('format') if isinstance(data, dict) else None!r})")
    return data


def save(path: Path | str, result: SuiteResult, reason: str, device: str = "cpu") -> tuple[dict, list[Moved]]:
    """Write ``result`` as the golden file, keeping the history of an earlier file at ``path`` and adding a line:
    the reason, when, which code and machine, and which cases moved against the earlier values."""
    reason = reason.strip()
    if not reason:
        raise GoldenFileError("a golden file is saved with a reason (--reason TEXT): why the numbers change")
    path = Path(path)
    previous = load(path) if path.exists() else None
    moved = compare(previous["cases"], result.values) if previous else []
    code = code_block()
    entry = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "reason": reason,
             "rdbench": code.get("version"), "git_commit": code.get("git_commit"), "dirty": code.get("dirty"),
             "machine": {**machine(), "device": device}, "suite_s": round(result.total_s, 1),
             "moved": [m.describe() for m in moved] if previous else "first save"}
    data = {"format": FORMAT, "tolerance": {"rel": REL, "abs": ABS}, "stages": list(STAGES),
            "history": [*(previous or {}).get("history", []), entry],
            "cases": {c.name: {"covers": c.covers, "stages": result.values[c.name]} for c in CASES
                      if c.name in result.values}}
    write_json(data, path)
    return data, moved
