"""One-class novelty detection data (paper Table 4): MNIST, FashionMNIST, CIFAR-10 and Caltech-256.

Protocol (the authors' ``dataset.load_data`` in hq-deng/RD4AD for MNIST / FashionMNIST / CIFAR-10): one class
is normal; the training set is the train split filtered to that class; the test set is the FULL test split
with label 0 for the normal class and 1 for every other class. Nothing is ever downloaded; every dataset is
read from a local root (FashionMNIST: Debian's folder when no root is given).

Layout of the package: ``base`` holds the ``NoveltySource`` interface and the ``NOVELTY_DATASETS`` registry;
one module per dataset (``mnist``, ``fashionmnist``, ``cifar10``, ``caltech256``) holds its registered source
(layout, expected tree, reader, classes, preprocessing); ``datasets`` holds the torch Datasets. Importing this
package registers the four datasets.

Preprocessing (``NoveltySource.transform``; ``image_size`` S, default 32 as in the authors' helper):

* ``mnist``, ``fashionmnist``: ``Resize((S, S))`` -> ``ToTensor()``, NO normalisation (values in [0, 1]).
  Deviation from the authors: their tensors are 1 x S x S, but the ImageNet ResNet teacher needs 3 channels,
  so rdbench repeats the grey channel to 3 x S x S (the three channels are identical).
* ``cifar10``: ``Resize((S, S))`` -> ``ToTensor()`` -> ImageNet normalisation, mean (0.485, 0.456, 0.406),
  std (0.229, 0.224, 0.225).
* ``caltech256`` (never released by the authors): RGB -> the same as CIFAR-10 (ImageNet normalisation, S x S).

``NoveltyTest(max_images=N)`` keeps a stratified, seeded subset (same normal/anomalous proportion, at least
one of each label) for CI-sized runs; ``NoveltyTrain(max_images=N)`` keeps the first N training images.
"""

from rdbench.data.novelty.base import NOVELTY_DATASETS, Images, NoveltySource, SplitSource, get_source, register
from rdbench.data.novelty.caltech256 import (
    CALTECH_MAX_NORMAL,
    Caltech256Source,
    CaltechSplit,
    caltech_default_classes,
    caltech_split,
)
from rdbench.data.novelty.cifar10 import CIFAR10Source
from rdbench.data.novelty.datasets import (
    NoveltyItem,
    NoveltyTest,
    NoveltyTrain,
    check_novelty_data,
    expected_tree,
    novelty_classes,
    novelty_data_files,
    read_split,
    resolve_root,
    stratified_subset,
)
from rdbench.data.novelty.fashionmnist import DEBIAN_FASHION_MNIST, FashionMNISTSource
from rdbench.data.novelty.mnist import MNISTSource, read_idx_file

__all__ = [
    "CALTECH_MAX_NORMAL",
    "DEBIAN_FASHION_MNIST",
    "NOVELTY_DATASETS",
    "CIFAR10Source",
    "Caltech256Source",
    "CaltechSplit",
    "FashionMNISTSource",
    "Images",
    "MNISTSource",
    "NoveltyItem",
    "NoveltySource",
    "NoveltyTest",
    "NoveltyTrain",
    "SplitSource",
    "caltech_default_classes",
    "caltech_split",
    "check_novelty_data",
    "expected_tree",
    "get_source",
    "novelty_classes",
    "novelty_data_files",
    "read_idx_file",
    "read_split",
    "register",
    "resolve_root",
    "stratified_subset",
]
