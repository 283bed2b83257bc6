"""The report's comparison section (``rdbench report --results B --compare-to A``): ``rdbench compare``'s rows,
cell by cell, laid out for ``templates/compare.html.j2``. A refused comparison (other data, other test images)
is shown as such on the page, never as an empty or passing one."""

from __future__ import annotations

from pathlib import Path

from rdbench.bench.compare import CompareError, compare_dirs


def _pct(v: float | None, sign: bool = False) -> str:
    return "\u2014" if v is None else f"{100 * v:+.2f}" if sign else f"{100 * v:.2f}"


def _line(r) -> dict:
    if r.low is None:
        verdict, cls = r.note, ""
    else:
        verdict = "drop" if r.regression else "gain" if r.significant else "not significant"
        cls = "drop" if r.regression else "gain" if r.significant else ""
    return {"metric": r.metric, "a": _pct(r.a), "b": _pct(r.b), "delta": _pct(r.delta, True),
            "ci": "" if r.low is None else f"[{_pct(r.low, True)}, {_pct(r.high, True)}]",
            "p": "" if r.delong_p is None else f"{r.delong_p:.4f}", "p_note": r.delong_note,
            "verdict": verdict, "cls": cls}


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
            "over": next((r.resampled for r in group if r.resampled), ""),
            "note": first.note if not first.metric else "", "lines": [_line(r) for r in group if r.metric]})
    stat = [r for r in rows if r.metric]
    view["counts"] = (f"{sum(r.regression for r in stat)} significant drop(s), "
                      f"{sum(r.significant and not r.regression for r in stat)} significant gain(s), "
                      f"{sum(r.low is not None and not r.significant for r in stat)} not significant, "
                      f"{sum(r.low is None for r in stat)} without interval")
    return view
