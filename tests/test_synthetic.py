from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import uniform_filter
from scipy.spatial import cKDTree
from scipy.stats import rankdata

from rdbench.data import MVTecTest, MVTecTrain, check_category
from rdbench.data.synthetic import (
    MARKER,
    SYNTHETIC_CATEGORIES,
    SYNTHETIC_DEFECTS,
    SYNTHETIC_OBJECTS,
    make_synthetic,
    render_sample,
)

SMALL = dict(n_train=8, n_test_good=4, n_test_bad=8, size=64)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp("synth"), seed=0, **SMALL)


def _hashes(root: Path, categories=SYNTHETIC_CATEGORIES) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for c in categories
        for p in sorted((root / c).rglob("*"))
        if p.is_file()
    }


def _auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mann-Whitney AUROC (ties count half)."""
    ranks = rankdata(scores)
    pos = labels.astype(bool)
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def test_default_generation_is_fast_and_valid(tmp_path):
    summary = make_synthetic(tmp_path)
    print(f"\nmake_synthetic defaults (4 categories, 256 px, 40/10/20 images each): {summary.seconds:.2f} s")
    assert summary.seconds < 60
    assert tuple(summary.categories) == SYNTHETIC_CATEGORIES == ("brick", "grass", "gravel", "nut")
    for name, cat in summary.categories.items():
        assert cat.path == tmp_path / name and cat.n_train == 40 and cat.n_test_good == 10
        assert sum(cat.defects.values()) == 20 and tuple(cat.defects) == SYNTHETIC_DEFECTS[name]
        assert cat.kind == ("object" if name in SYNTHETIC_OBJECTS else "texture")
        files = check_category(tmp_path, name, deep=True)  # decodes everything, checks mask sizes
        assert len(files.train) == 40 and len(files.test) == 30
        assert Image.open(files.train[0]).size == (256, 256) and Image.open(files.train[0]).mode == "RGB"


def test_exact_mvtec_layout(small):
    for name, cat in small.categories.items():
        expected = {MARKER}
        expected |= {f"train/good/{i:03d}.png" for i in range(8)}
        expected |= {f"test/good/{i:03d}.png" for i in range(4)}
        for defect, n in cat.defects.items():
            expected |= {f"test/{defect}/{i:03d}.png" for i in range(n)}
            expected |= {f"ground_truth/{defect}/{i:03d}_mask.png" for i in range(n)}
        found = {p.relative_to(cat.path).as_posix() for p in cat.path.rglob("*") if p.is_file()}
        assert found == expected, name
    assert small.categories["nut"].defects == {"hole": 2, "missing": 2, "scratch": 2, "stain": 2}
    assert small.categories["brick"].defects == {"hole": 3, "scratch": 3, "stain": 2}


def test_loads_as_mvtec_datasets(small):
    for name in SYNTHETIC_CATEGORIES:
        assert len(MVTecTrain(small.root, name, image_size=32)) == 8
        test = MVTecTest(small.root, name, image_size=32)
        assert sorted(test.labels) == [0] * 4 + [1] * 8
        for i in range(len(test)):
            item = test[i]
            assert (item.mask.sum() > 0) == bool(item.label)


def test_same_seed_same_bytes_different_seed_different(tmp_path):
    a = make_synthetic(tmp_path / "a", seed=7, **SMALL)
    b = make_synthetic(tmp_path / "b", seed=7, **SMALL)
    c = make_synthetic(tmp_path / "c", seed=8, **SMALL)
    ha, hb, hc = _hashes(a.root), _hashes(b.root), _hashes(c.root)
    assert ha == hb and len(ha) == 4 * (1 + 8 + 4 + 2 * 8)
    assert ha.keys() == hc.keys()
    pngs = [k for k in ha if k.endswith(".png")]
    assert all(ha[k] != hc[k] for k in pngs)
    # each image has its own RNG: a subset of categories reproduces the same files
    d = make_synthetic(tmp_path / "d", seed=7, categories=["gravel"], **SMALL)
    assert _hashes(d.root, ["gravel"]) == {k: v for k, v in ha.items() if k.startswith("gravel/")}


def test_rerun_replaces_own_output_refuses_foreign(tmp_path):
    make_synthetic(tmp_path, categories=["nut"], **SMALL)
    stale = tmp_path / "nut" / "test" / "good" / "999.png"
    stale.write_bytes(b"stale")
    make_synthetic(tmp_path, categories=["nut"], **SMALL)
    assert not stale.exists()
    (tmp_path / "brick").mkdir()
    (tmp_path / "brick" / "mine.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="brick"):
        make_synthetic(tmp_path, categories=["brick"], **SMALL)
    assert (tmp_path / "brick" / "mine.txt").exists()


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="brick, grass, gravel, nut"):
        make_synthetic(tmp_path, categories=["carpet"])
    with pytest.raises(ValueError, match="missing"):
        render_sample("brick", defect="missing")


def test_masks_binary_nonempty_and_sized(small):
    for name in SYNTHETIC_CATEGORIES:
        for s in check_category(small.root, name).test:
            img = Image.open(s.path)
            if s.mask_path is None:
                continue
            mask = Image.open(s.mask_path)
            arr = np.asarray(mask)
            assert mask.mode == "L" and mask.size == img.size == (64, 64)
            assert set(np.unique(arr)) == {0, 255}, s.mask_path


@pytest.mark.parametrize("category", SYNTHETIC_CATEGORIES)
def test_defects_change_only_masked_pixels_and_clearly(category):
    def dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # per-pixel RGB distance
        return np.linalg.norm(a.astype(float) - b, axis=-1)

    # baseline: how different two normal images of the category are, pixel for pixel
    normal = [render_sample(category, seed=0, index=i)[1] for i in range(9)]
    baseline = np.median([dist(normal[i], normal[i + 1]).mean() for i in range(8)])
    for defect in SYNTHETIC_DEFECTS[category]:
        fractions, diffs = [], []
        for i in range(8):
            clean, img, mask = render_sample(category, seed=0, index=i, defect=defect)
            assert img.shape == clean.shape == (256, 256, 3) and mask.shape == (256, 256)
            assert np.array_equal(img[~mask], clean[~mask])
            diffs.append(dist(img, clean)[mask].mean())
            fractions.append(mask.mean())
        assert min(diffs) > 60, (category, defect, diffs)
        assert np.median(diffs) > 1.3 * baseline, (category, defect, diffs, baseline)
        lo = 0.002 if defect == "scratch" else 0.008  # scratches are thin; the rest cover ~1-7% of the image
        assert lo < np.median(fractions) < 0.1, (category, defect, fractions)
    clean, img, mask = render_sample(category, seed=0, index=0)
    assert np.array_equal(clean, img) and not mask.any()


def test_simple_pixel_detectors_localise_defects(small):
    """Defects are findable: a colour nearest-neighbour detector (textures) or the difference to the mean
    training image (the aligned object) separates defect pixels from normal pixels with pixel AUROC > 0.9."""

    def load(p: Path) -> np.ndarray:
        return uniform_filter(np.asarray(Image.open(p), np.float32), size=(3, 3, 1))

    for name in SYNTHETIC_CATEGORIES:
        files = check_category(small.root, name)
        train = np.stack([load(p) for p in files.train])
        if name in SYNTHETIC_OBJECTS:
            template = train.mean(0)

            def score(x: np.ndarray, template=template) -> np.ndarray:
                return np.abs(x - template).mean(-1)
        else:
            tree = cKDTree(train.reshape(-1, 3))

            def score(x: np.ndarray, tree=tree) -> np.ndarray:
                return tree.query(x.reshape(-1, 3))[0].reshape(x.shape[:2])

        normal = [score(load(s.path)).ravel() for s in files.test if s.label == 0]
        for defect in files.defects:
            samples = [s for s in files.test if s.defect == defect]
            scores = [score(load(s.path)).ravel() for s in samples] + normal
            labels = [(np.asarray(Image.open(s.mask_path)) > 0).ravel() for s in samples]
            labels += [np.zeros_like(n, bool) for n in normal]
            auroc = _auroc(np.concatenate(labels), np.concatenate(scores))
            assert auroc > 0.9, (name, defect, auroc)
