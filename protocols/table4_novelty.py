"""Table 4: one-class novelty detection AUROC, one model per normal class, mean over classes.

MNIST, FashionMNIST and CIFAR-10: all 10 classes. Caltech-256: every category with at least 150
images, listed from the data, so the grid needs the data to expand. That filter is rdbench's own reading:
the one-class literature the paper compares with (GPND, OiG, G2D) takes a category's first 150 images as
the normal class and clutter as outliers, but no source fixes which categories a mean runs over.
Backbone resnet18 and the sizes: protocols/novelty.py (NOVELTY_DEFAULTS, IMAGE_SIZE).
"""

from __future__ import annotations

from pathlib import Path

from rdbench.bench.tables import GridOptions, GridRun, PaperTable, paper_numbers, register_table
from rdbench.config import RunConfig
from rdbench.data.novelty import CALTECH_MAX_NORMAL, caltech_default_classes, check_novelty_data
from rdbench.engine.protocol import get_protocol

COLUMNS = {"mnist": "MNIST", "fashionmnist": "FashionMNIST", "cifar10": "CIFAR10", "caltech256": "Caltech-256"}
MEAN_ROW = "RD"


def _classes(dataset: str, opts: GridOptions) -> tuple[str, ...]:
    """Class indices (as strings) of one dataset's grid; Caltech's depend on the data."""
    if dataset == "caltech256":
        try:
            return tuple(str(i) for i in caltech_default_classes(opts.novelty_root))
        except (ValueError, OSError):
            return ()
    return tuple(str(i) for i in range(10))


@register_table
class Table4(PaperTable):
    key = "4"
    title = "Table 4: one-class novelty detection (AUROC %, score = sum of the map)"
    paper_key = "table4_novelty_auroc"
    metrics = (("auroc", "AUROC (sum score)"), ("auroc_max", "AUROC (max score, no paper value)"))

    def categories(self, opts: GridOptions) -> tuple[str, ...]:
        """Accepted by --limit-categories: a class index (every dataset), a dataset name (all its
        classes) or DATASET:CLASS (one run), e.g. fashionmnist:0."""
        names = [c for d in COLUMNS for c in _classes(d, opts)] + list(COLUMNS)
        names += [f"{d}:{c}" for d in COLUMNS for c in _classes(d, opts)]
        return tuple(dict.fromkeys(names))

    @staticmethod
    def _chosen(dataset: str, cls: str, wanted: tuple[str, ...]) -> bool:
        return not wanted or cls in wanted or dataset in wanted or f"{dataset}:{cls}" in wanted

    def missing_data(self, opts: GridOptions) -> list[tuple[str, str]]:
        wanted = not opts.limit_categories or any(c == "caltech256" or c.startswith("caltech256:") or c.isdigit()
                                                  for c in opts.limit_categories)  # a bare index: every dataset's
        if not wanted:
            return []
        try:
            check_novelty_data("caltech256", opts.novelty_root or None)
        except (ValueError, OSError) as exc:
            others = ",".join(d for d in COLUMNS if d != "caltech256")
            return [("caltech256", f"{exc}\nTo leave Caltech-256 out instead: --limit-categories {others}")]
        if not _classes("caltech256", opts):
            return [("caltech256", f"no category of Caltech-256 under {opts.novelty_root} holds at least "
                                   f"{CALTECH_MAX_NORMAL} images, the normal classes of Table 4")]
        return []

    def notes(self, opts: GridOptions) -> list[str]:
        if not _classes("caltech256", opts):
            root = Path(opts.novelty_root or "<novelty-root>") / "256_ObjectCategories"
            return [f"Caltech-256 not found at {root}: its column (every category with >= 150 images) is "
                    "left out of the grid until the data is there"]
        return []

    def grid(self, opts: GridOptions) -> list[GridRun]:
        runs = []
        for dataset, column in COLUMNS.items():
            classes = _classes(dataset, opts)
            chosen = [c for c in classes if self._chosen(dataset, c, opts.limit_categories)]
            for cls in chosen:
                for seed in opts.seed_list():
                    runs.append(GridRun(self.config(opts, dataset, cls, seed), cls, column))
        return runs

    def config(self, opts: GridOptions, dataset: str, cls: str, seed: int) -> RunConfig:
        # GridOptions always carry the Caltech-256 split (the CLI's defaults are the protocol's); the
        # datasets with an official split take no split settings
        extra = {"split_seed": opts.caltech_split_seed, "test_fraction": opts.caltech_test_fraction} \
            if dataset == "caltech256" else {}
        return get_protocol(dataset).config(**opts.run_overrides(), data_root=opts.novelty_root, category=cls,
                                            seed=seed, extra=extra)

    def average_rows(self) -> dict[str, tuple[str, ...]]:
        return {MEAN_ROW: ()}  # every class row of each column

    def paper_value(self, row: str, column: str, metric: str) -> float | None:
        if row != MEAN_ROW or metric != "auroc":
            return None
        table = paper_numbers()[self.paper_key]
        return table["rows"]["RD"][table["datasets"].index(column)]



