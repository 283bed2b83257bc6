"""Claims: which process trains which run of a results folder, so that sweeps sharing one never train a run twice.

A claim is ``<results>/claims/<record stem>.claim``, created atomically (``O_CREAT | O_EXCL``: of two processes,
on one machine or on several sharing the folder, exactly one creates it). It holds the claimer's host, pid,
start time and a heartbeat that a thread of the claiming process refreshes while it holds the claim. A claim
is stale, and is taken over, when its heartbeat is older than the timeout, or at once when it names a process
of this host that is gone (a sweep killed and started again need not wait). Hosts are told apart by hostname,
so processes on one host must share a pid namespace (containers with one hostname would need distinct ones).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import psutil

CLAIMS_DIR = "claims"
DEFAULT_TIMEOUT_S = 600.0  # a heartbeat this old means the claimer is gone (or cut off from the folder)
HEARTBEAT_S = 30.0


def claim_path(results_dir: Path | str, stem: str) -> Path:
    return Path(results_dir) / CLAIMS_DIR / f"{stem}.claim"


@dataclass(frozen=True)
class Holder:
    """Who holds a claim, as its file says."""

    host: str
    pid: int
    started: str  # ISO 8601 UTC, when the claim was made
    heartbeat: float  # Unix time of the last refresh
    token: str  # unique per claim: tells a claim apart from a later one of the same process
    pid_started: float | None = None  # the process's start time: tells it apart from a later one of that pid

    def describe(self, now: float | None = None) -> str:
        age = (now or time.time()) - self.heartbeat
        return f"{self.host} pid {self.pid}, since {self.started}, heartbeat {age:.0f} s ago"


def _process_started(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError):
        return None


HOST = socket.gethostname()
_OWN_START: dict[int, float | None] = {}  # per pid, not once at import: a forked child is another process


def _own_start() -> float | None:
    pid = os.getpid()
    if pid not in _OWN_START:
        _OWN_START[pid] = _process_started(pid)
    return _OWN_START[pid]


def _parse(raw: bytes | None) -> Holder | None:
    """The holder a claim file names; None when it is empty or unreadable (being written this moment)."""
    try:
        d = json.loads(raw or b"")
        return Holder(host=str(d["host"]), pid=int(d["pid"]), started=str(d["started"]),
                      heartbeat=float(d["heartbeat"]), token=str(d["token"]), pid_started=d.get("pid_started"))
    except (ValueError, KeyError, TypeError):
        return None


def _read(path: Path) -> tuple[bytes, float] | None:
    """(content, modification time) of a claim file, or None when there is none."""
    try:
        with open(path, "rb") as f:
            return f.read(), os.fstat(f.fileno()).st_mtime
    except FileNotFoundError:
        return None


def _gone_from_this_host(holder: Holder) -> bool:
    if holder.host != HOST:
        return False  # another machine's process: only its heartbeat says whether it lives
    try:
        proc = psutil.Process(holder.pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return True
        started = proc.create_time()
    except psutil.NoSuchProcess:
        return True
    except (psutil.Error, OSError):  # e.g. access denied: it exists
        return False
    # another process that got the pid later; 1 s of slack for the rounding of start times
    return holder.pid_started is not None and abs(started - holder.pid_started) > 1.0


class Claims:
    """The claims this process holds on one results folder, kept alive by a heartbeat thread.

    ``acquire(stem)`` returns None when this process now holds the run, or the live holder when another
    process does (skip the run). ``release(stem)`` after the run's record is written (or it failed); ``close()``
    releases whatever is still held. A claim another process took over (after this one's heartbeat stopped for
    longer than the timeout: a suspended machine) is dropped with a warning, never overwritten."""

    def __init__(self, results_dir: Path | str, timeout_s: float = DEFAULT_TIMEOUT_S,
                 heartbeat_s: float = HEARTBEAT_S):
        if timeout_s <= 0:
            raise ValueError(f"the claim timeout must be > 0 seconds, got {timeout_s}")
        self.results_dir, self.timeout_s = Path(results_dir), timeout_s
        self.heartbeat_s = min(heartbeat_s, timeout_s / 3)  # a live claim never looks stale between beats
        self._held: dict[str, str] = {}  # stem -> token
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _content(self, token: str, started: str | None = None) -> bytes:
        return json.dumps({"host": HOST, "pid": os.getpid(), "pid_started": _own_start(),
                           "started": started or datetime.now(timezone.utc).isoformat(timespec="seconds"),
                           "heartbeat": time.time(), "token": token}).encode()

    def _replace(self, path: Path, content: bytes) -> None:
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(content)
        os.replace(tmp, path)  # the claim file is never missing or half-written while it is refreshed

    def _alive(self, holder: Holder | None, mtime: float) -> bool:
        if holder is None:  # created but not yet written: alive, unless it was left so by a crash long ago
            return time.time() - mtime < self.timeout_s
        if _gone_from_this_host(holder):
            return False
        return time.time() - holder.heartbeat < self.timeout_s

    def acquire(self, stem: str) -> Holder | None:
        path = claim_path(self.results_dir, stem)
        path.parent.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex
        holder = None
        for _ in range(5):  # each round either claims, finds a live holder, or lost a race and looks again
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "wb") as f:
                    f.write(self._content(token))
                    f.flush()
                    os.fsync(f.fileno())
                self._hold(stem, token)
                return None
            seen = _read(path)
            if seen is None:  # released meanwhile: try to create it again
                continue
            holder = _parse(seen[0])
            if self._alive(holder, seen[1]):
                return holder or Holder("(a claim being written)", -1, "?", seen[1], "")
            if self._take_over(path, seen[0], token):
                self._hold(stem, token)
                return None
        # contended throughout: let the others have it
        return holder or Holder("(contended)", -1, "?", time.time(), "")

    def _take_over(self, path: Path, stale: bytes, token: str) -> bool:
        """Replace a stale claim by ours. A lock file (O_EXCL again) lets one taker through; it checks the claim
        is still the stale one it judged, replaces it, then re-reads it to be sure it is ours."""
        lock = path.with_name(path.name + ".takeover")
        try:
            os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            try:  # a taker that died between lock and unlock must not block the run forever
                if time.time() - lock.stat().st_mtime > self.timeout_s:
                    lock.unlink()
            except OSError:
                pass
            return False
        try:
            now = _read(path)
            if now is None or now[0] != stale:  # released or taken over since: look again
                return False
            self._replace(path, self._content(token))
        finally:
            lock.unlink(missing_ok=True)
        mine = _read(path)
        return mine is not None and getattr(_parse(mine[0]), "token", None) == token

    def _hold(self, stem: str, token: str) -> None:
        with self._lock:
            self._held[stem] = token
            if self._thread is None:
                self._thread = threading.Thread(target=self._beat_forever, name="rdbench-claims", daemon=True)
                self._thread.start()

    def _beat_forever(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            self.beat()

    def beat(self) -> None:
        """Refresh the heartbeat of every claim held (the thread does this every ``heartbeat_s``)."""
        with self._lock:
            for stem, token in list(self._held.items()):
                path = claim_path(self.results_dir, stem)
                seen = _read(path)
                holder = _parse(seen[0]) if seen else None
                if holder is None or holder.token != token:
                    del self._held[stem]
                    warnings.warn(f"the claim {path} was taken over by another process "
                                  f"({holder.describe() if holder else 'now gone'}); both may train this run",
                                  stacklevel=2)
                    continue
                try:
                    self._replace(path, self._content(token, holder.started))
                except OSError as exc:  # a full or unreachable disk: the next beat tries again
                    warnings.warn(f"cannot refresh the claim {path}: {exc}", stacklevel=2)

    def held(self) -> list[str]:
        with self._lock:
            return list(self._held)

    def release(self, stem: str) -> None:
        """Remove a claim of ours (a no-op for one not held, or taken over by another process)."""
        with self._lock:
            token = self._held.pop(stem, None)
            if token is None:
                return
            path = claim_path(self.results_dir, stem)
            seen = _read(path)
            if seen is not None and getattr(_parse(seen[0]), "token", None) == token:
                path.unlink(missing_ok=True)

    def close(self) -> None:
        self._stop.set()
        for stem in self.held():
            self.release(stem)

    def __enter__(self) -> Claims:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
