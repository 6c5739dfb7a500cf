"""The player engine (no ROS): queues reply audio per stream, plays it through a sink in
small blocks on its own thread, flushes within one block on interrupt, and reports when
each reply became audible and how much of it was heard."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from wallie_audio.sinks import Sink
from wallie_audio.sources import StreamResampler

NS = 1_000_000_000
REF_RATE = 16000


@dataclass
class PlayoutStream:
    """Bookkeeping of one reply stream: samples queued and played, segment ends."""

    stream_id: str
    first_audible_ns: int = 0
    queued: int = 0                  # samples queued (at the sink rate)
    played: int = 0                  # samples handed to the sink
    seg_ends: list = field(default_factory=list)   # (segment, cumulative end sample)
    ended: bool = False              # end_of_stream received
    last_activity: float = 0.0


@dataclass(frozen=True)
class Report:
    """A stream's playback event (first_audible, finished, flushed) and how much of it was
    heard."""

    stream_id: str
    event: str                       # first_audible | finished | flushed
    stamp_ns: int
    first_audible_ns: int = 0
    played_s: float = 0.0
    segments_complete: int = 0
    segment_fraction: float = 0.0
    flush_ms: float = 0.0


Callback = Callable[[Report], None]
RefCallback = Callable[[str, np.ndarray, int], None]   # stream, 16 kHz block, audible ns


class Playout:
    """Plays queued reply audio through `sink` in `block_ms` blocks on its own thread; reports
    through `on_report` and `on_reference`."""

    def __init__(self, sink: Sink, block_ms: int = 20, stream_timeout_s: float = 3.0,
                 on_report: Callback | None = None, on_reference: RefCallback | None = None,
                 max_queue_s: float = 120.0) -> None:
        self.sink = sink
        self.block = max(1, int(sink.rate * block_ms / 1000))
        self.stream_timeout_s = stream_timeout_s
        self.on_report = on_report or (lambda r: None)
        self.on_reference = on_reference or (lambda s, b, t: None)
        self.max_queue = int(max_queue_s * sink.rate)
        self._lock = threading.Condition()
        self._queue: deque[tuple[str, int, np.ndarray, bool]] = deque()
        self._queued_samples = 0
        self._streams: dict[str, PlayoutStream] = {}
        self._cancelled: deque[str] = deque(maxlen=64)
        self._finished: deque[str] = deque(maxlen=64)
        self._resamplers: dict[tuple[str, int], StreamResampler] = {}
        self._ref_rs = StreamResampler(sink.rate, REF_RATE) if sink.rate != REF_RATE else None
        self._flush: list[tuple[str, int]] = []
        self._stop = threading.Event()
        self._current = ''
        self._thread = threading.Thread(target=self._run, name='playout', daemon=True)
        self.dropped = 0
        self._thread.start()

    # -- inputs (any thread) ---------------------------------------------------------
    def enqueue(self, stream_id: str, segment: int, samples: np.ndarray, rate: int,
                end_of_segment: bool = False, end_of_stream: bool = False) -> bool:
        """Queue reply audio (float32 mono at `rate`); False if the stream was cancelled."""
        with self._lock:
            if stream_id in self._cancelled:
                return False
        key = (stream_id, int(rate))
        rs = self._resamplers.get(key)
        if rs is None:
            rs = self._resamplers[key] = StreamResampler(rate, self.sink.rate)
            while len(self._resamplers) > 8:
                self._resamplers.pop(next(iter(self._resamplers)))
        x = rs(samples, last=end_of_stream)
        with self._lock:
            if self._queued_samples + x.shape[0] > self.max_queue:
                self.dropped += 1
                return False
            st = self._streams.get(stream_id)
            if st is None:
                st = self._streams[stream_id] = PlayoutStream(stream_id)
            st.queued += x.shape[0]
            st.last_activity = time.monotonic()
            if end_of_segment or end_of_stream:
                st.seg_ends.append((segment, st.queued))
            st.ended = st.ended or end_of_stream
            for i in range(0, x.shape[0], self.block):
                self._queue.append((stream_id, segment, x[i:i + self.block], False))
            if end_of_stream:
                self._queue.append((stream_id, segment, np.zeros(0, np.float32), True))
            self._queued_samples += x.shape[0]
            self._lock.notify()
        return True

    def flush(self, stream_id: str = '', received_ns: int | None = None) -> None:
        """Stop `stream_id` (or everything, if empty) as fast as possible."""
        with self._lock:
            self._flush.append((stream_id, received_ns or time.time_ns()))
            if stream_id:
                self._cancelled.append(stream_id)
            self._lock.notify()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            self._lock.notify()
        self._thread.join(2.0)
        self.sink.close()

    @property
    def playing(self) -> str:
        return self._current

    # -- the playback thread ---------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                if not self._queue and not self._flush:
                    # Stream time-outs need a clock only while a stream is open; otherwise
                    # sleep until enqueue/flush/close notifies (an idle player uses no CPU).
                    self._lock.wait(0.1 if self._streams else None)
                flushes, self._flush = self._flush, []
                item = None
                if not flushes and self._queue:
                    item = self._queue.popleft()
                    self._queued_samples -= item[2].shape[0]
            for sid, received in flushes:
                self._do_flush(sid, received)
            if item is None:
                self._check_timeouts()
                continue
            sid, _seg, block, eos = item
            st = self._streams.get(sid)
            if st is None:
                continue
            if eos:
                self._finish(st)
                continue
            self._current = sid
            audible = self.sink.write(block)
            if st.first_audible_ns == 0:
                st.first_audible_ns = audible
                self.on_report(Report(sid, 'first_audible', audible, audible))
            st.played += block.shape[0]
            st.last_activity = time.monotonic()
            ref = self._ref_rs(block) if self._ref_rs is not None else block
            if ref.shape[0]:
                self.on_reference(sid, ref, audible)

    def _heard(self, st: PlayoutStream, buffered: int = 0) -> Report:
        heard = max(0, st.played - buffered)
        complete = 0
        frac = 0.0
        prev = 0
        for _seg, end in st.seg_ends:
            if heard >= end:
                complete += 1
                prev = end
            else:
                frac = (heard - prev) / max(1, end - prev)
                break
        else:
            if st.queued > prev:
                frac = (heard - prev) / max(1, st.queued - prev)
        return Report(st.stream_id, '', 0, st.first_audible_ns, heard / self.sink.rate,
                      complete, float(min(1.0, max(0.0, frac))))

    def _finish(self, st: PlayoutStream) -> None:
        r = self._heard(st)
        self._streams.pop(st.stream_id, None)
        self._finished.append(st.stream_id)
        self._current = ''
        self.on_report(Report(st.stream_id, 'finished', time.time_ns(), st.first_audible_ns,
                              r.played_s, r.segments_complete, r.segment_fraction))

    def _do_flush(self, sid: str, received_ns: int) -> None:
        with self._lock:
            targets = [s for s in self._streams if not sid or s == sid]
            keep = deque(q for q in self._queue if q[0] not in targets)
            self._queued_samples = sum(q[2].shape[0] for q in keep)
            self._queue = keep
        buffered = int(getattr(getattr(self.sink, 'clock', None), 'buffered_s',
                               lambda: 0.0)() * self.sink.rate)
        if any(t == self._current for t in targets):
            self.sink.abort()
        done = time.time_ns()
        for t in targets:
            st = self._streams.pop(t, None)
            if st is None:
                continue
            r = self._heard(st, buffered if t == self._current else 0)
            self.on_report(Report(t, 'flushed', done, st.first_audible_ns, r.played_s,
                                  r.segments_complete, r.segment_fraction,
                                  (done - received_ns) / 1e6))
        if sid and not targets and sid not in self._finished:
            # interrupt for a reply that has not arrived yet: nothing to play, say so
            self.on_report(Report(sid, 'flushed', done, 0, 0.0, 0, 0.0,
                                  (done - received_ns) / 1e6))
        self._current = ''

    def _check_timeouts(self) -> None:
        now = time.monotonic()
        for st in list(self._streams.values()):
            pending = any(q[0] == st.stream_id for q in self._queue)
            if not pending and st.played and now - st.last_activity > self.stream_timeout_s:
                self._finish(st)
