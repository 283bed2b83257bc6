"""The report's comparison section (``rdbench report --results B --compare-to A``): ``rdbench compare``'s rows,
cell by cell, laid out for ``templates/compare.html.j2``. A refused comparison (other data, other test images)
is shown as such on the page, never as an empty or passing one; a record whose scores sidecar disagrees with it
fails the report (``SidecarMismatch``), as it fails ``rdbench compare``."""

from __future__ import annotations

from pathlib import Path

from rdbench.bench.compare import CompareError, compare_dirs


def _pct(v: float | None, sign: bool = False) -> str:
    return "\u2014" if v is None else f"{100 * v:+.2f}" if sign else f"{100 * v:.2f}"


def _line(r) -> dict:
    judged = r.low is not None and r.seed_variance  # one seed on a side: inconclusive, never coloured
    cls = ("drop" if r.regression else "gain" if r.significant else "") if judged else ""
    ci = "" if r.low is None else f"[{_pct(r.low, True)}, {_pct(r.high, True)}]"
    return {"metric": r.metric, "a": _pct(r.a), "b": _pct(r.b), "delta": _pct(r.delta, True),
            "ci": ci + (" (test images only)" if ci and not r.seed_variance else ""), "verdict": r.verdict,
            "p": "" if r.delong_p is None else f"{r.delong_p:.4f}", "p_note": r.delong_note, "cls": cls}


def comparison_view(a_dir: Path | str, b_dir: Path | str) -> dict:
    """{"a", "b", "error", "cells": [{"label", "seeds_a", "seeds_b", "over", "note", "lines"}], "counts"}."""
    view = {"a": str(a_dir), "b": str(b_dir), "error": "", "cells": [], "counts": ""}
    try:
        rows = compare_dirs(a_dir, b_dir)
    except CompareError as exc:
        view["error"] = str(exc)
        return view
    by_cell: dict[str, list] = {}
    for r in rows:
        by_cell.setdefault(r.key, []).append(r)
    for group in by_cell.values():
        first = group[0]
        view["cells"].append({
            "label": first.cell, "seeds_a": ", ".join(map(str, first.seeds_a)) or "\u2014",
            "seeds_b": ", ".join(map(str, first.seeds_b)) or "\u2014",
            "over": next((r.interval for r in group if r.interval), ""),
            "note": first.note if not first.metric else "", "lines": [_line(r) for r in group if r.metric]})
    stat = [r for r in rows if r.metric]
    judged = [r for r in stat if r.low is not None and r.seed_variance]
    view["counts"] = (f"{sum(r.regression for r in judged)} significant drop(s), "
                      f"{sum(r.significant and not r.regression for r in judged)} significant gain(s), "
                      f"{sum(not r.significant for r in judged)} not significant, "
                      f"{sum(r.low is not None and not r.seed_variance for r in stat)} inconclusive (one seed on a "
                      f"side), {sum(r.low is None for r in stat)} without interval")
    return view
