"""``rdbench compare``: two folders of records (A, the reference, and B), cell by cell. A cell is a run's settings
without its seed (``bench.baseline``'s grouping), its seeds pooled. Per cell and metric: A and B (means over seeds),
B - A, a 95% interval of B - A from the records' scores sidecars and, for image AUROC, DeLong's p-value. Every
sidecar is checked against its record first (``rdbench.bench.sidecars``): a pair that disagrees is an error, never
a verdict.

The interval is the hierarchical bootstrap of ``rdbench.bench.intervals``: per draw each side's seeds drawn with
replacement, and one draw of the test images shared by every run (all scored the same images, so what that draw
does to both sides cancels). Seed-to-seed training randomness moves these metrics by several points, so only an
interval that includes it (>= 2 seeds on both sides) gives a verdict; with one seed on a side the interval covers
the test images only, and the row is inconclusive (``Row.verdict``). A change is significant only when its interval
excludes 0; all metrics here are higher-is-better, so a significant change below 0 is a drop. ``gate`` is what
``--fail-on-regression`` judges: cells with >= ``--min-seeds`` seeds on both sides."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rdbench.bench.baseline import cell_label, group_cells, images_digest
from rdbench.bench.intervals import SEEDS_AND_IMAGES, SUMMARY_NAMES, diff_interval
from rdbench.bench.sidecars import SidecarMismatch, check_sidecar, not_recorded, record_file
from rdbench.metrics import ScoreSummary, delong_test
from rdbench.records.schema import RunRecord
from rdbench.records.store import read_records, sidecar_of

__all__ = ["SUMMARY_NAMES", "CompareError", "Row", "Run", "SidecarMismatch", "compare_dirs", "diff_interval", "gate",
           "load_runs"]
NO_SIDECAR = "no interval (record has no scores sidecar; rerun with this rdbench)"
MIN_SEEDS = 3  # seeds per side --fail-on-regression needs before it judges (--min-seeds)
AUROC_METRICS = ("image_auroc", "auroc")  # the image score's AUROC: DeLong's test applies
ORDER = ("image_auroc", "auroc", "pixel_auroc", "pro_rd4ad", "pro_mvtec", "pro_mvtec_full", "image_ap", "ap",
         "image_f1_max", "f1_max", "pixel_ap", "pixel_f1_max", "auroc_max")


class CompareError(ValueError):
    """Two folders that cannot be compared (other data, other test images, an unknown metric)."""


@dataclass
class Run:
    record: RunRecord
    summary: ScoreSummary | None
    why: str = ""  # why it has no summary

    @property
    def name(self) -> str:
        return Path(self.record.record_path).name if self.record.record_path else self.record.config_hash


def load_runs(results_dir: Path | str, notes: list[str] | None = None) -> dict[str, list[Run]]:
    """The successful records of a folder by cell, each with its sidecar read and checked against it (or why it has
    none), seeds in order. SidecarMismatch when a pair disagrees; ``notes`` gets the records that kept no digest."""
    out, unrecorded = {}, []
    for key, recs in group_cells(read_records(results_dir)).items():
        runs = []
        for r in sorted(recs, key=lambda r: r.config.seed):
            side = sidecar_of(r, results_dir)
            if side is None:
                runs.append(Run(r, None, NO_SIDECAR))
                continue
            try:
                summary, recorded = check_sidecar(r, side, record_file(r, results_dir))
            except SidecarMismatch:
                raise
            except (OSError, ValueError) as exc:
                runs.append(Run(r, None, f"no interval (sidecar {side.name} unreadable: {exc})"))
                continue
            runs.append(Run(r, summary))
            if not recorded:
                unrecorded.append(f"{Path(results_dir).name}/runs/{record_file(r, results_dir).name}")
        out[key] = runs
    if unrecorded and notes is not None:
        notes.append(not_recorded(unrecorded))
    return out


@dataclass
class Row:
    cell: str
    key: str
    metric: str
    a: float | None
    b: float | None
    seeds_a: list[int] = field(default_factory=list)
    seeds_b: list[int] = field(default_factory=list)
    low: float | None = None  # 95% interval of B - A
    high: float | None = None
    resampled: str = ""  # "images" or "images, seeds" (intervals.IMAGES, SEEDS_AND_IMAGES)
    delong_p: float | None = None
    delong_note: str = ""
    note: str = ""  # why no interval (or no value)
    verdict: str = ""  # what the row says: significant or not (seeds resampled), inconclusive (one seed), the note

    @property
    def seed_variance(self) -> bool:
        """Whether the interval includes training randomness (seeds resampled), so it may give a verdict."""
        return self.resampled == SEEDS_AND_IMAGES

    @property
    def interval(self) -> str:
        return "" if self.low is None else "seeds and test images" if self.seed_variance else "test images only"

    @property
    def delta(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a

    @property
    def significant(self) -> bool:
        return self.low is not None and (self.low > 0 or self.high < 0)

    @property
    def regression(self) -> bool:
        return self.significant and self.high < 0

    def to_dict(self) -> dict:
        return {**asdict(self), "delta": self.delta, "significant": self.significant, "regression": self.regression,
                "seed_variance": self.seed_variance, "interval": self.interval}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def verdict(row: Row) -> str:
    """A row's verdict. Only an interval with the seeds' spread judges; one seed on a side is inconclusive, however
    far its images-only interval lies from 0."""
    if row.low is None:
        return row.note
    na, nb = len(row.seeds_a), len(row.seeds_b)
    if min(na, nb) < 2:
        return ("inconclusive: one seed per side" if na == nb else
                f"inconclusive: one seed in {'A' if na == 1 else 'B'} ({max(na, nb)} in {'B' if na == 1 else 'A'})")
    return "DROP (significant)" if row.regression else "gain (significant)" if row.significant else "not significant"


def gate(rows: list[Row], min_seeds: int = MIN_SEEDS) -> tuple[list[Row], list[str]]:
    """What ``--fail-on-regression`` judges: (the significant drops of rows with >= ``min_seeds`` seeds on both
    sides, a line per cell it cannot judge for want of seeds). ``min_seeds`` 1 judges one seed by its images-only
    interval."""
    drops, cannot = [], {}
    for r in rows:
        if r.low is None:
            continue
        na, nb = len(r.seeds_a), len(r.seeds_b)
        if min(na, nb) < min_seeds:
            cannot.setdefault(r.key, f"cannot judge: {r.cell} has {_plural(na, 'seed')} in A, {nb} in B; "
                                     f"--fail-on-regression needs >= {min_seeds} per side (--min-seeds)")
        elif r.regression:
            drops.append(r)
    return drops, list(cannot.values())


def mismatch(ref: Run, other: Run) -> str | None:
    """Why two runs cannot be paired image by image, naming both records, or None."""
    fa, fb = ref.record.data_fingerprint, other.record.data_fingerprint
    if fa and fb and fa != fb:
        return f"{ref.name} (data {fa[:12]}) and {other.name} (data {fb[:12]}) were made from different data"
    known = "label" in ref.record.per_image and "label" in other.record.per_image  # a bare record: cannot tell
    if (known and images_digest(ref.record) != images_digest(other.record)) or (
            ref.summary is not None and other.summary is not None
            and not np.array_equal(ref.summary.labels, other.summary.labels)):
        return f"{ref.name} and {other.name} scored different test images (paths or labels differ)"
    return None


def _image_scores(run: Run) -> tuple[np.ndarray, np.ndarray] | None:
    if run.summary is not None:
        return run.summary.labels, run.summary.image_scores
    p = run.record.per_image  # records without a sidecar still keep their image scores
    return (np.asarray(p["label"]), np.asarray(p["score"], dtype=float)) if p.get("score") and p.get("label") else None


def delong(a: list[Run], b: list[Run]) -> tuple[float | None, str]:
    """DeLong's p of the image AUROC on seed-matched pairs (no seed in common: pairs in seed order); with several
    pairs the largest p, the conservative one."""
    by_seed = {r.record.config.seed: r for r in a}
    pairs = [(by_seed[r.record.config.seed], r) for r in b if r.record.config.seed in by_seed]
    how = "seed-matched"
    if not pairs:
        pairs, how = list(zip(a, b)), "paired in seed order (no seed in common)"
    ps = []
    for ra, rb in pairs:
        sa, sb = _image_scores(ra), _image_scores(rb)
        if sa is None or sb is None:
            return None, "no per-image scores"
        try:
            ps.append(delong_test(sa[0], sa[1], sb[1]).p)
        except ValueError as exc:
            return None, str(exc)
    note = "" if len(ps) == 1 and how == "seed-matched" else f"largest p of {len(ps)} pair(s), {how}"
    return max(ps), note


def _metrics(a: list[Run], b: list[Run], wanted: list[str] | None) -> list[str]:
    """The metrics asked for, or those both sides have, headline metrics first."""
    if wanted:
        return wanted
    a_has, b_has = ({m for r in side for m, v in r.record.metrics.items() if v is not None} for side in (a, b))
    shared = a_has & b_has
    return [m for m in ORDER if m in shared] + sorted(shared - set(ORDER))


def compare_cell(key: str, a: list[Run], b: list[Run], wanted: list[str] | None = None) -> list[Row]:
    rows = []
    for m in _metrics(a, b, wanted):
        ra, rb = ([r for r in side if r.record.metrics.get(m) is not None] for side in (a, b))
        row = Row(cell_label(a[0].record.config.to_dict()), key, m,
                  statistics.fmean(r.record.metrics[m] for r in ra) if ra else None,
                  statistics.fmean(r.record.metrics[m] for r in rb) if rb else None,
                  [r.record.config.seed for r in ra], [r.record.config.seed for r in rb])
        rows.append(row)
        if not ra or not rb:
            row.note = row.verdict = f"no value in {'A' if not ra else 'B'}"
            continue
        if m in AUROC_METRICS:
            row.delong_p, row.delong_note = delong(ra, rb)
        name = SUMMARY_NAMES.get(m)
        lacking = next((r for r in ra + rb if r.summary is None), None)
        if name is None:
            row.note = "no interval for this metric (no per-image decomposition)"
        elif lacking is not None:
            row.note = lacking.why
        elif not all(name in r.summary.metrics for r in ra + rb):
            row.note = f"no interval (the sidecars hold nothing for {m})"
        else:
            row.low, row.high, row.resampled = diff_interval([r.summary for r in ra], [r.summary for r in rb], name)
        row.verdict = verdict(row)
    return rows


def compare_dirs(a_dir: Path | str, b_dir: Path | str, metrics: list[str] | None = None,
                 notes: list[str] | None = None) -> list[Row]:
    """Every cell of A and B (a cell on one side only: one row saying so). CompareError, naming the records, when
    a pair of cells differs in data or test images, or a requested metric is in no record; SidecarMismatch when a
    record and its sidecar disagree. ``notes`` gets what could not be verified."""
    a, b = load_runs(a_dir, notes), load_runs(b_dir, notes)
    if metrics:
        known = {m for side in (a, b) for runs in side.values() for r in runs for m in r.record.metrics}
        unknown = [m for m in metrics if m not in known]
        if unknown:
            raise CompareError(f"no record has metric(s) {', '.join(unknown)}; the records have: "
                               f"{', '.join(sorted(known)) or 'none'}")
    rows, refused = [], []
    for key in [*a, *(k for k in b if k not in a)]:
        if key not in a or key not in b:
            side = a.get(key) or b[key]
            only = f"cell only in {'A' if key in a else 'B'}"
            rows.append(Row(cell_label(side[0].record.config.to_dict()), key, "", None, None, note=only, verdict=only))
            continue
        problems = {p for r in a[key][1:] + b[key] if (p := mismatch(a[key][0], r))}
        if problems:
            refused += [f"  {cell_label(a[key][0].record.config.to_dict())}: {p}" for p in sorted(problems)]
            continue
        rows += compare_cell(key, a[key], b[key], metrics)
    if refused:
        raise CompareError("refusing to compare runs that did not score the same test images:\n" + "\n".join(refused))
    return rows
