"""Table 3: complexity of RD (wide_resnet50_2, 256 px): inference time per image and memory, with the three
accuracy numbers averaged over the 15 categories of the Table 1 runs.

Only the accuracy numbers are cells with a difference to the paper: they are the same quantity. The paper's
time (0.31 s per image) and memory (352 MB) were measured on an Intel i7 CPU, one image at a time. Their like
is a batch-1 latency and the peak memory of batch-1 inference measured by ``rdbench profile`` (saved with
``--results``), which the report sets beside the paper's figures with both machines named and no difference
column: other hardware, so the digits do not compare, only the orders of magnitude. The runs' own batched
evaluation throughput is shown as what it is.
"""

from __future__ import annotations

from rdbench.bench.tables import MVTEC_ALL, GridOptions, GridRun, PaperTable, limit, paper_numbers, register_table

from .mvtec import mvtec_config

ROW = "RD (WResNet50)"


COMPLEXITY = ("inference_time_s", "memory_mb")  # the paper's columns that come from `rdbench profile`
PROFILE_HINT = "rdbench profile --backbone wide_resnet50_2 --image-size 256 --weights imagenet --results <results>"


@register_table
class Table3(PaperTable):
    key = "3"
    title = "Table 3: complexity and accuracy (%) of RD wide_resnet50_2 at 256 px"
    paper_key = "table3_complexity"
    metrics = (("image_auroc", "image AUROC"), ("pixel_auroc", "pixel AUROC"), ("pro_rd4ad", "PRO (rd4ad)"))
    note = ("time and memory are not cells: the paper's are one image at a time on an Intel i7; ours come from "
            f"a saved `{PROFILE_HINT}` and stand beside the paper's with both machines named, without a difference")
    profile_hint = PROFILE_HINT
    paper_columns = {"inference_time_s": "inference_time_s", "memory_mb": "memory_mb", "image_auroc": "image_auroc",
                     "pixel_auroc": "pixel_auroc", "pro_rd4ad": "pro"}

    def categories(self, opts: GridOptions) -> tuple[str, ...]:
        return MVTEC_ALL

    def grid(self, opts: GridOptions) -> list[GridRun]:
        return [GridRun(mvtec_config(opts, cat, seed, image_size=256), cat, "RD")
                for cat in limit(MVTEC_ALL, opts) for seed in opts.seed_list()]

    def average_rows(self) -> dict[str, tuple[str, ...]]:
        return {ROW: MVTEC_ALL}

    def paper_value(self, row: str, column: str, metric: str) -> float | None:
        if row != ROW:
            return None
        table = paper_numbers()[self.paper_key]
        return table["rows"][ROW][table["columns"].index(self.paper_columns[metric])]
