"""Saving a profile's result beside the run records, and formatting it as the CLI's table
(``rdbench.perf.profile``)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import torch

from rdbench.perf.profile_figures import FIGURE_KEYS

__all__ = ["format_profile", "save_profile"]


def save_profile(result: dict, results_dir: Path | str) -> Path:
    """Write ``result`` with its provenance (git commit, versions, device) to
    ``<results_dir>/profiles/<backbone>_<size>px_<device>_<UTC time>.json``, where ``rdbench report`` shows it
    beside Table 3. Atomic, like run records."""
    from rdbench.records.profile import ProfileRecord
    from rdbench.records.provenance import environment
    from rdbench.records.store import write_json

    stamp = datetime.now(timezone.utc)
    record = ProfileRecord.from_dict(result, where="the profile result")
    dev = torch.device(record.device["type"])
    record.saved, record.environment = stamp.isoformat(timespec="seconds"), environment(dev)
    name = f"{record.backbone}_{record.image_size}px_{dev.type}_{stamp.strftime('%Y%m%dT%H%M%S')}.json"
    return write_json(record.to_dict(), Path(results_dir) / "profiles" / name)


def format_profile(result: dict) -> str:
    """A human-readable table of ``profile``'s result (the CLI's output without --json)."""
    d = result["device"]
    lines = [f"rdbench profile: {result['backbone']} {result['image_size']}px, batch {result['batch_size']}, "
             f"weights {result['weights']}, {d['type']} ({d['name']}, {d['threads']} threads, torch {d['torch']})",
             f"fast path: {', '.join(f'{k}={v}' for k, v in result['fast_settings'].items() if k != 'feature_cache')}",
             ""]
    ref = result.get("reference")
    header = f"{'figure':<24}{'fast':>14}{'reference':>14}{'ratio':>9}  unit"
    lines += [header, "-" * len(header)]
    for key in FIGURE_KEYS:
        f = result["fast"].get(key)
        if f is None:
            continue
        r = ref.get(key) if ref else None
        ratio = result["ratios"].get(key, {}).get("value") if ref else None

        def fmt(v):
            return "-" if v is None else f"{v:,.1f}" if abs(v) >= 10 else f"{v:.3g}"

        lines.append(f"{key:<24}{fmt(f['value']):>14}{fmt(r['value'] if r else None):>14}"
                     f"{('-' if ratio is None else f'{ratio:.2f}x'):>9}  {f['unit']}")
    lines.append("")
    for key in FIGURE_KEYS:
        f = result["fast"].get(key)
        if f is not None:
            lines.append(f"{key}: {f['description']}" + (f" [{f['note']}]" if f.get("note") else ""))
    if result.get("agreement"):
        lines.append(f"agreement: max |fast - reference| map difference {result['agreement']['max_abs_map_diff']:.2e}")
    if result.get("amp_effect"):
        a = result["amp_effect"]
        lines.append(f"amp {a['amp']}: max map diff {a['max_abs_map_diff']:.2e} "
                     f"({a['max_abs_map_diff_relative_to_range']:.2e} of the map range), max score rel. diff "
                     f"{a['max_rel_score_diff']:.2e}; float32 throughput {a['float32_throughput_ips']:.3g} images/s")
    roof = result.get("roofline")
    if roof:
        g = {k: v / 1e9 for k, v in roof["flops_per_image"].items()}
        lines.append(f"FLOPs per image: inference {g['inference']:.3g} G (teacher {g['teacher']:.3g}, student "
                     f"{g['student']:.3g}), training step {g['train_step']:.3g} G; calibration "
                     + ", ".join(f"{k} {v:.0f}" for k, v in roof["calibration_gflops"].items()) + " GFLOP/s")
        for key, f in roof["figures"].items():
            if roof["peak_gflops"] is None:  # no calibration of that dtype: bf16 emulated here
                lines.append(f"  {key}: {f['achieved_gflops']:.1f} GFLOP/s (no {roof['peak_dtype']} calibration: "
                             "emulated on this machine)")
                continue
            lines.append(f"  {key}: {f['achieved_gflops']:.1f} GFLOP/s = {f['fraction_of_peak']:.0%} of the best "
                         f"{roof['peak_dtype']} calibration ({roof['peak_gflops']:.0f} GFLOP/s)")
    cache = result["fast_settings"].get("feature_cache")
    if cache:
        lines.append(f"feature cache: active={cache['active']}, {cache['bytes'] / 2**20:.0f} MiB"
                     + (f" ({cache['reason']})" if cache.get("reason") else ""))
    lines.append(f"profile took {result['seconds']:.0f} s")
    return "\n".join(lines)
