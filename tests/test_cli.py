"""The command line as a user meets it: exit codes and messages, no tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rdbench.cli.app import app

runner = CliRunner()
OFFICIAL = Path(__file__).parent / "data" / "official_fingerprints.json"


def _run(*args, columns: int | None = None):
    env = {"COLUMNS": str(columns)} if columns else None  # rich wraps help text at the terminal width
    return runner.invoke(app, [str(a) for a in args], env=env)


def test_list():
    res = _run("list")
    assert res.exit_code == 0, res.output
    lines = dict(line.split(":", 1) for line in res.output.splitlines())
    assert lines["protocols"].strip().split(", ") == ["caltech256", "cifar10", "fashionmnist", "mnist", "mvtec"]
    assert lines["tables"].strip() == "1, 2, 3, 4, 5, 6, 7" and lines["losses"].strip() == "flat, pixel"
    assert lines["bottlenecks"].strip() == "pre, pre+oce, pre+oce+mff" and "wide_resnet50_2" in lines["backbones"]


def test_version_names_the_code():
    from rdbench import __version__
    from rdbench.records.provenance import code_fingerprint

    res = _run("--version")
    assert res.exit_code == 0 and res.output.startswith(f"rdbench {__version__} (code {code_fingerprint()[:16]}")


def test_help_lists_every_choice():
    from rdbench.engine.protocol import PROTOCOLS
    from rdbench.models.backbones import BACKBONES

    out = " ".join(_run("run", "--help", columns=400).output.split())  # unwrapped
    for names in (BACKBONES.names(), PROTOCOLS.names(), ["pre", "pre+oce", "pre+oce+mff"], ["flat", "pixel"],
                  ["none", "bf16", "fp16"], ["final", "paper"]):
        assert "[" + "|".join(names) + "]" in out, names
    out = " ".join(_run("reproduce", "--help", columns=400).output.split())
    assert "[local|ray]" in out and "[none|bf16|fp16]" in out


def test_run_end_to_end(tiny_mvtec, tmp_path):
    res = _run("run", "--data-root", tiny_mvtec, "--category", "bottle", "--backbone", "resnet18",
               "--epochs", "1", "--image-size", "64", "--batch-size", "2", "--weights", "none",
               "--seed", "3", "--results", tmp_path, "--no-progress", "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert "RANDOM TEACHER" in res.output
    metrics = json.loads(res.output.splitlines()[1])
    assert set(metrics) == {"image_auroc", "pixel_auroc", "pro_mvtec", "pro_rd4ad", "image_ap", "image_f1_max",
                            "pixel_ap", "pixel_f1_max", "pro_mvtec_full"}
    records = list((tmp_path / "runs").glob("mvtec_bottle_resnet18_*.json"))
    assert len(records) == 1 and str(records[0]) in res.output


@pytest.mark.parametrize("args,message", [
    (["--backbone", "vgg16"], "unknown backbone 'vgg16'; valid backbones: resnet18, resnet34, resnet50"),
    (["--protocol", "cifar"], "unknown protocol 'cifar'; valid protocols: caltech256, cifar10, fashionmnist, mnist"),
    (["--bottleneck", "x"], "valid bottlenecks: pre, pre+oce, pre+oce+mff"),
    (["--layers", "1,x"], "--layers must be comma-separated integers"),
    (["--layers", "4"], "layers must be a non-empty subset of 1, 2, 3"),
    (["--image-size", "100"], "multiple of 32"),
])
def test_bad_options_fail_cleanly(tiny_mvtec, tmp_path, args, message):
    res = _run("run", "--data-root", tiny_mvtec, "--category", "bottle", "--results", tmp_path, *args)
    assert res.exit_code == 2
    assert message in res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "runs").exists()  # nothing trained


def test_missing_data_root_names_path_and_layout(tmp_path):
    res = _run("run", "--data-root", tmp_path / "nowhere", "--category", "carpet", "--weights", "none",
               "--backbone", "resnet18", "--results", tmp_path / "res", "--no-progress")
    assert res.exit_code == 1
    assert str(tmp_path / "nowhere") in res.output and "train" in res.output
    assert "Traceback" not in res.output
    # the failure is recorded too, so a sweep can report it
    (rec,) = (tmp_path / "res" / "runs").glob("*.json")
    assert json.loads(rec.read_text())["status"] == "failed"


def test_missing_imagenet_weights_message(tiny_mvtec, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    res = _run("run", "--data-root", tiny_mvtec, "--category", "bottle", "--backbone", "resnet18",
               "--results", tmp_path / "res", "--no-progress", "--epochs", "1", "--image-size", "64")
    assert res.exit_code == 1
    assert "resnet18-f37072fd.pth" in res.output and str(tmp_path / "th") in res.output


def test_parity_command_matches_official():
    res = runner.invoke(app, ["parity", "--backbone", "resnet18", "--official", str(OFFICIAL)])
    assert res.exit_code == 0, res.stderr
    fp = json.loads(res.stdout)
    assert fp["backbone"] == "resnet18" and fp["ocbe_param_count"] == 12205312
    assert "parity with" in res.stderr and "OK" in res.stderr


def test_parity_bad_official_file(tmp_path):
    (tmp_path / "x.json").write_text("{oops")
    res = _run("parity", "--backbone", "resnet18", "--official", tmp_path / "x.json")
    assert res.exit_code == 2 and "cannot read official fingerprints" in res.output and "Traceback" not in res.output


def test_unwritable_results_folder(tiny_mvtec, tmp_path):
    (tmp_path / "f").write_text("a file, not a folder")
    res = _run("run", "--data-root", tiny_mvtec, "--category", "bottle", "--backbone", "resnet18", "--weights",
               "none", "--results", tmp_path / "f", "--no-progress")
    assert res.exit_code == 2 and "choose a writable --results folder" in res.output


@pytest.mark.parametrize("args,message", [(["--categories", "brick,moon"], "unknown synthetic category 'moon'"),
                                          (["--epochs", "0"], "--epochs must be >= 1")])
def test_demo_bad_options(tmp_path, args, message):
    res = _run("demo", "--out", tmp_path, *args)
    assert res.exit_code == 2 and message in res.output and not (tmp_path / "data").exists()


def test_demo_seed_reaches_every_run(tmp_path, monkeypatch):
    """`--seed` is how a several-seed demo baseline is made (results/baselines/README.md)."""
    from rdbench.cli import demo as demo_mod

    seen = []

    def fake_run_demo(out, settings, progress, device):
        seen.append(settings)
        return []
    monkeypatch.setattr(demo_mod, "run_demo", fake_run_demo)
    monkeypatch.setattr("rdbench.cli.run.render", lambda *a, **k: "report.html")
    _run("demo", "--results", tmp_path, "--seed", "113", "--no-progress")
    assert [s.seed for s in seen] == [113]
    assert demo_mod.DemoSettings().seed == 111  # the default run, which the committed baseline's seed 111 checks


def test_parity_rejects_bad_shape():
    res = _run("parity", "--backbone", "resnet18", "--input-shape", "2,3,100,100")
    assert res.exit_code == 2 and "multiples of 32" in res.output


def test_make_synthetic_rejects_unknown_category(tmp_path):
    res = _run("make-synthetic", "--out", tmp_path, "--categories", "brick,moon")
    assert res.exit_code == 2 and "moon" in res.output and "brick" in res.output


def test_profile_command_json():
    res = runner.invoke(app, ["profile", "--backbone", "resnet18", "--image-size", "64", "--batch-size", "2",
                              "--no-reference", "--no-train", "--no-memory", "--repeats", "2", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["repeats"] == 2 and out["reference"] is None and out["fast_settings"]["amp"] is None
    assert len(out["fast"]["latency_ms"]["samples"]) == 2 and out["fast"]["throughput_ips"]["value"] > 0
    assert out["fast"]["train_throughput_ips"]["value"] is None and out["fast"]["peak_memory_mb"]["value"] is None


def test_profile_bf16_option():
    res = runner.invoke(app, ["profile", "--backbone", "resnet18", "--image-size", "64", "--batch-size", "2",
                              "--no-reference", "--no-memory", "--repeats", "1", "--amp", "bf16"])
    assert res.exit_code == 0, res.output
    assert "amp bf16: max map diff" in res.output and "student under bf16 autocast" in res.output


@pytest.mark.parametrize("args,message", [
    (("--amp", "int8"), "unknown amp 'int8'; valid amps: none, bf16, fp16"),
    (("--amp", "fp16", "--device", "cpu"), "fp16 autocast is for CUDA"),
    (("--repeats", "0"), "--repeats must be >= 1"),
])
def test_profile_rejects_bad_options(args, message):
    res = _run("profile", "--backbone", "resnet18", "--image-size", "64", *args)
    assert res.exit_code == 2 and message in res.output, res.output


def test_profile_rejects_bad_size():
    res = _run("profile", "--backbone", "resnet18", "--image-size", "50")
    assert res.exit_code == 2 and "multiple of 32" in res.output


def test_run_and_reproduce_reject_unknown_amp(tiny_mvtec, tmp_path):
    res = _run("run", "--data-root", tiny_mvtec, "--category", "carpet", "--amp", "fp32", "--results", tmp_path)
    assert res.exit_code == 2 and "unknown amp 'fp32'; valid amps: none, bf16, fp16" in res.output, res.output
    res = _run("reproduce", "--table", "1", "--data-root", tiny_mvtec, "--amp", "fp32", "--dry-run")
    assert res.exit_code == 2 and "valid amps: none, bf16, fp16" in res.output, res.output
    res = _run("reproduce", "--table", "1", "--data-root", tiny_mvtec, "--feature-cache-gb", "-1", "--dry-run")
    assert res.exit_code == 2 and "--feature-cache-gb must be >= 0" in res.output, res.output


def test_fp16_on_this_cpu_fails_before_any_work(tiny_mvtec, tmp_path):
    res = _run("run", "--data-root", tiny_mvtec, "--category", "carpet", "--amp", "fp16", "--device", "cpu",
               "--results", tmp_path)
    assert res.exit_code == 2 and "fp16 autocast is for CUDA" in res.output and not (tmp_path / "runs").exists()
    res = _run("reproduce", "--table", "1", "--data-root", tiny_mvtec, "--amp", "fp16", "--device", "cpu",
               "--dry-run")
    assert res.exit_code == 2 and "fp16 autocast is for CUDA" in res.output


def test_profile_saved_with_provenance_and_shown_in_the_report(tmp_path):
    res = runner.invoke(app, ["profile", "--backbone", "resnet18", "--image-size", "64", "--batch-size", "2",
                              "--no-train", "--no-memory", "--repeats", "1", "--results", str(tmp_path)])
    assert res.exit_code == 0, res.output
    saved = list((tmp_path / "profiles").glob("resnet18_64px_cpu_*.json"))
    assert len(saved) == 1 and f"saved: {saved[0]}" in res.output
    d = json.loads(saved[0].read_text())
    assert d["schema"] == "rdbench.profile/1" and d["saved"] and {"commit", "torch", "device_name"} <= set(
        d["environment"])
    (tmp_path / "profiles" / "zz_broken.json").write_text("{not json")
    res = _run("report", "--results", tmp_path)  # the one default place: <results>/report
    assert res.exit_code == 0, res.output
    assert f"report: {tmp_path / 'report' / 'index.html'}" in res.output
    html = (tmp_path / "report" / "index.html").read_text()
    speed = html.split('id="speed"')[1].split("</section>")[0]
    assert "resnet18 64 px, batch 2" in speed and "latency_ms" in speed and "310 ms per image and 352 MB" in speed
    ratio = d["ratios"]["latency_ms"]["value"]
    assert f"{ratio:.2f}x" in speed  # the fast/reference ratio, as measured
    assert "zz_broken.json" in html.split('id="warnings"')[1]


def test_profile_refuses_an_unwritable_results_folder_before_measuring(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    res = _run("profile", "--backbone", "resnet18", "--image-size", "64", "--results", blocked)
    assert res.exit_code == 2 and "cannot write" in res.output and "latency" not in res.output
