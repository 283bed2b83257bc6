"""The typed run record: what one run leaves behind, in the JSON of ``<results>/runs/*.json``.

``RunRecord.to_dict`` / ``RunRecord.from_dict`` are the only translation between the object and its JSON
(``rdbench.records.store`` reads and writes files through them). Schema 1 is the JSON rdbench wrote before
records said which data and code made them; schema 2 adds the ``data`` and ``code`` blocks. A newer field is
added with a default, so older records keep loading (and keep their schema_version: an old record without
blocks is not passed off as a new one), and a key this code does not know is kept in ``unknown`` and written
back, so a record round-trips even through older code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from rdbench.config import RunConfig

SCHEMA_VERSION = 2
Status = Literal["running", "ok", "failed"]
STATUSES: tuple[str, ...] = ("running", "ok", "failed")


def now_utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RecordError(ValueError):
    """A file is not a run record of a schema this code reads."""


@dataclass
class RunRecord:
    config: RunConfig
    config_hash: str
    seed: int
    status: Status = "running"
    error: str | None = None  # "ExceptionType: message" of a failed run
    started: str | None = None  # ISO 8601, UTC
    finished: str | None = None
    wall_s: float | None = None
    schema_version: int = SCHEMA_VERSION
    environment: dict[str, Any] = field(default_factory=dict)  # rdbench.records.provenance.environment
    # what the run read: {"fingerprint": sha256, "files": n, "bytes": n} (rdbench.records.fingerprint)
    data: dict[str, Any] = field(default_factory=dict)
    # what ran: {"fingerprint": sha256 of the sources, "version", "git_commit", "dirty"} (provenance.code_block)
    code: dict[str, Any] = field(default_factory=dict)
    teacher_weights: dict[str, Any] | None = None  # kind (imagenet|random|file), name, path, sha256
    # metric name -> value; None where a metric could not be computed (its reason in metric_errors)
    metrics: dict[str, float | None] = field(default_factory=dict)
    metric_errors: dict[str, str] = field(default_factory=dict)
    # "1", "1,2", ...: the metrics of the map from that subset of the run's layers, same model (Table 7)
    metrics_by_layers: dict[str, dict[str, float | None]] = field(default_factory=dict)
    # metric -> [low, high]: its 95% interval from a seeded bootstrap over the test images (stratified by label;
    # pixel metrics resample whole images)
    metrics_ci: dict[str, list[float]] = field(default_factory=dict)
    # the sidecar beside the record (``<record stem>.scores.npz``, rdbench.metrics.ScoreSummary): labels, image
    # scores and per-image pixel-score histograms, what `rdbench compare` needs without the models
    scores_file: str | None = None
    # sha256 of the sidecar's bytes as written (store.write_record): a sidecar replaced or rewritten after its
    # record is told apart from the record's own; None in records written before rdbench recorded it
    scores_sha256: str | None = None
    per_image: dict[str, list] = field(default_factory=dict)  # columns: path, defect, label, score, ...
    loss_curve: list[float] = field(default_factory=list)  # mean training loss per epoch
    timings: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)  # train, test, test_anomalous
    gallery: list[dict] = field(default_factory=list)  # a few inputs, masks and maps as PNG data URIs
    metric_curve: list[dict] | None = None  # eval protocol "paper": metrics every eval_every epochs
    best_epoch_metrics: dict[str, Any] | None = None  # OPTIMISTIC: best epoch chosen on the test set
    # OPTIMISTIC too, one model: the epoch with the best mean of image and pixel AUROC, all metrics at it
    best_checkpoint: dict[str, Any] | None = None
    model_path: str | None = None
    record_path: str | None = None  # where the store wrote it
    traceback: str | None = None
    failed_epoch: int | None = None
    untrained: bool = False  # epochs 0: the metrics are those of the freshly initialised model
    unknown: dict[str, Any] = field(default_factory=dict)  # keys of a newer schema, kept as they were
    # settings of a newer rdbench's config that this RunConfig does not have: kept and written back; the record keeps
    # its own config_hash, so it is never taken for (nor overwritten by) a run of the config without them
    config_unknown: dict[str, Any] = field(default_factory=dict)
    # the run's ScoreSummary in memory (written as ``scores_file`` by the store, never into the JSON); it travels
    # with the record from a Ray worker to the driver
    scores: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def new(cls, config: RunConfig) -> RunRecord:
        return cls(config=config, config_hash=config.hash(), seed=config.seed, started=now_utc())

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def data_fingerprint(self) -> str | None:
        return self.data.get("fingerprint")

    @property
    def code_fingerprint(self) -> str | None:
        return self.code.get("fingerprint")

    @property
    def random_teacher(self) -> bool:
        return (self.teacher_weights or {}).get("kind") == "random"

    def metric(self, name: str) -> float | None:
        return self.metrics.get(name)

    def metric_of_layers(self, layers: tuple[int, ...], name: str) -> float | None:
        """A metric of the map built from ``layers`` alone (``metrics_by_layers``), or None."""
        return self.metrics_by_layers.get(",".join(map(str, layers)), {}).get(name)

    def best(self, name: str) -> float | None:
        """The optimistic best-epoch value of a metric (eval protocol "paper"), or None."""
        best = (self.best_epoch_metrics or {}).get(name)
        return best["value"] if isinstance(best, dict) else None

    def at_best_checkpoint(self, name: str) -> float | None:
        """A metric at the one optimistic checkpoint (``best_checkpoint``, eval protocol "paper"), or None."""
        return ((self.best_checkpoint or {}).get("metrics") or {}).get(name)

    def fail(self, error: str, traceback: str | None = None) -> None:
        self.status, self.error, self.finished = "failed", error, now_utc()
        if traceback:
            self.traceback = traceback

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in ("unknown", "scores", "config_unknown"):
                continue
            value = getattr(self, f.name)
            if f.name == "config":
                value = {**value.to_dict(), **self.config_unknown}
            elif value is None and f.name in _OMITTED_WHEN_NONE:
                continue  # absent, as schema 1 wrote them: only runs that have one carry the key
            elif f.name in _OMITTED_WHEN_EMPTY and not value:
                continue
            d[f.name] = value
        d.update(self.unknown)
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str = "record") -> RunRecord:
        """Read a record's JSON object (any schema up to SCHEMA_VERSION). ``where`` names it in errors."""
        if not isinstance(d, dict) or "config" not in d or "status" not in d:
            raise RecordError(f"{where} is not an rdbench run record (no config/status)")
        version = d.get("schema_version", 1)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise RecordError(f"{where} has schema_version {version!r}; this rdbench reads up to {SCHEMA_VERSION}: "
                              f"upgrade rdbench to read it")
        if d["status"] not in STATUSES:
            raise RecordError(f"{where}: status {d['status']!r} is not one of {', '.join(STATUSES)}")
        raw = dict(d["config"]) if isinstance(d["config"], dict) else d["config"]
        fields_of_config = {f.name for f in dataclasses.fields(RunConfig)}
        newer = {k: v for k, v in raw.items() if k not in fields_of_config} if isinstance(raw, dict) else {}
        # a newer rdbench's record: a whole config as rdbench writes it, with its own hash; anything else with keys
        # this code does not know (a hand-edited or garbled file) is refused, naming them, as before
        if newer and not ("config_hash" in d and {"protocol", "category", "backbone"} <= set(raw)):
            newer = {}
        try:
            config = RunConfig.from_dict({k: v for k, v in raw.items() if k not in newer})
        except (TypeError, ValueError, AttributeError) as exc:
            raise RecordError(f"{where}: its config does not load: {exc}") from None
        names = {f.name for f in dataclasses.fields(cls)} - {"config", "unknown", "scores", "config_unknown"}
        known = {k: v for k, v in d.items() if k in names}
        for k in _OMITTED_WHEN_EMPTY:  # written as null by a few old failure paths
            if known.get(k) is None:
                known.pop(k, None)
        known.setdefault("config_hash", config.hash())
        known.setdefault("seed", config.seed)
        known["schema_version"] = version
        unknown = {k: v for k, v in d.items() if k not in names and k != "config"}
        return cls(config=config, unknown=unknown, config_unknown=newer, **known)


_OMITTED_WHEN_NONE = {"finished", "wall_s", "teacher_weights", "metric_curve", "best_epoch_metrics", "best_checkpoint",
                      "model_path", "record_path", "traceback", "failed_epoch", "scores_file",
                      "scores_sha256"}
_OMITTED_WHEN_EMPTY = {"metrics", "metric_errors", "metrics_by_layers", "metrics_ci", "per_image", "loss_curve",
                       "timings", "counts",
                       "gallery", "environment", "data", "code", "untrained"}
