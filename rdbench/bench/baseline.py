"""Regression baselines: per cell (a run's settings without its seed) and metric, the mean and spread
over seeds and every run with its seed and kernels, from one or more results folders; ``check`` compares fresh
records against it and says what moved and by which rule (``_expected``): a rerun on the baseline's kernels must
reproduce its seed, a seed the baseline ran on several kernels is held to their spread, anything else to the
seed spread. ``save_baseline`` also copies each cell's scores sidecars into ``<baseline>.scores/`` (named in the
cell's ``scores``), what ``check --stat`` (``rdbench.bench.baseline_stat``) needs for its paired bootstrap, with
the sha256 of each copy (``scores_sha256``), checked again whenever the baseline is checked."""

from __future__ import annotations

import hashlib
import json
import statistics
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from rdbench import __version__
from rdbench.bench.sidecars import check_kept, check_records, keep_sidecars, scores_folder
from rdbench.config import RunConfig
from rdbench.records.schema import RunRecord
from rdbench.records.store import read_records, write_json

SCHEMA = 1
DEFAULT_FLOOR = 0.01  # absolute: one AUROC/PRO point; below that, CPU-kernel noise between machines
SPREAD_FACTOR = 3.0  # tolerance = max(floor, 3 x the baseline's seed std)
PREDICTION = 0.995  # rule 2: a one-sided 99.5% prediction bound for one more run of a seed from its n kernels' runs


def prediction_factor(n: int) -> float:
    """Student's t quantile x sqrt(1 + 1/n): how many of n runs' std a new run may lie below their mean (6.5 at n = 4,
    3.7 at n = 8). Four runs of one seed say little of its spread, and this says how little."""
    from scipy.stats import t

    return float(t.ppf(PREDICTION, n - 1)) * (1 + 1 / n) ** 0.5


def kernels(record: RunRecord) -> str | None:
    """The arithmetic a run's numbers came from: the hash of its kernels' rounding (``rdbench.records.arithmetic``),
    with the device, instruction set, threads and torch for the reader; None for a record that has no hash. One seed
    gives the same numbers bit for bit only where the hash is the same: other rounding is amplified by training like
    a change of seed (docs/parity.md; FashionMNIST class 8, seed 111, lost 8.1 AUROC points on an AVX2 EPYC)."""
    env = record.environment
    if not env.get("arithmetic"):
        return None
    isa = f" {env['cpu_capability']}" if env.get("cpu_capability") else ""
    return (f"arithmetic {env['arithmetic']} ({env.get('device_name')}{isa}, {env.get('threads')} threads, "
            f"torch {env.get('torch')})")


def cell_key(config: dict) -> str:
    """Identity of a cell: every result-relevant setting except the seed."""
    d = RunConfig.from_dict(config).result_dict()
    d.pop("seed")
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cell_label(config: dict) -> str:
    c = config
    extra = [f"{c['image_size']}px", f"{c['epochs']}ep", c["bottleneck"], "L" + ",".join(map(str, c["layers"])),
             f"weights={c['weights'] if c['weights'] in ('imagenet', 'none') else 'file'}"]
    if c.get("amp", "none") != "none":
        extra.append(c["amp"])
    return f"{c['protocol']}/{c['category']}/{c['backbone']} ({' '.join(extra)})"


def images_digest(record: RunRecord) -> str:
    """Which test images a run scored, in which order, with which labels (its per-image paths and labels): two runs
    are paired image by image only when these agree."""
    cols = [record.per_image.get("path"), record.per_image.get("label")]
    return hashlib.sha256(json.dumps(cols, default=str).encode()).hexdigest()[:16]


def group_cells(records: list[RunRecord]) -> dict[str, list[RunRecord]]:
    """The successful records by cell (``cell_key``): the one grouping of baselines and ``rdbench compare``."""
    out: dict[str, list[RunRecord]] = {}
    for r in records:
        if r.ok:
            key = cell_key(r.config.to_dict())
            if r.config_unknown:  # settings of a newer rdbench: not pooled with runs that lack them
                key = hashlib.sha256(json.dumps([key, r.config_unknown], sort_keys=True,
                                                default=str).encode()).hexdigest()[:16]
            out.setdefault(key, []).append(r)
    return out


def _by_seed(found: list[tuple[RunRecord, Path]]) -> dict[int, list[tuple[RunRecord, Path]]]:
    """A cell's runs by seed, one per seed and kernels (the first results folder's where several hold it)."""
    out: dict[int, list[tuple[RunRecord, Path]]] = {}
    for rec, folder in found:
        same = out.setdefault(rec.config.seed, [])
        if kernels(rec) is None or all(kernels(r) != kernels(rec) for r, _ in same):
            same.append((rec, folder))
    return out


def save_baseline(results_dir: Path | str | list, out: Path | str, floor: float = DEFAULT_FLOOR,
                  other_floor: float | None = None) -> dict:
    """A baseline of the records in ``results_dir`` (one folder or several, e.g. the same seeds run on other
    machines or thread counts). Per metric: the mean and std over seeds (each seed the mean of its runs) and
    every run with its seed and kernels, which ``check`` needs for its rerun and kernel-spread rules.
    ``other_floor``: the least tolerance for a run on kernels the baseline lacks (default ``floor``): the
    largest change of one seed measured between real machines, which a few kernels of one machine can miss."""
    folders = [Path(d) for d in (results_dir if isinstance(results_dir, list) else [results_dir])]
    found: dict[str, list[tuple[RunRecord, Path]]] = {}
    for folder in folders:
        records = read_records(folder)
        check_records(folder, records)  # every pair, before a kept sidecar of the baseline is replaced
        for key, recs in group_cells(records).items():
            found.setdefault(key, []).extend((r, folder) for r in recs)
    if not found:
        where = ", ".join(str(f / "runs") for f in folders)
        raise ValueError(f"no successful run records under {where}; nothing to baseline")
    for old in scores_folder(out).glob("*.npz"):  # a re-saved baseline keeps no sidecar of cells it no longer has
        old.unlink()
    cells = {}
    for key, cell_runs in sorted(found.items()):
        runs = _by_seed(cell_runs)
        recs = [r for seed in sorted(runs) for r, _ in runs[seed]]
        metrics = {}
        for name in sorted({m for r in recs for m, v in r.metrics.items() if v is not None}):
            per_seed = {seed: [r.metrics[name] for r, _ in rs if r.metrics.get(name) is not None]
                        for seed, rs in sorted(runs.items())}
            values = [statistics.fmean(v) for v in per_seed.values() if v]
            metrics[name] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1
                             else None, "n": len(values), "values": values,
                             "runs": [{"seed": r.config.seed, "kernels": kernels(r), "value": r.metrics[name]}
                                      for r in recs if r.metrics.get(name) is not None]}
        config = recs[0].config.to_dict()
        config.pop("seed")
        cells[key] = {"label": cell_label(recs[0].config.to_dict()), "config": config,
                      "seeds": sorted(runs), "metrics": metrics,
                      "data_fingerprint": recs[0].data_fingerprint, "images": images_digest(recs[0]),
                      "kernels": sorted({k for r in recs if (k := kernels(r))})}
        kept = keep_sidecars(key, runs, Path(out))
        if kept:
            cells[key]["scores"], cells[key]["scores_sha256"] = kept
    baseline = {"schema": SCHEMA, "rdbench": __version__, "floor": floor,
                "other_floor": floor if other_floor is None else max(floor, other_floor),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "commits": sorted({str(r.environment.get("commit")) for rs in found.values() for r, _ in rs}),
                "cells": cells}
    write_json(baseline, Path(out))
    return baseline


@dataclass
class Row:
    label: str
    metric: str
    baseline: float | None
    baseline_std: float | None
    fresh: float | None
    tolerance: float | None
    status: str  # ok | REGRESSION | improved | MISSING
    low: float | None = None  # --stat: the 95% paired interval of fresh - baseline
    high: float | None = None
    note: str = ""  # which rule judged it (a rerun, other kernels; --stat: why no interval)

    @property
    def delta(self) -> float | None:
        return None if self.fresh is None or self.baseline is None else self.fresh - self.baseline


EXPECTED = ('a JSON object {"schema": 1, "floor": 0.01, "cells": {KEY: {"label": "...", "config": {...}, '
            '"metrics": {NAME: {"mean": 0.9, "std": 0.01 or null, "n": 2, "values": [...]}}}}}')


def _kind(v) -> str:
    """A JSON value's type as JSON names it."""
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(v), "a number")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _shape_problem(baseline) -> str | None:
    """What keeps a parsed JSON value from being a baseline ``check`` can use, or None."""
    if not isinstance(baseline, dict):
        return f"its top level is {_kind(baseline)}, not an object"
    cells = baseline.get("cells")
    if not isinstance(cells, dict):
        return 'it has no "cells"' if cells is None else f'its "cells" is {_kind(cells)}, not an object'
    for key in ("floor", "other_floor"):
        if key in baseline and not _number(baseline[key]):
            return f'its "{key}" is {baseline[key]!r}, not a number'
    for key, cell in cells.items():
        if not isinstance(cell, dict) or not isinstance(cell.get("label"), str):
            return f'cell {key!r} is not an object with a "label"'
        if not isinstance(cell.get("metrics"), dict):
            return f'cell {key!r} ({cell["label"]}) has no "metrics" object'
        for name, stats in cell["metrics"].items():
            if not (isinstance(stats, dict) and _number(stats.get("mean")) and "std" in stats
                    and (stats["std"] is None or _number(stats["std"]))):
                return (f'metric {name!r} of cell {key!r} ({cell["label"]}) is not '
                        '{"mean": number, "std": number or null}')
            runs = stats.get("runs", [])
            if not (isinstance(runs, list) and all(isinstance(r, dict) and _number(r.get("value")) and "seed" in r
                                                   for r in runs)):
                return (f'metric {name!r} of cell {key!r} ({cell["label"]}) has "runs" that are not '
                        '[{"seed": S, "kernels": K, "value": number}]')
    return None


def load_baseline(baseline_file: Path | str) -> dict:
    """A baseline file, checked to have the shape ``save_baseline`` writes; ValueError naming the file and
    what was expected otherwise."""
    how = "make one with rdbench baseline save --results DIR --out FILE"
    try:
        baseline = json.loads(Path(baseline_file).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read baseline {baseline_file}: {type(exc).__name__}: {exc}; {how}") from None
    problem = _shape_problem(baseline)
    if problem:
        raise ValueError(f"cannot read baseline {baseline_file}: it is not an rdbench baseline ({problem}); "
                         f"expected {EXPECTED}; {how}")
    return baseline


def _kernels_named(recs: list[RunRecord]) -> str:
    found = sorted({kernels(r) or "unknown kernels" for r in recs})
    return found[0] if len(found) == 1 else f"{len(found)} kernels"


def _expected(stats: dict, recs: list[RunRecord], tolerance: float | None, floor: float,
              other_floor: float) -> tuple[float, float, str]:
    """(baseline value, tolerance, note) for a metric of fresh records ``recs``, by the first rule that applies:
    1. each fresh run is a seed the baseline ran on the same kernels: it must reproduce it, within ``floor``;
    2. each fresh seed has runs on n >= 2 kernels in the baseline: the fresh mean is held to those runs' mean
       with max(other_floor, prediction_factor(n) x their std), what other rounding may do to one seed;
    3. otherwise to the baseline's mean with max(floor, 3 x its seed std), ``other_floor`` at least where the
       fresh kernels are none of the baseline's.
    ``tolerance``, if given, replaces the computed one."""
    runs = stats.get("runs") or []
    exact = {(str(r["seed"]), r["kernels"]): r["value"] for r in runs if r.get("kernels")}
    fresh = [(str(r.config.seed), kernels(r)) for r in recs]
    if all(k is not None and (s, k) in exact for s, k in fresh):
        return (statistics.fmean(exact[f] for f in fresh), floor if tolerance is None else tolerance,
                "same seeds and kernels: a rerun")
    per_seed: dict[str, list[float]] = {}
    for r in runs:
        per_seed.setdefault(str(r["seed"]), []).append(r["value"])
    seeds = sorted({s for s, _ in fresh})
    if all(len(per_seed.get(s, [])) >= 2 for s in seeds):
        spread = statistics.fmean(statistics.variance(per_seed[s]) for s in seeds) ** 0.5
        n = min(len(per_seed[s]) for s in seeds)
        return (statistics.fmean(statistics.fmean(per_seed[s]) for s, _ in fresh),
                max(other_floor, prediction_factor(n) * spread) if tolerance is None else tolerance,
                f"{_kernels_named(recs)}, not among the baseline's runs of seed {', '.join(seeds)}: held to the "
                f"spread of the same seed over {n} kernels")
    known = {r.get("kernels") for r in runs} - {None}
    foreign = bool(known) and any(k not in known for _, k in fresh)
    tol = max(other_floor if foreign else floor, SPREAD_FACTOR * (stats["std"] or 0.0))
    tol = tol if tolerance is None else tolerance
    if not foreign:
        return stats["mean"], tol, ""
    note = f"{_kernels_named(recs)}, not among the baseline's: held to the seed spread"
    if stats["std"] is None:
        note += " (one seed in the baseline, so only the floor: save it from several seeds, --seeds 3)"
    return stats["mean"], tol, note


def check(baseline_file: Path | str, results_dir: Path | str, tolerance: float | None = None,
          floor: float | None = None, notes: list[str] | None = None) -> list[Row]:
    """Compare fresh records with a baseline. All metrics are higher-is-better (AUROC, PRO): a fresh
    mean below the expected value by more than the tolerance is a regression. A rerun of the baseline's seeds on
    its kernels (``kernels``) is expected to give those seeds' values, within the floor; other runs are held to
    the spread of a seed over kernels or of the seeds (``_expected``). ``tolerance``, if given, replaces these.
    A cell or metric of the baseline with no fresh value is MISSING (a failure, never a silent pass). Every fresh
    record and its sidecar, and the baseline's kept sidecars, must belong together (``rdbench.bench.sidecars``:
    SidecarMismatch otherwise); ``notes`` gets what could not be verified."""
    baseline = load_baseline(baseline_file)
    cells = baseline["cells"]
    floor = baseline.get("floor", DEFAULT_FLOOR) if floor is None else floor
    other_floor = max(floor, baseline.get("other_floor", floor))
    check_kept(Path(baseline_file), cells)
    records = read_records(Path(results_dir))
    check_records(results_dir, records, notes)
    fresh = group_cells(records)
    rows = []
    for key, cell in cells.items():
        recs = fresh.get(key, [])
        for name, stats in cell["metrics"].items():
            have = [r for r in recs if r.metrics.get(name) is not None]
            if not have:
                tol = tolerance if tolerance is not None else max(floor, SPREAD_FACTOR * (stats["std"] or 0.0))
                rows.append(Row(cell["label"], name, stats["mean"], stats["std"], None, tol, "MISSING"))
                continue
            expected, tol, note = _expected(stats, have, tolerance, floor, other_floor)
            mean = statistics.fmean(r.metrics[name] for r in have)
            status = "REGRESSION" if mean < expected - tol else "improved" if mean > expected + tol else "ok"
            rows.append(Row(cell["label"], name, expected, stats["std"], mean, tol, status, note=note))
    return rows


def format_rows(rows: list[Row], only_problems: bool = False) -> str:
    def f(v: float | None, sign: bool = False) -> str:
        return "-" if v is None else (f"{100 * v:+.2f}" if sign else f"{100 * v:.2f}")

    shown = [r for r in rows if not only_problems or r.status in ("REGRESSION", "MISSING")]
    stat = any(r.low is not None for r in rows)  # --stat: the interval instead of the tolerance rule
    ci = f"{'95% CI':>17}" if stat else ""
    lines = [f"{'status':<11}{'metric':<13}{'baseline':>9}{'fresh':>8}{'delta':>8}{'tol':>7}{ci}  cell"]
    notes: dict[str, int] = {}  # a rule's note is long and the same for a cell's every metric: a footnote
    for r in shown:
        ci = ("" if not stat else f"{'':>17}" if r.low is None else f"{f'[{f(r.low, True)}, {f(r.high, True)}]':>17}")
        mark = f"  [{notes.setdefault(r.note, len(notes) + 1)}]" if r.note else ""
        lines.append(f"{r.status:<11}{r.metric:<13}{f(r.baseline):>9}{f(r.fresh):>8}{f(r.delta, True):>8}"
                     f"{f(r.tolerance):>7}{ci}  {r.label}{mark}")
    return "\n".join(lines + [f"[{i}] {note}" for note, i in notes.items()])
