"""The idle graph: CPU each node uses while silence streams in and nobody speaks.

Measured in CPU seconds of each node process (``wallie_common.cpu``) over a wall-clock
window, reported as a percentage of one core. CPU seconds, not wall time: a process that
waits for a core shared with other work uses none, so the figure holds on a loaded machine.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from wallie_cli.wavs import FRAME_MS, NS, RATE
from wallie_common.cpu import CpuMeter, CpuUsage

IDLE_TARGET_PERCENT = 8.0          # the whole graph, summed over nodes, of one core
NOISE_FLOOR = 1e-4                 # a microphone's hiss: silence, but not digital zero


class SilenceFeed:
    """Publish a microphone's noise floor on audio/in in real time (a background thread)."""

    def __init__(self, observer: Any, frame_ms: float = FRAME_MS) -> None:
        self._observer = observer
        self._n = int(RATE * frame_ms / 1000)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name='silence-feed', daemon=True)
        self.frames = 0

    def __enter__(self) -> 'SilenceFeed':
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2.0)

    def _run(self) -> None:
        from wallie_common.conversions import audio_to_frame
        pub = self._observer.audio_publisher()
        rng = np.random.default_rng(0)
        period = self._n / RATE
        t0 = time.monotonic()
        start_ns = time.time_ns()
        k = 0
        while not self._stop.is_set():
            due = t0 + (k + 1) * period          # a frame leaves once it was captured
            wait = due - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                return
            hiss = rng.normal(0.0, NOISE_FLOOR, self._n).astype(np.float32)
            pub.publish(audio_to_frame(hiss, RATE, start_ns + k * self._n * NS // RATE,
                                       seq=k, frame_id='idle'))
            k += 1
            self.frames = k


def measure_idle(graph: Any, seconds: float = 20.0, settle_s: float = 2.0,
                 feed: bool = True) -> CpuUsage:
    """CPU each node process of a ready `LiveGraph` uses over `seconds` of silence.

    With ``feed`` (the graph's capture stage skipped) this process streams the silence;
    otherwise the graph's own capture node is expected to be playing it.
    """
    pids = graph.pids()
    if not pids:
        raise RuntimeError('no node process is running')

    def window() -> CpuUsage:
        time.sleep(settle_s)                     # past the last turn's tail
        meter = CpuMeter(pids)
        meter.start()
        time.sleep(seconds)
        return meter.stop()
    if feed:
        with SilenceFeed(graph.observer):
            return window()
    return window()


def idle_summary(usage: CpuUsage) -> dict[str, Any]:
    """bench.json's record of an idle measurement."""
    pct = usage.percent()
    return {'window_s': round(usage.wall_s, 2),
            'percent_of_one_core': {k: round(v, 2) for k, v in sorted(pct.items())},
            'cpu_s': {k: round(v, 3) for k, v in sorted(usage.cpu_s.items())},
            'total_percent': round(usage.total_percent, 2),
            'target_percent': IDLE_TARGET_PERCENT}
