"""Table 1: MVTec AD image-level AUROC, wide_resnet50_2 at 256 px ("RD") and at 128 px ("RD@128")."""

from __future__ import annotations

from rdbench.bench.tables import (
    MVTEC_ALL,
    MVTEC_OBJECTS,
    MVTEC_TEXTURES,
    GridOptions,
    GridRun,
    PaperTable,
    limit,
    paper_numbers,
    register_table,
)

from .mvtec import mvtec_config

COLUMNS = {"RD": 256, "RD@128": 128}
AVERAGES = {"textures_average": MVTEC_TEXTURES, "objects_average": MVTEC_OBJECTS, "total_average": MVTEC_ALL}


class MVTecTable(PaperTable):
    """Shared by Tables 1 and 2: the same 30 runs (15 categories x 2 sizes) feed both."""

    def categories(self, opts: GridOptions) -> tuple[str, ...]:
        return MVTEC_ALL

    def grid(self, opts: GridOptions) -> list[GridRun]:
        return [GridRun(mvtec_config(opts, cat, seed, image_size=size), cat, column)
                for cat in limit(MVTEC_ALL, opts) for column, size in COLUMNS.items() for seed in opts.seed_list()]

    def average_rows(self) -> dict[str, tuple[str, ...]]:
        return AVERAGES


@register_table
class Table1(MVTecTable):
    key = "1"
    title = "Table 1: anomaly detection on MVTec AD (image AUROC, %)"
    paper_key = "table1_image_auroc"
    metrics = (("image_auroc", "image AUROC"),)

    def paper_value(self, row: str, column: str, metric: str) -> float | None:
        return paper_numbers()[self.paper_key]["rows"].get(row, {}).get(column)
