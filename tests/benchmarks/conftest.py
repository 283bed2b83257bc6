"""Speed benchmarks: rdbench's fast path against the authors' procedure (rdbench.perf.reference), measured back to
back in one process (fast and reference rounds interleaved, medians), so other load on the machine mostly
cancels out of the ratios.

Not part of the default test run: the files are named ``bench_*.py``, which pytest's default
``python_files`` (test_*.py, *_test.py) does not collect. Run them with ``tox -e bench``, i.e.
``pytest tests/benchmarks -o python_files='bench_*.py' -p no:cacheprovider``. Environment:

* RDBENCH_BENCH_THREADS=N  torch intra-op threads (default: torch's default, one per core)
* RDBENCH_BENCH_STRICT=1   fail a benchmark that misses its target (default: report only)
* RDBENCH_BENCH_QUICK=1    fewer rounds (a smoke run of the benchmarks themselves)

Every benchmark records in ``benchmark.extra_info``: fast_s, reference_s (medians), ratio, target, met,
and prints one line; the terminal summary lists them all.
"""

from __future__ import annotations

import os

import pytest
import torch
from benchutil import RESULTS, InMemoryTestSet, category_masks_maps

if os.environ.get("RDBENCH_BENCH_THREADS"):
    torch.set_num_threads(int(os.environ["RDBENCH_BENCH_THREADS"]))


@pytest.fixture(scope="session")
def category():
    return category_masks_maps()


@pytest.fixture(scope="session")
def category_set():
    return InMemoryTestSet()


def pytest_terminal_summary(terminalreporter) -> None:
    if not RESULTS:
        return
    terminalreporter.section("rdbench fast vs reference (same process, medians)")
    for r in RESULTS:
        sign = ">=" if r["higher_is_better"] else "<="
        terminalreporter.write_line(f"{r['name']:<58} {r['unit']:<14} {r['ratio']:8.2f}  target {sign} "
                                    f"{r['target']:<5} {'MET' if r['met'] else 'MISSED'}")
