"""MVTec AD (Tables 1, 2): one model per category, trained on train/good, tested on test/*.

Also serves any folder in the same layout, such as the synthetic set of ``rdbench make-synthetic``.
"""

from __future__ import annotations

from torch.utils.data import Dataset, Subset

from rdbench.config import RunConfig
from rdbench.data.mvtec import MVTecTest, MVTecTrain, check_category
from rdbench.protocol import Protocol, register_protocol


@register_protocol
class MVTecProtocol(Protocol):
    name = "mvtec"
    description = "MVTec AD layout: <root>/<category>/{train/good, test/<defect>, ground_truth/<defect>}"

    def check_data(self, config: RunConfig) -> None:
        check_category(config.data_root, config.category)

    def datasets(self, config: RunConfig) -> tuple[Dataset, Dataset]:
        train: Dataset = MVTecTrain(config.data_root, config.category, config.image_size)
        if config.max_train_images is not None:
            train = Subset(train, range(min(config.max_train_images, len(train))))
        return train, MVTecTest(config.data_root, config.category, config.image_size)
