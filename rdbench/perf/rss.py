"""The peak resident memory (RSS) of this process, sampled with psutil by a background thread.

The kernel keeps an exact high-water mark (Linux's VmHWM), but no portable API exposes it or resets it,
so the peak is sampled instead: a daemon thread reads ``psutil.Process().memory_info().rss`` every
``interval_s`` and keeps the maximum. torch and numpy release the GIL inside their kernels, so the thread
runs while the work that allocates runs. It can miss a spike shorter than the interval (an allocation
freed again within about a millisecond); tests/test_profile.py checks the sampled peak of a 200 MB
allocation against the kernel's VmHWM of the same process.
"""

from __future__ import annotations

import threading

import psutil

__all__ = ["RssSampler"]

DEFAULT_INTERVAL_S = 0.001


class RssSampler:
    """Maximum RSS of this process since the last ``reset()`` (``peak_mb``) and since ``start()``
    (``overall_peak_mb``). Use as ``RssSampler().start()`` or as a context manager."""

    def __init__(self, interval_s: float = DEFAULT_INTERVAL_S):
        self.interval_s = interval_s
        self._process = psutil.Process()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # A sample read before a reset must not land after it: samples carry the generation they were read in.
        self._generation = 0
        self._peak = 0
        self._overall = 0

    @property
    def method(self) -> str:
        return f"psutil RSS sampled every {self.interval_s * 1000:g} ms by a thread, maximum kept"

    def sample(self) -> int:
        """Read the RSS now (bytes) and fold it into the maxima."""
        generation = self._generation
        rss = self._process.memory_info().rss
        with self._lock:
            self._overall = max(self._overall, rss)
            if generation == self._generation:
                self._peak = max(self._peak, rss)
        return rss

    def reset(self) -> None:
        """Start a new peak from the current RSS (what Linux's clear_refs does to VmHWM)."""
        with self._lock:
            self._generation += 1
            self._peak = 0
        self.sample()

    def peak_mb(self) -> float:
        self.sample()  # the current RSS counts too, whatever the thread last saw
        return self._peak / 2**20

    def overall_peak_mb(self) -> float:
        self.sample()
        return self._overall / 2**20

    def rss_mb(self) -> float:
        return self.sample() / 2**20

    def start(self) -> RssSampler:
        if self._thread is None:
            self.sample()
            self._thread = threading.Thread(target=self._run, name="rdbench-rss-sampler", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self._stop.clear()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> RssSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
