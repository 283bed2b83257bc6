"""Runs of a sweep whose data is missing or broken: found before any training (``find_missing``), grouped by
dataset and problem (``Skipped``), and shown with the datasets' own messages, which give the expected tree
(``format_skipped``). ``rdbench reproduce --table all`` leaves them out and runs the rest; a sweep of chosen
tables refuses to start (``format_problems``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from rdbench.bench.reproduce import PlannedRun
from rdbench.bench.tables import GridOptions, PaperTable
from rdbench.config import RunConfig
from rdbench.engine.protocol import get_protocol

UNKNOWN_RUNS = None  # Skipped.runs of a grid part that needs its data to expand (Caltech-256's classes)
NO_MVTEC_ROOT = ("no MVTec AD root given: pass --data-root, the folder that holds the category folders "
                 "(<root>/<category>/train/good, test/<defect>, ground_truth/<defect>)")


@dataclass
class Skipped:
    """The runs left out for one problem of one dataset."""

    protocol: str
    problem: str  # the dataset's own message: what is missing where, the expected tree, the fix
    categories: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    runs: int | None = 0  # None (UNKNOWN_RUNS): how many depends on the missing data

    @property
    def headline(self) -> str:
        return self.problem.splitlines()[0] if self.problem else "?"


def _problem(config: RunConfig) -> str | None:
    if config.protocol == "mvtec" and not config.data_root:  # "" would be read as the working directory
        return NO_MVTEC_ROOT
    try:
        get_protocol(config.protocol).check_data(config)
    except (ValueError, OSError) as exc:
        return str(exc) or type(exc).__name__
    return None


def _tables(run: PlannedRun) -> list[str]:
    return list(dict.fromkeys(cell.split(":")[0].removeprefix("table ") for cell in run.cells))


def find_missing(todo: list[PlannedRun], tables: list[PaperTable], opts: GridOptions) -> list[Skipped]:
    """Check the data of every run to do (each dataset once) and of the grid parts that need their data to
    expand; mark the runs with a problem ``skipped`` and return the problems, grouped."""
    checked: dict[tuple, str | None] = {}
    groups: dict[tuple[str, str], Skipped] = {}
    for run in todo:
        c = run.config
        key = (c.protocol, c.data_root, c.category, tuple(sorted(c.extra.items())))
        if key not in checked:
            checked[key] = _problem(c)
        problem = checked[key]
        if problem is None:
            continue
        run.skipped = True
        # one group per dataset and first line: a missing root is one row, not one per category
        group = groups.setdefault((c.protocol, problem.splitlines()[0]), Skipped(c.protocol, problem))
        group.runs += 1
        group.categories = list(dict.fromkeys([*group.categories, c.category]))
        group.tables = list(dict.fromkeys([*group.tables, *_tables(run)]))
    out = list(groups.values())
    for table in tables:
        for protocol, problem in table.missing_data(opts):
            out.append(Skipped(protocol, problem, tables=[table.key], runs=UNKNOWN_RUNS))
    return out


def _categories(s: Skipped) -> str:
    if s.runs is UNKNOWN_RUNS:
        return "classes listed from the data"
    shown = ", ".join(s.categories[:4])
    return f"{shown}, ... ({len(s.categories)})" if len(s.categories) > 4 else shown


def format_skipped(skipped: list[Skipped]) -> str:
    """The table of what is left out and why, then each problem in full (what to place where)."""
    counted = sum(s.runs or 0 for s in skipped)
    unknown = any(s.runs is UNKNOWN_RUNS for s in skipped)
    rows = [("dataset", "runs", "tables", "categories", "problem")]
    rows += [(s.protocol, "?" if s.runs is UNKNOWN_RUNS else str(s.runs), ",".join(s.tables), _categories(s),
              s.headline) for s in skipped]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    also = " and the grid parts whose runs are listed from their data (runs ?)" if unknown else ""
    lines = [f"SKIPPED for missing data: {counted} run(s){also}. Place the data as shown below and run the same "
             "command again (the runs recorded now are not redone)."]
    lines += ["  " + "  ".join(f"{v:<{w}}" for v, w in zip(r[:4], widths)) + "  " + r[4] for r in rows]
    seen = set()
    for s in skipped:
        if s.problem not in seen:  # the categories of one missing root share one message
            seen.add(s.problem)
            lines += ["", f"{s.protocol} ({_categories(s)}):", s.problem]
    return "\n".join(lines)


def format_problems(skipped: list[Skipped]) -> str:
    """Each problem in full, for a sweep that refuses to start."""
    return "\n\n".join(f"{s.protocol} ({_categories(s)}; table {','.join(s.tables)}): {s.problem}" for s in skipped)
