"""What a record says about the machine: the CPU's model and instruction set, and whether bf16 is native."""

from __future__ import annotations

import warnings

import pytest
import torch

from rdbench.engine import device as device_mod
from rdbench.records import provenance


def test_cpu_model_is_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9B14\nflags\t: fpu\n\n"
                    "processor\t: 1\nmodel name\t: AMD EPYC 9B14\n")
    assert provenance._cpu_model(info) == "AMD EPYC 9B14"
    info.write_text("processor\t: 0\nmodel name\t: \n")  # present but empty: fall back, not ""
    assert provenance._cpu_model(info) is None
    assert provenance._cpu_model(tmp_path / "missing") is None


def test_environment_names_the_cpu_instruction_set_and_bf16():
    env = provenance.environment(torch.device("cpu"))
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert env["bf16_native"] is bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert env["device_name"] not in ("", "cpu") and env["device_name"] == provenance.device_name(torch.device("cpu"))


@pytest.mark.parametrize("native", [False, True])
def test_emulated_bf16_is_warned_about(monkeypatch, native):
    monkeypatch.setattr(device_mod, "bf16_native", lambda device_type: native)
    cpu = torch.device("cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert device_mod.warn_if_emulated("bf16", cpu) is (not native)
        assert device_mod.warn_if_emulated("none", cpu) is False and device_mod.warn_if_emulated(None, cpu) is False
    messages = [str(w.message) for w in caught]
    if native:
        assert messages == []
    else:
        assert len(messages) == 1 and "no native bfloat16" in messages[0] and "--amp none" in messages[0]
        assert torch.backends.cpu.get_cpu_capability() in messages[0]


def test_a_bf16_run_on_an_emulating_cpu_warns_before_training(monkeypatch, tiny_mvtec, tmp_path):
    from rdbench.config import RunConfig
    from rdbench.engine import run as run_mod

    monkeypatch.setattr(device_mod, "bf16_native", lambda device_type: False)

    calls = []

    def stop(device):  # the step after the device checks: no model is built (the failed record asks again)
        calls.append(device)
        if len(calls) == 1:
            raise RuntimeError("stopped after the device checks")
        return {}
    monkeypatch.setattr(run_mod, "environment", stop)
    config = RunConfig(protocol="mvtec", category="carpet", data_root=str(tiny_mvtec), amp="bf16", device="cpu",
                       backbone="resnet18", image_size=32, epochs=1, weights="none")
    with pytest.warns(UserWarning, match="no native bfloat16"):
        record = run_mod.execute_run(config, tmp_path / "work", progress=False)
    assert record.status == "failed" and "stopped after the device checks" in record.error


def test_arithmetic_fingerprint_is_stable_and_leaves_the_random_streams_alone():
    import subprocess
    import sys

    from rdbench.records.arithmetic import _probe, arithmetic_fingerprint

    state = torch.random.get_rng_state()
    first = arithmetic_fingerprint("cpu")
    assert torch.equal(torch.random.get_rng_state(), state)  # a run's numbers cannot depend on being fingerprinted
    _probe.cache_clear()
    assert arithmetic_fingerprint("cpu") == first and len(first) == 12 and int(first, 16) >= 0
    code = ("import torch; torch.set_num_threads({n}); from rdbench.records.arithmetic import arithmetic_fingerprint"
            " as a; print(a('cpu'))")
    threads = torch.get_num_threads()
    other = subprocess.run([sys.executable, "-c", code.format(n=threads)], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == first  # another process of this machine: the same kernels, the same hash
    assert provenance.environment(torch.device("cpu"))["arithmetic"] == first
