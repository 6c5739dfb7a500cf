"""The TTS stage's work queue: reply chunks in order, one worker, cancels, engine swaps.

Pure Python (no ROS): `TtsNode` pushes the chunks of its `reply` topic and speak goals
here and publishes the frames that `SynthesisEvents.frame` hands back; the unit tests
drive it with a fake engine.

- A stream (one turn, or one speak goal) is a run of chunks with rising indexes ending in
  a final chunk. A chunk that repeats or goes back (index not above the last one taken), or
  comes after the final, is dropped with a warning, as is one that finds the queue full.
- One worker synthesizes the chunks in arrival order with `ChunkSynthesizer`, each as soon
  as it arrives; the frames of a final chunk end with an end-of-stream mark (a silent frame
  if the chunk had nothing audible).
- `cancel()` stops the stream's chunk being synthesized at once, drops its queued chunks
  and refuses its later ones.
- `reload()` loads a new engine in the background (an `EngineSlot`, the latest request
  wins); the worker swaps it in between streams (or after 5 s of quiet in the middle of
  one), so a reply is never spoken by two voices.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from wallie_common.engine_slot import EngineSlot
from wallie_tts.config import StreamSettings
from wallie_tts.engine import LoadResult, TtsEngine
from wallie_tts.normalize import normalize
from wallie_tts.stream import ChunkSynthesizer

MAX_REMEMBERED_STREAMS = 512
SWAP_AFTER_QUIET_S = 5.0     # an open stream that got no chunk for this long may be cut over


@dataclass
class SynthesisJob:
    """One chunk of text to speak."""

    stream_id: str
    index: int
    text: str
    is_final: bool
    arrival_ns: int
    is_reply: bool = True        # a reply turn (stamped), not a speak goal


@dataclass
class SynthesisStream:
    """What the worker knows about one stream being synthesized."""

    stream_id: str
    settings: StreamSettings
    started_ns: int = 0
    first_audio_ns: int = 0
    samples: int = 0
    frames: int = 0
    chunks_done: int = 0
    synth_s: float = 0.0


@dataclass(frozen=True)
class Cancelled:
    """What `cancel()` found."""

    first: bool          # the stream was not cancelled before
    stopped: bool        # its chunk was being synthesized
    dropped: int         # queued chunks thrown away
    open: bool           # it had started

    @property
    def noticed(self) -> bool:
        """Worth a log line: the first cancel of a stream that had work."""
        return self.first and (self.stopped or self.dropped > 0 or self.open)


class SynthesisEvents:
    """What the queue hands out (no-op defaults); the node turns it into messages."""

    def frame(self, job: SynthesisJob, stream: SynthesisStream, frame: np.ndarray,
              end_of_segment: bool, end_of_stream: bool, stamp_ns: int) -> None:
        """One output frame of `job` (fixed size, at the stream's output rate)."""

    def first_audio(self, job: SynthesisJob, stream: SynthesisStream) -> None:
        """The stream's first frame went out (`stream.first_audio_ns`)."""

    def chunk_done(self, job: SynthesisJob, stream: SynthesisStream) -> None:
        """Every frame of `job` went out."""

    def stream_ended(self, stream: SynthesisStream) -> None:
        """The final chunk of the stream went out."""

    def engine_swapped(self, result: LoadResult) -> None:
        """The worker now uses `result.engine` (the old one is closed)."""

    def failed(self, job: SynthesisJob, exc: Exception) -> None:
        """Synthesis of `job` raised (the worker goes on)."""

    def count(self, key: str) -> None:
        """Count an occurrence (chunks dropped for a full queue)."""

    def warn(self, key: str, text: str) -> None:
        """A warning worth rate-limiting, under `key`."""


class SynthesisQueue:
    """Orders, de-duplicates and synthesizes chunks on one worker thread.

    `settings()` gives the current stream settings: a stream keeps the ones it started
    with, except volume and speaking rate, which apply from the next chunk.
    """

    def __init__(self, settings: Callable[[], StreamSettings],
                 events: SynthesisEvents | None = None) -> None:
        self.settings = settings
        self.events = events or SynthesisEvents()
        self._cv = threading.Condition()
        self._jobs: collections.deque[SynthesisJob] = collections.deque()
        self._cancelled: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._finished: collections.OrderedDict[str, bool] = collections.OrderedDict()
        self._last_index: collections.OrderedDict[str, int] = collections.OrderedDict()
        self._streams: dict[str, SynthesisStream] = {}
        self._current: Optional[SynthesisJob] = None
        self._current_stop: Optional[threading.Event] = None
        self._last_stream = ''
        self._stream_open = False
        self._slot: EngineSlot[LoadResult] = EngineSlot('tts', close=_close_result,
                                                        deferred=True)
        self._running = False
        self._worker: Optional[threading.Thread] = None

    # ================================================================= worker
    @property
    def engine(self) -> Optional[TtsEngine]:
        """The engine the worker synthesizes with (None when stopped)."""
        result = self._slot.current
        return result.engine if result is not None else None

    def start(self, result: LoadResult) -> None:
        """Start the worker with the engine of `result`."""
        self._slot.set(result)
        self._running = True
        self._worker = threading.Thread(target=self._work, name='tts-worker', daemon=True)
        self._worker.start()

    def stop(self) -> None:
        """Stop the worker (call `cancel_all()` first) and close the engines."""
        with self._cv:
            self._running = False
            self._cv.notify_all()
        if self._worker is not None:
            self._worker.join(10.0)
            self._worker = None
        self._slot.close()     # an engine still loading is discarded when it ends

    def idle(self) -> bool:
        """Nothing queued and nothing being synthesized."""
        with self._cv:
            return not self._jobs and self._current is None

    # ================================================================= engine swap
    def reload(self, load: Callable[[], LoadResult],
               on_loaded: Callable[[LoadResult], None] | None = None,
               on_failed: Callable[[Exception], None] | None = None) -> bool:
        """Run `load()` in the background; the worker swaps its engine in between streams.
        Only the latest load is used, and none after `stop()`. `on_loaded` / `on_failed`
        report the latest one (see EngineSlot)."""
        def loaded(result: LoadResult) -> None:
            with self._cv:
                self._cv.notify_all()      # the worker swaps it in when the stream allows
            if on_loaded is not None:
                on_loaded(result)
        return self._slot.reload(load, loaded, on_failed)

    # ================================================================= input
    def push(self, job: SynthesisJob, limit: int) -> bool:
        """Queue a chunk unless its stream is cancelled or done, it repeats or goes back, or
        `limit` chunks are waiting already."""
        with self._cv:
            sid = job.stream_id
            if sid in self._cancelled:
                return False
            if sid in self._finished:
                self.events.warn('reply_after_final', f'chunk {job.index} of {sid} arrived '
                                 'after its final chunk; dropped')
                return False
            last = self._last_index.get(sid)
            if last is not None and job.index <= last:
                self.events.warn('reply_duplicate', f'chunk {job.index} of {sid} is a '
                                 f'duplicate or out of order (last {last}); dropped')
                return False
            if len(self._jobs) >= limit:
                self.events.warn('queue_full', f'synthesis queue full ({len(self._jobs)} '
                                 'chunks); chunk dropped')
                self.events.count('dropped_chunks')
                return False
            _remember(self._last_index, sid, job.index)
            if job.is_final:
                _remember(self._finished, sid, True)
            self._jobs.append(job)
            self._cv.notify_all()
            return True

    def target(self, stream_id: str) -> str:
        """The stream an interrupt means: the named one, else the one being synthesized,
        else the last one synthesized ('' if none)."""
        with self._cv:
            return stream_id or (self._current.stream_id if self._current
                                 else self._last_stream)

    def cancel(self, stream_id: str, why: str) -> Cancelled:
        """Stop `stream_id` now, drop its queued chunks and refuse its later ones."""
        with self._cv:
            first = stream_id not in self._cancelled
            _remember(self._cancelled, stream_id, why)
            before = len(self._jobs)
            self._jobs = collections.deque(j for j in self._jobs if j.stream_id != stream_id)
            dropped = before - len(self._jobs)
            current = self._current is not None and self._current.stream_id == stream_id
            if current and self._current_stop is not None:
                self._current_stop.set()
            state = self._streams.pop(stream_id, None)
            if state is not None or current:
                self._stream_open = False
            self._cv.notify_all()
        return Cancelled(first, current, dropped, state is not None)

    def streams(self) -> set[str]:
        """Every stream with work: queued, being synthesized or started."""
        with self._cv:
            streams = {j.stream_id for j in self._jobs}
            if self._current is not None:
                streams.add(self._current.stream_id)
            streams.update(self._streams)
            return streams

    # ================================================================= internals
    def _work(self) -> None:
        idle_since = time.monotonic()
        while True:
            with self._cv:
                while self._running and not self._jobs:
                    if self._slot.pending is not None and (
                            not self._stream_open
                            or time.monotonic() - idle_since > SWAP_AFTER_QUIET_S):
                        self._swap_engine_locked()
                    # Sleep until a job comes (notified); poll only while a loaded engine
                    # waits for the stream to go idle before it is swapped in.
                    self._cv.wait(0.1 if self._slot.pending is not None else None)
                if not self._running:
                    return
                job = self._jobs.popleft()
                if job.stream_id != self._last_stream or not self._stream_open:
                    if self._slot.pending is not None:
                        self._swap_engine_locked()
                self._current = job
                self._current_stop = threading.Event()
                stop = self._current_stop
                engine = self.engine
            try:
                if engine is not None:
                    self._process(job, engine, stop)
            except Exception as exc:  # noqa: BLE001 - a bad chunk must not kill the worker
                self.events.failed(job, exc)
            finally:
                with self._cv:
                    self._current = None
                    self._current_stop = None
                idle_since = time.monotonic()

    def _swap_engine_locked(self) -> None:
        result = self._slot.swap()
        if result is not None:
            self.events.engine_swapped(result)

    def _process(self, job: SynthesisJob, engine: TtsEngine, stop: threading.Event) -> None:
        sid = job.stream_id
        with self._cv:
            if sid in self._cancelled:
                return
            state = self._streams.get(sid)
            if state is None:
                state = SynthesisStream(sid, self.settings(), started_ns=job.arrival_ns)
                self._streams[sid] = state
            self._last_stream = sid
            self._stream_open = True
        live = self.settings()
        settings = dataclasses.replace(state.settings, volume=live.volume,
                                       speaking_rate=live.speaking_rate)
        synth = ChunkSynthesizer(engine, settings)
        t0 = time.monotonic()
        sent_last = False
        for frame, last in synth.frames(normalize(job.text), state.first_audio_ns == 0, stop):
            if stop.is_set():
                return
            end = last and job.is_final
            self._emit(job, state, frame, last, end)
            sent_last = end
        if stop.is_set():
            return
        state.synth_s += time.monotonic() - t0
        state.chunks_done += 1
        self.events.chunk_done(job, state)
        if job.is_final:
            if not sent_last:  # nothing audible in the final chunk: close the stream
                silence = np.zeros(settings.frame_samples, dtype=np.float32)
                self._emit(job, state, silence, True, True)
            with self._cv:
                self._streams.pop(sid, None)
                self._stream_open = False
            self.events.stream_ended(state)

    def _emit(self, job: SynthesisJob, state: SynthesisStream, frame: np.ndarray,
              end_of_segment: bool, end_of_stream: bool) -> None:
        now = time.time_ns()
        self.events.frame(job, state, frame, end_of_segment, end_of_stream, now)
        state.frames += 1
        state.samples += len(frame)
        if state.first_audio_ns == 0:
            state.first_audio_ns = now
            self.events.first_audio(job, state)


def _close_result(result: LoadResult) -> None:
    result.engine.close()


def _remember(table: collections.OrderedDict, key: str, value: Any) -> None:
    table[key] = value
    table.move_to_end(key)
    while len(table) > MAX_REMEMBERED_STREAMS:
        table.popitem(last=False)
