"""run_one(RunConfig) -> RunRecord: the only place that trains, evaluates and records a run."""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

import torch

from rdbench.config import RunConfig
from rdbench.engine.device import RUN_DTYPES, check_amp, resolve_device, warn_if_emulated
from rdbench.engine.gallery import make_gallery
from rdbench.engine.inference import inference_options, prepare_for_inference
from rdbench.engine.protocol import get_protocol
from rdbench.engine.train import TrainEvents, TrainingError, TrainResult, save_model, train
from rdbench.models.rd import build_rd_model
from rdbench.records.fingerprint import DigestCache, data_fingerprint, results_cache
from rdbench.records.provenance import code_block, environment
from rdbench.records.schema import RunRecord, now_utc
from rdbench.records.store import check_writable, record_path, store_record


def checkpoint_paths(results_dir: Path, config: RunConfig) -> tuple[Path, Path]:
    """(resume checkpoint written during training, trained model kept after success)."""
    stem = record_path(results_dir, config).stem
    folder = Path(results_dir) / "checkpoints"
    return folder / f"{stem}.resume.pt", folder / f"{stem}.model.pt"


def discard_checkpoint(workdir: Path | str, config: RunConfig) -> None:
    """Remove a run's resume checkpoint and its identity: called once its record is stored, never before (a crash
    between the end of training and the record would otherwise lose the training)."""
    resume_ckpt, _ = checkpoint_paths(Path(workdir), config)
    resume_ckpt.unlink(missing_ok=True)
    resume_ckpt.with_suffix(".identity.json").unlink(missing_ok=True)


def data_block(config: RunConfig, cache: DigestCache | None = None) -> dict:
    """The record's ``data`` block: the fingerprint of every file the run reads (its protocol lists them)."""
    root, files = get_protocol(config.protocol).data_files(config)
    return data_fingerprint(root, files, cache)


def _checkpoint_identity(resume_ckpt: Path, identity: dict, resume: bool) -> bool:
    """Whether the resume checkpoint may be used: only one made from the same data and code. A checkpoint of
    other bytes or other code is deleted (said on stderr) and the run starts over: resuming it would give a
    record that claims data and code it was not made from. Writes the identity beside the checkpoint."""
    sidecar = resume_ckpt.with_suffix(".identity.json")
    if resume and resume_ckpt.is_file():
        try:
            saved = json.loads(sidecar.read_text())
        except (OSError, ValueError):
            saved = None  # a checkpoint of an rdbench that wrote no identity: cannot be vouched for
        if saved != identity:
            changed = [k for k in identity if (saved or {}).get(k) != identity[k]]
            print(f"checkpoint {resume_ckpt.name} was made from other {' and '.join(changed) or 'data/code'}: "
                  f"starting over", file=sys.stderr)
            resume_ckpt.unlink(missing_ok=True)
            resume = False
    resume_ckpt.parent.mkdir(parents=True, exist_ok=True)
    sidecar.write_text(json.dumps(identity))
    return resume


def best_epoch(curve: list[dict]) -> dict:
    """Per metric, the best value over the evaluated epochs and its epoch. OPTIMISTIC: the epoch is
    chosen on the test set (what the authors' loop allows, and RD4AD issue #18 criticises)."""
    best: dict = {"optimistic": True}
    for name in (k for k in curve[0] if k != "epoch"):
        points = [(p[name], p["epoch"]) for p in curve if p.get(name) is not None]
        if points:
            value, epoch = max(points)
            best[name] = {"value": value, "epoch": epoch}
    return best


# One checkpoint chosen on the test set, as the authors' loop (and RD++) would keep it: the epoch with the best
# mean of these metrics (those present; novelty runs have "auroc" only), the earliest of equals.
CHECKPOINT_CRITERION = ("image_auroc", "pixel_auroc")
NOVELTY_CRITERION = ("auroc",)


def best_checkpoint(curve: list[dict]) -> dict | None:
    """The single evaluated epoch that maximises the mean of image and pixel AUROC, with every metric at that
    epoch. OPTIMISTIC, like ``best_epoch`` (chosen on the test set), but one model: less so than picking each
    metric's own best epoch. None when no point of the curve has the criterion's metrics."""
    for criterion in (CHECKPOINT_CRITERION, NOVELTY_CRITERION):
        scored = [(sum(p[k] for k in criterion) / len(criterion), -p["epoch"], p) for p in curve
                  if all(p.get(k) is not None for k in criterion)]
        if scored:
            _, _, point = max(scored, key=lambda t: (t[0], t[1]))
            return {"optimistic": True, "epoch": point["epoch"], "criterion": "mean of " + " and ".join(criterion),
                    "metrics": {k: v for k, v in point.items() if k != "epoch"}}
    return None


def run_one(config: RunConfig, results_dir: Path | str = "results", progress: bool = True,
            resume: bool = False, keep_model: bool = True, checkpoint_every_s: float | None = None) -> RunRecord:
    """Train and evaluate one config and write its record to ``results_dir/runs``.

    A failure (bad data, NaN loss, out of memory...) is written as a record with status "failed" and
    its error, and returned, not raised: a sweep goes on with the next run. A failure never replaces
    an earlier successful record of the same config; it goes to ``runs/failed/`` instead (``store_record``).
    An unwritable results folder raises OSError before any work, since nothing could be recorded."""
    results_dir = Path(results_dir)
    check_writable(record_path(results_dir, config).parent)
    record = execute_run(config, results_dir, progress, resume, keep_model, checkpoint_every_s)
    record = store_record(record, results_dir)
    if record.ok:
        discard_checkpoint(results_dir, config)
    return record


def execute_run(config: RunConfig, workdir: Path | str, progress: bool = True, resume: bool = False,
                keep_model: bool = True, checkpoint_every_s: float | None = None,
                events: TrainEvents | None = None) -> RunRecord:
    """Train and evaluate; return the record without writing it (executors ship it to the driver).
    ``workdir`` holds checkpoints and the trained model; the resume checkpoint stays until the caller has stored the
    record and calls ``discard_checkpoint``. ``checkpoint_every_s``: None is the adaptive schedule
    of ``rdbench.engine.train.CheckpointSchedule``. Never raises for a failed run."""
    resume_ckpt, model_file = checkpoint_paths(Path(workdir), config)
    record = RunRecord.new(config)
    t0 = time.perf_counter()
    device = None
    record.code = code_block()
    try:
        protocol = get_protocol(config.protocol)
        protocol.check_data(config)
        cache = results_cache(workdir)
        record.data = data_block(config, cache)
        cache.save()
        device = resolve_device(config.device)
        check_amp(config.amp, device)  # e.g. fp16 on a CPU: fail before loading anything
        warn_if_emulated(config.amp, device)  # bf16 without hardware for it: runs, but say so before hours pass
        if device.type == "cuda":  # repeatable kernels; the cost is small for this model
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by deterministic cuBLAS
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
            torch.use_deterministic_algorithms(True, warn_only=True)
        record.environment = environment(device)
        train_set, test_set = protocol.datasets(config)
        torch.manual_seed(config.seed)  # the initial weights depend on this seed alone
        model = build_rd_model(config.backbone, config.weights, config.bottleneck)
        model.to(RUN_DTYPES[config.dtype])  # drawn in float32 from the seed, then cast: the same initial weights
        record.teacher_weights = model.weights_info
        # saved in the resume checkpoint, so a resumed "paper" run keeps the curve evaluated before it stopped
        carry: dict = {"metric_curve": []}

        def evaluate_midway(epoch: int, loss: float) -> None:
            # the authors' loop: test-set evaluation every eval_every epochs (eval_protocol "paper")
            if config.eval_protocol == "paper" and epoch % config.eval_every == 0 and epoch < config.epochs:
                point = {"epoch": epoch, **protocol.evaluate(model, test_set, config, device).metrics}
                carry["metric_curve"].append(point)

        cache_bytes = None if config.feature_cache_gb is None else int(config.feature_cache_gb * 2**30)
        identity = {"data": record.data_fingerprint, "code": record.code_fingerprint}
        resume = _checkpoint_identity(resume_ckpt, identity, resume)
        if config.epochs == 0:  # the untrained model, evaluated as built (the authors'-evaluation parity check)
            fit, record.untrained = TrainResult(feature_cache={"active": False, "reason": "no training"}), True
            model.to(device)
        else:
            fit = train(model, train_set, config, device, checkpoint=resume_ckpt, resume=resume, progress=progress,
                        checkpoint_every_s=checkpoint_every_s, on_epoch=evaluate_midway,
                        feature_cache_bytes=cache_bytes, carry=carry, events=events)
        record.loss_curve = fit.loss_curve
        if keep_model:  # before the final evaluation, which may consume the trained modules
            save_model(model_file, model, config)
            record.model_path = str(model_file)
        if not config.exact_eval:
            # scoring is all that is left: the inference copy replaces the trained modules instead of sitting
            # beside them (one copy of the weights; WRN50: ~270 MB less at the run's peak)
            model = prepare_for_inference(model, device, consume=True, **inference_options(config.amp, device))
        ev = protocol.evaluate(model, test_set, config, device, keep_maps=True, final=True)
        record.gallery = make_gallery(test_set, ev.maps, ev.per_image["label"], ev.per_image["score"])
        if events is not None:
            events.evaluated(ev)
        ev.maps = ev.masks = None  # free them: a category's maps are ~100 MB at 256 px
        if config.eval_protocol == "paper":
            curve = carry["metric_curve"] + [{"epoch": config.epochs, **ev.metrics}]
            record.metric_curve = curve
            record.best_epoch_metrics = best_epoch(curve)
            record.best_checkpoint = best_checkpoint(curve)
        record.status, record.metrics, record.per_image = "ok", ev.metrics, ev.per_image
        record.metrics_by_layers, record.metrics_ci, record.scores = ev.metrics_by_layers, ev.metrics_ci, ev.scores
        record.timings = {"train_s": fit.seconds, "eval_s": ev.seconds, "eval_images_per_s": ev.images_per_second,
                          "eval_peak_memory_mb": ev.peak_memory_mb,
                          "train_images_per_s": fit.images_seen / fit.seconds if fit.seconds else None,
                          "resumed_from_epoch": fit.resumed_from_epoch, "feature_cache": fit.feature_cache,
                          "checkpoints": fit.checkpoints, "checkpoint_write_s": fit.checkpoint_write_s,
                          "checkpoint_bytes": fit.checkpoint_bytes}
        record.counts = {"train": len(train_set), "test": len(test_set), "test_anomalous": sum(ev.labels)}
        record.metric_errors = dict(ev.metric_errors or {})
    except Exception as exc:  # a failed run is a result too
        error = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, torch.cuda.OutOfMemoryError):
            error += " -- hint: lower --batch-size or --image-size, or use a smaller backbone"
        record.fail(error, traceback.format_exc())
        if isinstance(exc, TrainingError):
            record.failed_epoch = exc.epoch
            record.loss_curve = list(exc.loss_curve or [])
        record.environment = record.environment or environment(device)
    record.finished = now_utc()
    record.wall_s = time.perf_counter() - t0
    return record
