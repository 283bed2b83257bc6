"""The typed profile record: a saved ``rdbench profile`` result (``<results>/profiles/*.json``).

``ProfileRecord.to_dict`` / ``from_dict`` are its only translation to and from JSON; ``schema`` names the
format (``rdbench.profile/1``), and keys this code does not know are kept in ``unknown`` and written back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from rdbench.records.schema import RecordError

PROFILE_SCHEMA = "rdbench.profile/1"
PROFILE_SCHEMA_PREFIX = "rdbench.profile/"


@dataclass
class ProfileRecord:
    backbone: str
    image_size: int
    batch_size: int
    fast: dict[str, dict]  # figure key -> {"value", "unit", "description", ...} of rdbench's fast path
    schema: str = PROFILE_SCHEMA
    weights: str = "none"
    repeats: int | None = None
    device: dict[str, Any] = field(default_factory=dict)  # type, name, torch, threads, platform
    fast_settings: dict[str, Any] = field(default_factory=dict)
    reference: dict[str, dict] | None = None  # the same figures for the authors' procedure
    ratios: dict[str, dict] = field(default_factory=dict)  # fast / reference, with which way is better
    agreement: dict[str, Any] | None = None
    amp_effect: dict[str, Any] | None = None
    seconds: float | None = None
    saved: str | None = None  # ISO 8601, UTC, when written to a results folder
    environment: dict[str, Any] = field(default_factory=dict)  # rdbench.records.provenance.environment
    unknown: dict[str, Any] = field(default_factory=dict)

    def ratio(self, key: str) -> float | None:
        return (self.ratios.get(key) or {}).get("value")

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "unknown"}
        if self.saved is None:
            d.pop("saved")
        if not self.environment:
            d.pop("environment")
        return d | self.unknown

    @classmethod
    def from_dict(cls, d: Any, where: str = "profile") -> ProfileRecord:
        if not isinstance(d, dict) or not str(d.get("schema", "")).startswith(PROFILE_SCHEMA_PREFIX):
            raise RecordError(f"{where} is not an rdbench profile result (no schema {PROFILE_SCHEMA_PREFIX}*)")
        if d["schema"] != PROFILE_SCHEMA:
            raise RecordError(f"{where} has schema {d['schema']!r}; this rdbench reads {PROFILE_SCHEMA}")
        if not isinstance(d.get("fast"), dict):
            raise RecordError(f"{where} has no figures of the fast path ('fast')")
        names = {f.name for f in dataclasses.fields(cls)} - {"unknown"}
        missing = {"backbone", "image_size", "batch_size"} - set(d)
        if missing:
            raise RecordError(f"{where} lacks {', '.join(sorted(missing))}")
        known = {k: v for k, v in d.items() if k in names}
        for k in ("ratios", "device", "fast_settings", "environment"):
            if known.get(k) is None:
                known.pop(k, None)
        return cls(**known, unknown={k: v for k, v in d.items() if k not in names})
