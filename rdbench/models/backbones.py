"""Teacher backbones: torchvision ResNets, frozen, computing only layer1..layer3.

Weights: ``imagenet`` (torchvision IMAGENET1K_V1, the classic URLs the authors load, read from the
standard torch hub cache and never downloaded implicitly), ``none`` (random init; every record says
so), or a path to a state-dict file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn
from torchvision.models import resnet as tv_resnet

from rdbench.registry import Registry


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    block: type  # torchvision BasicBlock or Bottleneck: the OCBE reuses the teacher's block type
    ocbe_blocks: int  # blocks in the one-class embedding layer (official BN_layer)
    decoder_layers: tuple[int, int, int]  # blocks per decoder layer (official de_resnet)
    base_width: int  # 128 for the "wide" variants, as in torchvision
    weights_enum: str  # torchvision weights enum class name, IMAGENET1K_V1 member

    @property
    def expansion(self) -> int:
        return self.block.expansion

    def torchvision_fn(self):
        return getattr(tv_resnet, self.name)

    def imagenet_weights(self):
        return getattr(tv_resnet, self.weights_enum).IMAGENET1K_V1


BACKBONES: Registry[BackboneSpec] = Registry("backbone")

for _spec in (
    BackboneSpec("resnet18", tv_resnet.BasicBlock, 2, (2, 2, 2), 64, "ResNet18_Weights"),
    BackboneSpec("resnet34", tv_resnet.BasicBlock, 3, (3, 4, 6), 64, "ResNet34_Weights"),
    BackboneSpec("resnet50", tv_resnet.Bottleneck, 3, (3, 4, 6), 64, "ResNet50_Weights"),
    BackboneSpec("wide_resnet50_2", tv_resnet.Bottleneck, 3, (3, 4, 6), 128, "Wide_ResNet50_2_Weights"),
):
    BACKBONES.add(_spec.name, _spec)


class TeacherWeightsError(RuntimeError):
    """Teacher weights missing, unreadable or for another architecture; the message says what to do."""


def imagenet_cache_path(spec: BackboneSpec) -> Path:
    """Where torchvision's standard hub cache keeps the IMAGENET1K_V1 file for this backbone."""
    url = spec.imagenet_weights().url
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def imagenet_available(backbone: str) -> bool:
    return imagenet_cache_path(BACKBONES.get(backbone)).is_file()


def expected_sha256_prefix(url: str) -> str | None:
    """The sha256 prefix that torchvision's file names carry (resnet18-f37072fd.pth), taken out the way
    ``torch.hub.load_state_dict_from_url(check_hash=True)`` does (``torch.hub.HASH_REGEX`` on the file name)."""
    m = torch.hub.HASH_REGEX.search(Path(urlparse(url).path).name)
    return (m.group(1) or None) if m else None  # HASH_REGEX also matches an empty prefix


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _load_state_dict(path: Path, backbone: str) -> dict:
    if not path.is_file():
        raise TeacherWeightsError(f"teacher weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file; the user needs one message
        raise TeacherWeightsError(
            f"cannot read teacher weights {path} ({type(exc).__name__}: {exc}); expected a torch "
            f"state_dict of torchvision's {backbone}, e.g. the IMAGENET1K_V1 .pth file"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise TeacherWeightsError(f"{path} holds a {type(state).__name__}, not a state_dict for {backbone}")
    return state


def build_teacher(backbone: str, weights: str = "imagenet") -> tuple[nn.Module, dict]:
    """Build the full torchvision ResNet (its random init is part of the authors' RNG chain), load
    the requested weights, and return (model, weights identity).

    The model still has layer4/fc here: callers that need parity with the authors' initialisation
    must build it before the OCBE and decoder; ``Teacher`` then drops what it never uses.
    """
    spec = BACKBONES.get(backbone)
    model = spec.torchvision_fn()(weights=None)
    if weights == "none":
        return model, {"kind": "random", "name": "none (random init)", "sha256": None}
    if weights == "imagenet":
        path = imagenet_cache_path(spec)
        if not path.is_file():
            url = spec.imagenet_weights().url
            raise TeacherWeightsError(
                f"ImageNet weights for {backbone} are not in the local torch hub cache and rdbench never "
                f"downloads during a run.\n  expected file: {path}\n  get it on a connected machine from "
                f"{url}\n  (or run python -c \"import torchvision; torchvision.models.{backbone}"
                f"(weights='IMAGENET1K_V1')\" there) and copy it to that path, or pass --weights FILE, "
                f"or --weights none for a random teacher."
            )
        kind, name = "imagenet", f"{spec.weights_enum}.IMAGENET1K_V1"
    else:
        path = Path(weights)
        kind, name = "file", str(path)
    # hashed whole, not just compared: the record keeps the file's full sha256
    digest = _file_digest(path) if path.is_file() else None
    if kind == "imagenet":
        prefix = expected_sha256_prefix(spec.imagenet_weights().url)
        if prefix and digest[:len(prefix)] != prefix:  # torch.hub's check_hash test
            raise TeacherWeightsError(
                f"{path} is not torchvision's {name}: its sha256 starts {digest[:len(prefix)]}, the official file's "
                f"{prefix}. The file is damaged or another one; delete it and place the official file there, or "
                f"pass it as --weights FILE to use it knowingly.")
    state = _load_state_dict(path, backbone)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()
        detail = "; ".join(line.strip() for line in first[1:4]) or first[0]
        raise TeacherWeightsError(
            f"teacher weights {path} do not fit torchvision's {backbone}: {detail}. "
            f"Is it the file of another architecture? Valid backbones: {', '.join(BACKBONES.names())}"
        ) from None
    return model, {"kind": kind, "name": name, "path": str(path), "sha256": digest}


class Teacher(nn.Module):
    """Frozen encoder returning [layer1, layer2, layer3] features.

    Deviation from the authors' code (documented in docs/parity.md): their encoder also runs
    layer4 and discards it; we drop layer4 and fc, which changes no output and saves time/memory.
    """

    def __init__(self, resnet: torchvision.models.ResNet):
        super().__init__()
        self.conv1, self.bn1, self.relu, self.maxpool = resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool
        self.layer1, self.layer2, self.layer3 = resnet.layer1, resnet.layer2, resnet.layer3
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> Teacher:
        # frozen means frozen: BN statistics must never update, whatever the caller asks
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        f1 = self.layer1(x)
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        return [f1, f2, f3]
