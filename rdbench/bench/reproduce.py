"""``rdbench reproduce``: expand the tables' grids, skip runs already recorded, run the rest, print tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rdbench.bench.tables import OPTIMISTIC_SOURCES, GridOptions, PaperTable, format_table
from rdbench.config import RunConfig
from rdbench.data.mvtec import MVTEC_TRAIN_COUNTS
from rdbench.records.schema import RunRecord

# Training cost, seconds per image per epoch at 256 px, batch 16, teacher features cached (every epoch
# after the first): `rdbench profile --batch-size 16` on the 2-core CI CPU (torch 2.14) measured 0.105,
# 0.185, 0.50 and 1.0; rounded up a little for the first epoch and evaluation. bf16 (--amp) halved it for
# wide_resnet50_2 there. A GPU divides it by ~300 (a guess until tests/benchmarks/gpu_check.py has run on
# one). For --dry-run estimates only.
CPU_S_PER_IMAGE_256 = {"resnet18": 0.12, "resnet34": 0.2, "resnet50": 0.55, "wide_resnet50_2": 1.1}
GPU_SPEEDUP = 300.0
NOVELTY_TRAIN_COUNTS = {"mnist": 6000, "fashionmnist": 6000, "cifar10": 5000, "caltech256": 120}


@dataclass
class PlannedRun:
    config: RunConfig
    cells: list[str] = field(default_factory=list)  # "table 1: carpet / RD", ...
    done: bool = False
    skipped: bool = False  # its data is missing (rdbench.bench.missing_data): left out of a --table all sweep


def plan(tables: list[PaperTable], opts: GridOptions) -> list[PlannedRun]:
    """Distinct runs of the selected tables (a run shared by several tables is listed once)."""
    runs: dict[str, PlannedRun] = {}
    for table in tables:
        for g in table.grid(opts):
            pr = runs.setdefault(g.config.hash(), PlannedRun(g.config))
            pr.cells.append(f"table {table.key}: {g.row} / {g.column}")
    return list(runs.values())


def train_images(config: RunConfig) -> int:
    n = MVTEC_TRAIN_COUNTS.get(config.category, 250) if config.protocol == "mvtec" else \
        NOVELTY_TRAIN_COUNTS.get(config.protocol, 1000)
    return min(n, config.max_train_images) if config.max_train_images else n


def estimate_seconds(config: RunConfig, cuda: bool) -> float:
    per = CPU_S_PER_IMAGE_256.get(config.backbone, 1.0) * (config.image_size / 256) ** 2
    return train_images(config) * config.epochs * per / (GPU_SPEEDUP if cuda else 1.0)


def describe(pr: PlannedRun) -> str:
    c = pr.config
    layers = ",".join(map(str, c.layers))
    status = "done" if pr.done else "skip" if pr.skipped else "todo"
    return (f"{status:<5}{c.protocol:<13}{c.category:<12}{c.backbone:<16}{c.image_size:>4}px "
            f"{c.bottleneck:<12} L{layers:<6} seed {c.seed:<4} {c.epochs:>4} ep  {c.hash()}  <- {'; '.join(pr.cells)}")


def format_seconds(s: float) -> str:
    return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.1f} min" if s >= 60 else f"{s:.0f} s"


def print_tables(tables: list[PaperTable], opts: GridOptions, records: list[RunRecord], echo=print) -> None:
    """Each table, final epoch; with eval protocol "paper" also the best epochs, labelled optimistic."""
    for table in tables:
        grid = table.grid(opts)
        echo("")
        echo(format_table(table, table.cells(grid, records), caption=table.caption(opts)))
        # a best epoch exists for a run's own metrics only, not for cells read from its layer subsets
        if opts.eval_protocol == "paper" and table.key != "3" and any(g.score_layers is None for g in grid):
            for source, label in OPTIMISTIC_SOURCES.items():
                echo("")
                echo(format_table(table, table.cells(grid, records, source=source), f" -- {label}",
                                  caption=table.caption(opts)))


def save_sweep(results_dir: Path, tables: list[PaperTable], opts: GridOptions) -> list[Path]:
    """Remember which grid each table was reproduced with (``<results>/sweeps/table<k>_<hash>.json``),
    so the report can lay the records out in the same cells later."""
    import dataclasses
    import hashlib
    import json
    from datetime import datetime, timezone

    from rdbench.records.store import write_json

    options = dataclasses.asdict(opts)
    digest = hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode()).hexdigest()[:12]
    paths = []
    for t in tables:
        path = Path(results_dir) / "sweeps" / f"table{t.key}_{digest}.json"
        write_json({"table": t.key, "options": options,
                      "saved": datetime.now(timezone.utc).isoformat(timespec="seconds")}, path)
        paths.append(path)
    return paths


def load_sweeps(results_dir: Path) -> list[tuple[str, GridOptions]]:
    """(table key, grid options) of every sweep saved under ``results_dir``; unreadable ones skipped."""
    import json
    import warnings

    out = []
    for path in sorted((Path(results_dir) / "sweeps").glob("table*.json")):
        try:
            d = json.loads(path.read_text())
            opts = d["options"]
            opts["limit_categories"] = tuple(opts.get("limit_categories") or ())
            out.append((str(d["table"]), GridOptions(**opts)))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            warnings.warn(f"skipping unreadable sweep file {path}: {exc}", stacklevel=2)
    return out
