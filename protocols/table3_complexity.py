"""Table 3: complexity of RD (wide_resnet50_2, 256 px): inference time per image, memory, and the
three accuracy numbers, averaged over the 15 categories of the Table 1 runs.

Timings here are what the runs measured during evaluation (batched, per image = 1 / throughput) and
peak CUDA memory of evaluation; ``rdbench profile`` measures batch-1 latency and CPU memory properly.
The paper measured on an Intel i7 CPU.
"""

from __future__ import annotations

from rdbench.bench.tables import MVTEC_ALL, GridOptions, GridRun, PaperTable, limit, paper_numbers, register_table
from rdbench.records.schema import RunRecord

from .mvtec import mvtec_config

ROW = "RD (WResNet50)"


@register_table
class Table3(PaperTable):
    key = "3"
    title = "Table 3: complexity (inference time s/image, memory MB) and accuracy (%), RD wide_resnet50_2"
    paper_key = "table3_complexity"
    metrics = (("inference_time_s", "time s/image (batched eval)"), ("memory_mb", "peak eval memory MB"),
               ("image_auroc", "image AUROC"), ("pixel_auroc", "pixel AUROC"), ("pro_rd4ad", "PRO (rd4ad)"))
    note = "time and memory as measured by each run's evaluation; device in the run records"
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

    def value(self, record: RunRecord, metric: str) -> float | None:
        timings = record.timings
        if metric == "inference_time_s":
            rate = timings.get("eval_images_per_s")
            return 1.0 / rate if rate else None
        if metric == "memory_mb":
            return timings.get("eval_peak_memory_mb")
        return super().value(record, metric)
