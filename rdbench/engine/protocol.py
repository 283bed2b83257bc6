"""The Protocol interface of one run (which data it trains and tests on, how it is evaluated) and its registry.

The paper's protocols live in the ``protocols/`` folder (installed as ``rdbench_protocols``) and register here
from above: the engine never imports them (``rdbench.registry.load_plugins`` does, from the CLI)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from rdbench.config import RunConfig
from rdbench.registry import PLUGINS_HINT, Registry


class Protocol:
    name: str = ""
    description: str = ""

    def defaults(self) -> dict:
        """The RunConfig fields in which this protocol's runs differ from RunConfig's own defaults (the paper's
        MVTec AD settings), e.g. a smaller image size; protocol-specific settings go in ``extra``."""
        return {}

    def config(self, **overrides) -> RunConfig:
        """A run of this protocol: ``defaults()``, then every override that is not None (None = not given, as
        the unset options of ``rdbench run`` and of a table grid are); ``extra`` is merged key by key.
        ``rdbench run`` and every table grid build their configs here, so that one experiment has one hash
        however it is asked for."""
        given = {k: v for k, v in overrides.items() if v is not None}
        if given.pop("protocol", self.name) != self.name:
            raise ValueError(f"protocol {self.name!r} cannot build a config of another protocol")
        base = self.defaults()
        extra = {**base.get("extra", {}), **given.pop("extra", {})}
        return RunConfig(**{**base, **given, "protocol": self.name, "extra": extra})

    def check_data(self, config: RunConfig) -> None:
        """Fail fast, before any training, when the data is missing or malformed."""

    def data_files(self, config: RunConfig) -> tuple[Path, list[Path]]:
        """(root, every file the run reads) after ``check_data``: what the record's data fingerprint covers.
        Paths are hashed relative to ``root``, so the same data at another path is the same data."""
        raise NotImplementedError(f"protocol {self.name!r} does not list its data files")

    def datasets(self, config: RunConfig) -> tuple[Dataset, Dataset]:
        """(train set of images, test set of NamedTuple items with an ``image`` and a ``label``)."""
        raise NotImplementedError

    def evaluate(self, model, test_set: Dataset, config: RunConfig, device: torch.device, keep_maps: bool = False,
                 final: bool = False):
        """Metrics of a trained model on the test set -> rdbench.engine.evaluate.EvalResult (with the maps
        when ``keep_maps``, for the gallery). ``final``: the run's last evaluation, which also records what a
        point of the curve does not need (layer-subset metrics for Table 7, 95% intervals)."""
        from rdbench.engine.evaluate import evaluate

        return evaluate(model, test_set, config.layers, config.gaussian_sigma, device, config.scoring_batch_size,
                        keep_maps=keep_maps, amp=config.amp, fast=not config.exact_eval, final=final)


PROTOCOLS: Registry[Protocol] = Registry("protocol", empty_hint=PLUGINS_HINT)


def register_protocol(cls: type[Protocol]) -> type[Protocol]:
    PROTOCOLS.add(cls.name, cls())
    return cls


def get_protocol(name: str) -> Protocol:
    return PROTOCOLS.get(name)
