from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from torch.utils.data import DataLoader
from torchvision import transforms as T

from rdbench.data import (
    CATEGORIES,
    MVTEC_CATEGORIES,
    MVTEC_OBJECTS,
    MVTEC_TEXTURES,
    DatasetError,
    MVTecTest,
    MVTecTrain,
    TestItem,
    check_category,
    image_transform,
    mask_transform,
)
from rdbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD, denormalize

# what tests/conftest.py::tiny_mvtec writes (not imported: conftest modules are not meant to be imported)
TINY_DEFECTS = {"carpet": "hole", "bottle": "broken_large"}
TINY_SIZE = 32
TINY_GRAYSCALE = "carpet/train/good/001.png"
TINY_RGBA = "bottle/test/broken_large/000.png"


def _assert_layout_message(err: pytest.ExceptionInfo, *paths: Path | str) -> None:
    msg = str(err.value)
    for p in paths:
        assert str(p) in msg, f"{p} not named in:\n{msg}"
    assert "Expected layout" in msg and "train/good" in msg and "ground_truth/<defect>/<name>_mask.png" in msg
    assert "Fix:" in msg


# ---------------------------------------------------------------- categories


def test_category_constants_and_registry():
    assert len(MVTEC_CATEGORIES) == 15 and set(MVTEC_TEXTURES) | set(MVTEC_OBJECTS) == set(MVTEC_CATEGORIES)
    assert CATEGORIES.names() == sorted(MVTEC_CATEGORIES)
    assert CATEGORIES.get("carpet") == "texture" and CATEGORIES.get("metal_nut") == "object"
    with pytest.raises(ValueError, match="zipper"):
        CATEGORIES.get("zippr")


# ---------------------------------------------------------------- transforms


def test_image_transform_matches_authors_pipeline():
    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8))
    out = image_transform(24)(img)
    ref = np.asarray(img.resize((24, 24), Image.BILINEAR), np.float32) / 255.0
    ref = (ref - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    assert out.shape == (3, 24, 24) and out.dtype == torch.float32
    torch.testing.assert_close(out, torch.from_numpy(ref).permute(2, 0, 1), atol=1e-5, rtol=0)


def test_mask_transform_binarises_at_half():
    arr = np.zeros((8, 8), np.uint8)
    arr[:, 0], arr[:, 1], arr[:, 2] = 255, 128, 127  # 128/255 > 0.5 -> 1, 127/255 < 0.5 -> 0
    out = mask_transform(8)(Image.fromarray(arr))
    assert out.shape == (1, 8, 8)
    assert out[0, :, 0].eq(1).all() and out[0, :, 1].eq(1).all() and out[0, :, 2:].eq(0).all()
    # resizing produces fractional edges; they must come back binary
    big = np.zeros((64, 64), np.uint8)
    big[10:37, 21:50] = 255
    small = mask_transform(16)(Image.fromarray(big))
    assert set(small.unique().tolist()) <= {0.0, 1.0} and 0 < small.sum() < 16 * 16


def _authors_mask(img: Image.Image, size: int) -> torch.Tensor:
    """The authors' gt_transform on the mask as stored (Image.open, no convert), then their > 0.5."""
    t = T.Compose([T.Resize((size, size)), T.CenterCrop(size), T.ToTensor()])(img)
    return (t > 0.5).to(torch.float32)


def _line(mode: str, width: int) -> Image.Image:
    im = Image.new(mode, (256, 256), 0)
    ImageDraw.Draw(im).line([(20, 30), (220, 200)], fill=1 if mode == "1" else 255, width=width)
    return im


@pytest.mark.parametrize("width", [1, 2, 3])
def test_masks_in_modes_1_and_L_are_resized_as_the_authors_pipeline_does(width):
    one = _line("1", width)
    got = mask_transform(128)(one)
    assert torch.equal(got, _authors_mask(one, 128))  # PIL resizes mode '1' nearest
    lum = _line("L", width)
    assert torch.equal(mask_transform(128)(lum), _authors_mask(lum, 128))  # bilinear, then > 0.5
    if width == 1:  # a thin defect survives the nearest resize and vanishes in the bilinear one
        assert got.sum() == 50 and mask_transform(128)(one.convert("L")).sum() == 0


def test_palette_masks_are_resized_nearest_and_read_by_colour():
    rng = np.random.default_rng(3)
    idx = (rng.random((96, 96)) < 0.1).astype(np.uint8)
    bw = Image.fromarray(idx * 255, mode="P")
    bw.putpalette([0, 0, 0] + [0, 0, 0] * 254 + [255, 255, 255])  # black at 0, white at 255
    assert torch.equal(mask_transform(40)(bw), _authors_mask(bw, 40))  # both readings agree here
    red = Image.fromarray(idx, mode="P")
    red.putpalette([0, 0, 0, 255, 0, 0])  # the usual palette mask: defect colour at index 1
    got = mask_transform(40)(red)
    assert torch.equal(got, mask_transform(40)(bw)) and got.sum() > 0
    assert _authors_mask(red, 40).sum() == 0  # their ToTensor reads index 1 as 1/255: no defect at all


def test_rgb_and_16_bit_masks_read_like_the_8_bit_mask():
    arr = np.zeros((64, 64), np.uint8)
    arr[10:37, 21:50] = 255
    arr[40, 5:60] = 255  # a 1 px line
    ref = mask_transform(24)(Image.fromarray(arr))
    assert 0 < ref.sum() < 24 * 24
    red = np.zeros((64, 64, 3), np.uint8)
    red[..., 0] = arr
    rgba = np.dstack([arr, arr, arr, np.full_like(arr, 255)])
    wide = [Image.fromarray(arr.astype(np.uint16) * 257), Image.fromarray((arr > 0).astype(np.uint16)),
            Image.fromarray((arr > 0).astype(np.int32)), Image.fromarray(arr.astype(np.float32) / 255)]
    assert [w.mode for w in wide] == ["I;16", "I;16", "I", "F"]
    for m in [Image.fromarray(np.stack([arr] * 3, -1)), Image.fromarray(red), Image.fromarray(rgba), *wide]:
        assert torch.equal(mask_transform(24)(m), ref), m.mode
    assert mask_transform(8)(Image.fromarray(np.zeros((8, 8), np.uint16))).sum() == 0  # empty stays empty


def test_full_resolution_masks_are_read_as_the_resized_ones_are():
    from rdbench.data.transforms import full_resolution_mask

    for mode in ("1", "L"):
        im = _line(mode, 2)
        assert np.array_equal(full_resolution_mask(im), mask_transform(256)(im)[0].numpy() > 0), mode
    soft = Image.fromarray(np.array([[0, 127, 128, 255]], np.uint8))  # 'L': > 0.5 after / 255, as the resized
    assert full_resolution_mask(soft).tolist() == [[False, False, True, True]]
    red = Image.fromarray(np.array([[0, 1]], np.uint8), mode="P")
    red.putpalette([0, 0, 0, 255, 0, 0])
    assert full_resolution_mask(red).tolist() == [[False, True]]


def test_test_set_gives_masks_at_their_own_size(tiny_mvtec):
    ds = MVTecTest(tiny_mvtec, "carpet", image_size=16)
    full = ds.full_masks()
    assert [m.shape for m in full] == [(TINY_SIZE, TINY_SIZE)] * 4 and all(m.dtype == bool for m in full)
    assert [bool(m.any()) for m in full] == [bool(x) for x in ds.labels]  # normal images: all False


# ---------------------------------------------------------------- datasets


def test_train_dataset(tiny_mvtec):
    ds = MVTecTrain(tiny_mvtec, "carpet", image_size=16)
    assert len(ds) == 4
    assert [p.name for p in ds.paths] == ["000.png", "001.png", "002.png", "003.png"]
    x = ds[0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32


def test_grayscale_and_rgba_become_rgb(tiny_mvtec):
    gray = MVTecTrain(tiny_mvtec, "carpet", image_size=TINY_SIZE)[1]  # carpet/train/good/001.png is 'L'
    assert Image.open(tiny_mvtec / TINY_GRAYSCALE).mode == "L"
    rgb = denormalize(gray)
    assert torch.allclose(rgb[0], rgb[1], atol=1e-6) and torch.allclose(rgb[1], rgb[2], atol=1e-6)

    stored = Image.open(tiny_mvtec / TINY_RGBA)
    assert stored.mode == "RGBA"
    item = MVTecTest(tiny_mvtec, "bottle", image_size=TINY_SIZE)[0]
    assert item.path == TINY_RGBA and item.image.shape == (3, TINY_SIZE, TINY_SIZE)
    expected = image_transform(TINY_SIZE)(stored.convert("RGB"))
    torch.testing.assert_close(item.image, expected)


def test_test_dataset_order_labels_masks(tiny_mvtec):
    ds = MVTecTest(tiny_mvtec, "bottle", image_size=TINY_SIZE)
    d = TINY_DEFECTS["bottle"]
    items = [ds[i] for i in range(len(ds))]
    assert [it.path for it in items] == [
        f"bottle/test/{d}/000.png",
        f"bottle/test/{d}/001.png",
        "bottle/test/good/000.png",
        "bottle/test/good/001.png",
    ]
    assert [it.label for it in items] == ds.labels == [1, 1, 0, 0]
    assert [it.defect for it in items] == [d, d, "good", "good"]
    for it in items:
        assert isinstance(it, TestItem) and isinstance(it.label, int)
        assert it.image.shape == (3, TINY_SIZE, TINY_SIZE)
        assert it.mask.shape == (1, TINY_SIZE, TINY_SIZE) and it.mask.dtype == torch.float32
        assert set(it.mask.unique().tolist()) <= {0.0, 1.0}
    assert items[0].mask.sum() == 64 and items[1].mask.sum() == 64  # the 8x8 squares
    assert items[2].mask.sum() == 0 and items[3].mask.sum() == 0
    image, mask, label, defect, path = items[0]  # unpacks like the authors' tuples
    assert label == 1 and defect == d


def test_test_dataset_resized_masks_stay_binary(tiny_mvtec):
    item = MVTecTest(tiny_mvtec, "carpet", image_size=20)[3]  # hole/001: 8x8 square, off the new grid
    assert item.path == "carpet/test/hole/001.png"
    assert set(item.mask.unique().tolist()) == {0.0, 1.0}
    assert 15 < item.mask.sum() < 40  # about 64 * (20/32)^2 = 25


def test_test_items_collate(tiny_mvtec):
    batch = next(iter(DataLoader(MVTecTest(tiny_mvtec, "carpet", image_size=16), batch_size=4)))
    assert isinstance(batch, TestItem)
    assert batch.image.shape == (4, 3, 16, 16) and batch.mask.shape == (4, 1, 16, 16)
    # sorted by folder name: carpet's 'good' comes before 'hole'
    assert batch.label.tolist() == [0, 0, 1, 1] and list(batch.defect) == ["good", "good", "hole", "hole"]


def test_extensions_case_insensitive_and_junk_ignored(tiny_mvtec):
    good = tiny_mvtec / "carpet" / "test" / "good"
    arr = np.full((TINY_SIZE, TINY_SIZE, 3), 90, np.uint8)
    Image.fromarray(arr).save(good / "002.PNG")
    Image.fromarray(arr).save(good / "003.bmp", format="BMP")
    Image.fromarray(arr).save(good / "004.TIF", format="TIFF")
    (good / "notes.txt").write_text("not an image")
    (good / "._000.png").write_bytes(b"macOS resource fork")
    (good / "subdir").mkdir()
    names = [s.path.name for s in check_category(tiny_mvtec, "carpet").test if s.defect == "good"]
    assert names == ["000.png", "001.png", "002.PNG", "003.bmp", "004.TIF"]
    ds = MVTecTest(tiny_mvtec, "carpet", image_size=8)
    assert all(ds[i].image.shape == (3, 8, 8) for i in range(len(ds)))


def test_check_category_summary_and_same_name_masks(tiny_mvtec):
    gt = tiny_mvtec / "carpet" / "ground_truth" / "hole"
    (gt / "001_mask.png").rename(gt / "001.png")  # converted datasets often name masks like the image
    files = check_category(tiny_mvtec, "carpet", deep=True)
    assert files.defects == ["hole"] and len(files.train) == 4 and len(files.test) == 4
    assert [s.mask_path.name for s in files.test if s.mask_path] == ["000_mask.png", "001.png"]


def test_custom_category_names_allowed(tiny_mvtec):
    (tiny_mvtec / "carpet").rename(tiny_mvtec / "my_widget")
    assert len(MVTecTrain(tiny_mvtec, "my_widget", 8)) == 4


# ---------------------------------------------------------------- errors


def test_error_is_value_error():
    assert issubclass(DatasetError, ValueError)


def test_error_missing_root(tmp_path):
    root = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match="root does not exist") as e:
        MVTecTrain(root, "carpet")
    _assert_layout_message(e, root)


def test_error_missing_category_lists_present(tiny_mvtec):
    with pytest.raises(DatasetError, match="category folder not found") as e:
        MVTecTest(tiny_mvtec, "grid")
    _assert_layout_message(e, tiny_mvtec / "grid")
    assert "bottle, carpet" in str(e.value)


def test_error_root_is_a_category_folder(tiny_mvtec):
    with pytest.raises(DatasetError) as e:
        check_category(tiny_mvtec / "carpet", "carpet")
    assert "looks like a category folder" in str(e.value) and str(tiny_mvtec) in str(e.value)


def test_error_missing_and_empty_train(tiny_mvtec):
    train = tiny_mvtec / "carpet" / "train" / "good"
    for p in train.iterdir():
        p.unlink()
    (train / "readme.txt").write_text("no images here")
    with pytest.raises(DatasetError, match="no training images") as e:
        MVTecTrain(tiny_mvtec, "carpet")
    _assert_layout_message(e, train)
    (train / "readme.txt").unlink()
    train.rmdir()
    with pytest.raises(DatasetError, match="training folder not found") as e:
        MVTecTrain(tiny_mvtec, "carpet")
    _assert_layout_message(e, train)


def test_error_missing_test_folder(tiny_mvtec):
    import shutil

    shutil.rmtree(tiny_mvtec / "bottle" / "test")
    with pytest.raises(DatasetError, match="test folder not found") as e:
        MVTecTest(tiny_mvtec, "bottle")
    _assert_layout_message(e, tiny_mvtec / "bottle" / "test")


def test_error_defect_without_mask(tiny_mvtec):
    gt = tiny_mvtec / "carpet" / "ground_truth" / "hole"
    (gt / "001_mask.png").unlink()
    with pytest.raises(DatasetError, match="without a mask") as e:
        MVTecTest(tiny_mvtec, "carpet")
    _assert_layout_message(e, tiny_mvtec / "carpet" / "test" / "hole" / "001.png", gt / "001_mask.png")
    import shutil

    shutil.rmtree(tiny_mvtec / "carpet" / "ground_truth")  # whole ground_truth folder gone
    with pytest.raises(DatasetError, match="2 anomalous test image") as e:
        MVTecTest(tiny_mvtec, "carpet")
    _assert_layout_message(e, gt / "000_mask.png")


def test_error_mask_size_mismatch(tiny_mvtec):
    mask = tiny_mvtec / "bottle" / "ground_truth" / "broken_large" / "001_mask.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(mask)
    ds = MVTecTest(tiny_mvtec, "bottle", image_size=8)  # cheap checks pass
    with pytest.raises(DatasetError, match="differs from image size") as e:
        ds[1]
    assert str(mask) in str(e.value) and str(tiny_mvtec / "bottle/test/broken_large/001.png") in str(e.value)
    with pytest.raises(DatasetError, match="differs from image size"):
        check_category(tiny_mvtec, "bottle", deep=True)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_error_corrupt_image_named_at_load(tiny_mvtec, damage):
    path = tiny_mvtec / "carpet" / "train" / "good" / "002.png"
    data = path.read_bytes()
    path.write_bytes(
        {"garbage": b"\x00not a png" * 20, "truncated": data[: len(data) // 2], "empty": b""}[damage]
    )
    ds = MVTecTrain(tiny_mvtec, "carpet", image_size=8)  # construction only does cheap checks
    ds[0]
    with pytest.raises(DatasetError, match="cannot read image file") as e:
        ds[2]
    assert str(path) in str(e.value) and "Fix:" in str(e.value)
    with pytest.raises(DatasetError, match="cannot read image file"):
        check_category(tiny_mvtec, "carpet", deep=True)


def test_mask_without_image_is_reported(tiny_mvtec):
    (tiny_mvtec / "carpet" / "test" / "hole" / "001.png").unlink()
    with pytest.raises(DatasetError) as err:
        check_category(tiny_mvtec, "carpet")
    msg = str(err.value)
    assert "1 mask(s) without a test image" in msg and "001_mask.png" in msg and "Fix:" in msg
