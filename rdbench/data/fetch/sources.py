"""The table of what ``rdbench fetch`` downloads: one ``Source`` per dataset (and per teacher backbone), each
file with its URL, size, published digest and archive type, and where the result lands.

Every digest is the publisher's or the one the reference loaders check, never one measured here; the comment
beside each names the repository and file it was copied from. ``tests/test_fetch.py`` checks the torchvision
entries against the installed torchvision's own tables, so an upstream change shows up as a failing test."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlparse

ALGORITHMS = ("sha256", "md5", "sha256-prefix")  # sha256-prefix: torch.hub's check of the hex in the file name
ARCHIVES = ("tar.xz", "tar.gz", "tar", "zip", "gz", "file")  # gz: one gzip-compressed file; file: kept as is
MVTEC_LICENCE = "CC BY-NC-SA 4.0 (non-commercial, share-alike; https://creativecommons.org/licenses/by-nc-sa/4.0/)"


@dataclass(frozen=True)
class Remote:
    """One file to download. ``size``: bytes as published (the disk check and the bar; a server's
    Content-Length wins when it sends one); ``unpacked``: about what extracting it writes (disk check)."""

    url: str
    size: int
    digest: str
    algorithm: str
    archive: str
    origin: str  # where the digest was published (repository and path)
    unpacked: int = 0
    name: str = ""  # the file's name on disk when it is not the URL's (an --url mirror of a fixed name)
    approximate: bool = False  # ``size`` is the publisher's rounded figure

    @property
    def filename(self) -> str:
        return self.name or Path(urlparse(self.url).path).name


@dataclass(frozen=True)
class Source:
    """A dataset or a teacher's weights. It lands in ``<root>/<area>/<target>`` (``area`` "hub": the torch hub
    checkpoints folder, whatever ``--root`` says). ``yields``: for an archive, its folder that becomes the target
    ("" = its whole top level); for gzip files, the target's subfolder that holds them and their contents."""

    name: str
    title: str
    licence: str
    area: str  # "mvtec" | "novelty" | "hub"
    target: str
    files: tuple[Remote, ...]
    yields: str = ""
    needs_acceptance: bool = False  # the licence restricts use: fetching asks for --accept-licence

    def with_files(self, files: tuple[Remote, ...]) -> Source:
        return replace(self, files=files)


_TV = "pytorch/vision torchvision/datasets/"  # the dataset classes whose download tables rdbench follows
_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist/"  # torchvision's first MNIST mirror (mnist.py)
_FASHION = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"  # FashionMNIST.mirrors (mnist.py)


def _idx(base: str, origin: str, entries: tuple[tuple[str, int, str], ...]) -> tuple[Remote, ...]:
    return tuple(Remote(base + name, size, md5, "md5", "gz", origin, unpacked=size * 8) for name, size, md5 in entries)


DATASETS: dict[str, Source] = {s.name: s for s in (
    Source("mvtec", "MVTec AD", MVTEC_LICENCE, "mvtec", "", needs_acceptance=True, files=(Remote(
        # url and sha256: open-edge-platform/anomalib src/anomalib/data/datamodules/image/mvtecad.py DOWNLOAD_INFO
        # (its download_and_extract checks it with sha256, anomalib/data/utils/download.py check_hash); the size
        # is approximate (4.9 GB as MVTec's download page states it): the server's Content-Length is used
        "https://www.mydrive.ch/shares/150996/b52ecdcbf521176e9db9c731f2304b27/download/420938113-1629960298/"
        "mvtec_anomaly_detection.tar.xz", 4_900_000_000,
        "cf4313b13603bec67abb49ca959488f7eedce2a9f7795ec54446c649ac98cd3d", "sha256", "tar.xz",
        "open-edge-platform/anomalib src/anomalib/data/datamodules/image/mvtecad.py", unpacked=5_300_000_000,
        approximate=True),)),
    Source("mnist", "MNIST", "CC BY-SA 3.0 (Y. LeCun and C. Cortes)", "novelty", "MNIST", yields="raw",
           files=_idx(_MNIST, _TV + "mnist.py MNIST.resources", (  # md5s: MNIST.resources; sizes: bytes served
               ("train-images-idx3-ubyte.gz", 9912422, "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
               ("train-labels-idx1-ubyte.gz", 28881, "d53e105ee54ea40749a09fcbcd1e9432"),
               ("t10k-images-idx3-ubyte.gz", 1648877, "9fb629c4189551a2d022fa330f9573f3"),
               ("t10k-labels-idx1-ubyte.gz", 4542, "ec29112dd5afa0611ce80d1b7f02629c")))),
    Source("fashionmnist", "FashionMNIST", "MIT (Zalando Research)", "novelty", "FashionMNIST", yields="raw",
           files=_idx(_FASHION, _TV + "mnist.py FashionMNIST.resources", (  # md5s: FashionMNIST.resources
               ("train-images-idx3-ubyte.gz", 26421880, "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
               ("train-labels-idx1-ubyte.gz", 29515, "25c81989df183df01b3e8a0aad5dffbe"),
               ("t10k-images-idx3-ubyte.gz", 4422102, "bef4ecab320f06d8554ea6380940ec79"),
               ("t10k-labels-idx1-ubyte.gz", 5148, "bb300cfdad3c16e7a12a480ee83cd310")))),
    Source("cifar10", "CIFAR-10", "no licence stated (A. Krizhevsky; cite the tech report)", "novelty",
           "cifar-10-batches-py", yields="cifar-10-batches-py", files=(Remote(
               # url and md5: CIFAR10.url / CIFAR10.tgz_md5 in torchvision's cifar.py
               "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", 170498071,
               "c58f30108f718f92721af3b95e74349a", "md5", "tar.gz", _TV + "cifar.py CIFAR10.tgz_md5",
               unpacked=190_000_000),)),
    Source("caltech256", "Caltech-256", "CC BY 4.0 (Griffin, Holub and Perona; CaltechDATA)", "novelty",
           "256_ObjectCategories", yields="256_ObjectCategories", files=(Remote(
               # url and md5: Caltech256.download() in torchvision's caltech.py (the CaltechDATA record); the
               # size: bytes as a Content-Range total of this file shows them (CaltechDATA lists "1.2 GB")
               "https://data.caltech.edu/records/nyy15-4j048/files/256_ObjectCategories.tar", 1183006720,
               "67b4f42ca05d46448c6bb8ecd2220f6d", "md5", "tar", _TV + "caltech.py Caltech256.download",
               unpacked=1_190_000_000),)),
)}  # fmt: skip

# Teacher weights: torchvision's IMAGENET1K_V1 files (the URLs the authors' code loads: rdbench/models/backbones.py
# BACKBONES names the same enums). torchvision publishes no full digest: the 8 hex characters in each file name
# are a sha256 prefix, checked as torch.hub.load_state_dict_from_url(check_hash=True) does. Sizes: the files'
# byte counts (resnet34's from torchvision's Weights.meta["_file_size"], 83.275 MB; the disk check only).
_WEIGHTS = "pytorch/vision torchvision/models/resnet.py {}.IMAGENET1K_V1 (hash in the file name)"
_TV_LICENCE = "as torchvision distributes them (BSD-3-Clause)"
WEIGHTS: dict[str, Source] = {name: Source(
    f"weights:{name}", f"{name} ImageNet weights", _TV_LICENCE, "hub", Path(url).name,
    files=(Remote(url, size, Path(url).stem.rsplit("-", 1)[1], "sha256-prefix", "file", _WEIGHTS.format(enum)),))
    for name, enum, url, size in (
        ("resnet18", "ResNet18_Weights", "https://download.pytorch.org/models/resnet18-f37072fd.pth", 46830571),
        ("resnet34", "ResNet34_Weights", "https://download.pytorch.org/models/resnet34-b627a593.pth", 87319819),
        ("resnet50", "ResNet50_Weights", "https://download.pytorch.org/models/resnet50-0676ba61.pth", 102530333),
        ("wide_resnet50_2", "Wide_ResNet50_2_Weights",
         "https://download.pytorch.org/models/wide_resnet50_2-95faca4d.pth", 138223492),
    )}  # fmt: skip

NAMES: tuple[str, ...] = (*DATASETS, "weights")  # what `rdbench fetch NAME` accepts, besides "all"


def all_sources() -> list[Source]:
    return [*DATASETS.values(), *WEIGHTS.values()]


def hub_checkpoints() -> Path:
    """The standard torch hub cache's checkpoints folder ($TORCH_HOME/hub/checkpoints), where torchvision and
    ``--weights imagenet`` look for the weights. Read at call time: TORCH_HOME may change between calls."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def area_folder(area: str, root: Path) -> Path:
    return hub_checkpoints() if area == "hub" else Path(root) / area


def target_path(source: Source, root: Path) -> Path:
    folder = area_folder(source.area, root)
    return folder / source.target if source.target else folder


def archive_of(url: str, default: str) -> str:
    """The archive type a URL's file name says (an --url may serve a zip where the table has a tar.xz)."""
    name = Path(urlparse(url).path).name.lower()
    for kind in ("tar.xz", "tar.gz", "tar", "zip"):
        if name.endswith("." + kind) or (kind == "tar.gz" and name.endswith(".tgz")):
            return kind
    return default
