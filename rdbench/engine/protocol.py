"""The Protocol interface of one run (which data it trains and tests on, how it is evaluated) and its registry.

The paper's protocols live in the ``protocols/`` folder (installed as ``rdbench_protocols``) and register here
from above: the engine never imports them (``rdbench.registry.load_plugins`` does, from the CLI)."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from rdbench.config import RunConfig
from rdbench.registry import Registry


class Protocol:
    name: str = ""
    description: str = ""

    def check_data(self, config: RunConfig) -> None:
        """Fail fast, before any training, when the data is missing or malformed."""

    def datasets(self, config: RunConfig) -> tuple[Dataset, Dataset]:
        """(train set of images, test set of NamedTuple items with an ``image`` and a ``label``)."""
        raise NotImplementedError

    def evaluate(self, model, test_set: Dataset, config: RunConfig, device: torch.device, keep_maps: bool = False):
        """Metrics of a trained model on the test set -> rdbench.engine.evaluate.EvalResult (with the maps
        when ``keep_maps``, for the gallery)."""
        from rdbench.engine.evaluate import evaluate

        return evaluate(model, test_set, config.layers, config.gaussian_sigma, device, config.eval_batch_size,
                        keep_maps=keep_maps, amp=config.amp)


PROTOCOLS: Registry[Protocol] = Registry(
    "protocol", empty_hint="call rdbench.registry.load_plugins() first (the CLI does), or "
                           "rdbench_protocols.register() for the paper's own")


def register_protocol(cls: type[Protocol]) -> type[Protocol]:
    PROTOCOLS.add(cls.name, cls())
    return cls


def get_protocol(name: str) -> Protocol:
    return PROTOCOLS.get(name)
