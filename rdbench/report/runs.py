"""The report's facts about the runs themselves: the Runs table (every record, ok or failed), the
Provenance summary (code, software, devices, teachers, seeds, protocols, precision) and the warnings
about the runs that belong at the top of the page."""

from __future__ import annotations

from collections import Counter

from rdbench.records.provenance import code_fingerprint
from rdbench.records.schema import RunRecord
from rdbench.report.paper_tables import MISSING

METRIC_ORDER = ("image_auroc", "pixel_auroc", "pro_rd4ad", "pro_mvtec", "auroc", "auroc_max")
RUN_ORDER = ("protocol", "category", "backbone", "image_size", "seed")  # the Runs table's sort


def _pct(v) -> str:
    return f"{100 * v:.1f}" if isinstance(v, (int, float)) and v == v else MISSING


def runs_rows(records: list[RunRecord]) -> tuple[list[str], list[dict]]:
    """Every record, ok or failed, for the Runs table; metric columns in a fixed, then found order."""
    found = {k for r in records for k in r.metrics}
    names = [m for m in METRIC_ORDER if m in found] + sorted(found - set(METRIC_ORDER))
    rows = []
    for r in sorted(records, key=lambda r: tuple(str(getattr(r.config, k)) for k in RUN_ORDER)):
        cfg, tw = r.config, r.teacher_weights or {}
        rows.append({"status": r.status, "error": r.error or "", "cfg": cfg,
                     "variant": f"{cfg.bottleneck} L{','.join(map(str, cfg.layers))}",
                     "metrics": [_pct(r.metric(m)) for m in names],
                     "teacher": tw.get("kind", "?"), "teacher_name": tw.get("name", ""),
                     "random": r.random_teacher, "device": r.environment.get("device_name", ""),
                     "train_s": f"{r.timings['train_s']:.0f}" if r.timings.get("train_s") else "",
                     "hash": r.config_hash})
    return names, rows


def _counts(values) -> list[tuple[str, int]]:
    return Counter(values).most_common()


def provenance(records: list[RunRecord]) -> dict:
    envs = [r.environment for r in records]
    code = [(e.get("commit") or "unknown (not a git checkout)")[:12] +
            (" + uncommitted changes" if e.get("dirty") else "" if e.get("dirty") is False else "") for e in envs]
    teachers = [f"{t.get('kind', '?')}: {t.get('name', '?')}" + (f" sha256 {str(t['sha256'])[:12]}" if t.get("sha256")
                                                                  else "")
                for t in (r.teacher_weights or {} for r in records)]
    return {
        "code": _counts(code),
        "software": _counts(f"rdbench {e.get('rdbench', '?')}, python {e.get('python', '?')}, torch "
                            f"{e.get('torch', '?')}, torchvision {e.get('torchvision', '?')}, CUDA "
                            f"{e.get('cuda') or 'none'}" for e in envs),
        "devices": _counts(f"{e.get('device_name', '?')} ({e.get('device', '?')})" for e in envs),
        "teachers": _counts(teachers),
        "seeds": ", ".join(map(str, sorted({r.seed for r in records if r.seed is not None}))),
        "eval": _counts(r.config.eval_protocol for r in records),
        "precision": _counts("float32" if r.config.amp == "none" else r.config.amp for r in records),
    }


def warnings_about(records: list[RunRecord]) -> list[str]:
    out = []
    failed = sum(not r.ok for r in records)
    if failed:
        out.append(f"{failed} run(s) failed; their errors are in the Runs table.")
    rnd = sum(r.random_teacher for r in records)
    if rnd:
        out.append(f"{rnd} run(s) used a RANDOM teacher (no ImageNet weights): every table cell they feed is "
                   f"marked RT and is not comparable with the paper.")
    amp = sum(r.config.amp != "none" for r in records)
    if amp:
        out.append(f"{amp} run(s) used mixed precision (bf16/fp16 autocast); their metrics differ slightly from "
                   f"float32 runs (the authors' precision) and they form cells of their own.")
    dirty = sum(bool(r.environment.get("dirty")) for r in records)
    if dirty:
        out.append(f"{dirty} run(s) were made from a checkout with uncommitted changes.")
    commits = {r.environment.get("commit") for r in records} - {None}
    if len(commits) > 1:
        out.append(f"runs come from {len(commits)} different commits (see Provenance).")
    return out + identity_warnings(records)


def _cell(r: RunRecord) -> str:
    c = r.config
    return f"{c.protocol}/{c.category} {c.backbone} {c.image_size}px seed {c.seed}"


def identity_warnings(records: list[RunRecord]) -> list[str]:
    """Records that mix code versions, or different data under one dataset name: which cells it touches."""
    out = []
    ok = [r for r in records if r.ok]
    by_code: dict[str | None, list[RunRecord]] = {}
    for r in ok:
        by_code.setdefault(r.code_fingerprint, []).append(r)
    if len(by_code) > 1:
        running = code_fingerprint()
        groups = sorted(by_code.items(), key=lambda kv: (kv[0] != running, -len(kv[1])))
        parts = [f"{(code or 'unrecorded')[:12]}{' (running)' if code == running else ''}: {len(rs)} run(s)"
                 for code, rs in groups]
        # the cells to distrust: those of other code than the running one (none of it here: all but the largest)
        distrusted = groups[1:] if running not in by_code else [(c, rs) for c, rs in groups if c != running]
        other = [_cell(r) for _, rs in distrusted for r in rs]
        out.append(f"the records mix {len(by_code)} code versions ({'; '.join(parts)}); cells fed by records of "
                   f"other code than the running one: {', '.join(other[:12])}{', ...' if len(other) > 12 else ''}")
    by_data: dict[tuple, set[str | None]] = {}
    for r in ok:
        by_data.setdefault((r.config.protocol, r.config.category), set()).add(r.data_fingerprint)
    mixed = {k: v for k, v in by_data.items() if len(v) > 1}
    if mixed:
        names = ", ".join(f"{p}/{c} ({len(v)} fingerprints)" for (p, c), v in sorted(mixed.items()))
        out.append(f"records of one dataset were made from different data: {names}; the cells of these "
                   f"categories average runs on different bytes")
    return out


__all__ = ["METRIC_ORDER", "identity_warnings", "provenance", "runs_rows", "warnings_about"]
