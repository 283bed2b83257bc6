"""Datasets: MVTec AD layout loading/validation, the one-class novelty datasets, the authors' transforms and a
synthetic MVTec-style set. May import rdbench.registry only (never models, the engine or anything above)."""

from rdbench.data.mvtec import (
    CATEGORIES,
    MVTEC_CATEGORIES,
    MVTEC_OBJECTS,
    MVTEC_TEXTURES,
    CategoryFiles,
    DatasetError,
    MVTecTest,
    MVTecTrain,
    TestItem,
    TestSample,
    check_category,
    load_image,
)
from rdbench.data.synthetic import SYNTHETIC_CATEGORIES, SYNTHETIC_DEFECTS, make_synthetic, render_sample
from rdbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD, image_transform, mask_transform

__all__ = [
    "CATEGORIES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MVTEC_CATEGORIES",
    "MVTEC_OBJECTS",
    "MVTEC_TEXTURES",
    "SYNTHETIC_CATEGORIES",
    "SYNTHETIC_DEFECTS",
    "CategoryFiles",
    "DatasetError",
    "MVTecTest",
    "MVTecTrain",
    "TestItem",
    "TestSample",
    "check_category",
    "image_transform",
    "load_image",
    "make_synthetic",
    "mask_transform",
    "render_sample",
]
