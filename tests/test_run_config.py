"""One config builder (``Protocol.config``): `rdbench run` builds the very config a paper table's grid builds for
the same experiment, so a run made either way has one hash; the protocol's defaults (novelty 32 px, Caltech-256's
split in ``extra``) come from the protocol, not from MVTec AD's."""

from __future__ import annotations

import pytest
from test_novelty_data import write_caltech
from typer.testing import CliRunner

from rdbench.bench.tables import GridOptions, all_tables, get_table
from rdbench.cli.app import app
from rdbench.config import RunConfig
from rdbench.engine.protocol import PROTOCOLS, get_protocol
from rdbench.records.schema import RunRecord

runner = CliRunner()

# protocol -> (table, --limit-categories) of one experiment of that protocol in a paper table
TABLE_RUN = {"mvtec": ("1", "carpet"), "mnist": ("4", "mnist:3"), "fashionmnist": ("4", "fashionmnist:3"),
             "cifar10": ("4", "cifar10:3"), "caltech256": ("4", "caltech256:2")}
# table -> the `rdbench run` options of its first grid run (what the table varies away from the defaults)
FIRST_RUN_ARGS = {"1": [], "2": [], "3": [], "4": [], "5": ["--bottleneck", "pre"], "6": ["--backbone", "resnet18"],
                  "7": []}  # Table 7 reads Table 1's runs (score-map reading)


@pytest.fixture
def built(monkeypatch, tmp_path):
    """The configs `rdbench run` hands to run_one (which trains nothing here)."""
    seen: list[RunConfig] = []

    def run_one(config, results, **_):
        seen.append(config)
        record = RunRecord.new(config)
        record.status, record.record_path = "ok", str(tmp_path / "record.json")
        return record

    monkeypatch.setattr("rdbench.engine.run.run_one", run_one)
    return seen


def _cli(built: list[RunConfig], tmp_path, *args) -> RunConfig:
    res = runner.invoke(app, ["run", "--results", str(tmp_path / "res"), *map(str, args)])
    assert res.exit_code == 0, res.output
    assert len(built) == 1
    return built.pop()


def test_every_protocol_has_a_table_experiment():
    assert set(TABLE_RUN) == set(PROTOCOLS.names())
    assert set(FIRST_RUN_ARGS) == {t.key for t in all_tables()}


@pytest.mark.parametrize("protocol", sorted(TABLE_RUN))
def test_run_builds_the_tables_config(built, tmp_path, protocol):
    key, limit = TABLE_RUN[protocol]
    caltech = write_caltech(tmp_path / "tv")  # Table 4 lists Caltech-256's classes from the data
    opts = GridOptions(data_root=str(tmp_path / "mvtec"), novelty_root=str(caltech), limit_categories=(limit,))
    want = get_table(key).grid(opts)[0].config
    got = _cli(built, tmp_path, "--protocol", protocol, "--category", want.category, "--data-root", want.data_root)
    assert got == want and got.hash() == want.hash()
    assert got.image_size == {"mvtec": 256, "caltech256": 64}.get(protocol, 32)
    assert got.extra == ({"split_seed": 0, "test_fraction": 0.2} if protocol == "caltech256" else {})


@pytest.mark.parametrize("key", sorted(FIRST_RUN_ARGS))
def test_first_run_of_every_table_from_the_cli(built, tmp_path, key):
    opts = GridOptions(data_root="/data/mvtec", novelty_root=str(tmp_path / "none"))
    want = get_table(key).grid(opts)[0].config
    got = _cli(built, tmp_path, "--protocol", want.protocol, "--category", want.category, "--data-root",
               want.data_root, *FIRST_RUN_ARGS[key])
    assert got == want and got.hash() == want.hash()


def test_the_same_overrides_give_the_same_run(built, tmp_path):
    root = write_caltech(tmp_path / "tv")
    opts = GridOptions(novelty_root=str(root), limit_categories=("caltech256:2",), epochs=3, batch_size=2,
                       image_size=64, backbone="resnet18", weights="none", max_train_images=5, max_test_images=7,
                       caltech_split_seed=3, caltech_test_fraction=0.5, amp="bf16", eval_protocol="paper")
    (run,) = get_table("4").grid(opts)
    got = _cli(built, tmp_path, "--protocol", "caltech256", "--category", "2", "--data-root", root, "--epochs", 3,
               "--batch-size", 2, "--image-size", 64, "--backbone", "resnet18", "--weights", "none",
               "--max-train-images", 5, "--max-test-images", 7, "--caltech-split-seed", 3,
               "--caltech-test-fraction", 0.5, "--amp", "bf16", "--eval-protocol", "paper")
    assert got == run.config and got.extra == {"split_seed": 3, "test_fraction": 0.5}


def test_table_hashes_did_not_move():
    """Records written before the builder keep their ids (and a sweep does not redo them)."""
    opts = GridOptions(data_root="/d", novelty_root="/nowhere", limit_categories=("carpet", "mnist:0"))
    assert get_table("1").grid(opts)[0].config.hash() == "6d676aee6bacd2ca"
    # Table 4's default backbone became resnet18 (the authors' novelty code), a new run by design; the
    # wide_resnet50_2 runs recorded before keep their ids
    assert get_table("4").grid(opts)[0].config.hash() == "0b4e25afc8c7adcd"
    wide = GridOptions(novelty_root="/nowhere", limit_categories=("mnist:0",), backbone="wide_resnet50_2")
    assert get_table("4").grid(wide)[0].config.hash() == "d1e8ab4d6380351a"


def test_split_settings_belong_to_caltech(built, tmp_path):
    res = runner.invoke(app, ["run", "--protocol", "mnist", "--category", "0", "--caltech-split-seed", "3",
                              "--results", str(tmp_path)])
    assert res.exit_code == 2 and not built
    assert ("--caltech-split-seed and --caltech-test-fraction are settings of --protocol caltech256, not of mnist"
            in res.output) and "Traceback" not in res.output


def test_protocol_config_takes_defaults_then_given_values():
    caltech = get_protocol("caltech256")
    c = caltech.config(category="4", epochs=None, image_size=64, extra={"split_seed": 9})
    assert (c.protocol, c.category, c.epochs, c.image_size) == ("caltech256", "4", 200, 64)
    assert c.extra == {"split_seed": 9, "test_fraction": 0.2}
    assert get_protocol("mvtec").config(category="grid") == RunConfig(category="grid")
    with pytest.raises(ValueError, match="cannot build a config of another protocol"):
        caltech.config(protocol="mnist")


def test_help_states_each_protocols_defaults():
    out = " ".join(runner.invoke(app, ["run", "--help"], env={"COLUMNS": "400"}).output.split())
    assert "default: the protocol's: 256 mvtec, 32 mnist, fashionmnist, cifar10, 64 caltech256" in out
    assert "default: the protocol's: 200 for every protocol" in out and "16 for every protocol" in out
    assert "wide_resnet50_2 mvtec, resnet18 mnist, fashionmnist, cifar10, caltech256" in out
    assert "0.005, the paper's" in out
    for name in PROTOCOLS.names():  # what the help says is what the protocols build
        c = get_protocol(name).config(category="0")
        assert c.image_size == {"mvtec": 256, "caltech256": 64}.get(name, 32)
        assert c.backbone == ("wide_resnet50_2" if name == "mvtec" else "resnet18")
        assert (c.epochs, c.batch_size, c.lr) == (200, 16, 0.005)
