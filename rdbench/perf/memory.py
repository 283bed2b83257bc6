"""Peak resident memory of CPU inference, each mode measured in a fresh Python process (``rdbench profile``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from rdbench.engine.inference import fast_predict, inference_options, prepare_for_inference
from rdbench.models.rd import build_rd_model
from rdbench.perf.rss import RssSampler

__all__ = ["measure_peak_memory"]


def _memory_worker(spec: dict, sampler: RssSampler | None = None) -> dict:
    """Runs in a fresh interpreter: build the model (fast or reference), run one warm-up inference, then
    one measured inference per batch size with the sampled peak reset before each. ``sampler``: the one
    started when the interpreter started (so that the whole-process peak covers importing torch)."""
    from rdbench.perf.reference import build_reference_model, reference_predict

    if sampler is None:
        sampler = RssSampler().start()
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    layers, sigma, size = tuple(spec["layers"]), spec["sigma"], spec["image_size"]
    if spec["mode"] == "fast":
        model = prepare_for_inference(build_rd_model(spec["backbone"], spec["weights"]), "cpu", consume=True,
                                      **spec["options"])

        def run(x: torch.Tensor) -> None:
            fast_predict(model, x, layers, sigma, spec["amp"]).cpu()
    else:
        ref = build_reference_model(spec["backbone"], spec["weights"])

        def run(x: torch.Tensor) -> None:
            for i in range(x.shape[0]):
                reference_predict(ref, x[i:i + 1], layers, sigma)

    out: dict = {"peaks_mb": {}, "method": sampler.method}
    for batch in spec["batches"]:
        x = torch.randn(batch, 3, size, size)
        run(x)  # warm-up: oneDNN primitives, allocator pools
        sampler.reset()
        run(x)
        out["peaks_mb"][str(batch)] = sampler.peak_mb()
        del x
    out["process_peak_mb"] = sampler.overall_peak_mb()
    out["rss_end_mb"] = sampler.rss_mb()
    sampler.stop()
    return out


def measure_peak_memory(backbone: str, image_size: int, modes: tuple[str, ...] = ("fast", "reference"),
                        batches: tuple[int, ...] = (1,), weights: str = "none", layers: tuple[int, ...] = (1, 2, 3),
                        sigma: float = 4.0, options: dict | None = None, amp: str | None = None,
                        timeout_s: float = 600) -> dict[str, dict]:
    """Peak resident memory (MB) of CPU inference for each of ``modes`` ("fast", "reference"), each measured
    in its own fresh Python process (run side by side) so that nothing allocated earlier here counts.
    Both workers import the same libraries (torch, scipy, sklearn, skimage, pandas), so the difference is
    the model and the inference. The figure is the worker's own RSS, sampled by a thread
    (``rdbench.perf.rss.RssSampler``, maximum reset before the measured inference), not ``ru_maxrss``: on
    Linux a child's ru_maxrss starts at the high-water mark of the address space it was forked from, kept
    across exec (the parent's peak with the vfork that subprocess uses, or the parent's RSS at a plain
    fork), which would report the profiler's memory instead of the worker's; and ru_maxrss cannot be reset
    between the warm-up and the measured run. ``options``: keyword arguments of ``prepare_for_inference``
    for the fast worker (default: ``inference_options(amp)``: a bfloat16 copy under bf16).
    Returns {mode: {"peaks_mb": {batch: MB}, "process_peak_mb", "method", "rss_end_mb"}}."""
    # the sampler starts before torch is imported, so the whole-process peak includes the imports
    code = ("import json, sys; from rdbench.perf.rss import RssSampler; sampler = RssSampler().start(); "
            "from rdbench.perf.memory import _memory_worker; "
            "print('RDBENCH-JSON ' + json.dumps(_memory_worker(json.loads(sys.argv[1]), sampler)))")
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])  # the folder holding the rdbench package
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    procs = {}
    for mode in modes:
        if mode not in ("fast", "reference"):
            raise ValueError(f"unknown mode {mode!r}; valid: fast, reference")
        spec = {"mode": mode, "backbone": backbone, "image_size": image_size, "batches": list(batches),
                "weights": weights, "layers": list(layers), "sigma": sigma, "amp": amp,
                "options": dict(options or inference_options(amp, "cpu")),
                "threads": torch.get_num_threads()}
        procs[mode] = subprocess.Popen([sys.executable, "-c", code, json.dumps(spec)], stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True, env=env)
    results = {}
    for mode, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        for line in out.splitlines()[::-1]:
            if line.startswith("RDBENCH-JSON "):
                results[mode] = json.loads(line[len("RDBENCH-JSON "):])
                break
        else:
            raise RuntimeError(f"{mode} memory worker failed (exit {proc.returncode}): {err.strip()[-2000:]}")
    return results

