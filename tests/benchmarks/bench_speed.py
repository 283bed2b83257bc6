"""The issue's speed and memory targets, fast path vs the authors' procedure (see conftest.py).

Models use random weights (``weights="none"``): the cost does not depend on the values. Sizes follow the
targets: one 100-image 256x256 category; wide_resnet50_2 at 256 px for latency, throughput and memory;
resnet18 at 256 px for the category evaluation and the training throughput (a wide_resnet50_2 training
step takes tens of seconds on a 2-core CPU).

Order matters on the CPU: the wide_resnet50_2 inference benchmarks run first, in a process that has not yet
done the metric benchmarks' large numpy work. The reference's eager convolutions reorder their weights into
a fresh buffer at every call (up to 38 MB each); once earlier work has left glibc's heap large, those
buffers come without page faults and the reference gets 10-20 % faster (the fast path, with its weights
packed once, does not change), e.g. latency 0.56 -> 0.68-0.71 of the reference, batch-8 throughput 1.74 ->
1.45-1.48x (measured with MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_ raised, or after the other
benchmarks). The first order is what ``rdbench profile`` and a fresh evaluation process see.
"""

from __future__ import annotations

import statistics
import time

import pytest
import torch
from benchutil import paired, report, rounds, timed

from rdbench import metrics
from rdbench.config import RunConfig
from rdbench.engine.evaluate import collect_maps, evaluate
from rdbench.engine.inference import fast_predict, prepare_for_inference
from rdbench.engine.train import train
from rdbench.models.rd import build_rd_model
from rdbench.perf.memory import measure_peak_memory
from rdbench.perf.profile_figures import RandomImages
from rdbench.perf.reference import (
    build_reference_model,
    reference_evaluate,
    reference_metrics,
    reference_model_from,
    reference_predict,
    reference_train,
)

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def wrn50():
    torch.manual_seed(0)
    model = build_rd_model("wide_resnet50_2", "none").eval()
    return model, prepare_for_inference(model, CPU), reference_model_from(model)


def test_latency_wide_resnet50_2(benchmark, wrn50):
    _, prepared, ref_model = wrn50
    x = torch.randn(1, 3, 256, 256)
    paired(benchmark, "latency, wide_resnet50_2 256px batch 1 (fast/ref)",
           fast=lambda: fast_predict(prepared, x).amax(dim=(1, 2)).cpu(),
           reference=lambda: reference_predict(ref_model, x).max(),
           n_rounds=rounds(5), target=0.7, higher_is_better=False, unit="time ratio")


def test_throughput_wide_resnet50_2(benchmark, wrn50):
    _, prepared, ref_model = wrn50
    xb = torch.randn(8, 3, 256, 256)
    x2 = torch.randn(2, 3, 256, 256)
    fast_predict(prepared, xb)  # warm-up at batch 8 (other oneDNN primitives than batch 1)

    def ref():  # the authors' evaluation: one image at a time
        for i in range(2):
            reference_predict(ref_model, x2[i:i + 1]).max()

    paired(benchmark, "throughput, wide_resnet50_2 256px batch 8 vs ref batch 1",
           fast=lambda: fast_predict(prepared, xb).amax(dim=(1, 2)).cpu(), reference=ref,
           n_rounds=rounds(3), target=1.6, warmup=0, fast_per_round=8, ref_per_round=2, unit="rate ratio")


def test_peak_memory_wide_resnet50_2(benchmark):
    res = measure_peak_memory("wide_resnet50_2", 256, ("fast", "reference"), (1,))
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    fast, ref = res["fast"], res["reference"]
    report(benchmark, "peak RSS of inference, wide_resnet50_2 256px batch 1", fast["peaks_mb"]["1"] /
           ref["peaks_mb"]["1"], 1.0, False, unit="memory ratio", fast_mb=float(fast["peaks_mb"]["1"]),
           reference_mb=float(ref["peaks_mb"]["1"]), fast_process_mb=float(fast["process_peak_mb"]),
           reference_process_mb=float(ref["process_peak_mb"]))


def test_training_throughput_resnet18(benchmark):
    size, batch, n = 256, 8, 16
    data = RandomImages(n, size)
    cfg = RunConfig(backbone="resnet18", weights="none", epochs=1 + rounds(3), batch_size=batch, image_size=size,
                    seed=0)
    torch.manual_seed(0)
    fast_model = build_rd_model("resnet18", "none")
    torch.manual_seed(0)
    ref_model = build_reference_model("resnet18", "none")
    one_epoch = cfg.replace(epochs=1)
    fast_times: list[float] = []
    ref_times: list[float] = []
    mark = [0.0]

    def after_fast_epoch(epoch: int, loss: float) -> None:
        # interleaved: one epoch of the authors' loop after each epoch of rdbench's (its cache is kept)
        fast_times.append(time.perf_counter() - mark[0])
        ref_times.append(timed(lambda: reference_train(ref_model, data, one_epoch, CPU)))
        mark[0] = time.perf_counter()

    def run() -> None:
        mark[0] = time.perf_counter()
        info.update(train(fast_model, data, cfg, CPU, progress=False, on_epoch=after_fast_epoch).feature_cache)

    info: dict = {}
    benchmark.pedantic(run, rounds=1, iterations=1)
    f = statistics.median(fast_times[1:]) / n
    r = statistics.median(ref_times[1:]) / n
    report(benchmark, "training, resnet18 256px batch 8, epochs after the first", r / f, 1.3, True,
           unit="rate ratio", fast_s=f, reference_s=r, fast_first_epoch_s=fast_times[0],
           fast_samples=fast_times, reference_samples=ref_times)
    assert info["active"] and info["hits"] > 0


def _fast_metrics(labels, masks, maps) -> dict:
    scores = maps.reshape(len(maps), -1).max(axis=1)
    return {"image_auroc": metrics.image_auroc(labels, scores), "pixel_auroc": metrics.pixel_auroc(masks, maps),
            "pro_mvtec": metrics.pro_auc(masks, maps, variant="mvtec"),
            "pro_rd4ad": metrics.pro_auc(masks, maps, variant="rd4ad")}


def test_metrics_of_one_category(benchmark, category):
    labels, masks, maps = category
    out = {}
    info = paired(benchmark, "metrics, 100 images 256px (AUROCs + both PROs)",
                  fast=lambda: out.__setitem__("fast", _fast_metrics(labels, masks, maps)),
                  reference=lambda: out.__setitem__("ref", reference_metrics(labels, masks, maps)),
                  n_rounds=rounds(2), target=20, warmup=0)
    for k, v in out["fast"].items():
        assert v == pytest.approx(out["ref"][k], abs=1e-4), k
    benchmark.extra_info["metrics"] = out["fast"]
    assert info["ratio"] > 1


@pytest.fixture(scope="module")
def r18():
    torch.manual_seed(0)
    return build_rd_model("resnet18", "none").eval()


def test_evaluation_of_one_category_resnet18(benchmark, r18, category_set):
    ref_model = reference_model_from(r18)
    out = {}
    small = torch.utils.data.Subset(category_set, range(2))

    def fast():  # as a run calls it: evaluate prepares its own inference copy (timed with the rest)
        out["fast"] = evaluate(r18, category_set, (1, 2, 3), 4.0, CPU, batch_size=16).metrics

    def ref():
        out["ref"] = reference_evaluate(ref_model, category_set).metrics

    # warm-up on two images only (oneDNN primitives); the category runs take tens of seconds each
    evaluate(r18, small, (1, 2, 3), 4.0, CPU, batch_size=16)
    for i in range(2):
        reference_predict(ref_model, category_set[i].image[None])
    paired(benchmark, "evaluation, 100 images 256px resnet18 (model+maps+metrics)", fast, ref,
           n_rounds=rounds(1), target=3, warmup=0)
    for k, v in out["fast"].items():
        assert v == pytest.approx(out["ref"][k], abs=1e-4), k
    # the same evaluation without the inference rewrites (rdbench.engine.evaluate.collect_maps(fast=False))
    plain = collect_maps(r18, category_set, (1, 2, 3), 4.0, CPU, batch_size=16, fast=False)
    benchmark.extra_info["unprepared_maps_s"] = plain[2]
