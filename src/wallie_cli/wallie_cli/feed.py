"""Feeding ``audio/in`` from this process: fixture bags replayed in real time, each frame
stamped one frame before it is published, as a real microphone does."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wallie_cli.observer import Observer
from wallie_cli.wavs import FRAME_MS, NS, RATE, GraphError


# ---------------------------------------------------------------------------- feeding audio
class _MicClock:
    """Clock for bags.replay whose `now()` lags by one frame: every frame is then stamped
    with the capture time of its first sample and published when its last sample was
    captured, exactly like a microphone (the capture node's convention)."""

    def __init__(self, node: Any, lag_ns: int) -> None:
        self._node = node
        self._lag = lag_ns

    def now(self) -> Any:
        from rclpy.time import Time
        return Time(nanoseconds=self._node.get_clock().now().nanoseconds - self._lag)


class _MicNode:
    """The observer node as bags.replay sees it (publishers + the lagging clock)."""

    def __init__(self, node: Any, lag_ns: int) -> None:
        self._node = node
        self._clock = _MicClock(node, lag_ns)

    def create_publisher(self, *args: Any, **kwargs: Any) -> Any:
        return self._node.create_publisher(*args, **kwargs)

    def destroy_publisher(self, pub: Any) -> Any:
        return self._node.destroy_publisher(pub)

    def get_clock(self) -> _MicClock:
        return self._clock


@dataclass
class Feed:
    """What was played into audio/in, with its ground truth on the graph's clock."""

    name: str
    start_ns: int = 0                  # graph-clock capture time of the first sample
    duration_s: float = 0.0
    speech_start_ns: int = 0           # 0: unknown / no speech
    speech_end_ns: int = 0             # acoustic end of speech (fixture truth or estimate)
    truth: str = 'fixture'             # 'fixture' (exact) or 'estimate'
    sidecar: dict[str, Any] = field(default_factory=dict)
    end_wall_ns: int = 0               # when the last frame was published


def fixture_bag(path: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """A fixture bag directory and its ground-truth sidecar (``<bag>.json``)."""
    from wallie_cli import bag_files
    bag = Path(path)
    side = bag_files.load_sidecar(bag)
    if side is None:
        raise GraphError(f'{bag}: no sidecar {bag.name}.json with the ground truth')
    return bag, side


def replay_bag(observer: Observer, bag: str | os.PathLike, *, rate: float = 1.0,
               stop: threading.Event | None = None, frame_ms: float = FRAME_MS,
               wait_for_subscribers: float = 5.0) -> Feed:
    """Replay a fixture bag into audio/in (blocking for its duration) and map its truth.

    Frames are re-stamped to the live clock, one frame before they are published (a real
    microphone's timing), so the acoustic speech end of the sidecar maps exactly onto the
    stamps the voice gate sees: ``live = recorded + offset``.
    """
    from wallie_cli import bags
    bag, side = fixture_bag(bag)
    offsets: list[int] = []
    lag = int(side.get('frame_ms', frame_ms) * 1e6)
    stats = bags.replay(bag, _MicNode(observer.node, lag), rate=rate, restamp=True,
                        topics=[side.get('topic', '/audio/in')], stop=stop,
                        wait_for_subscribers=wait_for_subscribers,
                        on_start=offsets.append, linger_s=0.1)
    if not offsets:
        raise GraphError(f'{bag}: nothing was replayed')
    off = offsets[-1]
    feed = Feed(name=str(side.get('name', bag.name)), sidecar=side, truth='fixture',
                start_ns=int(side.get('start_ns', 0)) + off,
                duration_s=float(side.get('duration_s', 0.0)), end_wall_ns=time.time_ns())
    if side.get('speech') and side.get('speech_end_ns'):
        feed.speech_start_ns = int(side['speech_start_ns']) + off
        feed.speech_end_ns = int(side['speech_end_ns']) + off
    if stats.messages == 0:
        raise GraphError(f'{bag}: no audio frames replayed')
    pad_to_block(observer, feed.start_ns, int(round(feed.duration_s * RATE)))
    return feed


GATE_BLOCK = 512          # the voice gate's VAD block (Silero: 512 samples at 16 kHz)


def pad_to_block(observer: Observer, start_ns: int, samples: int) -> int:
    """Let the microphone run on in silence up to a whole number of gate blocks.

    A bag's last frame is usually short. The voice gate re-blocks audio/in into 512-sample
    blocks and stamps each block from the stamp of its buffered remainder plus the sample
    count, so a remainder left over from one input would carry that input's clock into the
    next (after a gap the next input's stamps come out seconds early). A live microphone
    never stops, so this never happens there; here the remainder is completed with silence.
    """
    from wallie_common.conversions import audio_to_frame
    pad = (-samples) % GATE_BLOCK
    if pad and samples > 0:
        stamp = start_ns + samples * NS // RATE
        hiss = np.random.default_rng(samples).normal(0.0, 1e-4, pad)   # a mic's noise floor
        observer.audio_publisher().publish(audio_to_frame(
            hiss.astype(np.float32), RATE, stamp, frame_id='e2e_pad'))
    return pad
