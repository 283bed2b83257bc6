"""The HTML report: tables against the paper, figures, runs, provenance, from hand-made records."""

from __future__ import annotations

import io
import re
import sys
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rdbench.bench.reproduce import save_sweep
from rdbench.bench.tables import GridOptions, get_table
from rdbench.engine.gallery import _png
from rdbench.records.schema import RunRecord
from rdbench.records.store import write_json, write_record
from rdbench.report import render_report
from rdbench.report.paper_tables import INTERVAL_LEGEND

# Table 1-3 sweep: two seeds, three categories, 2 epochs (hashes differ from the paper's 200-epoch runs)
OPTS = GridOptions(data_root="/data/mvtec", seeds=2, epochs=2, limit_categories=("carpet", "grid", "bottle"))
# Table 5 sweep with the authors' evaluation loop: best-epoch (optimistic) tables too
PAPER_OPTS = GridOptions(data_root="/data/mvtec", epochs=20, eval_protocol="paper", limit_categories=("carpet",))
ENV = {"python": "3.11.7", "torch": "2.3.0", "torchvision": "0.18.0", "cuda": None, "commit": "abc123def4567890",
       "dirty": False, "device": "cpu", "device_name": "x86_64", "rdbench": "0.1.0"}


def _fig(value, unit):
    return {"value": value, "unit": unit, "description": f"what {unit} measures", "device": "x86_64"}


PROFILE = {  # the shape of rdbench.perf.profile.save_profile's file, with made-up numbers
    "schema": "rdbench.profile/1", "backbone": "wide_resnet50_2", "image_size": 256, "batch_size": 8,
    "weights": "none", "repeats": 3, "saved": "2026-11-29T00:00:00+00:00", "environment": ENV,
    "device": {"type": "cpu", "name": "x86_64", "torch": "2.3.0", "threads": 2},
    "fast_settings": {"channels_last": True, "fold_bn": True, "amp": None, "feature_cache": {"active": True}},
    "fast": {"latency_ms": _fig(297.3, "ms/image"), "peak_memory_mb": _fig(1461.8, "MB"),
             "train_throughput_ips": {**_fig(None, "images/s"), "note": "train=False"}},
    "reference": {"latency_ms": _fig(500.0, "ms/image"), "peak_memory_mb": _fig(1508.6, "MB")},
    "ratios": {"latency_ms": {"value": 0.5946}, "peak_memory_mb": {"value": 0.969}},
    "agreement": {"max_abs_map_diff": 7.4e-7}, "amp_effect": None}


def _gallery(rng: np.random.Generator) -> list[dict]:
    img = rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)
    heat = np.tile(np.linspace(0, 255, 128, dtype=np.uint8), (128, 1))
    mask = np.zeros((128, 128), np.uint8)
    mask[40:80, 40:80] = 255
    return [{"index": 3, "path": "carpet/test/hole/000.png", "label": 1, "score": 0.91, "map_range": [0.12, 0.91],
             "image_png": _png(img), "map_png": _png(heat), "mask_png": _png(mask)},
            {"index": 0, "path": "carpet/test/good/000.png", "label": 0, "score": 0.33, "map_range": [0.1, 0.33],
             "image_png": _png(img), "map_png": _png(heat)}]


def record(config, status: str = "ok", teacher: str = "imagenet", **metrics) -> RunRecord:
    """A run record as run.execute_run makes it, with made-up numbers (fractions, like real records)."""
    rng = np.random.default_rng(config.seed)
    labels = [0] * 10 + [1] * 20
    rec = RunRecord.new(config)
    rec.status, rec.environment = status, dict(ENV)
    rec.teacher_weights = {"kind": teacher, "name": "IMAGENET1K_V1" if teacher == "imagenet" else "none",
                           "sha256": "f37072fd" * 8 if teacher == "imagenet" else None}
    rec.loss_curve = [1.0 / (e + 1) for e in range(config.epochs)]
    if status != "ok":
        rec.error = "RuntimeError: CUDA out of memory -- hint: lower --batch-size"
        return rec
    rec.metrics = {"image_auroc": 0.95, "pixel_auroc": 0.96, "pro_rd4ad": 0.9, "pro_mvtec": 0.88, **metrics}
    rec.per_image = {"label": labels, "score": list(rng.normal(0, 1, 10)) + list(rng.normal(2, 1, 20))}
    rec.timings = {"train_s": 12.0, "eval_s": 2.0, "eval_images_per_s": 4.0, "eval_peak_memory_mb": 400.0}
    if config.eval_protocol == "paper":
        curve = [{"epoch": e, "image_auroc": 0.9 + e / 400, "pixel_auroc": 0.95} for e in (10, 20)]
        curve[0]["image_auroc"] = 0.99  # the best epoch is an early one: optimistic differs from final
        curve[1]["pixel_auroc"] = 1.0  # ... and the best checkpoint (mean of both AUROCs) is another one
        rec.metric_curve = curve
        rec.best_epoch_metrics = {"optimistic": True, "image_auroc": {"value": 0.99, "epoch": 10},
                                  "pixel_auroc": {"value": 1.0, "epoch": 20}}
        rec.best_checkpoint = {"optimistic": True, "epoch": 20, "criterion": "mean of image_auroc and pixel_auroc",
                               "metrics": {k: v for k, v in curve[1].items() if k != "epoch"}}
    return rec


def make_results(root: Path) -> Path:
    """Two seeds for carpet/RD, one seed elsewhere, a random teacher (bottle/RD), a failed run (grid/RD),
    a bf16 run of carpet/RD, a corrupt file, a gallery (carpet/RD seed 111), a Table 5 sweep with eval
    protocol "paper"."""
    by = {(g.row, g.column, g.config.seed): g.config for g in get_table("1").grid(OPTS)}
    recs = [record(by[("carpet", "RD", 111)], image_auroc=0.97), record(by[("carpet", "RD", 112)], image_auroc=0.99),
            record(by[("carpet", "RD@128", 111)], image_auroc=0.985),
            record(by[("bottle", "RD", 111)], teacher="random", image_auroc=0.80),
            record(by[("grid", "RD", 111)], status="failed")]
    recs[0].gallery = _gallery(np.random.default_rng(0))
    t5 = {(g.column, g.config.seed): g.config for g in get_table("5").grid(PAPER_OPTS)}
    recs.append(record(t5[("Pre+OCE+MFF", 111)], image_auroc=0.975))
    # a bf16 run of carpet/RD: another config hash, so it must not enter the float32 cell (98.0 +- 1.4)
    recs.append(record(by[("carpet", "RD", 111)].replace(amp="bf16"), image_auroc=0.5))
    for i, rec in enumerate(recs):
        write_record(rec, root / "runs" / f"run{i:02d}_{rec.config_hash}.json")
    (root / "runs" / "broken_record.json").write_text('{"config": {"protocol": "mvt')  # a crash mid-write
    write_json(PROFILE, root / "profiles" / "wide_resnet50_2_256px_cpu_20261129T000000.json")
    save_sweep(root, [get_table(k) for k in ("1", "2", "3")], OPTS)
    save_sweep(root, [get_table("5")], PAPER_OPTS)
    return root


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, str, str]:
    root = make_results(tmp_path_factory.mktemp("results"))
    out = tmp_path_factory.mktemp("report")
    capture = pytest.MonkeyPatch()  # module-scoped fixture: capsys is not available
    err = io.StringIO()
    capture.setattr(sys, "stderr", err)
    try:
        page = render_report(root, out, title="Test report")
    finally:
        capture.undo()
    return page, page.read_text(encoding="utf-8"), err.getvalue()


def _text(html: str) -> str:
    """Visible text, whitespace collapsed: what a reader sees."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _row(html: str, table_id: str, row: str) -> str:
    """Text of one row of the first metric table of a paper table section."""
    section = html.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]
    line = re.search(rf'<th scope="row">{re.escape(row)}</th>(.*?)</tr>', section, re.S)
    assert line, f"no row {row} in {table_id}"
    return _text(line.group(1)).strip()


def test_page_is_self_contained(report):
    page, html, _ = report
    assert page.name == "index.html" and page.exists()
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', html)
    assert "<script" not in html and "<link" not in html and "@import" not in html and "url(" not in html
    assert "default-src 'none'" in html  # the browser itself refuses anything external


def test_tables_against_the_paper(report):
    _, html, _ = report
    for t in ("1", "2", "3", "5"):
        assert escape(get_table(t).title) in html
    assert "OPTIMISTIC: each metric at its own best epoch on the test set" in html  # Table 5, eval protocol "paper"
    assert "OPTIMISTIC: one checkpoint per run, the epoch with the best mean of image and pixel AUROC" in html
    # carpet / RD: seeds 97 and 99 -> 98.0 +- 1.4, paper 98.9, diff -0.9, in red
    assert _row(html, "table1", "carpet").startswith("98.0 \u00b1 1.4 98.9 -0.9 98.5 99.2 -0.7")
    assert "rgba(224,49,49" in html.split('id="table1"')[1].split("</tr>", 3)[2]
    grid = _row(html, "table1", "grid")  # failed run: missing, never 0
    assert grid == "\u2014 100.0 \u2014 95.7"
    assert "RT" in _row(html, "table1", "bottle") and "RT" in _row(html, "table1", "objects average")
    # objects average from bottle only (1 of 2 object rows of the grid), textures from carpet alone
    assert _row(html, "table1", "objects average") == "80.0 (1/1) RT 98.0 -18.0 \u2014 (0/1) 95.4"
    assert _row(html, "table1", "textures average") == "98.0 (1/2) 99.5 -1.5 98.5 (1/2) 98.6 -0.1"
    assert "1 failed" in html.split('id="table1"')[1].split("</article>")[0]
    # Table 5: final epoch 97.5 vs optimistic 99.0 (best epoch), paper 98.5
    assert _row(html, "table5", "mean") == "\u2014 (0/1) 96.0 \u2014 (0/1) 97.9 97.5 (1/1) 98.5 -1.0"
    assert _row(html, "table5_best", "mean").endswith("99.0 (1/1) 98.5 +0.5")
    assert _row(html, "table5_checkpoint", "mean").endswith("95.0 (1/1) 98.5 -3.5")  # one epoch: 20


def test_table3_sets_profile_figures_beside_the_papers(report):
    _, html, _ = report
    t3 = _text(html.split('id="table3"')[1].split("</article>")[0])
    # like with like: the saved profile's batch-1 latency (297.3 ms) and batch-1 peak memory beside the paper's
    # 0.31 s and 352 MB on an Intel i7, both machines named; the runs' batched throughput as itself
    assert "inference time per image, batch 1 (s) 0.297 x86_64 (cpu), torch 2.3.0, 2 threads" in t3
    assert "0.31 Intel i7" in t3
    assert "peak memory of batch-1 inference (MB) 1462" in t3 and "352 Intel i7" in t3
    assert "throughput of the runs&#39; batched evaluation (images/s) 4.00" in t3 and "not reported" in t3
    hw = html.split('id="table3"')[1].split("</article>")[0].split('class="hw"')[1].split("</table>")[0]
    assert 'class="diff"' not in hw and "<th>diff</th>" not in hw  # no difference between different quantities
    assert "inference_time_s" not in html.split('id="table3"')[1].split('class="hw"')[0]  # not a cell


def test_warnings_runs_and_provenance(report):
    _, html, err = report
    assert "broken_record.json" in err and "broken_record.json" in html  # stderr and the page
    text = _text(html)
    assert "RANDOM TEACHER" in text.upper() and "RANDOM" in html.split('id="runs"')[1]
    assert "CUDA out of memory" in html.split('id="runs"')[1]
    assert html.split('id="runs"')[1].count('class="status">failed') == 1
    assert "1 run(s) used mixed precision" in text
    prov = _text(html.split('id="provenance"')[1])
    for fact in ("abc123def456", "python 3.11.7", "torch 2.3.0", "x86_64 (cpu)", "imagenet: IMAGENET1K_V1",
                 "random: none", "111, 112", "pro_rd4ad", "Precision runs float32 6 bf16 1"):
        assert fact in prov, fact


def test_speed_section_shows_saved_profiles(report):
    _, html, _ = report
    speed = _text(html.split('id="speed"')[1].split("</section>")[0])
    for fact in ("wide_resnet50_2 256 px, batch 8", "latency_ms 297.3 500.0 0.59x ms/image",
                 "peak_memory_mb 1,461.8 1,508.6 0.97x MB", "train=False", "commit abc123def456",
                 "7.40e-07", "310 ms per image and 352 MB"):
        assert fact in speed, fact
    assert 'href="#speed"' in html.split('id="table3"')[1]  # Table 3 points to it


def test_figures_embedded(report):
    _, html, _ = report
    # histograms + loss curves + metric curves + gallery (2 inputs, 1 mask, 2 overlays)
    assert html.count("data:image/png;base64,") >= 3 + 5
    gallery = html.split('id="galleries"')[1].split("</section>")[0]
    assert gallery.count("<img") == 5 and "no mask" in gallery and "0.91" in gallery and "0.12" in gallery


def test_csv_and_markdown(report):
    page, _, _ = report
    tables = page.parent / "tables"
    views = ("1", "2", "3", "5", "5_best", "5_checkpoint")
    assert {p.name for p in tables.iterdir()} == {f"table{k}.{e}" for k in views for e in ("csv", "md")}
    df = pd.read_csv(tables / "table1.csv")
    carpet = df[(df.row == "carpet") & (df.column == "RD")].iloc[0]
    assert carpet.reproduced == pytest.approx(98.0) and carpet.paper == 98.9 and carpet.n == 2
    assert carpet["diff"] == pytest.approx(-0.9)
    assert pd.isna(df[(df.row == "grid") & (df.column == "RD")].iloc[0].reproduced)
    md = (tables / "table1.md").read_text()
    assert "| carpet | 98.0 \u00b1 1.4 | 98.9 | -0.9 |" in md and "| grid | \u2014 | 100.0 |  |" in md
    assert "RANDOM teacher" in md


def test_without_sweeps_default_grid_and_partial(tmp_path):
    """No manifest: tables whose paper-default grid has a run; here one run of one category."""
    config = next(g.config for g in get_table("1").grid(GridOptions()) if g.row == "tile" and g.column == "RD")
    write_record(record(config, image_auroc=0.99), tmp_path / "res" / "runs" / "one.json")
    html = render_report(tmp_path / "res", tmp_path / "out").read_text()
    assert _row(html, "table1", "tile") == "99.0 99.3 -0.3 \u2014 99.4"
    assert "not shown: 4." in html  # the paper's main run also feeds the ablations' full-model columns
    assert _row(html, "table5", "tile") == "\u2014 n/a \u2014 n/a 99.0 n/a"
    assert sorted(p.name for p in (tmp_path / "out" / "tables").iterdir()) == [
        f"table{k}.{e}" for k in ("1", "2", "3", "5", "6", "7") for e in ("csv", "md")]


def test_empty_results_dir(tmp_path):
    html = render_report(tmp_path / "nothing", tmp_path / "out").read_text()
    assert "There are no runs" in html and "<table" not in html.split('id="tables"')[1].split("</section>")[0]


def test_odd_records_cost_a_figure_not_the_report(tmp_path):
    """Readable JSON with missing or malformed parts: the page still renders, and says what it left out."""
    configs = [g.config for g in get_table("1").grid(GridOptions(limit_categories=("wood",)))]
    bare = RunRecord.from_dict({"config": configs[0].to_dict(), "config_hash": configs[0].hash(),
                                "status": "ok"})  # no metrics etc.
    odd = record(configs[1], image_auroc=float("nan"))
    odd.gallery = [{"image_png": "not base64!", "map_png": "", "label": 1}]
    odd.metric_curve = ["not a dict"]
    odd.per_image = {"label": [0, 1], "score": [None, 1.0]}
    for i, rec in enumerate([bare, odd]):
        write_record(rec, tmp_path / "res" / "runs" / f"r{i}.json")
    write_json({"config": "mvtec", "status": "ok"}, tmp_path / "res" / "runs" / "r2.json")  # not a record
    html = render_report(tmp_path / "res", tmp_path / "out").read_text()
    assert "metric curves not drawn" in html and "without config/config_hash: " in html and "r2.json" in html
    assert _row(html, "table1", "wood") == "\u2014 99.2 \u2014 98.8"  # NaN and no metrics: missing, not 0
    assert 'id="galleries"' in html and "No run recorded a gallery" in html


def test_sweeps_of_the_same_runs_make_one_table(tmp_path):
    import dataclasses

    root = make_results(tmp_path / "results")
    # the same grid again from another machine with another cache budget: the same runs, so the same table
    save_sweep(root, [get_table("1")], dataclasses.replace(OPTS, device="cuda", feature_cache_gb=2.0))
    save_sweep(root, [get_table("1")], dataclasses.replace(OPTS, amp="bf16"))  # other runs: a table of its own
    html = render_report(root, tmp_path / "out").read_text(encoding="utf-8")
    assert 'id="table1"' in html and 'id="table1_2"' in html and 'id="table1_3"' not in html
    assert "amp bf16" in _text(html.split('id="table1_2"')[1])[:3000]


def test_cells_of_one_run_show_their_images_only_interval_without_a_mark(tmp_path):
    by = {g.row: g.config for g in get_table("1").grid(GridOptions(limit_categories=("tile", "wood")))
          if g.column == "RD"}
    inside, outside = record(by["tile"], image_auroc=0.99), record(by["wood"], image_auroc=0.95)  # papers 99.3, 99.2
    inside.metrics_ci = {"image_auroc": [0.980, 0.997]}
    outside.metrics_ci = {"image_auroc": [0.93, 0.97]}
    for i, rec in enumerate([inside, outside]):
        write_record(rec, tmp_path / "res" / "runs" / f"r{i}.json")
    html = render_report(tmp_path / "res", tmp_path / "out").read_text()
    assert _row(html, "table1", "tile").startswith("99.0 [98.0, 99.7] test images only 99.3 -0.3")
    assert _row(html, "table1", "wood").startswith("95.0 [93.0, 97.0] test images only 99.2 -4.2")
    section = html.split('id="table1"', 1)[1].split("</table>", 1)[0]
    assert 'class="consistent"' not in section and 'class="inconsistent"' not in section  # one seed: no verdict
    assert "[" not in _row(html, "table1", "textures average")  # an average: no interval
    md = (tmp_path / "out" / "tables" / "table1.md").read_text()
    assert "| tile | 99.0 [98.0, 99.7] (test images only) | 99.3 | -0.3 |" in md
    assert "| wood | 95.0 [93.0, 97.0] (test images only) | 99.2 |" in md and INTERVAL_LEGEND in md
    csv = pd.read_csv(tmp_path / "out" / "tables" / "table1.csv")
    tile = csv[(csv.row == "tile") & (csv.column == "RD")].iloc[0]
    assert tile.ci_low == pytest.approx(98.0) and tile.ci_over == "test images only" and pd.isna(tile.paper_in_ci)


def _scored(config, shift: float):
    """A record whose image AUROC comes from a sidecar: 10 normal and 20 anomalous image scores, the anomalous
    ones shifted by ``shift`` (its noise from the seed)."""
    from rdbench.metrics import image_auroc, summarize

    rec = record(config)
    y = np.array(rec.per_image["label"])
    scores = np.random.default_rng(config.seed).normal(0, 1, y.size) + shift * y
    rec.per_image["score"] = [float(v) for v in scores]
    rec.scores = summarize(y, scores)
    rec.metrics["image_auroc"] = image_auroc(y, scores)
    return rec


def test_cells_of_several_seeds_get_a_seed_aware_interval_and_a_check_or_a_cross(tmp_path):
    """Paper: tile 99.3, wood 99.2. Tile's three seeds score near it (the paper inside), wood's far below."""
    by = {(g.row, g.config.seed): g.config for g in get_table("1").grid(GridOptions(
        seeds=3, limit_categories=("tile", "wood"))) if g.column == "RD"}
    for seed in (111, 112, 113):
        for row, shift in (("tile", 4.0), ("wood", 1.0)):
            rec = _scored(by[(row, seed)], shift)
            write_record(rec, tmp_path / "res" / "runs" / f"{row}{seed}.json")
    html = render_report(tmp_path / "res", tmp_path / "out").read_text()
    tile, wood = _row(html, "table1", "tile"), _row(html, "table1", "wood")
    assert re.match(r"\S+ \u00b1 \S+ \[\S+, \S+\] \u2713 99.3", tile) and "test images only" not in tile, tile
    assert re.match(r"\S+ \u00b1 \S+ \[\S+, \S+\] \u2717 99.2", wood), wood
    section = html.split('id="table1"', 1)[1].split("</table>", 1)[0]
    assert section.count('class="consistent"') == 1 and section.count('class="inconsistent"') == 1
    assert "\u2717</abbr>: outside it" in html  # the legend
    md = (tmp_path / "out" / "tables" / "table1.md").read_text()
    assert re.search(r"\| tile \| [^|]+\] \u2713 \| 99.3", md) and re.search(r"\| wood \| [^|]+\] \u2717 \|", md)
    csv = pd.read_csv(tmp_path / "out" / "tables" / "table1.csv")
    got = {r.row: r for r in csv[csv.column == "RD"].itertuples()}
    assert got["tile"].ci_over == "seeds and test images" and got["tile"].paper_in_ci == True  # noqa: E712
    assert got["wood"].paper_in_ci == False and got["wood"].ci_high < 99.2  # noqa: E712
