"""``render_report``: a results folder as one self-contained HTML page (paper tables, Fig. 5-7 style
figures, curves, every run, provenance), plus each table as CSV and Markdown in ``tables/``.

The page loads nothing: CSS is inline, figures are data URIs, and a Content-Security-Policy forbids
any other source, so it reads the same from a laptop's disk, a CI artifact or an e-mail attachment."""

from __future__ import annotations

import contextlib
import io
import statistics
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from rdbench import __version__
from rdbench.bench.tables import Cell, GridOptions, PaperTable, all_tables, cells_frame, get_table, paper_numbers
from rdbench.report import figures
from rdbench.report.profiles import load_profiles, profile_views

TEMPLATES = Path(__file__).parent / "templates"
MISSING = "\u2014"  # a cell without runs: never 0
LOWER_IS_BETTER = {"inference_time_s", "memory_mb"}
DIGITS = {"inference_time_s": 3, "memory_mb": 0}
METRIC_ORDER = ("image_auroc", "pixel_auroc", "pro_rd4ad", "pro_mvtec", "auroc", "auroc_max")
PRO_NOTE = ("PRO: Tables 2, 3 and 5-7 compare pro_rd4ad (the authors' per-image 200-threshold definition, "
            "what the paper's code computes) with the paper; pro_mvtec (MVTec's official whole-set PRO) is "
            "shown beside it without a paper value.")


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

    @property
    def title(self) -> str:
        return self.table.title + (" \u2014 OPTIMISTIC: best epoch chosen on the test set" if self.optimistic else "")


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
    return CellView(ours=ours, paper="n/a" if c.paper is None else _num(c.paper, c.metric),
                    diff="" if c.diff is None else f"{c.diff:+.{d}f}", shade=_shade(c),
                    random_teacher=c.random_teacher, missing=c.mean is None,
                    count="" if c.count is None else f"{c.count}/{members}",
                    title=(f"mean of {c.n} seeds: {seeds}" if c.n > 1 else "") if c.count is None else
                    f"mean of {c.count} of {members} rows present")


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
    for name in ("caltech_split_seed", "caltech_test_fraction", "amp"):  # when not the default
        if getattr(o, name, None) is not None and getattr(o, name) != getattr(default, name, None):
            parts.append(f"{name.replace('_', ' ')} {getattr(o, name)}")
    return "; ".join(parts)


def _table3_extra(feeding: list[dict]) -> dict:
    """Table 3's hardware-dependent numbers, next to the paper's (an Intel i7 CPU, says its note)."""
    rates = [r["timings"]["eval_images_per_s"] for r in feeding if (r.get("timings") or {}).get("eval_images_per_s")]
    devices = Counter(f"{(r.get('environment') or {}).get('device_name', '?')} "
                      f"({(r.get('environment') or {}).get('device', '?')})" for r in feeding)
    paper = paper_numbers()["table3_complexity"]
    paper_time = paper["rows"]["RD (WResNet50)"][paper["columns"].index("inference_time_s")]
    return {"devices": [f"{d} \u00d7{n}" for d, n in devices.most_common()],
            "throughput": f"{statistics.fmean(rates):.2f}" if rates else MISSING,
            "paper_throughput": f"{1 / paper_time:.2f}", "paper_device": paper.get("note", ""),
            "memory_note": "peak memory is CUDA's max_memory_allocated during evaluation; CPU runs have none"}


def _view(slug: str, table: PaperTable, opts: GridOptions, records: list[dict], source: str) -> TableView:
    grid = table.grid(opts)
    hashes = {g.config.hash() for g in grid}
    ok = {r["config_hash"]: r for r in records if r.get("status") == "ok" and r["config_hash"] in hashes}
    failed = {r["config_hash"] for r in records if r.get("status") != "ok"} & (hashes - set(ok))
    cells = table.cells(grid, records, source=source)
    notes = ([table.note] if table.note else []) + table.notes(opts)
    if source == "best":
        notes.insert(0, "OPTIMISTIC: each run's best epoch on the TEST set (what the authors' loop reports; "
                        "RD4AD issue #18). Not a fair estimate; the table above is the last epoch.")
    extra = _table3_extra(list(ok.values())) if table.key == "3" else {}
    return TableView(slug, table, describe_options(opts), source == "best", cells, blocks(table, cells), notes,
                     len(ok), len(hashes), len(failed), extra)


def table_views(records: list[dict], sweeps: list[tuple[str, GridOptions]], warn: list[str]) -> \
        tuple[list[TableView], list[str]]:
    """One view per saved sweep (and its optimistic twin for eval protocol "paper"); without sweeps, every
    table whose paper-default grid has a recorded run. Returns (views, notes about the choice)."""
    notes: list[str] = []
    plan: list[tuple[PaperTable, GridOptions]] = []
    if sweeps:
        for key, opts in sweeps:
            try:
                plan.append((get_table(key), opts))
            except ValueError as exc:
                warn.append(f"sweep of unknown table {key!r} skipped: {exc}")
    else:
        ok_hashes = {r["config_hash"] for r in records if r.get("status") == "ok"}
        # seeds 111..: cover every seed recorded, so several seeds show as mean +- std
        seeds = max([1] + [int(r.get("seed", 111)) - 110 for r in records if isinstance(r.get("seed"), int)])
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
            views.append(_view(slug, table, opts, records, "final"))
            if opts.eval_protocol == "paper" and table.key != "3":
                views.append(_view(slug + "_best", table, opts, records, "best"))
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
                    c.ours + (" *" if c.random_teacher else "") + (f" (avg of {c.count})" if c.count else ""), c.paper,
                    c.diff]
            lines.append("| " + " | ".join(map(esc, vals)) + " |")
        lines.append("")
    if any(c.random_teacher for c in view.cells):
        lines.append("\\* fed by runs with a RANDOM teacher: not comparable with the paper")
    return "\n".join(lines) + "\n"


def _pct(v) -> str:
    return f"{100 * v:.1f}" if isinstance(v, (int, float)) and v == v else MISSING


def runs_rows(records: list[dict]) -> tuple[list[str], list[dict]]:
    """Every record, ok or failed, for the Runs table; metric columns in a fixed, then found order."""
    found = {k for r in records for k in (r.get("metrics") or {})}
    names = [m for m in METRIC_ORDER if m in found] + sorted(found - set(METRIC_ORDER))
    rows = []
    for r in sorted(records, key=lambda r: tuple(str((r.get("config") or {}).get(k, "")) for k in
                                                 ("protocol", "category", "backbone", "image_size", "seed"))):
        cfg, env, tw = r.get("config") or {}, r.get("environment") or {}, r.get("teacher_weights") or {}
        variant = [cfg.get("bottleneck", "")] + (["L" + ",".join(map(str, cfg["layers"]))] if cfg.get("layers") else [])
        rows.append({"status": r.get("status", "?"), "error": r.get("error") or "", "cfg": cfg,
                     "variant": " ".join(variant), "metrics": [_pct((r.get("metrics") or {}).get(m)) for m in names],
                     "teacher": tw.get("kind", "?"), "teacher_name": tw.get("name", ""),
                     "random": tw.get("kind") == "random", "device": env.get("device_name", ""),
                     "train_s": f"{r['timings']['train_s']:.0f}" if (r.get("timings") or {}).get("train_s") else "",
                     "hash": r.get("config_hash", "")})
    return names, rows


def _counts(values) -> list[tuple[str, int]]:
    return Counter(values).most_common()


def provenance(records: list[dict]) -> dict:
    envs = [r.get("environment") or {} for r in records]
    code = [(e.get("commit") or "unknown (not a git checkout)")[:12] +
            (" + uncommitted changes" if e.get("dirty") else "" if e.get("dirty") is False else "") for e in envs]
    teachers = [f"{t.get('kind', '?')}: {t.get('name', '?')}" + (f" sha256 {str(t['sha256'])[:12]}" if t.get("sha256")
                                                                  else "")
                for t in (r.get("teacher_weights") or {} for r in records)]
    return {
        "code": _counts(code),
        "software": _counts(f"rdbench {e.get('rdbench', '?')}, python {e.get('python', '?')}, torch "
                            f"{e.get('torch', '?')}, torchvision {e.get('torchvision', '?')}, CUDA "
                            f"{e.get('cuda') or 'none'}" for e in envs),
        "devices": _counts(f"{e.get('device_name', '?')} ({e.get('device', '?')})" for e in envs),
        "teachers": _counts(teachers),
        "seeds": ", ".join(map(str, sorted({r.get("seed") for r in records if r.get("seed") is not None}))),
        "eval": _counts((r.get("config") or {}).get("eval_protocol", "?") for r in records),
        "precision": _counts({"none": "float32", None: "float32"}.get((r.get("config") or {}).get("amp"),
                                                                      (r.get("config") or {}).get("amp"))
                             for r in records),
    }


def _warnings_about(records: list[dict]) -> list[str]:
    out = []
    failed = sum(r.get("status") != "ok" for r in records)
    if failed:
        out.append(f"{failed} run(s) failed; their errors are in the Runs table.")
    rnd = sum((r.get("teacher_weights") or {}).get("kind") == "random" for r in records)
    if rnd:
        out.append(f"{rnd} run(s) used a RANDOM teacher (no ImageNet weights): every table cell they feed is "
                   f"marked RT and is not comparable with the paper.")
    amp = sum((r.get("config") or {}).get("amp", "none") != "none" for r in records)
    if amp:
        out.append(f"{amp} run(s) used mixed precision (bf16/fp16 autocast); their metrics differ slightly from "
                   f"float32 runs (the authors' precision) and they form cells of their own.")
    dirty = sum(bool((r.get("environment") or {}).get("dirty")) for r in records)
    if dirty:
        out.append(f"{dirty} run(s) were made from a checkout with uncommitted changes.")
    commits = {(r.get("environment") or {}).get("commit") for r in records} - {None}
    if len(commits) > 1:
        out.append(f"runs come from {len(commits)} different commits (see Provenance).")
    return out


class _Tee(io.TextIOBase):
    """stderr that still prints, and keeps a copy: load_sweeps reports skipped files there."""

    def __init__(self, stream):
        self.stream, self.text = stream, []

    def write(self, s: str) -> int:
        self.stream.write(s)
        self.text.append(s)
        return len(s)


def _warn(warn: list[str], message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)
    warn.append(message)


def load(results_dir: Path) -> tuple[list[dict], list[tuple[str, GridOptions]], list[str]]:
    """Records, sweeps and warnings. The loop is read_records' own (same files, same messages), kept here
    to know each file's name: a readable file that is not a complete record is skipped by name too."""
    from rdbench.bench.reproduce import load_sweeps
    from rdbench.records.store import read_record

    warn: list[str] = []
    records = []
    for path in sorted((results_dir / "runs").glob("*.json")):
        try:
            rec = read_record(path)
        except (OSError, ValueError) as exc:
            _warn(warn, f"skipping unreadable record {path}: {exc}")
            continue
        if isinstance(rec.get("config_hash"), str) and isinstance(rec.get("config"), dict):
            records.append(rec)
        else:
            _warn(warn, f"skipping record without config/config_hash: {path}")
    tee = _Tee(sys.stderr)
    with contextlib.redirect_stderr(tee):
        sweeps = load_sweeps(results_dir)
    warn += [line.removeprefix("warning: ") for line in "".join(tee.text).splitlines() if line.strip()]
    return records, sweeps, warn


def _figure(what: str, draw, records: list[dict], warn: list[str]) -> str | None:
    """A figure, or None and a warning: a record with odd contents must cost one figure, not the report."""
    try:
        uri, dropped = draw(records)
    except Exception as exc:  # any plotting error: the page says which figure and why
        warn.append(f"{what} not drawn: {type(exc).__name__}: {exc}")
        return None
    if dropped:
        warn.append(f"{what}: {dropped} panel(s) beyond the first {figures.MAX_PANELS} left out")
    return uri


def render_report(results_dir: Path | str, out_dir: Path | str, title: str | None = None) -> Path:
    """Write ``out_dir/index.html`` (self-contained) and ``out_dir/tables/<table>.csv|.md``; return the page.
    Unreadable records are skipped with a warning on stderr and on the page."""
    import jinja2

    results_dir, out_dir = Path(results_dir), Path(out_dir)
    records, sweeps, warn = load(results_dir)
    speed = profile_views(load_profiles(results_dir, warn))
    views, table_notes = table_views(records, sweeps, warn) if (records or sweeps) else ([], [])
    hist = _figure("score histograms", figures.score_histograms, records, warn)
    loss = _figure("loss curves", figures.loss_curves, records, warn)
    curves = _figure("metric curves", figures.metric_curves, records, warn)
    metric_names, runs = runs_rows(records)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    html = env.get_template("report.html.j2").render(
        title=title or f"rdbench report: {results_dir.resolve().name}", results_dir=str(results_dir),
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), version=__version__,
        records=records, n_ok=sum(r.get("status") == "ok" for r in records), views=views, table_notes=table_notes,
        warnings=warn + _warnings_about(records), hist=hist, loss=loss, curves=curves,
        galleries=figures.galleries(records), colorbar=figures.colorbar_css(), metric_names=metric_names, runs=runs,
        prov=provenance(records), pro_note=PRO_NOTE, n_sweeps=len(sweeps), speed=speed)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables_dir = out_dir / "tables"
    tables_dir.mkdir(exist_ok=True)
    for old in [*tables_dir.glob("table*.csv"), *tables_dir.glob("table*.md")]:  # no stale tables of a rerun
        old.unlink()
    for v in views:
        cells_frame(v.cells).to_csv(tables_dir / f"{v.slug}.csv", index=False)
        (tables_dir / f"{v.slug}.md").write_text(markdown(v), encoding="utf-8")
    page = out_dir / "index.html"
    page.write_text(html, encoding="utf-8")
    return page
