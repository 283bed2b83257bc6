"""The paper tables of the report: each table's cells laid out like the paper (ours / paper / diff per
column, shaded by how far off), one view per saved sweep or per paper-default grid, and as Markdown."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field

from rdbench.bench.tables import (
    OPTIMISTIC_SOURCES,
    Cell,
    GridOptions,
    PaperTable,
    all_tables,
    get_table,
    paper_numbers,
)
from rdbench.records.schema import RunRecord

MISSING = "\u2014"  # a cell without runs: never 0
INTERVAL_LEGEND = (
    "[low, high]: the cell's 95% bootstrap interval. Fed by two or more seeds, of their mean, over seeds and test "
    "images (from the runs' scores sidecars): \u2713 the paper's value lies inside it, \u2717 outside it. Fed by "
    "one seed, \"(test images only)\": that run's interval over its test images, which leaves training randomness "
    "out (it moves these metrics by several points from seed to seed), so it is no verdict on the paper and gets no "
    "mark. Average rows have no interval.")
LOWER_IS_BETTER = {"inference_time_s", "memory_mb"}
DIGITS = {"inference_time_s": 3, "memory_mb": 0}


@dataclass
class CellView:
    ours: str
    paper: str
    diff: str
    shade: str  # CSS background of the difference: green better, red worse, stronger when further off
    random_teacher: bool
    missing: bool
    count: str  # average rows: "cells present/cells in the grid"
    title: str  # tooltip: the seeds' values
    ci: str = ""  # "[low, high]": the cell's 95% interval (Cell.ci)
    ci_images_only: bool = False  # over one run's test images: training randomness left out, so no mark
    consistent: bool = False  # the paper's value lies inside a seed-aware interval (\u2713)
    inconsistent: bool = False  # ... outside it (\u2717)


@dataclass
class Block:
    """One metric of a table, laid out like the paper: rows x columns, each ours / paper / diff."""
    label: str
    columns: list[str]
    rows: list[tuple[str, bool, list[CellView | None]]]  # (row, average row?, cell per column or None)


@dataclass
class TableView:
    slug: str  # file stem in tables/
    table: PaperTable
    options: str
    optimistic: bool
    cells: list[Cell]
    blocks: list[Block]
    notes: list[str]
    found: int  # grid runs with an ok record
    expected: int
    failed: int
    extra: dict = field(default_factory=dict)
    caption: str = ""  # the table's title for its options (PaperTable.caption)
    source: str = "final"  # which epoch of each run (PaperTable.cells): final, best, checkpoint

    @property
    def title(self) -> str:
        label = OPTIMISTIC_SOURCES.get(self.source)
        return (self.caption or self.table.title) + (f" \u2014 {label}" if label else "")


def _num(v: float | None, metric: str) -> str:
    return MISSING if v is None else f"{v:.{DIGITS.get(metric, 1)}f}"


def _shade(c: Cell) -> str:
    if c.diff is None:
        return ""
    if c.metric in LOWER_IS_BETTER:  # seconds and MB on other hardware: judge the ratio; 2x off is full colour
        size, good, floor = abs(c.mean / c.paper - 1) if c.paper else 0.0, c.diff <= 0, 0.01
    else:  # percentage points; 5 points off is full colour
        size, good, floor = abs(c.diff) / 5.0, c.diff >= 0, 0.01
    if size < floor:  # shows as +0.0 / -0.0: no colour
        return ""
    alpha = 0.12 + 0.55 * min(size, 1.0)
    return f"rgba(47,158,68,{alpha:.2f})" if good else f"rgba(224,49,49,{alpha:.2f})"


def cell_view(c: Cell, members: int | None) -> CellView:
    d = DIGITS.get(c.metric, 1)
    ours = _num(c.mean, c.metric) + (f" \u00b1 {c.std:.{d}f}" if c.std is not None else "")
    seeds = ", ".join(f"{v:.{d}f}" for v in c.values)
    ci = f"[{c.ci[0]:.{d}f}, {c.ci[1]:.{d}f}]" if c.ci else ""
    return CellView(ours=ours, paper="n/a" if c.paper is None else _num(c.paper, c.metric),
                    diff="" if c.diff is None else f"{c.diff:+.{d}f}", shade=_shade(c),
                    random_teacher=c.random_teacher, missing=c.mean is None,
                    count="" if c.count is None else f"{c.count}/{members}",
                    title=(f"mean of {c.n} seeds: {seeds}" if c.n > 1 else "") if c.count is None else
                    f"mean of {c.count} of {members} rows present", ci=ci, ci_images_only=bool(c.ci) and not c.ci_seeds,
                    consistent=c.paper_in_ci is True, inconsistent=c.paper_in_ci is False)


def blocks(table: PaperTable, cells: list[Cell]) -> list[Block]:
    columns = list(dict.fromkeys(c.column for c in cells))
    rows = list(dict.fromkeys(c.row for c in cells))
    averages = table.average_rows()
    plain = [r for r in rows if r not in averages]
    by_key = {(c.row, c.column, c.metric): c for c in cells}
    out = []
    for metric, label in table.metrics:
        lines = []
        for row in rows:
            members = None  # average rows: how many rows of the grid it averages (an empty tuple: all)
            if row in averages:
                members = len([r for r in plain if r in averages[row]] if averages[row] else plain)
            views = [cell_view(by_key[(row, col, metric)], members) if (row, col, metric) in by_key else None
                     for col in columns]
            lines.append((row.replace("_", " "), row in averages, views))
        out.append(Block(label, columns, lines))
    return out


def describe_options(o: GridOptions) -> str:
    parts = [f"seeds {', '.join(map(str, o.seed_list()))}", f"epochs {o.epochs or 'paper (200)'}",
             f"eval protocol {o.eval_protocol}", f"teacher weights {o.weights}",
             "categories " + (", ".join(o.limit_categories) if o.limit_categories else "all")]
    for name in ("image_size", "backbone", "batch_size", "max_train_images", "max_test_images"):
        if getattr(o, name) is not None:
            parts.append(f"{name.replace('_', ' ')} {getattr(o, name)}")
    default = GridOptions()
    for name in ("caltech_split_seed", "caltech_test_fraction", "amp", "table7_reading"):  # when not the default
        if getattr(o, name, None) is not None and getattr(o, name) != getattr(default, name, None):
            parts.append(f"{name.replace('_', ' ')} {getattr(o, name)}")
    return "; ".join(parts)


def _latest_profile(profiles: list, backbone: str = "wide_resnet50_2", image_size: int = 256):
    """The newest saved profile of the paper's Table 3 model (profiles come oldest first), or None."""
    matching = [p for _, p in profiles if p.backbone == backbone and p.image_size == image_size]
    return matching[-1] if matching else None


def _figure_value(profile, *keys: str) -> tuple[float | None, str]:
    for key in keys:
        fig = (profile.fast.get(key) or {}) if profile is not None else {}
        if fig.get("value") is not None:
            return fig["value"], fig.get("description", key)
    return None, ""


def _table3_extra(feeding: list[RunRecord], profiles: list, profile_hint: str) -> dict:
    """Table 3's time and memory beside the paper's, like with like: batch-1 latency and the peak memory of
    batch-1 inference from the newest saved `rdbench profile` of wide_resnet50_2 at 256 px, both machines
    named; no difference column (other hardware). The runs' batched throughput is shown as itself."""
    paper = paper_numbers()["table3_complexity"]
    rd = dict(zip(paper["columns"], paper["rows"]["RD (WResNet50)"]))
    paper_where = paper.get("note", "").split(";")[0].replace("Inference time in seconds per image on an ", "")
    prof = _latest_profile(profiles)
    where = (f"{prof.device.get('name', '?')} ({prof.device.get('type', '?')}), torch {prof.device.get('torch', '?')}, "
             f"{prof.device.get('threads', '?')} threads, weights {prof.weights}" if prof else "")
    latency, _ = _figure_value(prof, "latency_ms")
    memory, memory_what = _figure_value(prof, "peak_memory_mb")
    rates = [r.timings["eval_images_per_s"] for r in feeding if r.timings.get("eval_images_per_s")]
    devices = Counter(f"{r.environment.get('device_name', '?')} ({r.environment.get('device', '?')})"
                      for r in feeding)
    rows = [
        {"quantity": "inference time per image, batch 1 (s)",
         "ours": MISSING if latency is None else f"{latency / 1000:.3f}", "ours_where": where,
         "paper": f"{rd['inference_time_s']:.2f}", "paper_where": paper_where},
        {"quantity": "peak memory of batch-1 inference (MB)", "ours": MISSING if memory is None else f"{memory:.0f}",
         "ours_where": where + (f"; {memory_what}" if memory_what else ""),
         "paper": f"{rd['memory_mb']:.0f}", "paper_where": paper_where + " (the paper does not say what it counts)"},
        {"quantity": "throughput of the runs' batched evaluation (images/s)",
         "ours": f"{statistics.fmean(rates):.2f}" if rates else MISSING,
         "ours_where": ", ".join(f"{d} \u00d7{n}" for d, n in devices.most_common()),
         "paper": "not reported", "paper_where": ""},
    ]
    hint = "" if prof else f"no saved profile of wide_resnet50_2 at 256 px in this folder: `{profile_hint}` adds it"
    return {"rows": rows, "hint": hint}


def _view(slug: str, table: PaperTable, opts: GridOptions, records: list[RunRecord], source: str,
          profiles: list = (), summaries=None) -> TableView:
    grid = table.grid(opts)
    hashes = {g.config.hash() for g in grid}
    ok = {r.config_hash: r for r in records if r.ok and r.config_hash in hashes}
    failed = {r.config_hash for r in records if not r.ok} & (hashes - set(ok))
    cells = table.cells(grid, records, source=source, summaries=summaries)
    notes = ([table.note] if table.note else []) + table.notes(opts)
    if source == "best":
        notes.insert(0, "OPTIMISTIC: each metric's own best epoch on the TEST set, so one cell's metrics may come "
                        "from different epochs (what the authors' printed log allows; RD4AD issue #18). Not a fair "
                        "estimate; the first table is the last epoch.")
    elif source == "checkpoint":
        notes.insert(0, "OPTIMISTIC: one checkpoint per run, the epoch whose mean of image and pixel AUROC is best "
                        "on the TEST set (as a loop that keeps its best checkpoint does; RD++ too), every metric "
                        "at that epoch. Less optimistic than each metric's best epoch, still not a fair estimate.")
    extra = (_table3_extra(list(ok.values()), list(profiles), getattr(table, "profile_hint", "rdbench profile"))
             if table.key == "3" else {})
    return TableView(slug, table, describe_options(opts), source != "final", cells, blocks(table, cells), notes,
                     len(ok), len(hashes), len(failed), extra, table.caption(opts), source)


def table_views(records: list[RunRecord], sweeps: list[tuple[str, GridOptions]], warn: list[str],
                profiles: list = (), summaries=None) -> tuple[list[TableView], list[str]]:
    """One view per saved sweep (and its optimistic twin for eval protocol "paper"); without sweeps, every
    table whose paper-default grid has a recorded run. Returns (views, notes about the choice). ``summaries``: a
    record's checked scores sidecar (``rdbench.bench.sidecars.checked_loader``), for the seed-aware intervals."""
    notes: list[str] = []
    plan: list[tuple[PaperTable, GridOptions]] = []
    if sweeps:
        for key, opts in sweeps:
            try:
                plan.append((get_table(key), opts))
            except ValueError as exc:
                warn.append(f"sweep of unknown table {key!r} skipped: {exc}")
    else:
        ok_hashes = {r.config_hash for r in records if r.ok}
        # seeds 111..: cover every seed recorded, so several seeds show as mean +- std; the isinstance
        # guards against a hand-edited record (from_dict does not check types)
        seeds = max([1] + [r.seed - 110 for r in records if isinstance(r.seed, int)])
        skipped = []
        for table in all_tables():
            matched = [o for o in (GridOptions(seeds=min(seeds, 50), eval_protocol=e) for e in ("final", "paper"))
                       if {g.config.hash() for g in table.grid(o)} & ok_hashes]
            plan += [(table, o) for o in matched]
            skipped += [] if matched else [table.key]
        notes.append("No sweep manifest in this folder (rdbench reproduce writes one): tables are laid out with "
                     "the paper's default grids (200 epochs, paper sizes and backbones).")
        if skipped:
            notes.append(f"Tables without any recorded run of their default grid are not shown: "
                         f"{', '.join(skipped)}.")
    views: list[TableView] = []
    seen: Counter = Counter()
    grids: set = set()
    for table, opts in plan:
        try:
            # sweeps that differ only in settings that do not change the runs (device, cache budget) lay out
            # the same records in the same cells: one table, not two
            grid = (table.key, opts.eval_protocol, frozenset((g.row, g.column, g.config.hash())
                                                             for g in table.grid(opts)))
            if grid in grids:
                continue
            grids.add(grid)
            seen[table.key] += 1
            slug = f"table{table.key}" + (f"_{seen[table.key]}" if seen[table.key] > 1 else "")
            views.append(_view(slug, table, opts, records, "final", profiles, summaries))
            # a best epoch exists for a run's own metrics only, not for cells read from its layer subsets
            if opts.eval_protocol == "paper" and table.key != "3" and any(g.score_layers is None
                                                                         for g in table.grid(opts)):
                views.append(_view(slug + "_best", table, opts, records, "best"))
                views.append(_view(slug + "_checkpoint", table, opts, records, "checkpoint"))
        except (ValueError, KeyError, TypeError) as exc:  # unknown categories in a sweep, a malformed record
            warn.append(f"table {table.key} ({describe_options(opts)}) skipped: {type(exc).__name__}: {exc}")
    return views, notes


def markdown(view: TableView) -> str:
    """A table as GitHub-flavoured Markdown: one pipe table per metric, ours / paper / diff per column."""
    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    lines = [f"## {view.title}", "", f"Grid: {view.options}. Runs found: {view.found} of {view.expected}.", ""]
    lines += [f"> {n}" for n in view.notes] + ([""] if view.notes else [])
    for b in view.blocks:
        header = ["row"] + [f"{col} {part}" for col in b.columns for part in ("ours", "paper", "diff")]
        lines += [f"### {b.label}", "", "| " + " | ".join(map(esc, header)) + " |",
                  "|---" + "|---:" * (len(header) - 1) + "|"]
        for row, _, cells in b.rows:
            vals = [row]
            for c in cells:
                vals += ["", "", ""] if c is None else [
                    c.ours + (f" {c.ci}" if c.ci else "") + (" (test images only)" if c.ci_images_only else "")
                    + (" \u2713" if c.consistent else " \u2717" if c.inconsistent else "")
                    + (" *" if c.random_teacher else "") + (f" (avg of {c.count})" if c.count else ""), c.paper,
                    c.diff]
            lines.append("| " + " | ".join(map(esc, vals)) + " |")
        lines.append("")
    if any(c.ci for c in view.cells):
        lines.append(INTERVAL_LEGEND)
    if any(c.random_teacher for c in view.cells):
        lines.append("\\* fed by runs with a RANDOM teacher: not comparable with the paper")
    return "\n".join(lines) + "\n"


__all__ = ["DIGITS", "INTERVAL_LEGEND", "MISSING", "Block", "CellView", "TableView", "blocks", "cell_view",
           "describe_options", "markdown", "table_views"]
