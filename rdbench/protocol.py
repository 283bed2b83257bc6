"""Protocols: a paper evaluation = which data a run trains and tests on (and, in later modules, its
grid and table). Protocol modules live in the top-level ``protocols`` package and register here."""

from __future__ import annotations

import importlib

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
        """Metrics of a trained model on the test set -> rdbench.evaluate.EvalResult (with the maps
        when ``keep_maps``, for the gallery)."""
        from rdbench.evaluate import evaluate

        return evaluate(model, test_set, config.layers, config.gaussian_sigma, device, config.eval_batch_size,
                        keep_maps=keep_maps, amp=config.amp)


PROTOCOLS: Registry[Protocol] = Registry("protocol")


def register_protocol(cls: type[Protocol]) -> type[Protocol]:
    PROTOCOLS.add(cls.name, cls())
    return cls


def get_protocol(name: str) -> Protocol:
    importlib.import_module("protocols")  # registers the built-in protocols on first use
    return PROTOCOLS.get(name)
