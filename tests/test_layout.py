"""The house's shape (docs/architecture.md): wings import only downwards, protocols register from above, no
module over 350 lines, no hand-made /proc readers, and the packaging installs no top-level ``protocols``."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
PACKAGE, PROTOCOLS = ROOT / "rdbench", ROOT / "protocols"
MAX_LINES = 350

# wing -> the wings it may import (besides itself and the package root, which only holds the version).
# Mirrors docs/architecture.md; a change here is a change of the architecture, made there first.
ALLOWED = {
    "metrics": set(),
    "registry": set(),
    "config": {"registry"},
    "models": {"registry"},
    "data": {"registry"},
    "records": {"config", "registry"},
    "engine": {"config", "registry", "records", "models", "data", "metrics"},
    "perf": {"config", "registry", "records", "models", "data", "metrics", "engine"},
    "bench": {"config", "registry", "records", "models", "data", "metrics", "engine"},
    "report": {"config", "registry", "records", "metrics", "bench"},
    "cli": {"config", "registry", "records", "models", "data", "metrics", "engine", "perf", "bench", "report"},
    "protocols": {"config", "registry", "records", "models", "data", "metrics", "engine", "bench"},
}


def _modules() -> list[tuple[str, Path]]:
    """(wing, file) of every module of rdbench/ and protocols/."""
    out = [("protocols", p) for p in sorted(PROTOCOLS.glob("*.py"))]
    for p in sorted(PACKAGE.rglob("*.py")):
        rel = p.relative_to(PACKAGE)
        wing = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        if wing not in ("__init__", "__main__"):
            out.append((wing, p))
    return out


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports count: they are arrows too)."""
    names = set()
    package = "rdbench_protocols" if path.parent == PROTOCOLS else ".".join(path.relative_to(ROOT).parent.parts)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                names.add(f"{base}.{node.module}" if node.module else base)
            else:
                names.add(node.module or "")
    return names


def _wing_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] in ("protocols", "rdbench_protocols"):
        return "protocols"
    if parts[0] != "rdbench" or len(parts) == 1:
        return None
    return parts[1]


def test_the_walker_sees_function_level_and_relative_imports():
    found = _imports(PROTOCOLS / "table1_detection.py")
    assert "rdbench_protocols.mvtec" in found and "rdbench.bench.tables" in found
    assert "rdbench.engine.run" in _imports(PACKAGE / "cli" / "run.py")  # imported inside the command


def test_wings_import_only_downwards():
    wrong = []
    for wing, path in _modules():
        for module in _imports(path):
            target = _wing_of(module)
            if target is not None and target != wing and target not in ALLOWED[wing]:
                wrong.append(f"{path.relative_to(ROOT)} ({wing}) imports {module} ({target})")
    assert not wrong, "\n".join(wrong)


def test_engine_never_imports_bench_report_perf_cli_or_protocols():
    """The rule the issue states on its own, kept as its own test so it reads as one."""
    for wing, path in _modules():
        if wing == "engine":
            bad = {m for m in _imports(path) if _wing_of(m) in ("bench", "report", "perf", "cli", "protocols")}
            assert not bad, f"{path}: {bad}"


def test_nothing_in_rdbench_names_the_protocol_modules():
    """They register from above, through the entry point (rdbench.registry.load_plugins)."""
    for _, path in _modules():
        if path.is_relative_to(PACKAGE):
            assert not {m for m in _imports(path) if _wing_of(m) == "protocols"}, path


def test_no_module_over_350_lines():
    long = {str(p.relative_to(ROOT)): n for _, p in _modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_no_file_in_rdbench_reads_proc():
    # except /proc/cpuinfo's model name, which psutil does not give (py-cpuinfo does, in 1.7 s a process)
    def reads_proc(text: str) -> bool:
        text = text.replace('"/proc/cpuinfo"', "")
        return '"/proc' in text or "'/proc" in text
    readers = [str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py") if reads_proc(p.read_text())]
    assert not readers, f"use psutil: {readers}"


def test_every_wing_says_what_it_holds():
    for init in sorted(PACKAGE.glob("*/__init__.py")) + sorted(PACKAGE.glob("*/*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc) > 30, f"{init} has no docstring saying what the package holds"


def test_packaging_lists_every_package_and_maps_protocols_to_a_namespaced_name():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in PACKAGE.rglob("__init__.py")}
    assert set(tool["packages"]) == on_disk | {"rdbench_protocols"}
    assert tool["package-dir"] == {"rdbench": "rdbench", "rdbench_protocols": "protocols"}
    assert "protocols" not in tool["packages"]


def _python_outside_the_checkout(tmp_path: Path, python: str, code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([python, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_installed_rdbench_has_no_top_level_protocols(tmp_path):
    """This environment's rdbench (editable, as README installs it), seen from outside the checkout."""
    res = _python_outside_the_checkout(tmp_path, sys.executable, "import protocols")
    assert res.returncode != 0 and "No module named 'protocols'" in res.stderr, res.stdout + res.stderr
    res = _python_outside_the_checkout(tmp_path, sys.executable, "import rdbench_protocols; print('ok')")
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr


@pytest.mark.slow
def test_fresh_venv_from_the_wheel_has_no_protocols_and_lists_every_protocol(tmp_path):
    """Build the wheel, install it alone into a fresh venv (its dependencies are borrowed from this one through
    a path entry, so nothing is downloaded), then run from outside the checkout."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(ROOT)], check=True, capture_output=True, timeout=600)
    (wheel,) = wheels.glob("rdbench-*.whl")
    import zipfile

    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert "protocols" not in tops and {"rdbench", "rdbench_protocols"} <= tops, tops
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    deps = subprocess.run([sys.executable, "-c", "import torch, os; print(os.path.dirname(os.path.dirname("
                           "torch.__file__)))"], capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", site, str(wheel)],
                   check=True, capture_output=True, timeout=600)
    Path(site, "borrowed_deps.pth").write_text(deps + "\n")  # appended after the venv's own site-packages
    res = _python_outside_the_checkout(tmp_path, python, "import rdbench; print(rdbench.__file__)")
    assert res.returncode == 0 and res.stdout.startswith(site), res.stdout + res.stderr  # the wheel's copy
    res = _python_outside_the_checkout(tmp_path, python, "import protocols")
    assert res.returncode != 0 and "No module named 'protocols'" in res.stderr, res.stdout + res.stderr
    res = _python_outside_the_checkout(tmp_path, python, "from rdbench.cli.app import app; app(['list'])")
    assert "protocols:   caltech256, cifar10, fashionmnist, mnist, mvtec" in res.stdout, res.stdout + res.stderr
    assert "tables:      1, 2, 3, 4, 5, 6, 7" in res.stdout
