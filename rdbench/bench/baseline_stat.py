"""``rdbench baseline check --stat``: a regression is a drop whose 95% interval of fresh - baseline (the
hierarchical bootstrap of ``rdbench compare``, ``rdbench.bench.intervals``: seeds and the same test images) lies
wholly below -floor; an improvement one wholly above +floor. The absolute floor still applies, so a drop within
CPU-kernel noise between machines never fails however narrow its interval.

The interval judges only with >= ``min_seeds`` seeds on both sides (default 3): training randomness moves these
metrics by several points from seed to seed, which an interval over the test images of one seed leaves out, and
a few seeds' spread is all a seed bootstrap sees. With fewer, the row keeps its interval for the reader but is
judged by the default rule of ``baseline check`` (``baseline._expected``), and its note says so. Metrics without an
interval (MVTec's whole-set PRO, the max-score AUROC) keep the default rule too, and say so."""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np

from rdbench.bench.baseline import (
    DEFAULT_FLOOR,
    SPREAD_FACTOR,
    Row,
    _expected,
    images_digest,
    kernels,
    load_baseline,
)
from rdbench.bench.compare import load_runs
from rdbench.bench.intervals import SUMMARY_NAMES, diff_interval
from rdbench.bench.sidecars import check_kept
from rdbench.metrics import ScoreSummary

MIN_SEEDS = 3


def _baseline_scores(baseline_file: Path, cells: dict) -> dict[str, list[ScoreSummary]]:
    """Each cell's kept sidecars, or ValueError saying to re-save the baseline."""
    lacking = [cell["label"] for cell in cells.values() if not cell.get("scores")]
    if lacking:
        raise ValueError(
            f"baseline {baseline_file} keeps no scores sidecars for {len(lacking)} of its {len(cells)} cell(s) "
            f"(e.g. {lacking[0]}): --stat needs them. Re-save it with this rdbench (rdbench baseline save "
            f"--results DIR --out {baseline_file}) from records that have scores sidecars (records made before "
            f"rdbench wrote them need rerunning), or check without --stat")
    out = {}
    for key, cell in cells.items():
        try:
            out[key] = [ScoreSummary.from_npz(baseline_file.parent / p) for _, p in sorted(cell["scores"].items())]
        except (OSError, ValueError) as exc:
            raise ValueError(f"baseline {baseline_file}: cannot read the scores of {cell['label']}: {exc}; re-save "
                             f"the baseline (rdbench baseline save --results DIR --out {baseline_file})") from None
    return out


def _check_images(cell: dict, runs: list, kept: list[ScoreSummary]) -> None:
    """The paired bootstrap needs the baseline's test images, image by image: ValueError otherwise."""
    for r in runs:
        fp = r.record.data_fingerprint
        if (fp and cell.get("data_fingerprint") and fp != cell["data_fingerprint"]) or (
                cell.get("images") and images_digest(r.record) != cell["images"]) or (
                r.summary is not None and not np.array_equal(r.summary.labels, kept[0].labels)):
            raise ValueError(f"{r.name} did not score the test images of baseline cell {cell['label']} "
                             f"(data {str(fp)[:12]} vs {str(cell.get('data_fingerprint'))[:12]}, or other "
                             f"images): a paired comparison needs the same ones; check without --stat")


def check_stat(baseline_file: Path | str, results_dir: Path | str, tolerance: float | None = None,
               floor: float | None = None, min_seeds: int = MIN_SEEDS, notes: list[str] | None = None) -> list[Row]:
    """Rows as ``baseline.check``'s, with the interval (``low``, ``high``) where there is one; ``tolerance``
    applies only to the rows the default rule judges. ValueError when the baseline keeps no sidecars or a fresh
    record scored other data or test images than the baseline's; SidecarMismatch when a record and its sidecar, or
    a kept sidecar and the baseline, disagree. ``notes`` gets what could not be verified."""
    baseline_file = Path(baseline_file)
    baseline = load_baseline(baseline_file)
    cells = baseline["cells"]
    floor = baseline.get("floor", DEFAULT_FLOOR) if floor is None else floor
    other_floor = max(floor, baseline.get("other_floor", floor))
    check_kept(baseline_file, cells, notes)
    kept = _baseline_scores(baseline_file, cells)
    fresh = load_runs(results_dir, notes)
    rows = []
    for key, cell in cells.items():
        runs = fresh.get(key, [])
        _check_images(cell, runs, kept[key])
        for name, stats in cell["metrics"].items():
            have = [r for r in runs if r.record.metrics.get(name) is not None]
            if not have:
                tol = tolerance if tolerance is not None else max(floor, SPREAD_FACTOR * (stats["std"] or 0.0))
                rows.append(Row(cell["label"], name, stats["mean"], stats["std"], None, tol, "MISSING"))
                continue
            mean = statistics.fmean(r.record.metrics[name] for r in have)
            summary = SUMMARY_NAMES.get(name)
            usable = summary and all(r.summary is not None and summary in r.summary.metrics for r in have) and all(
                summary in s.metrics for s in kept[key])
            low = high = None
            if usable:
                low, high, _ = diff_interval(kept[key], [r.summary for r in have], summary)
            if usable and min(len(have), len(kept[key])) >= min_seeds:
                status = "REGRESSION" if high < -floor else "improved" if low > floor else "ok"
                known = set(cell.get("kernels") or [])
                note = ("" if not known or len(have) > 1 or kernels(have[0].record) in known else
                        f"{kernels(have[0].record) or 'unknown kernels'}, not the baseline's: with one fresh seed the "
                        "interval covers the test images, not training's other rounding; run 2+ seeds or check "
                        "without --stat")
                rows.append(Row(cell["label"], name, stats["mean"], stats["std"], mean, floor, status, low, high,
                                note))
                continue
            # the default rule, said so
            if not summary:
                why = "no interval for this metric"
            elif not usable:
                why = "no interval (fresh record has no sidecar)"
            else:
                why = (f"cannot judge by the interval: {len(have)} fresh seed(s), {len(kept[key])} in the baseline; "
                       f"--stat needs >= {min_seeds} per side (--min-seeds)")
            expected, tol, rule = _expected(stats, [r.record for r in have], tolerance, floor, other_floor)
            status = "REGRESSION" if mean < expected - tol else "improved" if mean > expected + tol else "ok"
            rows.append(Row(cell["label"], name, expected, stats["std"], mean, tol, status, low, high,
                            f"{why}: tolerance rule" + (f" ({rule})" if rule else "")))
    return rows
