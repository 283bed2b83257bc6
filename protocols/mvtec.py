"""MVTec AD (Tables 1, 2): one model per category, trained on train/good, tested on test/*.

Also serves any folder in the same layout, such as the synthetic set of ``rdbench make-synthetic``.
"""

from __future__ import annotations

from torch.utils.data import Dataset, Subset

from rdbench.config import RunConfig
from rdbench.data.mvtec import DatasetError, MVTecTest, MVTecTrain, check_category
from rdbench.engine.protocol import PROTOCOLS, Protocol, register_protocol


@register_protocol
class MVTecProtocol(Protocol):
    name = "mvtec"
    description = "MVTec AD layout: <root>/<category>/{train/good, test/<defect>, ground_truth/<defect>}"

    def check_data(self, config: RunConfig) -> None:
        # deep: decode every image and mask now (seconds) rather than fail after 200 epochs (hours)
        files = check_category(config.data_root, config.category, deep=True)
        labels = {s.label for s in files.test}
        if labels != {0, 1}:
            missing = "normal (test/good)" if 0 not in labels else "anomalous (test/<defect>)"
            raise DatasetError(f"{files.root / config.category / 'test'} has no {missing} images; detection "
                               f"metrics need both. Fix: add them, or choose another category.")

    def data_files(self, config: RunConfig):
        files = check_category(config.data_root, config.category)  # cheap: lists, decodes nothing
        masks = [s.mask_path for s in files.test if s.mask_path is not None]
        return files.root, [*files.train, *(s.path for s in files.test), *masks]

    def datasets(self, config: RunConfig) -> tuple[Dataset, Dataset]:
        train: Dataset = MVTecTrain(config.data_root, config.category, config.image_size)
        if config.max_train_images is not None:
            train = Subset(train, range(min(config.max_train_images, len(train))))
        return train, MVTecTest(config.data_root, config.category, config.image_size)


def mvtec_config(opts, category: str, seed: int, **changes) -> RunConfig:
    """A paper-default MVTec AD run (wide_resnet50_2, 256 px, 200 epochs, batch 16) for a table grid;
    ``changes`` (the table's variations) win over the grid options."""
    given = opts.run_overrides()
    # MVTec AD runs test on every image: a --max-test-images meant for the novelty sets would only change the hash
    given.pop("max_test_images")
    return PROTOCOLS.get("mvtec").config(**{**given, "data_root": opts.data_root, "category": category,
                                            "seed": seed, **changes})
