"""Which runs of a sweep are already done: an ok record is reused only for the same config *and* the same data.

A record is the answer to "this config, on these bytes, with this code". ``plan_reuse`` sorts each config of a
sweep into: reused (an ok record with the same config hash and data fingerprint), to run (no record, a corrupt
one, or one made from other data), and kept-but-said (a failed record; an ok record made by other code, or
one that predates data/code fingerprints). ``rerun`` names which of the kept classes to run again instead:
``stale`` (ok records of other code), ``failed``, ``all`` (every run of the sweep).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rdbench.config import RunConfig
from rdbench.engine.run import data_block
from rdbench.records.fingerprint import results_cache
from rdbench.records.provenance import code_fingerprint
from rdbench.records.schema import RunRecord
from rdbench.records.store import read_record, record_path
from rdbench.registry import unknown_choice

RERUN_CHOICES = ("stale", "failed", "all")


def short(fingerprint: str | None) -> str:
    return (fingerprint or "none")[:12]


@dataclass
class Reuse:
    todo: list[RunConfig] = field(default_factory=list)
    reused: list[RunRecord] = field(default_factory=list)
    stale: list[RunRecord] = field(default_factory=list)  # reused, but made by other (or unrecorded) code
    unverified: list[RunRecord] = field(default_factory=list)  # reused, its data not readable now
    kept_failed: list[RunRecord] = field(default_factory=list)  # not rerun (no --rerun failed)
    data_changed: list[RunConfig] = field(default_factory=list)  # an ok record of other data: run again
    corrupt: list[Path] = field(default_factory=list)

    def summary(self) -> list[str]:
        """The loud lines a sweep prints before it starts (empty when everything is plain)."""
        lines, running = [], short(code_fingerprint())
        if self.stale:
            codes = sorted({short(r.code_fingerprint) for r in self.stale})
            lines.append(f"{len(self.stale)} records from code {', '.join(codes)}, not the running code {running}: "
                         f"reused; `--rerun stale` redoes them")
        if self.data_changed:
            lines.append(f"{len(self.data_changed)} runs have records made from other data (data fingerprint "
                         f"changed): they run again")
        if self.unverified:
            lines.append(f"{len(self.unverified)} records reused without checking their data (it cannot be read "
                         f"now); `--rerun all` redoes them once the data is back")
        if self.kept_failed:
            lines.append(f"{len(self.kept_failed)} runs failed before and are not retried: `--rerun failed` redoes "
                         f"them ({'; '.join(r.error or '?' for r in self.kept_failed[:2])}"
                         f"{'; ...' if len(self.kept_failed) > 2 else ''})")
        for path in self.corrupt:
            lines.append(f"unreadable record {path}: the run will be redone")
        return lines


def check_rerun(rerun: Iterable[str]) -> set[str]:
    chosen = set(rerun)
    for r in chosen - set(RERUN_CHOICES):
        raise ValueError(unknown_choice("rerun", r, RERUN_CHOICES))
    return chosen


def _data_fingerprint(config: RunConfig, cache, memo: dict, path: Path) -> str | None:
    """The current data's fingerprint for ``config`` (once per dataset of the sweep), None when unreadable."""
    key = (config.protocol, config.data_root, config.category, tuple(sorted(config.extra.items())))
    if key not in memo:
        try:
            memo[key] = data_block(config, cache)["fingerprint"]
        except Exception as exc:  # missing data, an unregistered protocol: cannot check, and say so
            warnings.warn(f"cannot fingerprint the data of {path.name}: {type(exc).__name__}: {exc}", stacklevel=3)
            memo[key] = None
    return memo[key]


def plan_reuse(configs: Sequence[RunConfig], results_dir: Path | str, rerun: Iterable[str] = ()) -> Reuse:
    """Sort ``configs`` (duplicates by hash dropped, order kept) by what their records allow; see the module."""
    rerun = check_rerun(rerun)
    out, seen = Reuse(), set()
    running = code_fingerprint()
    cache = results_cache(results_dir)
    fingerprints: dict[tuple, str | None] = {}  # per dataset of the sweep
    for config in configs:
        h = config.hash()
        if h in seen:
            continue
        seen.add(h)
        path = record_path(results_dir, config)
        if "all" in rerun or not path.exists():
            out.todo.append(config)
            continue
        try:
            rec = read_record(path)
        except (OSError, ValueError):
            out.corrupt.append(path)
            out.todo.append(config)
            continue
        if rec.config_hash != h:  # a record under this config's file name from another config: not its answer
            out.todo.append(config)
        elif not rec.ok:
            (out.todo.append(config) if "failed" in rerun else out.kept_failed.append(rec))
        else:
            unverified = False
            if rec.data_fingerprint is not None:  # data first: other bytes are another experiment, whatever code
                now = _data_fingerprint(config, cache, fingerprints, path)
                if now is not None and now != rec.data_fingerprint:
                    out.data_changed.append(config)
                    out.todo.append(config)
                    continue
                unverified = now is None
            stale = rec.data_fingerprint is None or rec.code_fingerprint != running
            if stale and "stale" in rerun:
                out.todo.append(config)
                continue
            out.reused.append(rec)
            if stale:
                out.stale.append(rec)
            elif unverified:
                out.unverified.append(rec)
    cache.save()
    return out


def stale_records(records: Iterable[RunRecord]) -> list[RunRecord]:
    """Records not made by the running code (another code fingerprint, or none recorded)."""
    running = code_fingerprint()
    return [r for r in records if r.code_fingerprint != running]
