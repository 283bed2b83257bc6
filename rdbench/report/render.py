"""``render_report``: a results folder as one self-contained HTML page (paper tables, Fig. 5-7 style
figures, curves, every run, provenance), plus each table as CSV and Markdown in ``tables/``; and ``load``,
which reads the folder's records and sweeps and collects what it had to skip as the page's warnings.

The page loads nothing: CSS is inline, figures are data URIs, and a Content-Security-Policy forbids
any other source, so it reads the same from a laptop's disk, a CI artifact or an e-mail attachment.
The tables are laid out in ``rdbench.report.paper_tables``, the runs and provenance in ``rdbench.report.runs``."""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from datetime import datetime, timezone
from pathlib import Path

from rdbench import __version__
from rdbench.bench.tables import GridOptions, cells_frame
from rdbench.records.schema import RecordError, RunRecord
from rdbench.report import figures
from rdbench.report.paper_tables import markdown, table_views
from rdbench.report.profiles import load_profiles, profile_views
from rdbench.report.runs import provenance, runs_rows, warnings_about

TEMPLATES = Path(__file__).parent / "templates"
PRO_NOTE = ("PRO: Tables 2, 3 and 5-7 compare pro_rd4ad (the authors' per-image 200-threshold definition, "
            "what the paper's code computes) with the paper; pro_mvtec (MVTec's official whole-set PRO) is "
            "shown beside it without a paper value.")


log = logging.getLogger(__name__)


class _Collect(logging.StreamHandler):
    """Each warning logged on ``log``: printed on stderr as ``warning: ...`` and kept for the page."""

    def __init__(self, warn: list[str]):
        super().__init__()  # sys.stderr as it is now, while the report is made
        self.setFormatter(logging.Formatter("warning: %(message)s"))
        self.warn = warn

    def emit(self, record: logging.LogRecord) -> None:
        self.warn.append(record.getMessage())
        super().emit(record)


@contextlib.contextmanager
def _collecting(warn: list[str]):
    """Within: ``log.warning(...)`` and ``warnings.warn(...)`` (UserWarning, as the record store warns)
    go to ``warn`` and to stderr as ``warning: ...``; other warning categories are shown as usual."""
    handler = _Collect(warn)
    log.addHandler(handler)
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            yield
    finally:
        for w in caught:  # after catch_warnings: showwarning is the usual one again
            if w.category is UserWarning:
                log.warning("%s", w.message)
            else:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno, w.file, w.line)
        log.removeHandler(handler)


def _read(path: Path) -> RunRecord | None:
    """One record file, or None after a warning that names it. The JSON is read here rather than by
    ``read_record`` so that a readable file that is not a run record says so, apart from a broken one."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("skipping unreadable record %s: %s", path, exc)
        return None
    # from_dict takes any config_hash as it is and fills a missing one in; one that is there must be a
    # string, or the tables' matching by hash would go wrong
    if not (isinstance(data, dict) and isinstance(data.get("config"), dict)
            and isinstance(data.get("config_hash", ""), str)):
        log.warning("skipping record without config/config_hash: %s", path)
        return None
    try:
        return RunRecord.from_dict(data, where=str(path))
    except RecordError as exc:  # a newer schema, an unknown status, a config this rdbench does not load
        log.warning("skipping unreadable record %s", exc)
        return None


def load(results_dir: Path) -> tuple[list[RunRecord], list[tuple[str, GridOptions]], list[str]]:
    """Records, sweeps and warnings: every record file of ``runs/`` that reads (others skipped by name,
    on stderr and in the warnings) and every readable sweep of ``sweeps/``."""
    from rdbench.bench.reproduce import load_sweeps

    warn: list[str] = []
    with _collecting(warn):
        records = [r for r in map(_read, sorted((results_dir / "runs").glob("*.json"))) if r is not None]
        sweeps = load_sweeps(results_dir)  # its warnings.warn reach the page through _collecting
    return records, sweeps, warn


def _figure(what: str, draw, records: list[RunRecord], warn: list[str]) -> str | None:
    """A figure, or None and a warning: a record with odd contents must cost one figure, not the report."""
    try:
        uri, dropped = draw(records)
    except Exception as exc:  # any plotting error: the page says which figure and why
        warn.append(f"{what} not drawn: {type(exc).__name__}: {exc}")
        return None
    if dropped:
        warn.append(f"{what}: {dropped} panel(s) beyond the first {figures.MAX_PANELS} left out")
    return uri


def render_report(results_dir: Path | str, out_dir: Path | str, title: str | None = None,
                  compare_to: Path | str | None = None) -> Path:
    """Write ``out_dir/index.html`` (self-contained) and ``out_dir/tables/<table>.csv|.md``; return the page.
    Unreadable records are skipped with a warning on stderr and on the page. A record whose scores sidecar
    disagrees with it is SidecarMismatch before anything is written: its intervals would be another run's, and its
    value is in doubt (``rdbench.bench.sidecars``). ``compare_to``: a results folder A this one (B) is compared
    with, in a section of its own (``rdbench.report.comparison``)."""
    import jinja2

    from rdbench.bench.sidecars import checked_loader
    from rdbench.report.comparison import comparison_view

    results_dir, out_dir = Path(results_dir), Path(out_dir)
    records, sweeps, warn = load(results_dir)
    summaries = checked_loader(results_dir, records, warn)
    profiles = load_profiles(results_dir, warn)
    speed = profile_views(profiles)
    views, table_notes = (table_views(records, sweeps, warn, profiles, summaries) if (records or sweeps)
                          else ([], []))
    hist = _figure("score histograms", figures.score_histograms, records, warn)
    loss = _figure("loss curves", figures.loss_curves, records, warn)
    curves = _figure("metric curves", figures.metric_curves, records, warn)
    metric_names, runs = runs_rows(records)
    comparison = comparison_view(Path(compare_to), results_dir) if compare_to is not None else None
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    html = env.get_template("report.html.j2").render(
        title=title or f"rdbench report: {results_dir.resolve().name}", results_dir=str(results_dir),
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), version=__version__,
        records=records, n_ok=sum(r.ok for r in records), views=views, table_notes=table_notes,
        warnings=warn + warnings_about(records), hist=hist, loss=loss, curves=curves,
        galleries=figures.galleries(records), colorbar=figures.colorbar_css(), metric_names=metric_names, runs=runs,
        prov=provenance(records), pro_note=PRO_NOTE, n_sweeps=len(sweeps), speed=speed, comparison=comparison)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables_dir = out_dir / "tables"
    tables_dir.mkdir(exist_ok=True)
    for old in [*tables_dir.glob("table*.csv"), *tables_dir.glob("table*.md")]:  # no stale tables of a rerun
        old.unlink(missing_ok=True)  # another sweep may have removed it first
    for v in views:
        cells_frame(v.cells).to_csv(tables_dir / f"{v.slug}.csv", index=False)
        (tables_dir / f"{v.slug}.md").write_text(markdown(v), encoding="utf-8")
    page = out_dir / "index.html"
    page.write_text(html, encoding="utf-8")
    return page
