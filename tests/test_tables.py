"""Paper tables: grids, stored paper numbers, record -> cell mapping, text rendering."""

from __future__ import annotations

import pytest

from rdbench.bench.tables import (
    MVTEC_ALL,
    GridOptions,
    all_tables,
    cells_frame,
    format_table,
    get_table,
)
from rdbench.records.schema import RunRecord

OPTS = GridOptions(data_root="/data/mvtec", novelty_root="/nowhere")


def _grid(key, opts=OPTS):
    return get_table(key).grid(opts)


def test_table_registry():
    assert [t.key for t in all_tables()] == ["1", "2", "3", "4", "5", "6", "7"]
    with pytest.raises(ValueError, match="valid tables: 1, 2, 3, 4, 5, 6, 7"):
        get_table("8")


def test_table1_and_2_grid_is_the_papers():
    for key in ("1", "2"):
        grid = _grid(key)
        assert len(grid) == 30
        assert {(g.config.category, g.config.image_size) for g in grid} == {(c, s) for c in MVTEC_ALL
                                                                            for s in (256, 128)}
        for g in grid:
            c = g.config
            assert (c.backbone, c.bottleneck, c.layers, c.epochs, c.batch_size, c.lr, c.loss, c.weights) == (
                "wide_resnet50_2", "pre+oce+mff", (1, 2, 3), 200, 16, 0.005, "flat", "imagenet")
            assert g.column == ("RD" if c.image_size == 256 else "RD@128") and g.row == c.category
    assert {g.config.hash() for g in _grid("1")} == {g.config.hash() for g in _grid("2")}  # shared runs


def test_ablation_grids():
    t3 = _grid("3")
    assert len(t3) == 15 and {g.config.image_size for g in t3} == {256}
    assert {g.config.hash() for g in t3} <= {g.config.hash() for g in _grid("1")}
    t5 = _grid("5")
    assert len(t5) == 45 and {g.config.bottleneck for g in t5} == {"pre", "pre+oce", "pre+oce+mff"}
    t6 = _grid("6")
    assert len(t6) == 45 and {g.config.backbone for g in t6} == {"resnet18", "resnet50", "wide_resnet50_2"}
    t7 = _grid("7", GridOptions(data_root="/data/mvtec", table7_reading="loss-and-map"))
    assert len(t7) == 75 and {g.config.layers for g in t7} == {(1,), (2,), (3,), (2, 3), (1, 2, 3)}
    assert {g.column for g in t7} == {"M1", "M2", "M3", "M2,3", "M1,2,3"} and {g.score_layers for g in t7} == {None}


def test_table7_reads_the_score_map_of_table1_runs_by_default():
    t7 = _grid("7")
    rd = {g.config.hash(): g.config for g in _grid("1") if g.column == "RD"}
    assert len(t7) == 75 and {g.config.hash() for g in t7} == set(rd)  # the 15 Table 1 runs, nothing else
    assert {(g.column, g.score_layers) for g in t7} == {("M1", (1,)), ("M2", (2,)), ("M3", (3,)),
                                                        ("M2,3", (2, 3)), ("M1,2,3", (1, 2, 3))}
    table = get_table("7")
    assert "score map" in table.caption(OPTS) and "trained on layers 1-3" in table.caption(OPTS)
    assert "loss and the score map" in table.caption(GridOptions(table7_reading="loss-and-map"))
    with pytest.raises(ValueError, match="valid Table 7 readings: score-map, loss-and-map"):
        table.grid(GridOptions(table7_reading="both"))
    # one record per category feeds all five columns, each from its own layer subset
    records = []
    for i, g in enumerate(g for g in t7 if g.column == "M1"):
        rec = RunRecord.new(g.config)
        rec.status, rec.metrics = "ok", {"image_auroc": 0.5, "pixel_auroc": 0.5, "pro_rd4ad": 0.5}
        rec.metrics_by_layers = {k: {"image_auroc": v + i / 1000, "pixel_auroc": v, "pro_rd4ad": v}
                                 for k, v in {"1": 0.9, "2": 0.8, "3": 0.7, "1,2": 0.1, "1,3": 0.2, "2,3": 0.6,
                                              "1,2,3": 0.5}.items()}
        records.append(rec)
    cells = {(c.row, c.column, c.metric): c for c in table.cells(t7, records)}
    assert cells[("carpet", "M2,3", "pixel_auroc")].values == [pytest.approx(60.0)]
    assert cells[("mean", "M1", "image_auroc")].mean == pytest.approx(90.0 + 100 * 7 / 1000)  # mean of i/1000, i<15
    assert cells[("mean", "M1,2,3", "pro_rd4ad")].mean == pytest.approx(50.0)
    assert table.cells(t7, records, source="best")[0].mean is None  # subsets are scored at the last epoch only
    old = RunRecord.new(t7[0].config)
    old.status, old.metrics = "ok", {"image_auroc": 0.5}  # written before metrics_by_layers: empty, not wrong
    assert all(c.mean is None for c in table.cells(t7, [old]) if c.row == t7[0].row)


def test_table4_grid_and_novelty_settings():
    grid = _grid("4")
    assert len(grid) == 30  # Caltech left out without its data (a note says so)
    assert {g.config.protocol for g in grid} == {"mnist", "fashionmnist", "cifar10"}
    # the authors' released novelty code: resnet18 at their helper's 32 px
    assert all(g.config.image_size == 32 and g.config.backbone == "resnet18" for g in grid)
    assert get_table("4").notes(OPTS)
    one = _grid("4", GridOptions(novelty_root="/x", limit_categories=("fashionmnist:3", "mnist")))
    assert sorted((g.config.protocol, g.config.category) for g in one) == [("fashionmnist", "3")] + [
        ("mnist", str(i)) for i in range(10)]


def test_seeds_and_overrides():
    grid = _grid("1", GridOptions(seeds=3, epochs=2, limit_categories=("grid",), backbone="resnet18"))
    assert sorted(g.config.seed for g in grid) == [111, 111, 112, 112, 113, 113]
    assert {(g.config.epochs, g.config.backbone) for g in grid} == {(2, "resnet18")}
    with pytest.raises(ValueError, match="unknown categories"):
        _grid("1", GridOptions(limit_categories=("moon",)))


# Values read off the paper's own tables by hand, independent of rdbench/paper_tables.json.
PAPER_SPOT = [("1", "carpet", "RD", "image_auroc", 98.9), ("1", "total_average", "RD", "image_auroc", 98.5),
              ("1", "total_average", "RD@128", "image_auroc", 96.5), ("1", "toothbrush", "RD@128", "image_auroc", 90.3),
              ("2", "total_average", "RD", "pixel_auroc", 97.8), ("2", "total_average", "RD", "pro_rd4ad", 93.9),
              ("2", "tile", "RD@128", "pro_rd4ad", 84.8), ("2", "carpet", "RD", "pro_mvtec", None),
              ("3", "RD (WResNet50)", "RD", "inference_time_s", 0.31), ("3", "RD (WResNet50)", "RD", "memory_mb", 352),
              ("4", "RD", "MNIST", "auroc", 99.3), ("4", "RD", "FashionMNIST", "auroc", 95.0),
              ("4", "RD", "CIFAR10", "auroc", 86.5), ("4", "RD", "Caltech-256", "auroc", 99.9),
              ("5", "mean", "Pre", "image_auroc", 96.0), ("5", "mean", "Pre+OCE", "pro_rd4ad", 92.4),
              ("6", "mean", "resnet18", "pixel_auroc", 97.1), ("7", "mean", "M1", "image_auroc", 90.1),
              ("7", "mean", "M2,3", "pro_rd4ad", 93.2)]


@pytest.mark.parametrize("key,row,column,metric,value", PAPER_SPOT)
def test_paper_values(key, row, column, metric, value):
    assert get_table(key).paper_value(row, column, metric) == value


def _rec(config, status="ok", **metrics) -> RunRecord:
    rec = RunRecord.new(config)
    rec.status, rec.metrics, rec.teacher_weights = status, metrics, {"kind": "imagenet"}
    return rec


def test_cells_from_records():
    table = get_table("1")
    opts = GridOptions(seeds=2, limit_categories=("carpet", "grid", "bottle"))
    grid = table.grid(opts)
    by = {(g.row, g.column, g.config.seed): g.config for g in grid}
    records = [_rec(by[("carpet", "RD", 111)], image_auroc=0.98), _rec(by[("carpet", "RD", 112)], image_auroc=0.96),
               _rec(by[("bottle", "RD", 111)], image_auroc=1.0),
               _rec(by[("grid", "RD", 111)], status="failed", image_auroc=0.5),  # never enters
               _rec(by[("grid", "RD", 112)].replace(epochs=3), image_auroc=0.1)]  # another config: ignored
    records[2].teacher_weights = {"kind": "random"}
    cells = {(c.row, c.column): c for c in table.cells(grid, records)}
    carpet = cells[("carpet", "RD")]
    assert carpet.mean == pytest.approx(97.0) and carpet.std == pytest.approx(1.41421356, rel=1e-6)
    assert carpet.diff == pytest.approx(97.0 - 98.9) and carpet.n == 2
    assert cells[("grid", "RD")].mean is None and cells[("grid", "RD")].paper == 100.0
    assert cells[("bottle", "RD")].random_teacher
    tex = cells[("textures_average", "RD")]
    assert tex.mean == pytest.approx(97.0) and tex.count == 1  # grid has no run: average of what is there
    tot = cells[("total_average", "RD")]
    assert tot.mean == pytest.approx(98.5) and tot.count == 2 and tot.random_teacher
    assert cells[("total_average", "RD@128")].mean is None and cells[("total_average", "RD@128")].count == 0
    text = format_table(table, list(cells.values()))
    assert "97.0\u00b11.4" in text and "RANDOM teacher" in text and "-1.9" in text
    grid_line = next(line for line in text.splitlines() if line.startswith("grid "))
    assert "0.0" not in grid_line.split()[:2]  # a missing cell is '-', never zero


def test_table3_cells_are_accuracy_only():
    """Time and memory are other quantities on other hardware than the paper's: no cell, no difference."""
    table = get_table("3")
    grid = table.grid(GridOptions(limit_categories=("carpet",)))
    rec = _rec(grid[0].config, image_auroc=0.9, pixel_auroc=0.8, pro_rd4ad=0.7)
    rec.timings = {"eval_images_per_s": 4.0, "eval_peak_memory_mb": 300.0}
    cells = {(c.row, c.metric): c for c in table.cells(grid, [rec])}
    assert {m for _, m in cells} == {"image_auroc", "pixel_auroc", "pro_rd4ad"}
    assert cells[("RD (WResNet50)", "image_auroc")].mean == pytest.approx(90.0)
    assert cells[("RD (WResNet50)", "pro_rd4ad")].diff == pytest.approx(70.0 - 93.9)
    assert "Intel i7" in table.note and "rdbench profile" in table.note


def test_best_epoch_cells_are_separate_and_labelled():
    from rdbench.bench.reproduce import print_tables

    opts = GridOptions(limit_categories=("carpet",), eval_protocol="paper")
    table = get_table("1")
    grid = table.grid(opts)
    rec = _rec(grid[0].config, image_auroc=0.90)
    rec.best_epoch_metrics = {"optimistic": True, "image_auroc": {"value": 0.95, "epoch": 40}}
    rec.best_checkpoint = {"optimistic": True, "epoch": 60, "metrics": {"image_auroc": 0.93, "pixel_auroc": 0.99}}
    final = {(c.row, c.column): c for c in table.cells(grid, [rec])}
    best = {(c.row, c.column): c for c in table.cells(grid, [rec], source="best")}
    one = {(c.row, c.column): c for c in table.cells(grid, [rec], source="checkpoint")}
    assert final[("carpet", "RD")].mean == pytest.approx(90.0) and best[("carpet", "RD")].mean == pytest.approx(95.0)
    assert one[("carpet", "RD")].mean == pytest.approx(93.0)
    with pytest.raises(ValueError, match="valid cell sources: final, best, checkpoint"):
        table.cells(grid, [rec], source="last")
    out: list[str] = []
    print_tables([table], opts, [rec], echo=out.append)
    assert len(out) == 6 and "OPTIMISTIC" not in out[1]
    assert "each metric at its own best epoch" in out[3] and "one checkpoint per run" in out[5]


def test_cli_spells_the_table7_readings_as_the_tables_do():
    from rdbench.bench.tables import TABLE7_READINGS
    from rdbench.cli.sweep import TABLE7_READINGS as CLI_READINGS

    assert CLI_READINGS == TABLE7_READINGS == tuple(get_table("7").CAPTIONS)


def test_a_cell_of_several_seeds_gets_the_seed_and_image_interval_of_its_mean():
    """From the records' sidecars (``summaries``), with the bootstrap of rdbench compare; never for a value that is
    not the record's own final metric (a layer subset, a best epoch) or without every seed's sidecar."""
    import numpy as np

    from rdbench.bench.intervals import mean_interval
    from rdbench.metrics import image_auroc, summarize

    table = get_table("1")
    grid = table.grid(GridOptions(seeds=3, limit_categories=("carpet",)))
    y = np.r_[np.zeros(20, int), np.ones(20, int)]
    recs, sums = [], {}
    for g in [g for g in grid if g.column == "RD"]:
        scores = np.random.default_rng(g.config.seed).normal(0, 1, y.size) + 1.5 * y
        rec = _rec(g.config, image_auroc=image_auroc(y, scores))
        rec.metrics_ci = {"image_auroc": [0.8, 0.9]}
        recs.append(rec)
        sums[id(rec)] = summarize(y, scores)
    cell = {(c.row, c.column): c for c in table.cells(grid, recs, summaries=lambda r: sums.get(id(r)))}[
        ("carpet", "RD")]
    low, high, over = mean_interval(list(sums.values()), "image_auroc")
    assert cell.ci == pytest.approx((100 * low, 100 * high)) and cell.ci_seeds and over == "images, seeds"
    assert cell.paper_in_ci is (cell.ci[0] <= 98.9 <= cell.ci[1])
    bare = {(c.row, c.column): c for c in table.cells(grid, recs)}[("carpet", "RD")]
    assert bare.ci is None and not bare.ci_seeds and bare.paper_in_ci is None  # no sidecars: no interval
    partial = {(c.row, c.column): c for c in table.cells(grid, recs, summaries=lambda r: sums.get(id(r)) if r is not
                                                        recs[0] else None)}[("carpet", "RD")]
    assert partial.ci is None
    one = {(c.row, c.column): c for c in table.cells(grid, recs[:1])}[("carpet", "RD")]
    assert one.ci == pytest.approx((80.0, 90.0)) and not one.ci_seeds and one.paper_in_ci is None  # images only
    frame = cells_frame([cell, one])
    assert list(frame.ci_over) == ["seeds and test images", "test images only"]
