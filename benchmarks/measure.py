"""Measurement helpers for the benchmarks: CPU seconds per process tree, peak RSS, GPU memory, score deviation."""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np


class PeakRSS:
    """Samples RSS of this process and of all its descendants (JVM, Spark Python workers) every 200 ms."""

    # 0.2 s: the sampler runs in the driver process and counts against the run it measures (at 50 ms
    # with a JVM and two workers it cost about 1 CPU-second per minute).
    def __init__(self, interval: float = 0.2):
        try:
            import psutil
        except ImportError:  # a bare GPU box: no RSS figures, the rest of the bench runs
            psutil = None
        self._psutil = psutil
        self._is_worker: dict[int, bool] = {}
        self.interval = interval
        self.peak_self = self.peak_tree = self.peak_python_workers = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        if self._psutil is None:
            return
        me = self._psutil.Process()
        own = me.memory_info().rss
        tree, workers = own, 0
        for child in me.children(recursive=True):
            try:
                rss = child.memory_info().rss
                tree += rss
                if child.pid not in self._is_worker:
                    cmd = " ".join(child.cmdline())
                    self._is_worker[child.pid] = "pyspark" in cmd and "python" in cmd.lower()
                if self._is_worker[child.pid]:
                    workers += rss
            except (self._psutil.NoSuchProcess, self._psutil.AccessDenied):
                pass
        self.peak_self = max(self.peak_self, own)
        self.peak_tree = max(self.peak_tree, tree)
        self.peak_python_workers = max(self.peak_python_workers, workers)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakRSS":
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def as_dict(self) -> dict:
        mib = 1024 * 1024
        return {"peak_rss_mib": round(self.peak_self / mib), "peak_rss_tree_mib": round(self.peak_tree / mib),
                "peak_rss_python_workers_mib": round(self.peak_python_workers / mib)}


def tree_cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by this process and its live descendants.

    Wall-clock pairs/s on a shared machine move with the neighbours' load; pairs per CPU-second do
    not (much), and they are what sizing a cluster needs. Spark's Python workers are reused across
    jobs, so they are alive at both ends of a timed job and their difference counts.
    """
    try:
        import psutil
    except ImportError:  # without psutil: this process and its reaped children only
        import resource

        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
    total = 0.0
    me = psutil.Process()
    for proc in [me, *me.children(recursive=True)]:
        try:
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def parse_run_summary(text: str) -> dict:
    """The clipscore job's end-of-run summary, read from its log: rows, scored, errors, job_seconds,
    errors_by_reason, and for a merge commits, rows_inserted, rows_updated (whichever are there)."""
    def number(value: str) -> int:
        return int(value.replace(",", ""))

    found: dict = {}
    m = re.search(r"rows: ([\d,]+)\s+scored: ([\d,]+)\s+errors: ([\d,]+)", text)
    if m:
        found.update(rows=number(m[1]), scored=number(m[2]), errors=number(m[3]))
    m = re.search(r"time: ([\d.]+)s", text)
    if m:
        found["job_seconds"] = float(m[1])
    m = re.search(r"errors by reason:\n((?:  \S+\s+[\d,]+\n?)+)", text)
    if m:
        found["errors_by_reason"] = {k: number(v) for k, v in re.findall(r"  (\S+)\s+([\d,]+)", m[1])}
    for key, name in (("commits", "commits"), ("rows inserted", "rows_inserted"), ("rows updated", "rows_updated")):
        m = re.search(rf"^{key}: ([\d,]+)\s*$", text, re.M)
        if m:
            found[name] = number(m[1])
    return found


def cpu_by_process() -> dict[str, float]:
    """CPU seconds so far by kind of process: this driver, the Spark JVM, Spark's Python workers, other."""
    import psutil

    out = {"driver_python": 0.0, "jvm": 0.0, "python_workers": 0.0, "other": 0.0}
    me = psutil.Process()
    for proc in [me, *me.children(recursive=True)]:
        try:
            t = proc.cpu_times()
            cpu = t.user + t.system + t.children_user + t.children_system
            cmd = " ".join(proc.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if proc.pid == me.pid:
            kind = "driver_python"
        elif "java" in cmd.split(" ", 1)[0]:
            kind = "jvm"
        elif "pyspark" in cmd:
            kind = "python_workers"
        else:
            kind = "other"
        out[kind] += cpu
    return out


@dataclass
class Pass:
    seconds: float
    cpu_seconds: float
    value: Any = None


def least_cpu_pass(repeats: int, run: Callable[[], Any], device: str = "cpu") -> tuple[Pass, list[Pass]]:
    """Time ``run()`` ``repeats`` times (wall, and CPU of the process tree); the pass with the least
    CPU counts, since a shared machine's noise only ever adds time. Returns it and every pass."""
    passes = []
    for _ in range(max(1, repeats)):
        cpu0, started = tree_cpu_seconds(), time.perf_counter()
        value = run()
        sync(device)
        passes.append(Pass(time.perf_counter() - started, tree_cpu_seconds() - cpu0, value))
    return min(passes, key=lambda p: p.cpu_seconds), passes


@dataclass
class Result:
    name: str
    label: str
    pairs: int
    seconds: float
    extra: dict = field(default_factory=dict)

    @property
    def pairs_per_s(self) -> float:
        return self.pairs / self.seconds if self.seconds > 0 else float("nan")

    @property
    def pairs_per_cpu_s(self) -> float:
        cpu = self.extra.get("cpu_seconds")
        return self.pairs / cpu if cpu else float("nan")

    def as_dict(self) -> dict:
        return {"name": self.name, "label": self.label, "pairs": self.pairs, "seconds": round(self.seconds, 3),
                "pairs_per_s": round(self.pairs_per_s, 2), "pairs_per_cpu_s": round(self.pairs_per_cpu_s, 3),
                **self.extra}


def gpu_peak(device: str) -> dict:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return {"peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20)}
    return {}


def gpu_reset(device: str) -> None:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.synchronize()


def deviation(x: np.ndarray, ref: np.ndarray) -> dict:
    ok = ~(np.isnan(x) | np.isnan(ref))
    diff = np.abs(x[ok].astype(np.float64) - ref[ok].astype(np.float64))
    return {"max_abs_diff": float(diff.max()) if diff.size else None,
            "mean_abs_diff": float(diff.mean()) if diff.size else None, "compared": int(ok.sum()),
            "nan_mismatch": int((np.isnan(x) != np.isnan(ref)).sum())}


JOB_KINDS = ("driver", "jvm", "python_workers", "daemon", "other")


def cpu_by_kind() -> dict[str, float]:
    """CPU seconds so far of this process tree, by kind: the driver Python, the executor JVM, Spark's
    Python workers, the pyspark daemon that forks them, anything else.

    Each process counts its user + system time over all its threads. Reaped children count where they
    belong: a worker that exits is reaped by the daemon, so the daemon's ``children_user`` and
    ``children_system`` go to ``python_workers`` (its own time to ``daemon``); other processes' reaped
    children stay with their reaper. A difference of two calls is then the whole tree's CPU over the
    interval, workers that came and went included. The daemon is the pyspark process whose parent is
    not one (the JVM starts it; workers are forked from it and carry the same command line).
    """
    import psutil

    out = dict.fromkeys(JOB_KINDS, 0.0)
    me = psutil.Process()
    procs = [me, *me.children(recursive=True)]
    info = {}
    for proc in procs:
        try:
            with proc.oneshot():
                info[proc.pid] = (proc.cpu_times(), " ".join(proc.cmdline()), proc.ppid())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    spark_python = {pid for pid, (_, cmd, _) in info.items() if pid != me.pid and "pyspark" in cmd}
    for pid, (t, cmd, ppid) in info.items():
        own, reaped = t.user + t.system, t.children_user + t.children_system
        if pid == me.pid:
            out["driver"] += own + reaped
        elif "java" in cmd.split(" ", 1)[0]:
            out["jvm"] += own + reaped
        elif pid in spark_python and ppid not in spark_python:
            out["daemon"] += own
            out["python_workers"] += reaped
        elif pid in spark_python:
            out["python_workers"] += own + reaped
        else:
            out["other"] += own + reaped
    return out
