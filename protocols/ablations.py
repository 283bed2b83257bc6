"""Tables 5-7: ablations on MVTec AD, each a set of variants of the paper's model over the 15
categories; the paper reports the mean over categories of image AUROC, pixel AUROC and PRO."""

from __future__ import annotations

from rdbench.bench.tables import MVTEC_ALL, GridOptions, GridRun, PaperTable, limit, paper_numbers, register_table
from rdbench.registry import unknown_choice

from .mvtec import mvtec_config

MEAN_ROW = "mean"
# record metric -> row name in paper_tables.json (PRO: the authors' per-image definition)
PAPER_ROWS = {"image_auroc": "image_auroc", "pixel_auroc": "pixel_auroc", "pro_rd4ad": "pro"}


class AblationTable(PaperTable):
    variants: dict[str, dict] = {}  # column -> RunConfig changes
    metrics = (("image_auroc", "image AUROC"), ("pixel_auroc", "pixel AUROC"), ("pro_rd4ad", "PRO (rd4ad)"))

    def categories(self, opts: GridOptions) -> tuple[str, ...]:
        return MVTEC_ALL

    def grid(self, opts: GridOptions) -> list[GridRun]:
        return [GridRun(mvtec_config(opts, cat, seed, **changes), cat, column)
                for cat in limit(MVTEC_ALL, opts) for column, changes in self.variants.items()
                for seed in opts.seed_list()]

    def average_rows(self) -> dict[str, tuple[str, ...]]:
        return {MEAN_ROW: MVTEC_ALL}

    def paper_value(self, row: str, column: str, metric: str) -> float | None:
        if row != MEAN_ROW or metric not in PAPER_ROWS:
            return None
        table = paper_numbers()[self.paper_key]
        return table["rows"][PAPER_ROWS[metric]][table["columns"].index(column)]


@register_table
class Table5(AblationTable):
    key = "5"
    title = "Table 5: bottleneck ablation on MVTec AD (mean over 15 categories, %)"
    paper_key = "table5_ablation_bottleneck"
    variants = {"Pre": {"bottleneck": "pre"}, "Pre+OCE": {"bottleneck": "pre+oce"},
                "Pre+OCE+MFF": {"bottleneck": "pre+oce+mff"}}


@register_table
class Table6(AblationTable):
    key = "6"
    title = "Table 6: teacher backbones on MVTec AD (mean over 15 categories, %)"
    paper_key = "table6_backbones"
    variants = {"resnet18": {"backbone": "resnet18"}, "resnet50": {"backbone": "resnet50"},
                "wide_resnet50_2": {"backbone": "wide_resnet50_2"}}


@register_table
class Table7(AblationTable):
    """The paper labels Table 7's columns "Score Map M^k": which layers' maps are summed into the anomaly map.
    By default (``table7_reading="score-map"``) every column comes from the one model per category that
    Table 1 trains (all three layers in the loss), scored with the maps of each subset of its layers
    (``metrics_by_layers``): no training beyond Table 1's. ``"loss-and-map"`` trains one model per column
    with those layers in both the loss and the map (60 more trainings), rdbench's earlier reading; the paper
    does not say which it did."""

    key = "7"
    title = "Table 7: layers in the score map M^k, MVTec AD (mean over 15 categories, %)"
    paper_key = "table7_score_layers"
    variants = {"M1": {"layers": (1,)}, "M2": {"layers": (2,)}, "M3": {"layers": (3,)},
                "M2,3": {"layers": (2, 3)}, "M1,2,3": {"layers": (1, 2, 3)}}
    CAPTIONS = {
        "score-map": "Table 7: layers in the score map M^k (one model per category trained on layers 1-3, as in "
                     "Table 1; each column scores its maps with those layers only), MVTec AD (mean over 15 "
                     "categories, %)",
        "loss-and-map": "Table 7: layers in the loss and the score map (one model per column, trained and scored "
                        "on those layers), MVTec AD (mean over 15 categories, %)",
    }

    def _reading(self, opts: GridOptions) -> str:
        if opts.table7_reading not in self.CAPTIONS:
            raise ValueError(unknown_choice("Table 7 reading", opts.table7_reading, tuple(self.CAPTIONS)))
        return opts.table7_reading

    def caption(self, opts: GridOptions) -> str:
        return self.CAPTIONS[self._reading(opts)]

    def grid(self, opts: GridOptions) -> list[GridRun]:
        if self._reading(opts) == "loss-and-map":
            return super().grid(opts)
        return [GridRun(mvtec_config(opts, cat, seed), cat, column, score_layers=changes["layers"])
                for cat in limit(MVTEC_ALL, opts) for column, changes in self.variants.items()
                for seed in opts.seed_list()]

    def notes(self, opts: GridOptions) -> list[str]:
        if self._reading(opts) == "loss-and-map":
            return []
        return ["score-map reading: the columns come from Table 1's runs (256 px); a record written before "
                "rdbench recorded metrics_by_layers leaves its cells empty (--rerun stale trains it again)"]
