"""Benchmarks (``python -m bench.engine``, ``bench.pipeline``, ``bench.auth_writes``) and the helpers they share."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
from collections.abc import Sequence


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) by linear interpolation between the closest ranks."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> str:
    """One line naming what the figures were measured on."""
    cpus = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    return (
        f"{platform.system()} {platform.machine()}, {usable} usable CPU(s) of {cpus}, "
        f"Python {sys.version.split()[0]}"
    )


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"
