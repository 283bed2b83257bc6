"""Table 2: MVTec AD localisation, pixel AUROC and PRO, from the same runs as Table 1.

The paper's PRO comes from the authors' code, i.e. the per-image 200-threshold definition
(``pro_rd4ad``); the table shows that one against the paper and MVTec's official whole-set PRO
(``pro_mvtec``) beside it, with no paper value (the two differ by ~2 points).
"""

from __future__ import annotations

from rdbench.bench.tables import paper_numbers, register_table

from .table1_detection import MVTecTable

PAPER_METRIC = {"pixel_auroc": "pixel_auroc", "pro_rd4ad": "pro"}


@register_table
class Table2(MVTecTable):
    key = "2"
    title = "Table 2: anomaly localisation on MVTec AD (pixel AUROC / PRO, %)"
    paper_key = "table2_pixel_auroc_pro"
    metrics = (("pixel_auroc", "pixel AUROC"), ("pro_rd4ad", "PRO (rd4ad: authors' per-image)"),
               ("pro_mvtec", "PRO (mvtec: official, no paper value)"))
    note = "PRO compared with the paper: the authors' per-image definition (pro_rd4ad)."

    def paper_value(self, row: str, column: str, metric: str) -> float | None:
        if metric not in PAPER_METRIC:
            return None
        cell = paper_numbers()[self.paper_key]["rows"].get(row, {}).get(column)
        return None if cell is None else cell.get(PAPER_METRIC[metric])
