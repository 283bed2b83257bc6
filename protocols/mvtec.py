"""MVTec AD (Tables 1, 2): one model per category, trained on train/good, tested on test/*.

Also serves any folder in the same layout, such as the synthetic set of ``rdbench make-synthetic``.
"""

from __future__ import annotations

from torch.utils.data import Dataset, Subset

from rdbench.config import RunConfig
from rdbench.data.mvtec import DatasetError, MVTecTest, MVTecTrain, check_category
from rdbench.engine.protocol import Protocol, register_protocol


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

    def datasets(self, config: RunConfig) -> tuple[Dataset, Dataset]:
        train: Dataset = MVTecTrain(config.data_root, config.category, config.image_size)
        if config.max_train_images is not None:
            train = Subset(train, range(min(config.max_train_images, len(train))))
        return train, MVTecTest(config.data_root, config.category, config.image_size)


def mvtec_config(opts, category: str, seed: int, **changes) -> RunConfig:
    """A paper-default MVTec AD run (wide_resnet50_2, 256 px, 200 epochs, batch 16) for a table grid."""
    base = dict(protocol="mvtec", data_root=opts.data_root, category=category, backbone="wide_resnet50_2",
                weights=opts.weights, seed=seed, device=opts.device, eval_protocol=opts.eval_protocol,
                max_train_images=opts.max_train_images, amp=opts.amp, feature_cache_gb=opts.feature_cache_gb)
    if opts.epochs is not None:
        base["epochs"] = opts.epochs
    if opts.batch_size is not None:
        base["batch_size"] = opts.batch_size
    if opts.image_size is not None:
        base["image_size"] = opts.image_size
    if opts.backbone is not None:
        base["backbone"] = opts.backbone
    base.update(changes)
    return RunConfig(**base)
