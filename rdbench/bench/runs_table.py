"""The run records of a results folder as one table (``rdbench runs``): a pandas DataFrame with one row per
record, saying what ran, how it went, and which code and data made it."""

from __future__ import annotations

from collections.abc import Iterable

from rdbench.records.provenance import code_fingerprint
from rdbench.records.schema import RunRecord

# The metrics a row shows, in this order; a column only when some record has the metric (MVTec AD runs have the
# first three, novelty runs ``auroc``). Every metric stays in the record itself.
MAIN_METRICS = ("image_auroc", "pixel_auroc", "pro_rd4ad", "auroc")
KEY_COLUMNS = ("protocol", "category", "backbone", "image_size", "seed", "status")
TAIL_COLUMNS = ("version", "code", "presentation", "data", "finished", "hash")
SHORT = 12  # characters of a fingerprint shown (as `rdbench --version` and the sweeps' messages do)


def _block(record: RunRecord, name: str) -> dict:
    """The record's ``data`` or ``code`` block; a record read before those fields existed keeps them in
    ``unknown``, and one older still has none."""
    block = getattr(record, name, None) or record.unknown.get(name) or {}
    return block if isinstance(block, dict) else {}


def code_of(record: RunRecord) -> str | None:
    return _block(record, "code").get("fingerprint")


def is_stale(record: RunRecord, running: str | None = None) -> bool:
    """Made by other code than the running one, or by code that did not record its fingerprint."""
    return code_of(record) != (running or code_fingerprint())


def _short(value: str | None) -> str | None:
    return value[:SHORT] if value else None


def row(record: RunRecord) -> dict:
    c, code = record.config, _block(record, "code")
    out = {"protocol": c.protocol, "category": c.category, "backbone": c.backbone, "image_size": c.image_size,
           "seed": c.seed, "status": record.status}
    out.update({m: record.metrics.get(m) for m in MAIN_METRICS})
    out.update({"version": code.get("version") or record.environment.get("rdbench"),
                "code": _short(code.get("fingerprint")), "presentation": _short(code.get("presentation")),
                "data": _short(_block(record, "data").get("fingerprint")),
                "finished": record.finished, "hash": record.config_hash})
    return out


def runs_frame(records: Iterable[RunRecord], status: str | None = None, stale: bool = False):
    """One row per record (``status``: only that status; ``stale``: only records of other code than the running
    one), sorted by protocol, category, backbone, image size, seed, finish time; metric columns only where some
    listed record has that metric."""
    import pandas as pd

    running = code_fingerprint()
    chosen = [r for r in records if (status is None or r.status == status) and (not stale or is_stale(r, running))]
    rows = [row(r) for r in chosen]
    metrics = [m for m in MAIN_METRICS if any(r[m] is not None for r in rows)]
    frame = pd.DataFrame(rows, columns=[*KEY_COLUMNS, *MAIN_METRICS, *TAIL_COLUMNS])[
        [*KEY_COLUMNS, *metrics, *TAIL_COLUMNS]]
    order = ["protocol", "category", "backbone", "image_size", "seed", "finished"]
    return frame.sort_values(order, kind="stable", na_position="last").reset_index(drop=True)


def format_frame(frame) -> str:
    """The frame as aligned text, metrics to 4 decimals, a missing value as '-'."""
    # a text column with no value at all (the presentation fingerprint of older records) prints as None otherwise
    text = {c: "-" for c in TAIL_COLUMNS if c in frame}
    return frame.fillna(text).to_string(index=False, na_rep="-", float_format=lambda v: f"{v:.4f}")
