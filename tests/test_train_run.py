"""Training, evaluation and run records on the tiny on-disk MVTec tree (random teacher, 64 px)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rdbench.config import RunConfig
from rdbench.engine import fast_step
from rdbench.engine.protocol import get_protocol
from rdbench.engine.run import run_one
from rdbench.engine.train import load_checkpoint, train
from rdbench.models.rd import build_rd_model


def _config(root, **kw):
    base = dict(protocol="mvtec", data_root=str(root), category="carpet", backbone="resnet18", weights="none",
                epochs=2, batch_size=2, image_size=64, seed=7, device="cpu")
    base.update(kw)
    return RunConfig(**base)


def test_run_writes_complete_record(tiny_mvtec, tmp_path):
    rec = run_one(_config(tiny_mvtec), tmp_path / "res", progress=False)
    assert rec.status == "ok", rec.traceback
    on_disk = json.loads((tmp_path / "res" / "runs" / f"mvtec_carpet_resnet18_{rec.config_hash}.json").read_text())
    assert on_disk["config"]["category"] == "carpet" and on_disk["seed"] == 7
    assert set(on_disk["metrics"]) == {"image_auroc", "pixel_auroc", "pro_mvtec", "pro_rd4ad", "image_ap",
                                       "image_f1_max", "pixel_ap", "pixel_f1_max", "pro_mvtec_full"}
    assert all(0 <= v <= 1 for v in on_disk["metrics"].values())
    assert on_disk["per_image"]["label"] == [0, 0, 1, 1]  # good/000-001, hole/000-001, sorted
    assert len(on_disk["per_image"]["score"]) == 4 and len(on_disk["loss_curve"]) == 2
    assert on_disk["teacher_weights"]["kind"] == "random"
    env = on_disk["environment"]
    for key in ("torch", "torchvision", "python", "cuda", "device", "device_name", "commit", "dirty"):
        assert key in env
    assert on_disk["timings"]["train_s"] > 0 and on_disk["timings"]["eval_images_per_s"] > 0
    assert on_disk["counts"] == {"train": 4, "test": 4, "test_anomalous": 2}


def test_same_seed_same_metrics_bit_for_bit(tiny_mvtec, tmp_path):
    a = run_one(_config(tiny_mvtec), tmp_path / "a", progress=False)
    b = run_one(_config(tiny_mvtec), tmp_path / "b", progress=False)
    assert a.metrics == b.metrics and a.loss_curve == b.loss_curve
    assert a.per_image["score"] == b.per_image["score"]
    c = run_one(_config(tiny_mvtec, seed=8), tmp_path / "c", progress=False)
    assert c.loss_curve != a.loss_curve


def _allow_fp16_on_cpu(monkeypatch):
    # fp16 is for CUDA; CPU autocast can run it too, which lets tests reach the loss-scaling path here
    for where in ("rdbench.engine.train.check_amp", "rdbench.engine.device.check_amp"):
        monkeypatch.setattr(where, lambda amp, device=None: amp)


@pytest.mark.parametrize("amp", ["none", "fp16"])
def test_resume_equals_uninterrupted(tiny_mvtec, tmp_path, monkeypatch, amp):
    if amp == "fp16":
        _allow_fp16_on_cpu(monkeypatch)
    cfg = _config(tiny_mvtec, epochs=4, amp=amp)
    protocol = get_protocol("mvtec")
    train_set, _ = protocol.datasets(cfg)

    def fresh():
        torch.manual_seed(cfg.seed)
        return build_rd_model(cfg.backbone, cfg.weights)

    full = fresh()
    full_ckpt = tmp_path / "full.pt"
    ref = train(full, train_set, cfg, torch.device("cpu"), checkpoint=full_ckpt, progress=False,
                checkpoint_every_s=0)
    ckpt = tmp_path / "ck.pt"
    part = fresh()

    class Stop(Exception):
        pass

    def stop_after_two(epoch, loss):  # on_epoch runs before its epoch's checkpoint: epoch 2's is the last
        if epoch == 3:
            raise Stop

    with pytest.raises(Stop):
        train(part, train_set, cfg, torch.device("cpu"), checkpoint=ckpt, progress=False, on_epoch=stop_after_two,
              checkpoint_every_s=0)
    resumed = fresh()
    res = train(resumed, train_set, cfg, torch.device("cpu"), checkpoint=ckpt, resume=True, progress=False,
                checkpoint_every_s=0)
    assert res.resumed_from_epoch == 2
    assert res.loss_curve == ref.loss_curve
    for a, b in zip(full.decoder.state_dict().values(), resumed.decoder.state_dict().values()):
        assert torch.equal(a, b)
    # the loss scaler's state (scale, steps since its last change) continues too: both checkpoints are of epoch 3
    # (none is written after the last epoch), one by the resumed run
    (scaler, epoch), (full_scaler, full_epoch) = ((s["scaler"], s["epoch"]) for s in
                                                  (torch.load(p, weights_only=True) for p in (ckpt, full_ckpt)))
    assert epoch == full_epoch == 3 and scaler == full_scaler and (amp == "none") == (scaler == {})


def test_training_reduces_loss(tiny_mvtec):
    cfg = _config(tiny_mvtec, epochs=6)
    train_set, _ = get_protocol("mvtec").datasets(cfg)
    torch.manual_seed(0)
    model = build_rd_model("resnet18", "none")
    res = train(model, train_set, cfg, torch.device("cpu"), progress=False)
    assert res.loss_curve[-1] < 0.5 * res.loss_curve[0]


def test_nan_loss_stops_run_with_epoch(tiny_mvtec, tmp_path, monkeypatch):
    import rdbench.engine.train as train_mod

    calls = {"n": 0}
    real = train_mod.distillation_loss

    def nan_on_third(kind, t, s):
        calls["n"] += 1
        loss = real(kind, t, s)
        return loss * float("nan") if calls["n"] >= 3 else loss

    monkeypatch.setattr(train_mod, "distillation_loss", nan_on_third)
    rec = run_one(_config(tiny_mvtec, epochs=3), tmp_path, progress=False)
    assert rec.status == "failed" and rec.failed_epoch == 2
    assert "loss became nan at epoch 2" in rec.error
    assert len(rec.loss_curve) == 1  # epoch 1 completed before the NaN; kept
    assert json.loads((tmp_path / "runs" / f"mvtec_carpet_resnet18_{rec.config_hash}.json").read_text())[
        "status"] == "failed"


def test_missing_category_fails_before_training(tiny_mvtec, tmp_path):
    rec = run_one(_config(tiny_mvtec, category="zipper"), tmp_path, progress=False)
    assert rec.status == "failed"
    assert "zipper" in rec.error and "carpet" in rec.error  # names what exists
    assert not rec.loss_curve


def test_layer_subset_changes_maps(tiny_mvtec, tmp_path):
    a = run_one(_config(tiny_mvtec, epochs=1), tmp_path, progress=False)
    b = run_one(_config(tiny_mvtec, epochs=1, layers=(3,)), tmp_path, progress=False)
    assert a.config_hash != b.config_hash
    assert not np.allclose(a.per_image["score"], b.per_image["score"])


def test_every_layer_subset_is_scored_from_one_forward_pass(tiny_mvtec, tmp_path):
    """metrics_by_layers (Table 7's score maps): each subset's metrics equal an evaluation of the same trained
    model whose map uses only those layers, and the full set is the run's own metrics."""
    from rdbench.engine.evaluate import evaluate

    config = _config(tiny_mvtec, epochs=1)
    rec = run_one(config, tmp_path, progress=False)
    assert set(rec.metrics_by_layers) == {"1", "2", "3", "1,2", "1,3", "2,3", "1,2,3"}
    assert rec.metrics_by_layers["1,2,3"] == {k: rec.metrics[k] for k in rec.metrics_by_layers["1,2,3"]}
    assert set(rec.metrics_by_layers["1,2,3"]) == {"image_auroc", "pixel_auroc", "pro_mvtec", "pro_rd4ad"}
    assert rec.metric_of_layers((2, 3), "pixel_auroc") == rec.metrics_by_layers["2,3"]["pixel_auroc"]
    torch.manual_seed(config.seed)  # the random teacher is rebuilt from the seed; the rest is the kept model
    model = build_rd_model(config.backbone, config.weights, config.bottleneck)
    load_checkpoint(rec.model_path, model, config)
    _, test_set = get_protocol("mvtec").datasets(config)
    for subset in [(1,), (3,), (1, 3), (2, 3)]:
        alone = evaluate(model, test_set, subset, config.gaussian_sigma, torch.device("cpu"), fast=True)
        got = rec.metrics_by_layers[",".join(map(str, subset))]
        assert set(got) == {"image_auroc", "pixel_auroc", "pro_mvtec", "pro_rd4ad"}
        for name, value in got.items():
            assert value == pytest.approx(alone.metrics[name], abs=1e-9), (subset, name)
    assert run_one(config.replace(layers=(3,)), tmp_path / "one", progress=False).metrics_by_layers == {}


def test_rerun_with_resume_after_success_and_failure_keeps_ok_record(tiny_mvtec, tmp_path, monkeypatch):
    cfg = _config(tiny_mvtec, epochs=1)
    first = run_one(cfg, tmp_path, progress=False, resume=True)
    assert first.status == "ok" and first.model_path.endswith(".model.pt")
    assert not list((tmp_path / "checkpoints").glob("*.resume.pt"))  # removed after success
    again = run_one(cfg, tmp_path, progress=False, resume=True)
    assert again.status == "ok" and again.metrics == first.metrics

    def broken(*a, **k):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(type(get_protocol("mvtec")), "evaluate", broken)
    failed = run_one(cfg, tmp_path, progress=False)
    assert failed.status == "failed" and "/runs/failed/" in failed.record_path
    kept = json.loads(open(first.record_path).read())
    assert kept["status"] == "ok"  # the good record is never replaced by a failure
    assert json.loads(open(failed.record_path).read())["error"] == "RuntimeError: simulated crash"


def test_metric_that_cannot_be_computed_is_none_with_reason(tiny_mvtec, tmp_path, monkeypatch):
    import rdbench.engine.evaluate as ev_mod

    def no_pro(masks, maps, fpr_limit=0.3, variant="mvtec", resolution="map"):
        raise ValueError("no anomalous pixel after resizing")

    monkeypatch.setattr(ev_mod.metrics, "pro_auc", no_pro)
    rec = run_one(_config(tiny_mvtec, epochs=1), tmp_path, progress=False)
    assert rec.status == "ok"
    assert rec.metrics["pro_mvtec"] is None and rec.metrics["pro_rd4ad"] is None
    assert rec.metrics["pro_mvtec_full"] is None
    assert rec.metrics["image_auroc"] is not None and len(rec.per_image["score"]) == 4
    assert rec.metric_errors["pro_mvtec"] == "no anomalous pixel after resizing"


def test_test_set_without_anomalies_fails_before_training(tiny_mvtec, tmp_path):
    import shutil

    shutil.rmtree(tiny_mvtec / "carpet" / "test" / "hole")
    shutil.rmtree(tiny_mvtec / "carpet" / "ground_truth")
    rec = run_one(_config(tiny_mvtec), tmp_path, progress=False)
    assert rec.status == "failed" and "has no anomalous" in rec.error and not rec.loss_curve


def test_corrupt_test_image_fails_before_training(tiny_mvtec, tmp_path):
    (tiny_mvtec / "carpet" / "test" / "good" / "001.png").write_bytes(b"\x89PNG broken")
    rec = run_one(_config(tiny_mvtec), tmp_path, progress=False)
    assert rec.status == "failed" and "001.png" in rec.error and not rec.loss_curve


def test_paper_eval_protocol_records_curve_and_optimistic_best(tiny_mvtec, tmp_path):
    final = run_one(_config(tiny_mvtec, epochs=4), tmp_path / "f", progress=False)
    paper = run_one(_config(tiny_mvtec, epochs=4, eval_protocol="paper", eval_every=2), tmp_path / "p",
                    progress=False)
    assert [p["epoch"] for p in paper.metric_curve] == [2, 4]
    # evaluating midway changes nothing about training: the final metrics are the final protocol's
    assert paper.metrics == final.metrics and paper.loss_curve == final.loss_curve
    assert paper.metric_curve[-1]["image_auroc"] == final.metrics["image_auroc"]
    best = paper.best_epoch_metrics
    assert best["optimistic"] is True
    assert best["pixel_auroc"]["value"] == max(p["pixel_auroc"] for p in paper.metric_curve)
    assert not final.metric_curve and final.best_checkpoint is None
    one = paper.best_checkpoint  # one model: every metric at the epoch with the best mean of both AUROCs
    point = max(paper.metric_curve, key=lambda p: ((p["image_auroc"] + p["pixel_auroc"]) / 2, -p["epoch"]))
    assert one["optimistic"] is True and one["epoch"] == point["epoch"]
    assert one["metrics"] == {k: v for k, v in point.items() if k != "epoch"}


def test_best_checkpoint_is_one_epoch_not_each_metrics_best():
    from rdbench.engine.run import best_checkpoint, best_epoch

    curve = [{"epoch": 10, "image_auroc": 0.99, "pixel_auroc": 0.80, "pro_rd4ad": 0.5},
             {"epoch": 20, "image_auroc": 0.95, "pixel_auroc": 0.90, "pro_rd4ad": 0.7},
             {"epoch": 30, "image_auroc": 0.90, "pixel_auroc": 0.95, "pro_rd4ad": 0.6},
             {"epoch": 40, "image_auroc": 0.95, "pixel_auroc": 0.90, "pro_rd4ad": 0.9}]  # ties epoch 20
    per_metric = best_epoch(curve)
    assert (per_metric["image_auroc"]["epoch"], per_metric["pixel_auroc"]["epoch"]) == (10, 30)
    one = best_checkpoint(curve)
    assert one["epoch"] == 20 and one["metrics"] == {"image_auroc": 0.95, "pixel_auroc": 0.90, "pro_rd4ad": 0.7}
    assert one["criterion"] == "mean of image_auroc and pixel_auroc"
    novelty = best_checkpoint([{"epoch": 10, "auroc": 0.7, "auroc_max": 0.9}, {"epoch": 20, "auroc": 0.8,
                                                                              "auroc_max": 0.6}])
    assert novelty["epoch"] == 20 and novelty["criterion"] == "mean of auroc"
    assert best_checkpoint([{"epoch": 10, "image_auroc": None, "pixel_auroc": 0.5}]) is None


def test_record_keeps_a_small_gallery(tiny_mvtec, tmp_path):
    import base64
    import io

    from PIL import Image

    rec = run_one(_config(tiny_mvtec, epochs=1), tmp_path, progress=False)
    gallery = rec.gallery
    assert 2 <= len(gallery) <= 4
    assert {g["label"] for g in gallery} == {0, 1}
    top = max((g for g in gallery if g["label"] == 1), key=lambda g: g["score"])
    assert top["score"] == max(s for s, lab in zip(rec.per_image["score"], rec.per_image["label"]) if lab)
    for key, mode in (("image_png", "RGB"), ("mask_png", "L"), ("map_png", "L")):
        img = Image.open(io.BytesIO(base64.b64decode(top[key])))
        assert img.size == (128, 128) and img.mode == mode
    mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(top["mask_png"]))))
    assert set(np.unique(mask)) == {0, 255}  # the defect square is there
    assert top["map_range"][0] <= top["map_range"][1]


def test_bf16_training_autocasts_the_student_only(tiny_mvtec, monkeypatch):
    cfg = _config(tiny_mvtec, amp="bf16", epochs=3)
    fused: list[bool] = []

    def recording_adam(*args, **kwargs):
        opt = fast_step.adam(*args, **kwargs)
        fused.append(bool(opt.defaults["fused"]))
        return opt

    monkeypatch.setattr("rdbench.engine.train.adam", recording_adam)
    train_set, _ = get_protocol("mvtec").datasets(cfg)
    torch.manual_seed(cfg.seed)
    model = build_rd_model(cfg.backbone, cfg.weights)
    seen: dict = {}

    def record(name):
        def hook(module, inputs, out) -> None:  # returns None: the output is left as it is
            seen.setdefault(name, out[0].dtype)
        return hook

    model.teacher.register_forward_hook(record("teacher"))
    model.decoder.register_forward_hook(record("decoder"))
    low = train(model, train_set, cfg, torch.device("cpu"), progress=False)
    assert seen == {"teacher": torch.float32, "decoder": torch.bfloat16}
    assert low.feature_cache["active"] and low.feature_cache["hits"] > 0  # the cache stays float32 and exact
    torch.manual_seed(cfg.seed)
    full = train(build_rd_model(cfg.backbone, cfg.weights), train_set, cfg.replace(amp="none"), torch.device("cpu"),
                 progress=False)
    assert low.loss_curve != full.loss_curve
    np.testing.assert_allclose(low.loss_curve, full.loss_curve, rtol=0.05)  # bf16: close, not equal
    assert fused == [True, False]  # fused Adam under bf16; float32 at 64 px keeps torch's default (bit-identical)


def test_record_keeps_feature_cache_facts_and_its_budget(tiny_mvtec, tmp_path):
    rec = run_one(_config(tiny_mvtec, feature_cache_gb=0), tmp_path / "off", progress=False)
    cache = rec.timings["feature_cache"]
    assert cache["active"] is False and cache["budget_bytes"] == 0 and "budget is 0" in cache["reason"]
    on = run_one(_config(tiny_mvtec), tmp_path / "on", progress=False)
    assert on.timings["feature_cache"]["active"] and on.timings["feature_cache"]["hits"] == 4  # epoch 2
    assert on.config_hash == rec.config_hash and on.metrics == rec.metrics  # bit-identical on CPU


def test_fp16_on_cpu_fails_before_training(tiny_mvtec, tmp_path):
    rec = run_one(_config(tiny_mvtec, amp="fp16"), tmp_path / "res", progress=False)
    assert rec.status == "failed" and "fp16 autocast is for CUDA" in rec.error and not rec.loss_curve


def test_fp16_training_scales_the_loss(tiny_mvtec, tmp_path, monkeypatch):
    _allow_fp16_on_cpu(monkeypatch)
    cfg = _config(tiny_mvtec, amp="fp16", epochs=2)
    train_set, _ = get_protocol("mvtec").datasets(cfg)
    torch.manual_seed(cfg.seed)
    ckpt = tmp_path / "resume.pt"
    fit = train(build_rd_model(cfg.backbone, cfg.weights), train_set, cfg, torch.device("cpu"), checkpoint=ckpt,
                checkpoint_every_s=0, progress=False)
    scaler = torch.load(ckpt, weights_only=True)["scaler"]
    assert scaler["scale"] > 1 and scaler["_growth_tracker"] > 0  # the loss was scaled and no step skipped
    torch.manual_seed(cfg.seed)
    full = train(build_rd_model(cfg.backbone, cfg.weights), train_set, cfg.replace(amp="none"), torch.device("cpu"),
                 progress=False)
    np.testing.assert_allclose(fit.loss_curve, full.loss_curve, rtol=0.05)


def test_record_keeps_intervals_and_a_scores_sidecar(tiny_mvtec, tmp_path):
    from pathlib import Path

    from rdbench.metrics import ScoreSummary, bootstrap_intervals
    from rdbench.records.store import read_record

    rec = run_one(_config(tiny_mvtec, epochs=1), tmp_path, progress=False)
    assert rec.scores_file == Path(rec.record_path).stem + ".scores.npz"
    summary = ScoreSummary.from_npz(Path(rec.record_path).with_name(rec.scores_file))
    assert summary.labels.tolist() == rec.per_image["label"]
    np.testing.assert_allclose(summary.image_scores, rec.per_image["score"], rtol=0, atol=0)
    assert summary.normal_counts.sum() + summary.anomalous_counts.sum() == 4 * 64 * 64  # every pixel, once
    for name in ("image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_ap", "pixel_f1_max", "pro_rd4ad"):
        low, high = rec.metrics_ci[name]
        assert low <= high and low - 1e-3 <= rec.metrics[name] <= high + 1e-3, name  # pixel: binned estimate
    again = bootstrap_intervals(summary, 1000, seed=0)  # the sidecar alone gives the record's intervals back
    assert [again["pixel_ap"].low, again["pixel_ap"].high] == rec.metrics_ci["pixel_ap"]
    back = read_record(rec.record_path)
    assert back.metrics_ci == rec.metrics_ci and back.scores_file == rec.scores_file and back.scores is None
    # the masks at their own size (32 px here, the runs score at 64): MVTec's PRO there is recorded too
    assert 0 <= rec.metrics["pro_mvtec_full"] <= 1


def test_final_evaluation_converts_the_trained_model_instead_of_copying_it(tiny_mvtec, tmp_path, monkeypatch):
    """One copy of the weights at a run's final evaluation: the inference copy replaces the trained modules
    (consume), after the model file is written; --exact-eval scores the model's own arithmetic, unconverted."""
    import rdbench.engine.run as run_module

    calls = []
    real = run_module.prepare_for_inference

    def spy(model, device, **kw):
        calls.append((kw, model.bottleneck.bn_layer[0].conv1.weight.detach().clone()))
        out = real(model, device, **kw)
        assert out is model  # converted in place, not copied
        return out

    monkeypatch.setattr(run_module, "prepare_for_inference", spy)
    config = _config(tiny_mvtec, epochs=1)
    rec = run_one(config, tmp_path, progress=False)
    assert rec.ok and [kw for kw, _ in calls] == [{"consume": True}]
    saved = torch.load(rec.model_path, map_location="cpu", weights_only=True)
    assert torch.equal(saved["bottleneck"]["bn_layer.0.conv1.weight"], calls[0][1])  # the trained, unfolded weights
    rec_bf16 = run_one(config.replace(amp="bf16"), tmp_path / "bf16", progress=False)
    assert rec_bf16.ok and calls[-1][0] == {"consume": True, "dtype": "bfloat16"}
    n = len(calls)
    exact = run_one(config.replace(exact_eval=True), tmp_path / "exact", progress=False)
    assert exact.ok and len(calls) == n


def test_every_listener_of_a_run_keeps_the_hooks_signatures():
    """train() and execute_run() call each TrainEvents hook with the base class's arguments; a subclass that
    reuses a hook's name for something else (a Ray worker's own start event) would break every run it hears."""
    import inspect

    import rdbench.bench.golden  # noqa: F401 (the listeners rdbench has)
    import rdbench.bench.progress  # noqa: F401
    from rdbench.engine.train import TrainEvents

    hooks = {n: inspect.signature(f) for n, f in vars(TrainEvents).items() if callable(f) and not n.startswith("_")}
    subclasses, todo = [], list(TrainEvents.__subclasses__())
    while todo:
        cls = todo.pop()
        subclasses.append(cls)
        todo += cls.__subclasses__()
    assert len(subclasses) >= 3
    for cls in subclasses:
        for name, base in hooks.items():
            if name in vars(cls):
                got = inspect.signature(vars(cls)[name])
                assert list(got.parameters) == list(base.parameters), f"{cls.__qualname__}.{name}{got} != {base}"
