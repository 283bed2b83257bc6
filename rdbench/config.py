"""RunConfig: everything that determines a run's result, frozen; ``hash()`` is its stable id.

Defaults are the paper's (and the authors' main.py) unless a comment says otherwise.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from rdbench.registry import unknown_choice

AMP_CHOICES = ("none", "bf16", "fp16")  # RunConfig.amp; the dtypes are in rdbench.engine.device
DTYPE_CHOICES = ("float32", "float64")  # RunConfig.dtype
EVAL_PROTOCOLS = ("final", "paper")  # RunConfig.eval_protocol


@dataclass(frozen=True)
class RunConfig:
    protocol: str = "mvtec"
    data_root: str = ""
    category: str = "carpet"
    backbone: str = "wide_resnet50_2"  # the paper's main model
    weights: str = "imagenet"  # imagenet | none (random teacher) | path to a state_dict file
    bottleneck: str = "pre+oce+mff"  # Table 5: pre | pre+oce | pre+oce+mff (full OCBE)
    layers: tuple[int, ...] = (1, 2, 3)  # Table 7: teacher/student layers in the loss and the map
    loss: str = "flat"  # authors' flattened cosine; "pixel" is the paper's Eq. 2 form
    epochs: int = 200  # 0: no training, the freshly initialised model is evaluated (the parity check)
    batch_size: int = 16
    lr: float = 0.005
    betas: tuple[float, float] = (0.5, 0.999)  # beta1 0.5, unusual but the authors' choice
    image_size: int = 256
    gaussian_sigma: float = 4.0
    seed: int = 111  # the authors' seed; rdbench seeds every run on its own (they seed once per sweep)
    eval_batch_size: int = 16  # batched evaluation; the authors use 1, results are identical
    # "final": metrics of the last epoch only. "paper": also evaluate on the test set every
    # eval_every epochs like the authors' loop; the best epoch is then reported as optimistic.
    eval_protocol: str = "final"
    eval_every: int = 10
    max_train_images: int | None = None  # subsetting for smoke/CI runs; None = all
    max_test_images: int | None = None  # stratified test subset for CI-sized novelty runs; None = all
    device: str = "auto"  # auto picks CUDA when present; not part of the hash
    # Mixed precision of the networks (student in training, teacher + student in evaluation): "none" is
    # float32 like the authors; "bf16" (CPU or CUDA) / "fp16" (CUDA) are faster and change the metrics
    # slightly (measured in ``rdbench profile --amp``), so they are part of the hash.
    amp: str = "none"
    # The networks' arithmetic. "float32" is the paper's and the authors'. "float64" exists for the golden check
    # (rdbench.bench.golden): the weights are drawn in float32 from the seed as always, then cast, and every
    # image enters as float64. Float32 training amplifies a CPU's rounding like a new seed; in float64 that
    # rounding (1e-16) stays far below any real change over a short run, so its numbers are the same on any CPU.
    # Part of the hash (other numbers), left out of it and of the record at its default.
    dtype: str = "float32"
    # Memory for the teacher-feature cache of training, GiB; None = rdbench.engine.feature_cache.default_budget,
    # 0 = off. Not part of the hash: on CPU the cache is bit-identical, on CUDA within float rounding.
    feature_cache_gb: float | None = None
    # Score with the trained model's own arithmetic (True) instead of the faster inference copy (batch norm
    # folded, pixel shuffle, prepacked convolutions). Their maps differ by float rounding (~1e-7), which moves
    # PRO's 200 per-image thresholds by up to ~5e-6. Exact evaluation also scores one image at a time, as the
    # authors' loop does: a batched convolution rounds differently (a batch of 16 moved pro_rd4ad by 4.3e-6 at
    # 128 px), so it equals the authors' evaluation() to 1e-8 (tests/test_official_evaluation.py).
    # Not part of the hash, like feature_cache_gb: rounding, not a result.
    exact_eval: bool = False
    extra: dict = field(default_factory=dict)  # protocol-specific settings, part of the hash

    # Fields that do not change the numbers a run produces (within float tolerance).
    # data_root: the same dataset at another path (another machine, a Ray worker) is the same run;
    # a different dataset under the same protocol/category names must say so in ``extra``.
    NON_RESULT_FIELDS = ("device", "eval_batch_size", "data_root", "feature_cache_gb", "exact_eval")
    # Fields added after records were first written: left out of the hash at their default, so that
    # every earlier record keeps its id (and a sweep does not rerun it).
    HASH_OMITTED_AT_DEFAULT = {"amp": "none", "dtype": "float32"}

    def __post_init__(self):
        layers = tuple(int(x) for x in self.layers)
        if not layers or any(x not in (1, 2, 3) for x in layers) or len(set(layers)) != len(layers):
            raise ValueError(f"layers must be a non-empty subset of 1, 2, 3 without repeats; got {layers}")
        object.__setattr__(self, "layers", tuple(sorted(layers)))  # 3,2 and 2,3 are one run
        object.__setattr__(self, "betas", tuple(float(x) for x in self.betas))
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0 (0 = evaluate the untrained model), got {self.epochs}")
        for name in ("batch_size", "image_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.image_size % 32:
            raise ValueError(f"image_size must be a multiple of 32 (the OCBE works at 1/32), got {self.image_size}")
        if self.amp not in AMP_CHOICES:
            raise ValueError(unknown_choice("amp", self.amp, AMP_CHOICES))
        if self.feature_cache_gb is not None and self.feature_cache_gb < 0:
            raise ValueError(f"feature_cache_gb must be >= 0 (0 = no cache), got {self.feature_cache_gb}")
        if self.dtype not in DTYPE_CHOICES:
            raise ValueError(unknown_choice("dtype", self.dtype, DTYPE_CHOICES))
        if self.dtype != "float32" and self.amp != "none":
            raise ValueError(f"dtype {self.dtype} excludes amp {self.amp}: mixed precision is a float32 speed-up")
        if self.eval_protocol not in EVAL_PROTOCOLS:
            raise ValueError(unknown_choice("eval protocol", self.eval_protocol, EVAL_PROTOCOLS))

    # Fields added after records were first written that are written only when set: a record of older code
    # reads back into the same JSON (its config has no such key, and the default is what it ran with).
    WRITTEN_ONLY_WHEN_SET = {"exact_eval": False, "dtype": "float32"}

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["layers"], d["betas"] = list(self.layers), list(self.betas)
        for k, default in self.WRITTEN_ONLY_WHEN_SET.items():
            if d[k] == default:
                del d[k]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown RunConfig fields {sorted(unknown)}; valid: {sorted(names)}")
        return cls(**d)

    def replace(self, **changes) -> RunConfig:
        return dataclasses.replace(self, **changes)

    @property
    def scoring_batch_size(self) -> int:
        """Images per forward pass at evaluation: 1 under exact_eval (the authors' loop), else eval_batch_size."""
        return 1 if self.exact_eval else self.eval_batch_size

    def result_dict(self) -> dict:
        """The settings that determine the numbers: to_dict() without NON_RESULT_FIELDS and without the
        HASH_OMITTED_AT_DEFAULT fields at their default (the config hash and the baselines' cells use it)."""
        return {k: v for k, v in self.to_dict().items() if k not in self.NON_RESULT_FIELDS
                and not (k in self.HASH_OMITTED_AT_DEFAULT and v == self.HASH_OMITTED_AT_DEFAULT[k])}

    def hash(self) -> str:
        """Stable over field order and Python versions; ignores fields that don't change results."""
        blob = json.dumps(self.result_dict(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]
