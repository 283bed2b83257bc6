"""The golden suite: small float64 runs through the whole pipeline, their numbers recorded stage by stage.

Float32 training amplifies a CPU's rounding like a new seed (docs/parity.md), so float32 figures are the same
only on the machine that made them. In float64 that rounding (~1e-16) stays far below any real change over a
few steps: the float64 trajectory equals the authors' to 5e-13 on another machine. So the suite's values are an
exact regression oracle on any CPU, kernel ISA or thread count (``rdbench golden check``; the file and its
comparison are ``rdbench.bench.golden_file``).

Each case is one real run (``rdbench.engine.run.execute_run``: training, checkpoint, scoring, metrics, intervals)
with ``RunConfig.dtype = "float64"`` on the suite's own data (``rdbench.bench.golden_data``). A listener on the run
(``Probe``, a ``TrainEvents``) reads it stage by stage, in pipeline order (``STAGES``), so that a difference can be
traced to the first stage that moved. Cases that must agree with another by construction (the feature cache off,
exact evaluation, a run killed and resumed) name it in ``same_as``: the suite checks that relation too.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from rdbench.bench.golden_data import write_all
from rdbench.config import RunConfig
from rdbench.engine.device import model_dtype
from rdbench.engine.protocol import get_protocol
from rdbench.engine.run import checkpoint_paths, execute_run
from rdbench.engine.train import TrainEvents

# Pipeline order: the first stage of a case that differs is where a change entered.
STAGES = ("data", "teacher", "embedding", "student", "loss", "weights", "curve", "maps", "image_metrics",
          "pixel_metrics", "layers", "intervals")
IMAGE_METRICS = ("image_auroc", "image_ap", "image_f1_max", "auroc", "auroc_max", "ap", "f1_max")
PIXEL_METRICS = ("pixel_auroc", "pixel_ap", "pixel_f1_max", "pro_mvtec", "pro_rd4ad", "pro_mvtec_full")
PROBE_IMAGES = 2  # the first training images, through the freshly built model


@dataclass(frozen=True)
class Case:
    name: str
    covers: str  # the numeric path it guards, for the reader of a failure
    protocol: str
    dataset: str  # a key of golden_data.write_all
    settings: dict = field(default_factory=dict)  # RunConfig fields beyond the suite's common ones
    same_as: str | None = None  # must equal this case at every stage (it changes only how, not what, is computed)
    interrupt_after: int | None = None  # killed (an exception) after this epoch, then resumed from its checkpoint


# Common to every case: resnet18 (the cheapest teacher; BasicBlocks), a random teacher (no weights can be
# downloaded, and random weights exercise the same arithmetic), 2 epochs (the loss at step 2 is the first that the
# optimiser's settings reach), every metric with its interval.
COMMON = {"backbone": "resnet18", "weights": "none", "dtype": "float64", "epochs": 2, "batch_size": 4,
          "eval_batch_size": 4}
# batch 2 of 4 training images: two shuffled batches an epoch (the other cases take one step an epoch, bar Table 4's)
MVTEC = {"category": "brick", "image_size": 64, "eval_protocol": "paper", "eval_every": 1, "batch_size": 2}

CASES: tuple[Case, ...] = (
    Case("mvtec_full", "MVTec layout (Tables 1, 2): resnet18, full OCBE, flat loss, layers 1-3 and every subset "
         "(Table 7), the feature cache, the inference copy, the paper's evaluation every epoch", "mvtec",
         "synthetic", MVTEC),
    Case("mvtec_exact_nocache", "the same run without the feature cache and scored with the model's own arithmetic "
         "(--exact-eval): must equal mvtec_full", "mvtec", "synthetic",
         {**MVTEC, "feature_cache_gb": 0, "exact_eval": True}, same_as="mvtec_full"),
    Case("mvtec_resumed", "the same run killed after epoch 1 and resumed from its checkpoint: must equal mvtec_full",
         "mvtec", "synthetic", MVTEC, same_as="mvtec_full", interrupt_after=1),
    Case("texture_pre_pixel", "Table 5-6: bottleneck 'pre', the pixel-wise loss (Eq. 2), layers 2,3 (Table 7's "
         "loss-and-map reading), a texture category", "mvtec", "synthetic",
         {"category": "brick", "image_size": 64, "bottleneck": "pre", "loss": "pixel", "layers": (2, 3)}),
    Case("object_pre_oce", "Table 5: bottleneck 'pre+oce', layers 1,2, an object category (its 'missing' defect)",
         "mvtec", "synthetic", {"category": "nut", "image_size": 64, "bottleneck": "pre+oce", "layers": (1, 2)}),
    Case("wide_resnet50_2", "the paper's main model (Tables 1-3): Bottleneck blocks in teacher, OCBE and decoder; "
         "one epoch, one step", "mvtec", "synthetic", {"category": "brick", "image_size": 64,
                                                       "backbone": "wide_resnet50_2", "epochs": 1}),
    Case("novelty_32px", "Table 4 at 32 px: FashionMNIST's IDX files, the fast 32 px step (fused Adam, one-pixel "
         "convolutions), the sum score", "fashionmnist", "fashionmnist",
         # batch 6: the 1x1 bottleneck's batch norm at batch 4 amplified rounding ~10x a step (1e-9 by step 6)
         {"category": "0", "batch_size": 6, "max_test_images": 12}),
    Case("caltech256_split", "Table 4's Caltech-256: rdbench's seeded split and clutter outliers at 64 px",
         "caltech256", "caltech256", {"category": "0", "batch_size": 4}),
)


def case_names() -> list[str]:
    return [c.name for c in CASES]


def _abs_stats(*tensors: torch.Tensor) -> list[float]:
    """[mean |x|, root mean square] over all the tensors' values: positive, so a relative tolerance applies (a
    plain sum can cancel to ~0). Norms of each tensor, no copies: the weights of a float64 student are ~0.1 GB."""
    n = sum(t.numel() for t in tensors)
    l1 = sum(float(torch.linalg.vector_norm(t.detach(), 1, dtype=torch.float64)) for t in tensors)
    l2 = sum(float(torch.linalg.vector_norm(t.detach(), 2, dtype=torch.float64)) ** 2 for t in tensors)
    return [l1 / n, (l2 / n) ** 0.5]


class Probe(TrainEvents):
    """What the suite reads of a run while it runs: the freshly built model's features on the probe images, the
    loss of every step, the final evaluation's maps."""

    def __init__(self, probe_images: torch.Tensor, interrupt_after: int | None = None):
        self.images, self.interrupt_after = probe_images, interrupt_after
        self.stages: dict[str, dict] = {}
        self.losses: list[float] = []

    def model_ready(self, model) -> None:
        self.model = model  # trained in place: read again after the last epoch
        was = model.training
        model.eval()
        with torch.no_grad():
            x = self.images.to(next(model.parameters()).device, model_dtype(model))
            t = model.teacher(x)
            emb = model.bottleneck(t)
            s = model.decoder(emb)
        model.train(was)
        self.stages["teacher"] = {f"layer{i + 1}": _abs_stats(f) for i, f in enumerate(t)}
        self.stages["embedding"] = {"ocbe": _abs_stats(emb)}
        self.stages["student"] = {f"layer{i + 1}": _abs_stats(f) for i, f in enumerate(s)}

    def step(self, epoch: int, loss: torch.Tensor) -> None:
        self.losses.append(float(loss))

    def epoch(self, epoch: int, total: int) -> None:
        if epoch == total:  # the trained weights, before the final evaluation turns them into an inference copy
            self.stages["weights"] = {part: _abs_stats(*(t for t in getattr(self.model, part).state_dict().values()
                                                         if t.is_floating_point()))
                                      for part in ("bottleneck", "decoder")}
        if self.interrupt_after is not None and epoch == self.interrupt_after:
            self.interrupt_after = None  # the resumed run goes on
            raise Interrupted(f"golden suite: interrupted after epoch {epoch}")

    def evaluated(self, result) -> None:
        maps = torch.from_numpy(result.maps).double().flatten(1)
        self.stages["maps"] = {f"image{i}": [float(m.mean()), float(m.pow(2).mean().sqrt()), float(m.max()),
                                             float(m.min())] for i, m in enumerate(maps)}


class Interrupted(RuntimeError):
    """The suite's stand-in for a killed process."""


class GoldenError(RuntimeError):
    """A case could not run (its record failed): no values to compare."""


def case_config(case: Case, roots: dict[str, Path], device: str = "cpu") -> RunConfig:
    return get_protocol(case.protocol).config(**{**COMMON, **case.settings}, data_root=str(roots[case.dataset]),
                                              device=device)


def run_case(case: Case, roots: dict[str, Path], workdir: Path, device: str = "cpu") -> dict[str, dict]:
    """One case's values by stage (``STAGES``). GoldenError when its run fails."""
    config = case_config(case, roots, device)
    train_set, _ = get_protocol(case.protocol).datasets(config)
    probe = Probe(torch.stack([train_set[i] for i in range(min(PROBE_IMAGES, len(train_set)))]), case.interrupt_after)
    # a checkpoint after every epoch where one is resumed (writing one changes no number; a float64 resnet18
    # checkpoint is ~0.4 GB), none elsewhere; no model file: the weights are read from the model in memory
    every = 0 if case.interrupt_after is not None else float("inf")
    kw = {"progress": False, "keep_model": False, "checkpoint_every_s": every, "events": probe}
    record = execute_run(config, workdir, **kw)
    if case.interrupt_after is not None:
        resume_ckpt, _ = checkpoint_paths(workdir, config)
        if record.ok or not resume_ckpt.is_file():
            raise GoldenError(f"case {case.name}: the interrupted run left no checkpoint to resume from "
                              f"({record.status}: {record.error})")
        record = execute_run(config, workdir, resume=True, **kw)
        if record.timings.get("resumed_from_epoch") != case.interrupt_after:
            raise GoldenError(f"case {case.name}: did not resume from epoch {case.interrupt_after} "
                              f"(resumed_from_epoch {record.timings.get('resumed_from_epoch')})")
    if not record.ok:
        raise GoldenError(f"case {case.name}: the run failed: {record.error}")
    m = record.metrics
    stages = {"data": {"fingerprint": record.data_fingerprint, **record.counts}, **probe.stages,
              "loss": {**{f"step{i + 1}": v for i, v in enumerate(probe.losses)},
                       **{f"epoch{i + 1}_mean": v for i, v in enumerate(record.loss_curve)}},
              "curve": {f"epoch{p['epoch']}": {k: v for k, v in p.items() if k != "epoch"}
                        for p in record.metric_curve or []},
              "image_metrics": {"score": record.per_image["score"], **{k: m[k] for k in IMAGE_METRICS if k in m}},
              "pixel_metrics": {k: m[k] for k in PIXEL_METRICS if k in m},
              "layers": record.metrics_by_layers, "intervals": record.metrics_ci}
    if record.best_checkpoint:
        stages["curve"]["best_checkpoint"] = record.best_checkpoint["epoch"]
    return {s: stages.get(s, {}) for s in STAGES}


@dataclass
class SuiteResult:
    values: dict[str, dict[str, dict]]  # case -> stage -> values
    seconds: dict[str, float]  # case -> wall time
    total_s: float


def run_suite(device: str = "cpu", cases: tuple[Case, ...] | None = None, workdir: Path | str | None = None,
              on_case: Callable[[str, float], None] | None = None) -> SuiteResult:
    """Every case (``CASES`` by default) on freshly written data in ``workdir`` (a temporary folder by default)."""
    cases = CASES if cases is None else cases
    t0 = time.perf_counter()
    # in memory where there is a RAM disk: a float64 resume checkpoint is ~0.7 GB, seconds to write to a slow disk
    ram = Path("/dev/shm")
    with tempfile.TemporaryDirectory(prefix="rdbench-golden-", dir=ram if ram.is_dir() else None) as tmp:
        base = Path(workdir) if workdir is not None else Path(tmp)
        roots = write_all(base / "data")
        values, seconds = {}, {}
        for case in cases:
            t = time.perf_counter()
            values[case.name] = run_case(case, roots, base / "runs" / case.name, device)
            seconds[case.name] = time.perf_counter() - t
            if on_case is not None:
                on_case(case.name, seconds[case.name])
    return SuiteResult(values, seconds, time.perf_counter() - t0)
