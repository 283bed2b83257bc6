"""Registries: names(), unknown names listing the valid ones, idempotent registration, plugin loading."""

from __future__ import annotations

import importlib

import pytest
import torch

from rdbench.bench.tables import TABLES
from rdbench.engine.losses import LOSSES, distillation_loss, flat_cosine_loss, pixel_cosine_loss
from rdbench.engine.protocol import PROTOCOLS
from rdbench.models.backbones import BACKBONES
from rdbench.models.ocbe import OCBE, Layer4Bottleneck
from rdbench.models.rd import BOTTLENECKS, build_rd_model
from rdbench.registry import Registry, load_plugins, unknown_choice


def test_bottleneck_and_loss_registries_like_the_backbones():
    assert BOTTLENECKS.names() == ["pre", "pre+oce", "pre+oce+mff"]
    assert LOSSES.names() == ["flat", "pixel"]
    for registry, kind in ((BOTTLENECKS, "bottleneck"), (LOSSES, "loss"), (BACKBONES, "backbone")):
        with pytest.raises(ValueError, match=f"unknown {kind} 'nope'; valid {kind}(e)?s: " + ", ".join(
                map(__import__("re").escape, registry.names()))):
            registry.get("nope")


def test_bottleneck_builders_make_the_table5_variants():
    kinds = {}
    for name in BOTTLENECKS.names():
        torch.manual_seed(0)
        model = build_rd_model("resnet18", "none", name)
        kinds[name] = (type(model.bottleneck), any(p.requires_grad for p in model.bottleneck.parameters()))
    assert kinds == {"pre": (Layer4Bottleneck, False), "pre+oce": (Layer4Bottleneck, True),
                     "pre+oce+mff": (OCBE, True)}
    with pytest.raises(ValueError, match="valid bottlenecks: pre, pre\\+oce, pre\\+oce\\+mff"):
        build_rd_model("resnet18", "none", "mff")


def test_losses_dispatch_through_the_registry():
    torch.manual_seed(0)
    t, s = [torch.randn(2, 4, 3, 3)], [torch.randn(2, 4, 3, 3)]
    assert distillation_loss("flat", t, s) == flat_cosine_loss(t, s)
    assert distillation_loss("pixel", t, s) == pixel_cosine_loss(t, s)
    with pytest.raises(ValueError, match="valid losses: flat, pixel"):
        distillation_loss("l2", t, s)


def test_registration_is_idempotent_and_a_different_claim_fails():
    reg: Registry = Registry("widget")

    class A:
        pass

    reg.add("a", A)
    reg.add("a", A)  # the same definition again: harmless
    assert reg.names() == ["a"] and reg.get("a") is A

    class B:
        pass

    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        reg.add("a", B)


def test_reimporting_protocol_modules_is_harmless():
    import rdbench_protocols
    import rdbench_protocols.mvtec
    import rdbench_protocols.table1_detection

    before = (PROTOCOLS.names(), TABLES.names())
    importlib.reload(rdbench_protocols.mvtec)  # re-runs its @register_protocol
    importlib.reload(rdbench_protocols.table1_detection)
    rdbench_protocols.register()
    assert load_plugins() == ["paper"] and load_plugins() == ["paper"]
    assert (PROTOCOLS.names(), TABLES.names()) == before
    assert PROTOCOLS.names() == ["caltech256", "cifar10", "fashionmnist", "mnist", "mvtec"]
    assert TABLES.names() == ["1", "2", "3", "4", "5", "6", "7"]


def test_empty_registry_says_how_to_fill_it():
    reg: Registry = Registry("protocol", empty_hint="call rdbench.registry.load_plugins() first")
    with pytest.raises(ValueError, match="no protocols are registered; call rdbench.registry.load_plugins"):
        reg.get("mvtec")


def test_one_wording_for_bad_names():
    assert unknown_choice("amp", "fp8", ("none", "bf16")) == "unknown amp 'fp8'; valid amps: none, bf16"
    assert unknown_choice("synthetic category", "x", ["a"]) == "unknown synthetic category 'x'; valid synthetic " \
                                                               "categories: a"
