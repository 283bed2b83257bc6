"""Paper tables: each paper evaluation declares its run grid, its reference numbers and how run
records map to table cells. Table modules live in ``protocols/`` (``rdbench_protocols``) and register here
from above."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from rdbench.bench.intervals import seed_interval
from rdbench.config import RunConfig
from rdbench.data.mvtec import MVTEC_CATEGORIES as MVTEC_ALL  # noqa: F401 (the tables' name for the 15)
from rdbench.data.mvtec import MVTEC_OBJECTS, MVTEC_TEXTURES  # noqa: F401
from rdbench.metrics import ScoreSummary
from rdbench.records.schema import RunRecord
from rdbench.registry import PLUGINS_HINT, Registry, unknown_choice


@cache
def paper_numbers() -> dict:
    """The paper's tables as numbers (percent), stored with the package."""
    return json.loads(resources.files("rdbench").joinpath("paper_tables.json").read_text())


@dataclass(frozen=True)
class GridOptions:
    data_root: str = ""
    novelty_root: str = ""  # torchvision-style root for MNIST/FashionMNIST/CIFAR-10/Caltech-256
    seeds: int = 1  # runs per cell: seeds 111, 112, ... (111 is the authors')
    epochs: int | None = None  # None: the protocol's own (200 in the paper)
    device: str = "auto"
    eval_protocol: str = "final"
    weights: str = "imagenet"
    limit_categories: tuple[str, ...] = ()  # empty: every category/class of the protocol
    max_train_images: int | None = None  # CI-sized smoke sweeps
    max_test_images: int | None = None
    batch_size: int | None = None
    image_size: int | None = None  # override for the tables that don't vary it
    backbone: str | None = None  # override for the tables that don't vary it (all but Table 6)
    caltech_split_seed: int = 0  # Table 4, Caltech-256: the paper gives no split (docs/parity.md)
    caltech_test_fraction: float = 0.2
    amp: str = "none"  # mixed precision of every run (RunConfig.amp); part of the runs' hashes
    feature_cache_gb: float | None = None  # RunConfig.feature_cache_gb; does not change results
    # Table 7: "score-map" reads the paper's M^k as which layers enter the anomaly map, from the Table 1 runs'
    # metrics_by_layers (no training of its own); "loss-and-map" trains a model per subset (loss and map)
    table7_reading: str = "score-map"

    def seed_list(self) -> list[int]:
        return [111 + i for i in range(self.seeds)]

    def run_overrides(self) -> dict:
        """What these options set in every run of a grid, for ``Protocol.config`` (None: the protocol's
        default). The data root, the category, the seed and the table's own variations come on top."""
        return dict(weights=self.weights, device=self.device, eval_protocol=self.eval_protocol,
                    max_train_images=self.max_train_images, max_test_images=self.max_test_images,
                    epochs=self.epochs, batch_size=self.batch_size, image_size=self.image_size,
                    backbone=self.backbone, amp=self.amp, feature_cache_gb=self.feature_cache_gb)


TABLE7_READINGS = ("score-map", "loss-and-map")
SOURCES = ("final", "best", "checkpoint")  # which epoch of a run a cell shows (PaperTable.cells)
# the optimistic sources, each with the caption that says what was chosen on the test set
OPTIMISTIC_SOURCES = {
    "best": "OPTIMISTIC: each metric at its own best epoch on the test set",
    "checkpoint": "OPTIMISTIC: one checkpoint per run, the epoch with the best mean of image and pixel AUROC on "
                  "the test set",
}


@dataclass(frozen=True)
class GridRun:
    """One run of a table's grid and the cell it feeds."""
    config: RunConfig
    row: str
    column: str
    # the cell reads the metrics of the map built from these layers of the run (metrics_by_layers), not the
    # run's own map: several cells can share one run
    score_layers: tuple[int, ...] | None = None


@dataclass
class Cell:
    row: str
    column: str
    metric: str
    paper: float | None  # percent
    values: list[float] = field(default_factory=list)  # reproduced, percent, one per seed
    random_teacher: bool = False
    count: int | None = None  # for averages: how many cells entered it
    # percent, the 95% interval of the cell's value: fed by >= 2 seeds, of their mean over seeds and test images
    # (``ci_seeds``; bench.intervals, from the records' sidecars); fed by one record, its own interval over the test
    # images (metrics_ci), which leaves training randomness out; None for an average or without sidecars
    ci: tuple[float, float] | None = None
    ci_seeds: bool = False  # the interval includes the seeds' spread: only such a one is a verdict on the paper

    @property
    def paper_in_ci(self) -> bool | None:
        """Whether the paper's value lies inside a seed-aware interval; None when there is none to judge by."""
        if self.ci is None or not self.ci_seeds or self.paper is None:
            return None
        return self.ci[0] <= self.paper <= self.ci[1]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    @property
    def diff(self) -> float | None:
        return None if self.mean is None or self.paper is None else self.mean - self.paper


class PaperTable:
    """One of the paper's Tables 1-7. Subclasses set the class attributes and implement ``grid``."""

    key: str = ""  # "1".."7"
    title: str = ""
    paper_key: str = ""  # key in paper_tables.json
    metrics: tuple[tuple[str, str], ...] = ()  # (record metric, displayed name)
    note: str = ""

    def grid(self, opts: GridOptions) -> list[GridRun]:
        raise NotImplementedError

    def paper_value(self, row: str, column: str, metric: str) -> float | None:
        raise NotImplementedError

    def average_rows(self) -> dict[str, tuple[str, ...]]:
        """Rows computed as the mean of other rows' reproduced cells (e.g. textures/objects/total);
        an empty tuple means every row of the grid."""
        return {}

    def categories(self, opts: GridOptions) -> tuple[str, ...]:
        """Every category/class this table can cover (what --limit-categories chooses from)."""
        return ()

    def caption(self, opts: GridOptions) -> str:
        """The table's title for these options (a table whose reading depends on them says which)."""
        return self.title

    def notes(self, opts: GridOptions) -> list[str]:
        """Remarks about the grid for these options (e.g. a part that depends on data not present)."""
        return []

    def missing_data(self, opts: GridOptions) -> list[tuple[str, str]]:
        """(protocol, problem with the expected tree) of each part of the grid that these options ask for but
        that cannot expand without its data (so ``grid`` leaves its runs out); a sweep must not drop it unsaid."""
        return []

    def cells(self, grid: list[GridRun], records: list[RunRecord], source: str = "final",
              summaries: Callable[[RunRecord], ScoreSummary | None] | None = None) -> list[Cell]:
        """Cells of the table for the runs of ``grid`` found in ``records`` (matched by config hash;
        failed runs and runs of other settings never enter). Cells without runs have no values.
        ``source="best"`` takes each metric's best epoch on the test set (eval protocol "paper"),
        ``source="checkpoint"`` each run's one best checkpoint (``best_checkpoint``): OPTIMISTIC numbers, both,
        shown apart and labelled so (``OPTIMISTIC_SOURCES``). ``summaries``: a record's checked scores sidecar (or
        None), for the seed-and-image interval of a cell fed by several seeds."""
        if source not in SOURCES:
            raise ValueError(unknown_choice("cell source", source, SOURCES))
        by_hash = {r.config_hash: r for r in records if r.ok}
        order: list[tuple[str, str]] = []
        for g in grid:
            if (g.row, g.column) not in order:
                order.append((g.row, g.column))
        out: dict[tuple[str, str, str], Cell] = {}
        # per cell, of every value entering it: (the record's own interval or None, the record if the value is its
        # own final metric, whose sidecar can then resample it, else None)
        feeds: dict[tuple[str, str, str], list] = {}
        for row, column in order:
            for metric, _ in self.metrics:
                out[(row, column, metric)] = Cell(row, column, metric, self.paper_value(row, column, metric))
        for g in grid:
            rec = by_hash.get(g.config.hash())
            if rec is None:
                continue
            for metric, _ in self.metrics:
                if g.score_layers is not None:  # final epoch only: subsets are scored once, at the end
                    v = rec.metric_of_layers(g.score_layers, metric) if source == "final" else None
                    value = None if v is None else 100.0 * v
                elif source == "final":
                    value = self.value(rec, metric)
                elif source == "best":
                    value = self.best_value(rec, metric)
                else:
                    v = rec.at_best_checkpoint(metric)
                    value = None if v is None else 100.0 * v
                if value is not None and not math.isnan(value):
                    cell = out[(g.row, g.column, metric)]
                    cell.values.append(value)
                    cell.random_teacher |= rec.random_teacher
                    # the record's interval is that of its own metric: only where the value is that metric
                    own = (source == "final" and g.score_layers is None and rec.metric(metric) is not None
                           and value == 100.0 * rec.metric(metric))
                    ci = rec.metrics_ci.get(metric) if own else None
                    feeds.setdefault((g.row, g.column, metric), []).append(
                        ((100.0 * ci[0], 100.0 * ci[1]) if ci else None, rec if own else None))
        for key, fed in feeds.items():
            if len(fed) == 1 and fed[0][0] is not None:
                out[key].ci = fed[0][0]
            elif len(fed) > 1 and summaries is not None and all(r is not None for _, r in fed):
                ci = seed_interval([summaries(r) for _, r in fed], key[2])
                out[key].ci, out[key].ci_seeds = (None, False) if ci is None else ((100 * ci[0], 100 * ci[1]), True)
        cells = list(out.values())
        columns = list(dict.fromkeys(c for _, c in order))
        for avg_row, members in self.average_rows().items():
            for column in columns:
                rows = members or tuple(dict.fromkeys(r for r, _ in order))
                for metric, _ in self.metrics:
                    parts = [out[(r, column, metric)] for r in rows if (r, column, metric) in out]
                    present = [c for c in parts if c.mean is not None]
                    cell = Cell(avg_row, column, metric, self.paper_value(avg_row, column, metric),
                                count=len(present))
                    if present:
                        cell.values = [statistics.fmean(c.mean for c in present)]
                        cell.random_teacher = any(c.random_teacher for c in present)
                    cells.append(cell)
        return cells

    def value(self, record: RunRecord, metric: str) -> float | None:
        """A record's metric in percent (Table 3 overrides for timings)."""
        v = record.metric(metric)
        return None if v is None else 100.0 * v

    def best_value(self, record: RunRecord, metric: str) -> float | None:
        v = record.best(metric)
        return None if v is None else 100.0 * v


TABLES: Registry[PaperTable] = Registry("table", empty_hint=PLUGINS_HINT)


def register_table(cls: type[PaperTable]) -> type[PaperTable]:
    TABLES.add(cls.key, cls())
    return cls


def get_table(key: str) -> PaperTable:
    return TABLES.get(str(key))


def all_tables() -> list[PaperTable]:
    return [TABLES.get(k) for k in TABLES.names()]


def limit(categories: tuple[str, ...], opts: GridOptions) -> tuple[str, ...]:
    """The categories/classes a sweep covers; unknown names in --limit-categories are an error."""
    if not opts.limit_categories:
        return categories
    unknown = [c for c in opts.limit_categories if c not in categories]
    wanted = [c for c in categories if c in opts.limit_categories]
    if unknown and not wanted:
        raise ValueError(f"unknown categories {', '.join(unknown)}; valid: {', '.join(categories)}")
    return tuple(wanted)


def cells_frame(cells: list[Cell]):
    """Long-format DataFrame of cells (for CSV/Markdown and the report)."""
    import pandas as pd

    return pd.DataFrame([{"row": c.row, "column": c.column, "metric": c.metric, "paper": c.paper,
                          "reproduced": c.mean, "std": c.std, "n": c.n, "diff": c.diff,
                          "random_teacher": c.random_teacher, "cells_averaged": c.count,
                          "ci_low": c.ci[0] if c.ci else None, "ci_high": c.ci[1] if c.ci else None,
                          "ci_over": (None if not c.ci else "seeds and test images" if c.ci_seeds else
                                      "test images only"),
                          "paper_in_ci": c.paper_in_ci} for c in cells])


def _fmt(v: float | None, width: int, digits: int = 1, sign: bool = False) -> str:
    if v is None:
        return f"{'-':>{width}}"
    return f"{v:>+{width}.{digits}f}" if sign else f"{v:>{width}.{digits}f}"


def format_table(table: PaperTable, cells: list[Cell], title_suffix: str = "", caption: str | None = None) -> str:
    """Plain-text paper-vs-reproduced table: per column, ours (mean over seeds), paper and difference.
    '-' marks a cell without runs (never shown as 0); '*' a cell fed by a random teacher. ``caption``: the
    table's title for its grid options (``PaperTable.caption``)."""
    lines = [(caption or table.title) + title_suffix]
    if table.note:
        lines.append(f"  ({table.note})")
    columns = list(dict.fromkeys(c.column for c in cells))
    rows = list(dict.fromkeys(c.row for c in cells))
    by_key = {(c.row, c.column, c.metric): c for c in cells}
    digits = 3 if table.key == "3" else 1
    for metric, label in table.metrics:
        lines.append(f"\n[{label}]")
        lines.append(f"{'':<18}" + "".join(f"{col[:29]:>30}" for col in columns))
        lines.append(f"{'':<18}" + "".join(f"{'ours':>14}{'paper':>8}{'diff':>8}" for _ in columns))
        for row in rows:
            parts, counts = [], []
            for col in columns:
                c = by_key.get((row, col, metric))
                if c is None:
                    parts.append(f"{'':>30}")
                    continue
                ours = "-" if c.mean is None else f"{c.mean:.{digits}f}"
                if c.std is not None:
                    ours += f"\u00b1{c.std:.{digits}f}"
                ours += "*" if c.random_teacher else ""
                parts.append(f"{ours:>14}{_fmt(c.paper, 8, digits)}{_fmt(c.diff, 8, digits, sign=True)}")
                if c.count is not None:
                    counts.append(str(c.count))
            note = f"  (mean of {'/'.join(counts)} cells)" if counts else ""
            lines.append(f"{row[:18]:<18}" + "".join(parts) + note)
    if any(c.random_teacher for c in cells):
        lines.append("\n* fed by runs with a RANDOM teacher: not comparable with the paper")
    multi = [c for c in cells if c.n > 1]
    if multi:
        lines.append(f"ours = mean over {max(c.n for c in multi)} seeds; see the report for std")
    return "\n".join(lines)
