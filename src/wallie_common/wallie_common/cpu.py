"""CPU time used by processes, read from /proc (Linux; no ROS).

Where the cores go is measured in CPU seconds, not wall time: on a shared or loaded machine
a process that waits for the CPU uses no CPU time, so the figures below stay meaningful
when other work runs beside the graph.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Mapping

_TICKS_PER_S = os.sysconf('SC_CLK_TCK') if hasattr(os, 'sysconf') else 100


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds used so far by every thread of process `pid` (None when
    the process is gone or /proc is not available). Resolution: one clock tick (10 ms)."""
    try:
        with open(f'/proc/{pid}/stat', 'rb') as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = data[data.rfind(b')') + 2:].split()
    try:
        return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S   # utime, stime
    except (IndexError, ValueError):
        return None


def snapshot(pids: Mapping[str, int]) -> dict[str, float]:
    """CPU seconds so far of each named process that is still running."""
    out = {}
    for name, pid in pids.items():
        cpu = process_cpu_s(pid)
        if cpu is not None:
            out[name] = cpu
    return out


@dataclass(frozen=True)
class CpuUsage:
    """CPU used by named processes over one wall-clock window."""

    wall_s: float
    cpu_s: dict[str, float]        # CPU seconds each process used in the window

    def percent(self) -> dict[str, float]:
        """Each process's use as a percentage of one core."""
        if self.wall_s <= 0:
            return {name: 0.0 for name in self.cpu_s}
        return {name: 100.0 * cpu / self.wall_s for name, cpu in self.cpu_s.items()}

    @property
    def total_percent(self) -> float:
        return sum(self.percent().values())


class CpuMeter:
    """Measure the CPU named processes use between `start()` and `stop()`."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.pids = dict(pids)
        self._t0 = 0.0
        self._cpu0: dict[str, float] = {}

    def start(self) -> None:
        self._cpu0 = snapshot(self.pids)
        self._t0 = time.monotonic()

    def stop(self) -> CpuUsage:
        cpu1 = snapshot(self.pids)
        wall = time.monotonic() - self._t0
        used = {name: max(0.0, cpu1[name] - self._cpu0[name])
                for name in self._cpu0 if name in cpu1}
        return CpuUsage(wall, used)


def measure(pids: Mapping[str, int], seconds: float) -> CpuUsage:
    """Sleep `seconds` and report the CPU the processes used meanwhile."""
    meter = CpuMeter(pids)
    meter.start()
    time.sleep(seconds)
    return meter.stop()
