from __future__ import annotations

import pytest
import torch
import torchvision

from rdbench.models import BACKBONES, TeacherWeightsError, build_rd_model
from rdbench.models.backbones import imagenet_cache_path


@pytest.fixture(scope="module")
def r18():
    torch.manual_seed(0)
    return build_rd_model("resnet18", "none")


def test_registry_lists_valid_names_on_unknown():
    assert BACKBONES.names() == ["resnet18", "resnet34", "resnet50", "wide_resnet50_2"]
    with pytest.raises(ValueError, match="valid backbones: resnet18, resnet34, resnet50, wide_resnet50_2"):
        BACKBONES.get("vit")
    with pytest.raises(ValueError, match="valid bottlenecks"):
        build_rd_model("resnet18", "none", bottleneck="mff")


def test_teacher_is_frozen_and_stops_at_layer3(r18):
    assert not hasattr(r18.teacher, "layer4") and not hasattr(r18.teacher, "fc")
    assert all(not p.requires_grad for p in r18.teacher.parameters())
    r18.train()
    assert not r18.teacher.training  # BN statistics of the teacher never move
    assert r18.decoder.training and r18.bottleneck.training
    x = torch.randn(2, 3, 64, 64)
    t, s = r18(x)
    assert [f.shape[1:] for f in t] == [(64, 16, 16), (128, 8, 8), (256, 4, 4)]
    assert [f.shape for f in t] == [f.shape for f in s]


def test_teacher_features_equal_torchvision_forward():
    torch.manual_seed(3)
    model = build_rd_model("resnet18", "none")
    torch.manual_seed(3)
    ref = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        h = ref.maxpool(ref.relu(ref.bn1(ref.conv1(x))))
        f1 = ref.layer1(h)
        f3 = ref.layer3(ref.layer2(f1))
        t = model.teacher(x)
    assert torch.equal(t[0], f1) and torch.equal(t[2], f3)


@pytest.mark.parametrize("kind,trainable", [("pre", False), ("pre+oce", True)])
def test_table5_bottlenecks_use_teacher_layer4(kind, trainable):
    torch.manual_seed(1)
    resnet = torchvision.models.resnet18(weights=None)
    torch.manual_seed(1)
    model = build_rd_model("resnet18", "none", bottleneck=kind)
    # the block starts as the teacher's own layer4
    for (n, a), (_, b) in zip(model.bottleneck.layer.state_dict().items(), resnet.layer4.state_dict().items()):
        assert torch.equal(a, b), n
    has_grad = {p.requires_grad for p in model.bottleneck.parameters()}
    assert has_grad == {trainable}
    model.train()
    assert model.bottleneck.training is trainable  # the frozen "pre" block keeps its BN statistics
    n_trainable = sum(p.numel() for p in model.trainable_parameters())
    n_decoder = sum(p.numel() for p in model.decoder.parameters())
    assert n_trainable == n_decoder + (sum(p.numel() for p in resnet.layer4.parameters()) if trainable else 0)
    t, s = model(torch.randn(2, 3, 64, 64))
    assert [f.shape for f in t] == [f.shape for f in s]


def _save_resnet18(path, arch=torchvision.models.resnet18):
    torch.manual_seed(42)
    sd = arch(weights=None).state_dict()
    torch.save(sd, path)
    return sd


def test_weights_from_file(tmp_path):
    sd = _save_resnet18(tmp_path / "r18.pth")
    model = build_rd_model("resnet18", str(tmp_path / "r18.pth"))
    assert torch.equal(model.teacher.conv1.weight, sd["conv1.weight"])
    assert model.weights_info["kind"] == "file" and len(model.weights_info["sha256"]) == 64


def test_imagenet_weights_read_from_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    spec = BACKBONES.get("resnet18")
    path = imagenet_cache_path(spec)
    assert path == tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    with pytest.raises(TeacherWeightsError) as err:
        build_rd_model("resnet18", "imagenet")
    msg = str(err.value)
    assert str(path) in msg and "resnet18-f37072fd.pth" in msg and "--weights none" in msg
    path.parent.mkdir(parents=True)
    sd = _save_resnet18(path)
    # a file that is not the official one (its sha256 does not start f37072fd) is refused
    with pytest.raises(TeacherWeightsError, match="sha256 starts .* the official file's f37072fd"):
        build_rd_model("resnet18", "imagenet")
    # ... and accepted when the digest fits (the prefix check is monkeypatched: no way to forge a sha256)
    import hashlib

    import rdbench.models.backbones as bb
    real = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setattr(bb, "expected_sha256_prefix", lambda url: real[:8])
    model = build_rd_model("resnet18", "imagenet")
    assert model.weights_info["sha256"] == real
    assert torch.equal(model.teacher.layer1[0].conv1.weight, sd["layer1.0.conv1.weight"])
    assert model.weights_info["kind"] == "imagenet"
    assert model.weights_info["name"] == "ResNet18_Weights.IMAGENET1K_V1"


def test_bad_weight_files(tmp_path):
    with pytest.raises(TeacherWeightsError, match="not found"):
        build_rd_model("resnet18", str(tmp_path / "missing.pth"))
    (tmp_path / "corrupt.pth").write_bytes(b"not a torch file")
    with pytest.raises(TeacherWeightsError, match="cannot read teacher weights .*corrupt.pth"):
        build_rd_model("resnet18", str(tmp_path / "corrupt.pth"))
    _save_resnet18(tmp_path / "r50.pth", torchvision.models.resnet50)
    with pytest.raises(TeacherWeightsError, match="do not fit torchvision's resnet18"):
        build_rd_model("resnet18", str(tmp_path / "r50.pth"))


def test_random_teacher_is_labelled(r18):
    assert r18.weights_info["kind"] == "random"
