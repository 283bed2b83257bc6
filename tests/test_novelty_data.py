"""One-class novelty data (rdbench.data.novelty) on tiny files written here: IDX (raw and .gz) in torchvision's
and in the Debian flat layout, CIFAR-10 pickled batches, a Caltech-256 tree. Plus the real Debian FashionMNIST
when /usr/share/datasets/fashion-mnist is installed."""

from __future__ import annotations

import gzip
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import transforms as T
from torchvision.datasets.mnist import read_image_file, read_label_file
from torchvision.datasets.utils import calculate_md5

import rdbench.data.novelty as nov
import rdbench.data.novelty.fashionmnist as fashion_module
from rdbench.bench.golden_data import write_idx  # the one IDX writer (the golden suite writes its data with it)
from rdbench.data.mvtec import DatasetError
from rdbench.data.novelty import (
    CALTECH_MAX_NORMAL,
    NOVELTY_DATASETS,
    Caltech256Source,
    CIFAR10Source,
    FashionMNISTSource,
    MNISTSource,
    NoveltyItem,
    NoveltySource,
    NoveltyTest,
    NoveltyTrain,
    caltech_default_classes,
    caltech_split,
    check_novelty_data,
    expected_tree,
    get_source,
    novelty_classes,
    read_idx_file,
    read_split,
    register,
    resolve_root,
    stratified_subset,
)
from rdbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD

IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
N_TRAIN, N_TEST = 40, 30  # tiny MNIST: 4 train / 3 test images per class, shuffled


def _assert_layout_message(err: pytest.ExceptionInfo, *needles: str | Path) -> str:
    msg = str(err.value)
    assert isinstance(err.value, DatasetError) and isinstance(err.value, ValueError)
    for n in needles:
        assert str(n) in msg, f"{n!r} not in:\n{msg}"
    assert "Expected layout" in msg and "Fix:" in msg, msg
    return msg


# --------------------------------------------------------------------------------------------- writers


def _tiny_mnist_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    out = {}
    for prefix, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        images[:, 0, 0] = labels * 20  # a per-class mark, so filtering mistakes show
        out[f"{prefix}-images-idx3-ubyte"], out[f"{prefix}-labels-idx1-ubyte"] = images, labels
    return out


def write_mnist(folder: Path, arrays: dict[str, np.ndarray], gz: bool | str) -> Path:
    """The four IDX files in ``folder``: raw, .gz, or 'both' (what torchvision's download leaves)."""
    for name, arr in arrays.items():
        if gz in (False, "both"):
            write_idx(folder / name, arr)
        if gz in (True, "both"):
            write_idx(folder / f"{name}.gz", arr)
    return folder


@pytest.fixture(scope="module")
def mnist_arrays() -> dict[str, np.ndarray]:
    return _tiny_mnist_arrays()


@pytest.fixture(scope="module")
def idx_roots(tmp_path_factory, mnist_arrays) -> dict[str, Path]:
    """'tv': torchvision's layout, uncompressed (what torchvision reads), MNIST and FashionMNIST;
    'gz': torchvision's layout, .gz only; 'flat': Debian-style folder of .gz files."""
    base = tmp_path_factory.mktemp("idx")
    for cls in ("MNIST", "FashionMNIST"):
        write_mnist(base / "tv" / cls / "raw", mnist_arrays, gz=False)
        write_mnist(base / "gz" / cls / "raw", mnist_arrays, gz=True)
    write_mnist(base / "flat", mnist_arrays, gz=True)
    return {k: base / k for k in ("tv", "gz", "flat")}


def _cifar_batch(rng: np.random.Generator, n: int) -> dict:
    labels = rng.permutation(np.arange(n) % 10).tolist()
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    return {"batch_label": "tiny", "labels": labels, "data": data, "filenames": [f"{i}.png" for i in range(n)]}


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory) -> Path:
    """cifar-10-batches-py with 5 x 10 train images (5 per class) and 20 test images (2 per class)."""
    root = tmp_path_factory.mktemp("cifar")
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name, n in [*((f"data_batch_{i}", 10) for i in range(1, 6)), ("test_batch", 20)]:
        with open(folder / name, "wb") as f:
            pickle.dump(_cifar_batch(rng, n), f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": list(CIFAR_NAMES), "num_cases_per_batch": 10, "num_vis": 3072}, f)
    return root


CALTECH_COUNTS = {"001.ak47": 160, "002.american-flag": 20, "003.backpack": 150, "257.clutter": 80}


def write_caltech(root: Path, counts: dict[str, int] = CALTECH_COUNTS) -> Path:
    base = root / "256_ObjectCategories"
    rng = np.random.default_rng(2)
    for cat, n in counts.items():
        d = base / cat
        d.mkdir(parents=True)
        num = cat.split(".")[0]
        for i in range(n, 0, -1):  # written in reverse, so directory order is not name order
            img = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
            if cat == "002.american-flag" and i == 1:
                img = img.convert("L")  # Caltech has grey images; they must come out RGB
            img.save(d / f"{num}_{i:04d}.jpg", quality=90)
    (base / "001.ak47" / "RENAME2").write_text("not an image")  # like 198.spider/RENAME2 in the real set
    (base / "001.ak47" / "._001_0001.jpg").write_bytes(b"macos resource fork")
    return root


@pytest.fixture(scope="module")
def caltech_root(tmp_path_factory) -> Path:
    return write_caltech(tmp_path_factory.mktemp("caltech"))


# -------------------------------------------------------------------------------------------- registry


def test_registry_sources_and_class_names():
    assert NOVELTY_DATASETS.names() == ["caltech256", "cifar10", "fashionmnist", "mnist"]
    assert novelty_classes("mnist") == tuple("0123456789")
    assert novelty_classes("fashionmnist") == tuple(torchvision.datasets.FashionMNIST.classes)
    assert novelty_classes("cifar10") == CIFAR_NAMES
    assert NOVELTY_DATASETS.get("mnist").torchvision_class is torchvision.datasets.MNIST
    assert NOVELTY_DATASETS.get("fashionmnist").torchvision_class is torchvision.datasets.FashionMNIST
    assert NOVELTY_DATASETS.get("cifar10").torchvision_class is torchvision.datasets.CIFAR10
    for name in ("mnist", "fashionmnist"):
        assert NOVELTY_DATASETS.get(name).mean is None  # the authors do not normalise MNIST / FashionMNIST
    for name in ("cifar10", "caltech256"):
        source = NOVELTY_DATASETS.get(name)
        assert (source.mean, source.std) == (IMAGENET_MEAN, IMAGENET_STD)


@pytest.mark.parametrize("name,module,cls", [
    ("mnist", "mnist", MNISTSource),
    ("fashionmnist", "fashionmnist", FashionMNISTSource),
    ("cifar10", "cifar10", CIFAR10Source),
    ("caltech256", "caltech256", Caltech256Source),
])  # fmt: skip
def test_each_dataset_file_registers_its_source(name, module, cls):
    assert name in NOVELTY_DATASETS.names()
    source = get_source(name)
    assert type(source) is cls and isinstance(source, NoveltySource)
    assert cls.__module__ == f"rdbench.data.novelty.{module}" and source.name == name
    assert register(cls) is cls and type(get_source(name)) is cls  # registering the same class again: harmless


def test_a_different_source_under_a_taken_name_is_refused():
    class OtherMNIST(MNISTSource):
        pass

    with pytest.raises(ValueError, match="novelty dataset 'mnist' is already registered"):
        register(OtherMNIST)
    assert type(get_source("mnist")) is MNISTSource


def test_package_imports_nothing_above_data():
    import ast

    imported = set()
    for path in Path(nov.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
    ours = {m for m in imported if m.split(".")[0] == "rdbench"}
    assert ours and all(m.startswith(("rdbench.data", "rdbench.registry")) for m in ours), ours


@pytest.mark.parametrize("call", [
    lambda: NOVELTY_DATASETS.get("cifar100"),
    lambda: get_source("cifar100"),
    lambda: resolve_root("cifar100", "/x"),
    lambda: expected_tree("cifar100"),
    lambda: read_split("cifar100", "/x", True),
    lambda: novelty_classes("svhn"),
    lambda: NoveltyTrain("svhn", "/x", 0),
    lambda: NoveltyTest("svhn", "/x", 0),
    lambda: check_novelty_data("svhn", "/x"),
])  # fmt: skip
def test_unknown_dataset_lists_valid_names(call):
    with pytest.raises(ValueError, match="unknown novelty dataset .*; valid novelty datasets: "
                                         "caltech256, cifar10, fashionmnist, mnist"):  # fmt: skip
        call()


def test_expected_trees_match_torchvision_layouts():
    t = expected_tree("mnist", "/data")
    assert "/data/" in t and "MNIST/" in t and "raw/" in t and all(n in t for n in IDX_NAMES)
    assert "FashionMNIST/" in expected_tree("fashionmnist") and "/usr/share/datasets/fashion-mnist" in expected_tree(
        "fashionmnist")
    t = expected_tree("cifar10")
    assert all(n in t for n in ("cifar-10-batches-py/", "batches.meta", "data_batch_1", "data_batch_5", "test_batch"))
    t = expected_tree("caltech256")
    assert "256_ObjectCategories/" in t and "001.ak47" in t and "257.clutter" in t


# ------------------------------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("reader,arr", [
    (read_image_file, (np.arange(2 * 3 * 4) * 37 % 256).reshape(2, 3, 4).astype(np.uint8)),
    (read_label_file, np.array([3, 0, 9, 255, 7], np.uint8)),
])  # fmt: skip
def test_read_idx_file_is_torchvisions_reader_on_raw_and_gz(tmp_path, reader, arr):
    raw = write_idx(tmp_path / "a-ubyte", arr)
    gz = write_idx(tmp_path / "b-ubyte.gz", arr)
    ref = reader(str(raw)).numpy()
    for path in (raw, gz):
        ours = read_idx_file(path, reader)
        assert ours.shape == arr.shape and ours.dtype == ref.dtype
        np.testing.assert_array_equal(ours, ref)
        np.testing.assert_array_equal(ours, arr)
    assert not list(tmp_path.glob("b-ubyte")) and gz.is_file()  # decompressed elsewhere, the .gz left alone


@pytest.mark.parametrize("reader,arr,why", [
    (read_image_file, np.zeros((2, 3, 4), ">i4"), "torch.uint8"),
    (read_image_file, np.zeros((2, 3), np.uint8), "3 dimension"),
    (read_label_file, np.zeros((2, 3), np.uint8), "1 dimension"),
])  # fmt: skip
def test_read_idx_file_names_a_file_of_the_wrong_kind(tmp_path, reader, arr, why):
    path = write_idx(tmp_path / "x-ubyte.gz", arr)
    with pytest.raises(DatasetError, match="cannot read IDX file: " + re.escape(str(path))) as err:
        read_idx_file(path, reader)
    assert why in str(err.value) and "Fix:" in str(err.value)


@pytest.mark.parametrize("layout", ["tv", "gz", "flat"])
@pytest.mark.parametrize("train", [True, False])
def test_mnist_split_agrees_with_torchvision(idx_roots, layout, train):
    tv = torchvision.datasets.MNIST(str(idx_roots["tv"]), train=train, download=False)
    images, targets = read_split("mnist", idx_roots[layout], train)
    assert images.dtype == np.uint8 and images.shape == (N_TRAIN if train else N_TEST, 28, 28)
    np.testing.assert_array_equal(images, tv.data.numpy())
    np.testing.assert_array_equal(targets, tv.targets.numpy())
    fm_root = idx_roots["flat"] if layout == "flat" else idx_roots[layout]
    fm = torchvision.datasets.FashionMNIST(str(idx_roots["tv"]), train=train, download=False)
    np.testing.assert_array_equal(read_split("fashionmnist", fm_root, train)[0], fm.data.numpy())


def test_torchvision_itself_needs_uncompressed_files(idx_roots):
    # documents why the error message says so: torchvision 0.29 with download=False ignores the .gz files
    with pytest.raises(RuntimeError, match="Dataset not found"):
        torchvision.datasets.MNIST(str(idx_roots["gz"]), train=True, download=False)


def test_mnist_items_are_the_authors_transform_on_three_channels(idx_roots):
    c = 3
    authors = T.Compose([T.Resize((32, 32)), T.ToTensor()])  # hq-deng/RD4AD dataset.load_data for MNIST
    tv = torchvision.datasets.MNIST(str(idx_roots["tv"]), train=True, transform=authors, download=False)
    ref = [tv[i][0] for i in range(len(tv)) if tv.targets[i] == c]
    for layout in ("tv", "gz", "flat"):
        ds = NoveltyTrain("mnist", idx_roots[layout], c)
        assert len(ds) == len(ref) == N_TRAIN // 10
        for i, r in enumerate(ref):
            x = ds[i]
            assert x.shape == (3, 32, 32) and x.dtype == torch.float32
            assert r.shape == (1, 32, 32)
            for ch in range(3):  # the grey channel repeated (rdbench's deviation for the RGB teacher)
                torch.testing.assert_close(x[ch], r[0], atol=0, rtol=0)


def test_mnist_train_is_normal_class_only_in_unit_range(idx_roots, mnist_arrays):
    labels = mnist_arrays["train-labels-idx1-ubyte"]
    for c in (0, 7):
        ds = NoveltyTrain("fashionmnist", idx_roots["gz"], c)
        assert len(ds) == int((labels == c).sum())
        expected = mnist_arrays["train-images-idx3-ubyte"][labels == c]
        np.testing.assert_array_equal(ds.images.array, expected)  # the normal class, in file order
        x = torch.stack([ds[i] for i in range(len(ds))])
        assert x.min() >= 0.0 and x.max() <= 1.0  # no normalisation
        assert ds.class_name == torchvision.datasets.FashionMNIST.classes[c]


def test_mnist_test_is_full_split_with_labels_and_targets(idx_roots, mnist_arrays):
    c = 4
    ds = NoveltyTest("mnist", idx_roots["tv"], c)
    t10k = mnist_arrays["t10k-labels-idx1-ubyte"]
    assert len(ds) == N_TEST
    items = [ds[i] for i in range(len(ds))]
    assert all(isinstance(it, NoveltyItem) and it.image.shape == (3, 32, 32) for it in items)
    assert [it.target for it in items] == t10k.tolist()
    assert [it.label for it in items] == [0 if t == c else 1 for t in t10k]
    assert sum(it.label == 0 for it in items) == N_TEST // 10
    batch = next(iter(DataLoader(ds, batch_size=8)))
    assert isinstance(batch, NoveltyItem) and batch.image.shape == (8, 3, 32, 32)
    assert batch.label.tolist() == [it.label for it in items[:8]]


def test_max_images_train_keeps_first_n_and_image_size(idx_roots):
    full = NoveltyTrain("mnist", idx_roots["tv"], 2)
    two = NoveltyTrain("mnist", idx_roots["tv"], 2, max_images=2, image_size=64)
    assert len(two) == 2 and two[0].shape == (3, 64, 64)
    np.testing.assert_array_equal(two.images.array, full.images.array[:2])
    assert len(NoveltyTrain("mnist", idx_roots["tv"], 2, max_images=100)) == len(full)
    with pytest.raises(ValueError, match="max_images must be >= 1"):
        NoveltyTrain("mnist", idx_roots["tv"], 2, max_images=0)


def test_max_images_test_is_stratified_and_deterministic(idx_roots):
    ds = NoveltyTest("mnist", idx_roots["tv"], 5, max_images=10, seed=0)
    assert len(ds) == 10 and sorted(set(ds.labels.tolist())) == [0, 1]
    assert int((ds.labels == 0).sum()) == 1  # 10 % normal in the full split -> 1 of 10
    again = NoveltyTest("mnist", idx_roots["tv"], 5, max_images=10, seed=0)
    np.testing.assert_array_equal(ds.images.array, again.images.array)
    np.testing.assert_array_equal(ds.targets, again.targets)
    assert all((t == 5) == (lab == 0) for t, lab in zip(ds.targets, ds.labels))
    other = NoveltyTest("mnist", idx_roots["tv"], 5, max_images=10, seed=1)
    assert not np.array_equal(ds.images.array, other.images.array)
    tiny = NoveltyTest("mnist", idx_roots["tv"], 5, max_images=2)
    assert sorted(tiny.labels.tolist()) == [0, 1]
    with pytest.raises(ValueError, match="max_images must be >= 2"):
        NoveltyTest("mnist", idx_roots["tv"], 5, max_images=1)


def test_stratified_subset_proportions():
    labels = np.array([0] * 100 + [1] * 900)
    keep = stratified_subset(labels, 50, seed=3)
    assert len(keep) == 50 and keep == sorted(keep) and len(set(keep)) == 50
    assert int((labels[keep] == 0).sum()) == 5
    assert keep == stratified_subset(labels, 50, seed=3)
    assert keep != stratified_subset(labels, 50, seed=4)
    rare = np.array([1] * 999 + [0])
    assert sorted(rare[stratified_subset(rare, 2)].tolist()) == [0, 1]  # at least one of each label
    assert sorted(rare[stratified_subset(rare, 7)].tolist()) == [0] + [1] * 6
    assert stratified_subset(labels, 5000) == list(range(1000))
    with pytest.raises(ValueError, match="one item of each"):
        stratified_subset(labels, 1)


def test_stratified_subset_is_sklearns_split():
    from sklearn.model_selection import train_test_split

    labels = np.array([0] * 100 + [1] * 900)
    for seed in (0, 3):
        picked, _ = train_test_split(np.arange(1000), train_size=50, stratify=labels, random_state=seed)
        assert stratified_subset(labels, 50, seed=seed) == sorted(picked.tolist())


@pytest.mark.parametrize("labels,max_images", [
    ([0, 0, 1, 1, 2] + [3] * 100, 4),  # a label of one item (sklearn cannot stratify it), shares below one
    ([0, 0, 1, 1, 2] + [3] * 100, 103),  # fewer items left out than labels (sklearn cannot stratify that)
    ([0] * 3 + [1] * 27, 2),  # 10 % normal of 2: rounds to no normal item
    ([5] * 4 + [7] * 4, 7),
])  # fmt: skip
def test_stratified_subset_keeps_one_of_each_label(labels, max_images):
    labels = np.asarray(labels)
    for seed in range(3):
        keep = stratified_subset(labels, max_images, seed=seed)
        assert len(keep) == len(set(keep)) == max_images and keep == sorted(keep)
        assert set(labels[keep].tolist()) == set(labels.tolist())
        assert keep == stratified_subset(labels, max_images, seed=seed)


# ---------------------------------------------------------------------------------- FashionMNIST, Debian


def test_fashionmnist_found_in_debian_folder_without_root(idx_roots, monkeypatch):
    monkeypatch.setattr(fashion_module, "DEBIAN_FASHION_MNIST", idx_roots["flat"])
    assert resolve_root("fashionmnist", None) == idx_roots["flat"]
    assert check_novelty_data("fashionmnist") == idx_roots["flat"]
    ref = NoveltyTrain("fashionmnist", idx_roots["tv"], 1)
    ds = NoveltyTrain("fashionmnist", None, 1)
    np.testing.assert_array_equal(ds.images.array, ref.images.array)
    assert len(NoveltyTest("fashionmnist", None, 1)) == N_TEST


def test_fashionmnist_without_root_or_debian_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_module, "DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    with pytest.raises(DatasetError) as err:
        resolve_root("fashionmnist", None)
    _assert_layout_message(err, tmp_path / "nowhere", "dataset-fashion-mnist", "FashionMNIST/", "raw/")
    (tmp_path / "partial").mkdir()
    write_idx(tmp_path / "partial" / "train-images-idx3-ubyte.gz", np.zeros((1, 2, 2), np.uint8))
    monkeypatch.setattr(fashion_module, "DEBIAN_FASHION_MNIST", tmp_path / "partial")
    with pytest.raises(DatasetError) as err:
        NoveltyTrain("fashionmnist", None, 0)
    _assert_layout_message(err, tmp_path / "partial", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte")


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="Debian package dataset-fashion-mnist not installed")  # fmt: skip
def test_real_debian_fashionmnist():
    assert nov.DEBIAN_FASHION_MNIST == fashion_module.DEBIAN_FASHION_MNIST == Path("/usr/share/datasets/fashion-mnist")
    images, targets = read_split("fashionmnist", None, train=True)
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(targets, minlength=10).tolist() == [6000] * 10
    test_images, test_targets = read_split("fashionmnist", None, train=False)
    assert test_images.shape == (10000, 28, 28) and np.bincount(test_targets).tolist() == [1000] * 10
    ds = NoveltyTrain("fashionmnist", None, 9)
    assert len(ds) == 6000 and ds.class_name == "Ankle boot" and ds[0].shape == (3, 32, 32)
    np.testing.assert_array_equal(ds.images.array, images[targets == 9])
    # read in place: nothing decompressed next to the .gz files
    assert sorted(p.name for p in nov.DEBIAN_FASHION_MNIST.iterdir()) == sorted(f"{n}.gz" for n in IDX_NAMES)


# ---------------------------------------------------------------------------------------------- CIFAR-10


def trust_cifar(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Make torchvision's md5 lists (which rdbench reads, so real data stays checked) name the hashes of the
    fake batch files in ``folder``, for this test only."""
    cls = torchvision.datasets.CIFAR10
    monkeypatch.setattr(cls, "train_list", [[f, calculate_md5(folder / f)] for f, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[f, calculate_md5(folder / f)] for f, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": calculate_md5(folder / cls.meta["filename"])})


@pytest.fixture
def trusted_cifar(cifar_root, monkeypatch) -> Path:
    trust_cifar(monkeypatch, cifar_root / "cifar-10-batches-py")
    return cifar_root


def test_torchvision_cifar10_rejects_unofficial_batches(cifar_root):
    # torchvision verifies the md5 of every batch even with download=False: why the tests patch its md5 lists
    with pytest.raises(RuntimeError, match="not found or corrupted"):
        torchvision.datasets.CIFAR10(str(cifar_root), train=True, download=False)


def test_cifar10_md5_checked_against_the_official_release(cifar_root):
    official = {"data_batch_1": "c99cafc152244af753f735de768cd75f", "test_batch": "40351d587109b95175f43aff81a1287e",
                "batches.meta": "5ff9c542aee3614f3951f8cda6e48888"}  # fmt: skip
    md5s = get_source("cifar10").file_md5s()
    assert len(md5s) == 7 and all(md5s[f] == m for f, m in official.items())
    with pytest.raises(DatasetError) as err:  # the fakes are not the official files
        NoveltyTrain("cifar10", cifar_root, 0)
    msg = _assert_layout_message(err, "fail torchvision's md5 check", cifar_root / "cifar-10-batches-py",
                                 "data_batch_1 (md5 ", "expected c99cafc152244af753f735de768cd75f")  # fmt: skip
    assert "not found or corrupted" in repr(err.value.__cause__)  # torchvision's own error, kept as the cause
    assert all(f in msg.split("\n")[0] for f in md5s)


def test_cifar10_modified_batch_named(cifar_root, tmp_path, monkeypatch):
    broken = tmp_path / "cifar"
    shutil.copytree(cifar_root, broken)
    folder = broken / "cifar-10-batches-py"
    trust_cifar(monkeypatch, folder)
    assert len(NoveltyTrain("cifar10", broken, 0)) == 5
    with open(folder / "data_batch_3", "rb") as f:
        batch = pickle.load(f)
    batch["labels"][0] = (batch["labels"][0] + 1) % 10  # one label changed: still a valid batch
    with open(folder / "data_batch_3", "wb") as f:
        pickle.dump(batch, f)
    for call in (lambda: NoveltyTrain("cifar10", broken, 0), lambda: NoveltyTest("cifar10", broken, 0)):
        with pytest.raises(DatasetError) as err:  # test too: torchvision checks every file for either split
            call()
        first = _assert_layout_message(err, "fail torchvision's md5 check", "data_batch_3 (md5 ",
                                       folder).split("\n")[0]  # fmt: skip
        assert "data_batch_1" not in first and "test_batch" not in first  # only the modified file


def _cifar_raw(root: Path, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    data, labels = [], []
    for n in names:
        with open(root / "cifar-10-batches-py" / n, "rb") as f:
            b = pickle.load(f)
        data.append(b["data"])
        labels += b["labels"]
    return np.vstack(data).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), np.array(labels)


def test_cifar10_train_test_and_normalisation(trusted_cifar):
    c, cifar_root = 6, trusted_cifar
    raw, labels = _cifar_raw(cifar_root, [f"data_batch_{i}" for i in range(1, 6)])
    images, targets = read_split("cifar10", cifar_root, train=True)
    np.testing.assert_array_equal(images, raw)
    np.testing.assert_array_equal(targets, labels)
    ds = NoveltyTrain("cifar10", cifar_root, c)
    assert len(ds) == 5 and ds.class_name == "frog"
    np.testing.assert_array_equal(ds.images.array, raw[labels == c])
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    for i, expected in enumerate(raw[labels == c]):
        x = ds[i]
        assert x.shape == (3, 32, 32)
        ref = (torch.from_numpy(expected).permute(2, 0, 1).float() / 255 - mean) / std
        torch.testing.assert_close(x, ref, atol=1e-5, rtol=0)
    assert ds[0].min() < 0  # normalised, not [0, 1]

    test_raw, test_labels = _cifar_raw(cifar_root, ["test_batch"])
    ts = NoveltyTest("cifar10", cifar_root, c, image_size=64)
    assert len(ts) == 20
    assert ts.targets.tolist() == test_labels.tolist()
    assert ts.labels.tolist() == [0 if t == c else 1 for t in test_labels]
    item = ts[0]
    assert item.image.shape == (3, 64, 64) and item.target == test_labels[0]
    sub = NoveltyTest("cifar10", cifar_root, c, max_images=5, seed=2)
    assert len(sub) == 5 and sorted(set(sub.labels.tolist())) == [0, 1]


def test_cifar10_errors(cifar_root, tmp_path, monkeypatch):
    broken = tmp_path / "cifar"
    shutil.copytree(cifar_root, broken)
    (broken / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(DatasetError) as err:
        check_novelty_data("cifar10", broken)
    _assert_layout_message(err, "test_batch", broken / "cifar-10-batches-py", "data_batch_1")
    with pytest.raises(DatasetError) as err:  # root given one level too deep
        NoveltyTrain("cifar10", cifar_root / "cifar-10-batches-py", 0)
    _assert_layout_message(err, "looks like the cifar-10-batches-py folder", f"pass its parent {cifar_root}")
    (broken / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a pickle")
    trust_cifar(monkeypatch, broken / "cifar-10-batches-py")  # md5 passes: the unpickling fails
    with pytest.raises(DatasetError) as err:
        NoveltyTest("cifar10", broken, 0)
    _assert_layout_message(err, "cannot read CIFAR-10 batches", broken / "cifar-10-batches-py")
    with pytest.raises(ValueError, match=r"normal_class 10 out of range for cifar10 \(10 classes\); "
                                         r"valid: 0=airplane, 1=automobile, .*9=truck"):  # fmt: skip
        NoveltyTrain("cifar10", cifar_root, 10)
    with pytest.raises(ValueError, match="normal_class -1 out of range"):
        NoveltyTest("cifar10", cifar_root, -1)


# ------------------------------------------------------------------------------------------- MNIST errors


@pytest.mark.parametrize("name", ["mnist", "fashionmnist", "cifar10", "caltech256"])
def test_missing_root(tmp_path, name):
    missing = tmp_path / "does-not-exist"
    for call in (lambda: check_novelty_data(name, missing), lambda: NoveltyTrain(name, missing, 0),
                 lambda: NoveltyTest(name, missing, 0)):  # fmt: skip
        with pytest.raises(DatasetError) as err:
            call()
        _assert_layout_message(err, "dataset root does not exist", missing, NOVELTY_DATASETS.get(name).folder,
                               f"rdbench fetch {name}", "A run itself never downloads")  # fmt: skip


@pytest.mark.parametrize("name", ["mnist", "cifar10", "caltech256"])
def test_no_root_given(name):
    with pytest.raises(DatasetError) as err:
        resolve_root(name, None)
    _assert_layout_message(err, "no data root given")


def test_missing_idx_files_named(idx_roots, tmp_path):
    root = tmp_path / "m"
    shutil.copytree(idx_roots["tv"], root)
    (root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetError) as err:
        check_novelty_data("mnist", root)
    msg = _assert_layout_message(err, "t10k-labels-idx1-ubyte", root / "MNIST" / "raw", "MNIST/", "or .gz")
    assert "train-images" not in msg.split("\n")[0]  # only the missing file is listed
    with pytest.raises(DatasetError) as err:
        NoveltyTest("mnist", tmp_path, 0)  # a root without any of the files
    _assert_layout_message(err, tmp_path / "MNIST" / "raw", "train-images-idx3-ubyte")


@pytest.mark.parametrize("damage", ["garbage", "truncated", "bad_gzip", "empty"])
def test_corrupt_idx_files_named(idx_roots, tmp_path, damage):
    root = tmp_path / "m"
    shutil.copytree(idx_roots["gz"], root)
    path = root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    blob = gzip.decompress(path.read_bytes())
    path.write_bytes({"garbage": gzip.compress(b"\x08\x03" + blob[2:]),
                      "truncated": gzip.compress(blob[:-5]),
                      "bad_gzip": b"this is not gzip data",
                      "empty": gzip.compress(b"")}[damage])  # fmt: skip
    with pytest.raises(DatasetError, match="cannot read IDX file: .*train-images-idx3-ubyte.gz"):
        NoveltyTrain("mnist", root, 0)


def test_mismatched_labels_named(idx_roots, tmp_path):
    root = tmp_path / "m"
    shutil.copytree(idx_roots["tv"], root)
    write_idx(root / "MNIST" / "raw" / "train-labels-idx1-ubyte", np.zeros(3, np.uint8))
    with pytest.raises(DatasetError, match="train-labels-idx1-ubyte .* expected 40 uint8 labels"):
        NoveltyTrain("mnist", root, 0)


def test_class_out_of_range_lists_classes(idx_roots):
    with pytest.raises(ValueError, match=r"normal_class 10 out of range for mnist \(10 classes\); valid: 0=0, 1=1"):
        NoveltyTrain("mnist", idx_roots["tv"], 10)
    with pytest.raises(ValueError, match="valid: 0=T-shirt/top, 1=Trouser"):
        NoveltyTest("fashionmnist", idx_roots["tv"], 12)
    with pytest.raises(TypeError, match="int class index"):
        NoveltyTrain("mnist", idx_roots["tv"], "3")


# -------------------------------------------------------------------------------------------- Caltech-256


def test_caltech_classes_and_defaults(caltech_root):
    assert novelty_classes("caltech256", caltech_root) == ("001.ak47", "002.american-flag", "003.backpack")
    assert caltech_default_classes(caltech_root) == [0, 2]  # >= 150 images; clutter never a class
    assert check_novelty_data("caltech256", caltech_root) == caltech_root


def test_caltech_split_protocol(caltech_root):
    s = caltech_split(caltech_root, 0)
    names = lambda paths: [p.name for p in paths]  # noqa: E731
    assert s.category == "001.ak47"
    assert (len(s.train), len(s.test_normal), len(s.test_outliers)) == (120, 30, 30)  # 150 -> 80/20; 50 % outliers
    first150 = [f"001_{i:04d}.jpg" for i in range(1, CALTECH_MAX_NORMAL + 1)]
    assert sorted(names(s.train) + names(s.test_normal)) == first150  # first 150 by file name; 151..160 unused
    assert not set(s.train) & set(s.test_normal)
    assert names(s.train) == sorted(names(s.train)) and names(s.test_normal) == sorted(names(s.test_normal))
    assert all(p.parent.name == "257.clutter" for p in s.test_outliers) and len(set(s.test_outliers)) == 30
    assert set(s.test_outliers) != set(caltech_split(caltech_root, 2).test_outliers)  # drawn per class
    assert s.clutter_index == 3
    assert caltech_split(caltech_root, 0) == s  # deterministic
    other = caltech_split(caltech_root, 0, split_seed=1)
    assert set(other.test_normal) != set(s.test_normal) and set(other.test_outliers) != set(s.test_outliers)
    assert sorted(names(other.train) + names(other.test_normal)) == first150
    half = caltech_split(caltech_root, 0, test_fraction=0.5)
    assert (len(half.train), len(half.test_normal), len(half.test_outliers)) == (75, 75, 75)
    small = caltech_split(caltech_root, 1)  # 20 images: fewer than 150, all used
    assert (len(small.train), len(small.test_normal), len(small.test_outliers)) == (16, 4, 4)
    assert caltech_split(caltech_root, 2).train != s.train
    with pytest.raises(ValueError, match="test_fraction"):
        caltech_split(caltech_root, 0, test_fraction=1.0)


def test_caltech_datasets(caltech_root):
    tr = NoveltyTrain("caltech256", caltech_root, 1)
    te = NoveltyTest("caltech256", caltech_root, 1)
    assert len(tr) == 16 and len(te) == 8
    split = caltech_split(caltech_root, 1)
    assert tr.images.paths == list(split.train) and te.images.paths == [*split.test_normal, *split.test_outliers]
    assert not set(tr.images.paths) & set(te.images.paths)
    xs = torch.stack([tr[i] for i in range(len(tr))])  # includes the grey image, converted to RGB
    assert xs.shape == (16, 3, 32, 32) and xs.min() < 0  # ImageNet-normalised
    img = Image.open(tr.images.paths[0]).convert("RGB").resize((32, 32), Image.BILINEAR)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    ref = (torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255 - mean) / std
    torch.testing.assert_close(tr[0], ref, atol=1e-5, rtol=0)
    items = [te[i] for i in range(len(te))]
    assert [it.label for it in items] == [0] * 4 + [1] * 4
    assert [it.target for it in items] == [1] * 4 + [3] * 4
    assert all(it.image.shape == (3, 32, 32) for it in items)
    big = NoveltyTest("caltech256", caltech_root, 0, max_images=10, seed=5)
    assert len(big) == 10 and big.labels.tolist().count(0) == 5  # stays 50 % outliers
    assert NoveltyTest("caltech256", caltech_root, 0, max_images=10, seed=5).images.paths == big.images.paths
    assert len(NoveltyTrain("caltech256", caltech_root, 0, max_images=7, image_size=64)) == 7
    assert NoveltyTrain("caltech256", caltech_root, 0, image_size=64)[0].shape == (3, 64, 64)
    with pytest.raises(ValueError, match=r"normal_class 3 out of range for caltech256 \(3 classes\); "
                                         r"valid: 0=001.ak47, 1=002.american-flag, 2=003.backpack"):  # fmt: skip
        NoveltyTrain("caltech256", caltech_root, 3)


def test_caltech_errors(caltech_root, tmp_path):
    with pytest.raises(DatasetError) as err:
        check_novelty_data("caltech256", tmp_path)
    _assert_layout_message(err, "Caltech-256 folder not found", tmp_path / "256_ObjectCategories", "257.clutter")
    with pytest.raises(DatasetError) as err:  # root given one level too deep
        NoveltyTrain("caltech256", caltech_root / "256_ObjectCategories", 0)
    _assert_layout_message(err, f"pass its parent {caltech_root}")

    no_clutter = write_caltech(tmp_path / "a", {"001.ak47": 3})
    with pytest.raises(DatasetError) as err:
        caltech_default_classes(no_clutter)
    _assert_layout_message(err, "257.clutter not found", no_clutter / "256_ObjectCategories")

    few = write_caltech(tmp_path / "b", {"001.ak47": 160, "002.american-flag": 1, "257.clutter": 5})
    with pytest.raises(DatasetError) as err:
        NoveltyTest("caltech256", few, 0)  # 30 outliers needed, 5 available
    _assert_layout_message(err, "257.clutter has 5 image(s), 30 outliers are needed")
    with pytest.raises(DatasetError) as err:
        NoveltyTrain("caltech256", few, 1)
    _assert_layout_message(err, "category has 1 image(s)", few / "256_ObjectCategories" / "002.american-flag")

    (few / "256_ObjectCategories" / "003.backpack").mkdir()
    with pytest.raises(DatasetError) as err:
        check_novelty_data("caltech256", few)
    _assert_layout_message(err, "without images (003.backpack)")
    empty = tmp_path / "c" / "256_ObjectCategories"
    empty.mkdir(parents=True)
    with pytest.raises(DatasetError) as err:
        check_novelty_data("caltech256", empty.parent)
    _assert_layout_message(err, "no category folders")


def test_corrupt_caltech_image_named_when_loaded(caltech_root, tmp_path):
    root = tmp_path / "cal"
    shutil.copytree(caltech_root, root)
    ds = NoveltyTrain("caltech256", root, 1)
    ds.images.paths[0].write_bytes(b"\x00not a jpeg")
    with pytest.raises(DatasetError, match=f"cannot read image file: .*{ds.images.paths[0].name}"):
        ds[0]
