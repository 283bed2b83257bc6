"""``rdbench baseline check --stat``: a regression is a drop whose paired 95% interval (fresh - baseline, the
bootstrap of ``rdbench compare`` over the same test images, and seeds when both have >= 2) lies wholly below
-floor; an improvement one wholly above +floor. The absolute floor still applies, so a drop within CPU-kernel
noise between machines never fails however narrow its interval. Metrics without an interval (MVTec's whole-set
PRO, the max-score AUROC) keep the default rule, max(floor, 3 x seed std), and say so."""

from __future__ import annotations

import statistics
from pathlib import Path

from rdbench.bench.baseline import DEFAULT_FLOOR, SPREAD_FACTOR, Row, images_digest, kernels, load_baseline
from rdbench.bench.compare import SUMMARY_NAMES, diff_interval, load_runs
from rdbench.metrics import ScoreSummary


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


def check_stat(baseline_file: Path | str, results_dir: Path | str, tolerance: float | None = None,
               floor: float | None = None) -> list[Row]:
    """Rows as ``baseline.check``'s, with the interval (``low``, ``high``) where there is one; ``tolerance``
    applies only to the metrics without an interval. ValueError when the baseline keeps no sidecars or a fresh
    record scored other data or test images than the baseline's."""
    baseline_file = Path(baseline_file)
    baseline = load_baseline(baseline_file)
    cells = baseline["cells"]
    floor = baseline.get("floor", DEFAULT_FLOOR) if floor is None else floor
    kept = _baseline_scores(baseline_file, cells)
    fresh = load_runs(results_dir)
    rows = []
    for key, cell in cells.items():
        runs = fresh.get(key, [])
        for r in runs:  # the paired bootstrap needs the same images, image by image
            fp = r.record.data_fingerprint
            if (fp and cell.get("data_fingerprint") and fp != cell["data_fingerprint"]) or (
                    cell.get("images") and images_digest(r.record) != cell["images"]):
                raise ValueError(f"{r.name} did not score the test images of baseline cell {cell['label']} "
                                 f"(data {str(fp)[:12]} vs {str(cell.get('data_fingerprint'))[:12]}, or other "
                                 f"images): a paired comparison needs the same ones; check without --stat")
        for name, stats in cell["metrics"].items():
            have = [r for r in runs if r.record.metrics.get(name) is not None]
            tol = tolerance if tolerance is not None else max(floor, SPREAD_FACTOR * (stats["std"] or 0.0))
            if not have:
                rows.append(Row(cell["label"], name, stats["mean"], stats["std"], None, tol, "MISSING"))
                continue
            mean = statistics.fmean(r.record.metrics[name] for r in have)
            summary = SUMMARY_NAMES.get(name)
            usable = summary and all(r.summary is not None and summary in r.summary.metrics for r in have) and all(
                summary in s.metrics for s in kept[key])
            if not usable:  # the default rule, said so
                why = "no interval for this metric" if not summary else "no interval (fresh record has no sidecar)"
                status = ("REGRESSION" if mean < stats["mean"] - tol else "improved" if mean > stats["mean"] + tol
                          else "ok")
                rows.append(Row(cell["label"], name, stats["mean"], stats["std"], mean, tol, status,
                                note=f"{why}: tolerance rule"))
                continue
            low, high, _ = diff_interval(kept[key], [r.summary for r in have], summary)
            status = "REGRESSION" if high < -floor else "improved" if low > floor else "ok"
            known = set(cell.get("kernels") or [])
            note = ("" if not known or len(have) > 1 or kernels(have[0].record) in known else
                    f"{kernels(have[0].record) or 'unknown kernels'}, not the baseline's: with one fresh seed the "
                    "interval covers the test images, not training's other rounding; run 2+ seeds or check "
                    "without --stat")
            rows.append(Row(cell["label"], name, stats["mean"], stats["std"], mean, floor, status, low, high, note))
    return rows
