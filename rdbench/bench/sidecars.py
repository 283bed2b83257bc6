"""A run record and its scores sidecar belong together, or neither is used: ``check_sidecar`` is the one check
that ``rdbench compare``, ``baseline save`` / ``check`` (both modes) and the report make before a sidecar's
numbers are believed, and ``SidecarMismatch`` the one error (exit 2 on the command line, never a verdict).

A pair belongs together when (a) the sidecar's sha256 is the one the record kept when both were written
(``RunRecord.scores_sha256``; records of an older rdbench have none, and the check says so), and (b) what the
sidecar can recompute equals the record: its labels and image scores the record's per-image ones, its image
AUROC the record's (to 1e-12), its other metrics within the binning error of ``rdbench.metrics.bootstrap``.
(a) catches a sidecar swapped for another run's or rewritten; (b) a record edited after it was written, whose
sidecar would otherwise lend an edited value the interval of the original. A baseline keeps the digest of each
sidecar it copies (``keep_sidecars``), checked again by ``check_kept``."""

from __future__ import annotations

import functools
import math
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rdbench.bench.intervals import SUMMARY_NAMES
from rdbench.metrics import ScoreSummary, metric_values
from rdbench.records.schema import RunRecord
from rdbench.records.store import SCORES_SUFFIX, file_sha256, sidecar_of

# Image AUROC is the same rational number both ways (the Mann-Whitney count over the pairs: exact integers in
# rdbench.metrics.image_auroc, exact float64 sums of integer counts in the summary), divided once: equal to the
# bit today. 1e-12 only absorbs a last-bit difference of another summation order (a record of an older rdbench,
# another BLAS); one pair of images moves AUROC by 1 / (P N), above 1e-8 on the largest test sets.
IMAGE_AUROC_TOL = 1e-12
# the other metrics: pixel ones are binned (rdbench.metrics.bootstrap: its tests assert < 1e-3 against the
# exact metric); image AP and F1-max are exact but summed in another order; PRO's per-image mean likewise
BINNED_TOL = 1e-3
NOT_RECORDED = ("do not record their sidecar's sha256 (written by an older rdbench): each was checked against its "
                "sidecar by labels, image scores and metrics only")
FIX = "rerun it, or put back the sidecar written with this record"


class SidecarMismatch(ValueError):
    """A record and its scores sidecar that disagree: neither can be trusted for a verdict or an interval."""


def record_file(record: RunRecord, results_dir: Path | str) -> Path:
    """The record's file under ``<results_dir>/runs`` (named as the store wrote it)."""
    name = Path(record.record_path).name if record.record_path else record.scores_file[:-len(SCORES_SUFFIX)] + ".json"
    return Path(results_dir) / "runs" / name


def _pair(record_value: float, sidecar_value: float) -> str:
    """Both values with as many digits as it takes to tell them apart (4 at least)."""
    digits = next((d for d in range(4, 18) if f"{record_value:.{d}f}" != f"{sidecar_value:.{d}f}"), 17)
    return f"{record_value:.{digits}f} in the record, {sidecar_value:.{digits}f} from the sidecar"


def _column(name: str, ours, theirs: np.ndarray) -> str | None:
    try:
        mine = np.asarray(ours, dtype=theirs.dtype)
    except (TypeError, ValueError):
        return f"{name}: the record's are not numbers"
    if mine.shape != theirs.shape:
        return f"{name}: {mine.size} in the record, {theirs.size} in the sidecar"
    differ = mine != theirs
    if not differ.any():
        return None
    worst = float(np.max(np.abs(mine[differ].astype(float) - theirs[differ].astype(float))))
    return f"{name}: {int(differ.sum())} of {mine.size} differ (by up to {worst:.4g})"


def disagreements(summary: ScoreSummary, metrics: dict, labels=None, scores=None) -> list[str]:
    """What a sidecar's summary and a record's values (metric -> value, per-image labels and image scores, each
    optional) disagree on, one phrase each; empty when they agree."""
    out = [p for p in (_column("labels", labels, summary.labels) if labels is not None else None,
                       _column("image scores", scores, summary.image_scores) if scores is not None else None) if p]
    names = {m: SUMMARY_NAMES[m] for m, v in metrics.items() if m in SUMMARY_NAMES and SUMMARY_NAMES[m] in
             summary.metrics and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
    if names:
        values = metric_values(summary, np.ones((1, summary.labels.size)), sorted(set(names.values())))
        for m, name in names.items():
            got = float(values[name][0])
            if not abs(got - metrics[m]) <= (IMAGE_AUROC_TOL if name == "image_auroc" else BINNED_TOL):
                out.append(f"{m} {_pair(float(metrics[m]), got)}")
    return out


def _read(sidecar: Path) -> ScoreSummary:
    try:
        return ScoreSummary.from_npz(sidecar)
    except (zipfile.BadZipFile, EOFError, KeyError) as exc:  # a truncated or foreign zip
        raise ValueError(f"{sidecar.name} is not a readable score summary ({type(exc).__name__}: {exc})") from None


def check_sidecar(record: RunRecord, sidecar: Path, record_path: Path | str) -> tuple[ScoreSummary, bool]:
    """(the sidecar's summary, whether its sha256 was recorded and checked). SidecarMismatch, naming both files
    and what disagrees, unless they belong together; OSError / ValueError when the sidecar cannot be read."""
    problems = []
    if record.scores_sha256:
        actual = file_sha256(sidecar)
        if actual != record.scores_sha256:
            problems.append(f"sha256 of the sidecar is {actual[:16]}..., the record says {record.scores_sha256[:16]}"
                            "... (another run's sidecar, or one rewritten after the record)")
    try:
        summary = _read(sidecar)
        problems += disagreements(summary, record.metrics, record.per_image.get("label"),
                                  record.per_image.get("score"))
    except ValueError:
        if not problems:
            raise
    if problems:
        raise SidecarMismatch(f"{record_path} and {sidecar} disagree: {'; '.join(problems)}; {FIX}")
    return summary, bool(record.scores_sha256)


def not_recorded(names: list[str]) -> str:
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return f"{len(names)} record(s) {NOT_RECORDED}: {shown}"


def check_records(results_dir: Path | str, records: list[RunRecord], notes: list[str] | None = None
                  ) -> dict[int, Path]:
    """Check the sidecar of every successful record of a folder that names one: {id(record): its sidecar} for
    those that could be read; SidecarMismatch on a pair that disagrees. Appends to ``notes`` which records kept
    no digest. A sidecar that is missing or unreadable is left out (its record gets no interval), not an error."""
    found, unrecorded = {}, []
    for r in records:
        side = sidecar_of(r, results_dir) if r.ok else None
        if side is None:
            continue
        try:
            _, recorded = check_sidecar(r, side, record_file(r, results_dir))
        except SidecarMismatch:
            raise
        except (OSError, ValueError):
            continue
        found[id(r)] = side
        if not recorded:
            unrecorded.append(f"{Path(results_dir).name}/runs/{record_file(r, results_dir).name}")
    if unrecorded and notes is not None:
        notes.append(not_recorded(unrecorded))
    return found


def checked_loader(results_dir: Path | str, records: list[RunRecord], notes: list[str] | None = None
                   ) -> Callable[[RunRecord], ScoreSummary | None]:
    """``check_records`` now; then a loader of a checked record's summary (None for the others), read again when
    asked, so that a report of many runs never holds every sidecar at once (the last few are kept: a table asks for
    the same seeds once per metric)."""
    found = check_records(results_dir, records, notes)
    read = functools.lru_cache(maxsize=8)(_read)
    return lambda r: read(found[id(r)]) if id(r) in found else None


def scores_folder(baseline_file: Path | str) -> Path:
    """Where a baseline keeps its cells' sidecars: ``<baseline file name>.scores/`` beside it."""
    p = Path(baseline_file)
    return p.with_name(p.name + ".scores")


def keep_sidecars(key: str, runs: dict[int, list[tuple[RunRecord, Path]]], out: Path
                  ) -> tuple[dict[str, str], dict[str, str]] | None:
    """Copy a cell's sidecars (checked against their records: ``check_records``) into the baseline's scores folder,
    one per seed (its first run's): ({seed: path relative to the baseline's folder}, {seed: sha256 of the copy}), or
    None unless every seed has one (a paired comparison of part of the seeds would not be the baseline's mean)."""
    sides = {seed: sidecar_of(*found[0]) for seed, found in runs.items()}
    if not all(side is not None and side.is_file() for side in sides.values()):
        return None
    folder = scores_folder(out)
    folder.mkdir(parents=True, exist_ok=True)
    kept, digests = {}, {}
    for seed, side in sorted(sides.items()):
        shutil.copyfile(side, folder / f"{key}_{seed}.npz")
        kept[str(seed)] = f"{folder.name}/{key}_{seed}.npz"
        digests[str(seed)] = file_sha256(folder / f"{key}_{seed}.npz")
    return kept, digests


def check_kept(baseline_file: Path, cells: dict, notes: list[str] | None = None) -> None:
    """Each sidecar a baseline keeps, against the sha256 it recorded when it copied it: SidecarMismatch naming the
    baseline and the file. A kept file that is absent is left to whoever needs it; baselines saved before the
    digests were kept are named in ``notes``."""
    unrecorded = 0
    for cell in cells.values():
        digests = cell.get("scores_sha256") or {}
        for seed, rel in (cell.get("scores") or {}).items():
            path = baseline_file.parent / rel
            if not path.is_file():
                continue
            if seed not in digests:
                unrecorded += 1
            elif (actual := file_sha256(path)) != digests[seed]:
                raise SidecarMismatch(
                    f"baseline {baseline_file} and its kept sidecar {path} ({cell.get('label')}, seed {seed}) "
                    f"disagree: sha256 of the sidecar is {actual[:16]}..., the baseline says {digests[seed][:16]}"
                    f"...; re-save the baseline (rdbench baseline save --results DIR --out {baseline_file})")
    if unrecorded and notes is not None:
        notes.append(f"baseline {baseline_file} keeps no sha256 of {unrecorded} scores sidecar(s) (saved by an "
                     f"older rdbench): they are not verified; re-save it to record them")
