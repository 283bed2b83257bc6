"""Saved ``rdbench profile --results DIR`` results (``<results>/profiles/*.json``) as report sections: the
batch-1 latency and peak memory that Table 3 is about, measured properly and beside the authors' procedure
on the same machine (the runs' own timings are batched evaluations)."""

from __future__ import annotations

import json
from pathlib import Path

from rdbench.bench.tables import paper_numbers
from rdbench.records.profile import ProfileRecord

PROFILES_DIR = "profiles"


def _fmt(v) -> str:
    if v is None:
        return "—"
    return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.3g}"


def load_profiles(results_dir: Path, warn: list[str]) -> list[tuple[str, ProfileRecord]]:
    """(file name, profile) of every readable profile under ``results_dir/profiles``, oldest first; the
    others named in ``warn``."""
    out = []
    for path in sorted((Path(results_dir) / PROFILES_DIR).glob("*.json")):
        try:
            out.append((path.name, ProfileRecord.from_dict(json.loads(path.read_text()), where=str(path))))
        except (OSError, ValueError) as exc:
            warn.append(f"skipping unreadable profile {path}: {exc}")
    return sorted(out, key=lambda item: str(item[1].saved or ""))


def profile_views(profiles: list[tuple[str, ProfileRecord]]) -> list[dict]:
    """One view per profile: a title, facts, and rows (figure, fast, reference, ratio, unit, what it is)."""
    paper = paper_numbers()["table3_complexity"]
    rd = dict(zip(paper["columns"], paper["rows"]["RD (WResNet50)"]))
    views = []
    for file, p in profiles:
        dev, env, ref = p.device, p.environment, p.reference or {}
        rows = []
        for key, fig in p.fast.items():
            ratio = p.ratio(key)
            rows.append({"key": key, "fast": _fmt(fig.get("value")),
                         "reference": _fmt((ref.get(key) or {}).get("value")),
                         "ratio": "—" if ratio is None else f"{ratio:.2f}x", "unit": fig.get("unit", ""),
                         "description": fig.get("description", "") + (f" [{fig['note']}]" if fig.get("note") else "")})
        settings = {k: v for k, v in p.fast_settings.items() if k != "feature_cache"}
        notes = [f"fast path: {', '.join(f'{k}={v}' for k, v in settings.items())}"]
        if p.agreement:
            notes.append(f"largest |fast - reference| map difference: {p.agreement['max_abs_map_diff']:.2e}")
        if p.amp_effect:
            a = p.amp_effect
            notes.append(f"{a['amp']}: largest map difference {a['max_abs_map_diff']:.2e} "
                         f"({a['max_abs_map_diff_relative_to_range']:.1e} of the map range); float32 throughput "
                         f"{_fmt(a['float32_throughput_ips'])} images/s")
        commit = (env.get("commit") or "unknown")[:12] + (" + uncommitted changes" if env.get("dirty") else "")
        views.append({
            "title": f"{p.backbone} {p.image_size} px, batch {p.batch_size}, "
                     f"weights {p.weights}, {dev.get('type')} ({dev.get('name')})",
            "meta": f"{p.saved or 'unknown time'} · torch {dev.get('torch')} · {dev.get('threads')} threads · "
                    f"commit {commit} · {file}",
            "rows": rows, "notes": notes,
            "paper": f"the paper's Table 3 gives RD with wide_resnet50_2 at 256 px "
                     f"{rd['inference_time_s'] * 1000:.0f} ms per image and {rd['memory_mb']:.0f} MB "
                     f"(its note: {paper.get('note', '').rstrip('.')})"})
    return views


__all__ = ["PROFILES_DIR", "load_profiles", "profile_views"]
