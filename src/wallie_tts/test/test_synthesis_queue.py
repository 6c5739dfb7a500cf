"""SynthesisQueue without ROS: chunk order, duplicates, cancels and engine swaps, with a tone
engine that the test can hold in the middle of a chunk."""

from __future__ import annotations

import threading
import time
from collections import Counter

import numpy as np
import pytest

from wallie_tts import synthesis_queue
from wallie_tts.config import StreamSettings
from wallie_tts.engine import LoadResult, TtsEngine
from wallie_tts.synthesis_queue import SynthesisEvents, SynthesisJob, SynthesisQueue

RATE = 16000
SETTINGS = StreamSettings(output_rate_hz=RATE, frame_ms=40)   # no resampling
LIMIT = 64


class ToneEngine(TtsEngine):
    """0.1 s of tone per word ('hush': silence); `hold()` stops it before its first block."""

    def __init__(self, name: str = 'tone') -> None:
        self.name = name
        self.texts: list[str] = []
        self.closed = False
        self._go = threading.Event()
        self._go.set()
        self.waiting = threading.Event()          # held at the start of a chunk

    @property
    def sample_rate(self) -> int:
        return RATE

    def load(self) -> None:
        pass

    def hold(self) -> None:
        self._go.clear()

    def release(self) -> None:
        self._go.set()

    def synthesize(self, text, stop, speed=1.0):
        self.texts.append(text)
        if text == 'boom':
            raise RuntimeError('engine failure')
        while not self._go.wait(0.005):
            self.waiting.set()
            if stop.is_set():
                return
        n = int(0.1 * RATE) * len(text.split())
        amp = 0.0 if text == 'hush' else 0.5
        yield (amp * np.sin(2 * np.pi * 220 * np.arange(n) / RATE)).astype(np.float32)

    def close(self) -> None:
        self.closed = True


class Recorder(SynthesisEvents):
    def __init__(self) -> None:
        self.frames: list[tuple[str, int, bool, bool, np.ndarray]] = []
        self.first: list[str] = []
        self.ended: list[str] = []
        self.swapped: list[str] = []
        self.failures: list[str] = []
        self.warnings: list[str] = []
        self.counts: Counter[str] = Counter()

    def frame(self, job, stream, frame, end_of_segment, end_of_stream, stamp_ns):
        self.frames.append((job.stream_id, job.index, end_of_segment, end_of_stream, frame))

    def first_audio(self, job, stream):
        self.first.append(job.stream_id)

    def stream_ended(self, stream):
        self.ended.append(stream.stream_id)

    def engine_swapped(self, result):
        self.swapped.append(result.engine.name)

    def failed(self, job, exc):
        self.failures.append(f'{job.stream_id}#{job.index}')

    def count(self, key):
        self.counts[key] += 1

    def warn(self, key, text):
        self.warnings.append(key)

    def of(self, stream):
        return [f for f in self.frames if f[0] == stream]


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.002)
    return predicate()


def chunk(stream, index, text='one two', final=False):
    return SynthesisJob(stream, index, text, final, time.time_ns())


@pytest.fixture
def rig():
    made = []

    def make(settings=SETTINGS):
        events = Recorder()
        current = {'settings': settings}
        q = SynthesisQueue(lambda: current['settings'], events)
        engine = ToneEngine()
        q.start(LoadResult(engine, 'tone'))
        made.append(q)
        return q, engine, events, current
    yield make
    for q in made:
        for sid in q.streams():
            q.cancel(sid, 'test over')
        q.stop()


def test_a_stream_comes_out_in_order_with_its_marks(rig):
    q, engine, events, _ = rig()
    for i in range(3):
        assert q.push(chunk('t', i, final=i == 2), LIMIT)
    assert wait_until(lambda: events.ended == ['t'])
    frames = events.of('t')
    assert [f[1] for f in frames] == sorted(f[1] for f in frames)
    assert {f[1] for f in frames} == {0, 1, 2}
    assert [f[3] for f in frames] == [False] * (len(frames) - 1) + [True]
    assert sum(f[2] for f in frames) == 3                      # one end of segment per chunk
    assert all(len(f[4]) == SETTINGS.frame_samples for f in frames)
    assert events.first == ['t'] and q.idle()


@pytest.mark.parametrize('indexes, taken', [
    ([0, 2, 1], [True, True, False]),          # goes back: dropped
    ([0, 0, 1], [True, False, True]),          # repeats: dropped
    ([1, 3, 4], [True, True, True]),           # gaps are fine (an empty chunk is not sent)
])
def test_a_chunk_that_repeats_or_goes_back_is_dropped(rig, indexes, taken):
    q, engine, events, _ = rig()
    engine.hold()
    got = [q.push(chunk('d', i), LIMIT) for i in indexes]
    assert got == taken
    assert events.warnings == ['reply_duplicate'] * taken.count(False)
    engine.release()
    assert wait_until(lambda: q.idle() and len(engine.texts) == taken.count(True))
    kept = [i for i, ok in zip(indexes, taken) if ok]
    assert sorted({f[1] for f in events.of('d')}) == kept


def test_a_chunk_after_the_final_is_dropped(rig):
    q, engine, events, _ = rig()
    assert q.push(chunk('f', 0, final=True), LIMIT)
    assert not q.push(chunk('f', 1), LIMIT)
    assert events.warnings == ['reply_after_final']
    assert wait_until(lambda: events.ended == ['f'])
    assert {f[1] for f in events.of('f')} == {0}


def test_a_full_queue_drops_the_chunk(rig):
    q, engine, events, _ = rig()
    engine.hold()
    assert q.push(chunk('a', 0), LIMIT)
    assert wait_until(engine.waiting.is_set)                   # the worker holds chunk 0
    assert q.push(chunk('a', 1), 2) and q.push(chunk('a', 2), 2)
    assert not q.push(chunk('a', 3), 2)
    assert events.warnings == ['queue_full'] and events.counts['dropped_chunks'] == 1
    assert q.push(chunk('a', 4), LIMIT)                        # the drop left no trace


def test_cancel_of_a_turn_stops_it_and_refuses_its_later_chunks(rig):
    q, engine, events, _ = rig()
    engine.hold()
    q.push(chunk('a', 0), LIMIT)
    assert wait_until(engine.waiting.is_set)
    q.push(chunk('a', 1), LIMIT)
    q.push(chunk('b', 0, final=True), LIMIT)
    assert q.target('') == 'a'                                 # an interrupt without a turn
    found = q.cancel('a', 'barge-in')
    assert (found.first, found.stopped, found.dropped, found.open) == (True, True, 1, True)
    assert found.noticed
    engine.release()
    assert wait_until(lambda: events.ended == ['b'])
    assert events.of('a') == []
    assert not q.push(chunk('a', 2), LIMIT) and events.warnings == []   # silently refused
    again = q.cancel('a', 'barge-in')
    assert not again.first and not again.noticed
    assert q.target('') == 'b'                                 # the last one synthesized
    assert engine.texts == ['one two', 'one two']              # a#0 (stopped), b#0


def test_cancel_of_a_turn_that_never_came_is_quiet_but_refuses_it(rig):
    q, engine, events, _ = rig()
    found = q.cancel('later', 'interrupt')
    assert found.first and not found.noticed
    assert not q.push(chunk('later', 0, final=True), LIMIT)


def test_cancel_all_streams(rig):
    q, engine, events, _ = rig()
    engine.hold()
    q.push(chunk('a', 0), LIMIT)
    assert wait_until(engine.waiting.is_set)
    q.push(chunk('b', 0), LIMIT)
    q.push(chunk('c', 0, final=True), LIMIT)
    assert q.streams() == {'a', 'b', 'c'}
    for sid in q.streams():
        q.cancel(sid, 'deactivated')
    engine.release()
    assert wait_until(q.idle)
    assert events.frames == [] and q.streams() == set()
    assert engine.texts == ['one two']                         # only the one it had started


def test_volume_applies_from_the_next_chunk_the_frame_size_from_the_next_stream(rig):
    q, engine, events, current = rig()
    q.push(chunk('v', 0), LIMIT)
    assert wait_until(lambda: any(f[2] for f in events.of('v')))
    current['settings'] = StreamSettings(output_rate_hz=RATE, frame_ms=20, volume=0.5)
    q.push(chunk('v', 1, final=True), LIMIT)
    q.push(chunk('w', 0, final=True), LIMIT)
    assert wait_until(lambda: events.ended == ['v', 'w'])
    loud = max(np.abs(f[4]).max() for f in events.of('v') if f[1] == 0)
    quiet = max(np.abs(f[4]).max() for f in events.of('v') if f[1] == 1)
    assert quiet == pytest.approx(loud / 2, rel=0.05)
    assert {len(f[4]) for f in events.of('v')} == {SETTINGS.frame_samples}
    assert {len(f[4]) for f in events.of('w')} == {SETTINGS.frame_samples // 2}


def test_a_final_chunk_with_nothing_audible_still_ends_the_stream(rig):
    q, engine, events, _ = rig()
    q.push(chunk('s', 0, 'hush', final=True), LIMIT)
    assert wait_until(lambda: events.ended == ['s'])
    frames = events.of('s')
    assert len(frames) == 1 and frames[0][2] and frames[0][3]
    assert not frames[0][4].any()


def test_a_failing_chunk_does_not_stop_the_worker(rig):
    q, engine, events, _ = rig()
    q.push(chunk('e', 0, 'boom'), LIMIT)
    q.push(chunk('e', 1, final=True), LIMIT)
    assert wait_until(lambda: events.ended == ['e'])
    assert events.failures == ['e#0']


# ------------------------------------------------------------------ engine swaps
def test_a_new_engine_is_swapped_in_between_turns(rig):
    q, old, events, _ = rig()
    q.push(chunk('a', 0), LIMIT)
    assert wait_until(lambda: any(f[2] for f in events.of('a')))
    new = ToneEngine('new')
    q.reload(lambda: LoadResult(new, 'new'))
    time.sleep(0.3)                                            # the turn is still open
    assert q.engine is old and events.swapped == []
    q.push(chunk('a', 1, 'three four', final=True), LIMIT)
    assert wait_until(lambda: events.swapped == ['new'])
    assert q.engine is new and old.closed
    q.push(chunk('b', 0, 'five', final=True), LIMIT)
    assert wait_until(lambda: events.ended == ['a', 'b'])
    assert old.texts == ['one two', 'three four'] and new.texts == ['five']


def test_an_open_turn_that_went_quiet_gets_the_new_engine(rig, monkeypatch):
    monkeypatch.setattr(synthesis_queue, 'SWAP_AFTER_QUIET_S', 0.2)
    q, old, events, _ = rig()
    q.push(chunk('a', 0), LIMIT)
    assert wait_until(lambda: any(f[2] for f in events.of('a')))
    new = ToneEngine('new')
    q.reload(lambda: LoadResult(new, 'new'))
    assert wait_until(lambda: q.engine is new)                 # no final came for 0.2 s


def test_only_the_latest_engine_load_is_used(rig):
    q, old, events, _ = rig()
    first, second = ToneEngine('first'), ToneEngine('second')
    go = threading.Event()
    loading = threading.Event()

    def load_first():
        loading.set()
        assert go.wait(5)
        return LoadResult(first, 'first')
    q.reload(load_first)
    assert loading.wait(5)
    q.reload(lambda: LoadResult(second, 'second'))              # supersedes the first
    go.set()
    assert wait_until(lambda: q.engine is second)
    assert first.closed                                         # superseded: closed
    assert not second.closed and old.closed and events.swapped == ['second']


def test_a_failed_load_is_reported_and_the_engine_kept(rig):
    q, old, events, _ = rig()
    failures = []

    def broken():
        raise RuntimeError('no such voice')
    q.reload(broken, on_failed=failures.append)
    assert wait_until(lambda: len(failures) == 1)
    assert str(failures[0]) == 'no such voice'
    assert q.engine is old and not old.closed and events.swapped == []


def test_stop_closes_the_engines_and_refuses_a_late_one(rig):
    q, old, events, _ = rig()
    late = ToneEngine('late')
    go = threading.Event()
    loading = threading.Event()

    def load_late():
        loading.set()
        assert go.wait(5)
        return LoadResult(late, 'late')
    q.reload(load_late)
    assert loading.wait(5)
    q.stop()
    assert old.closed and q.engine is None
    go.set()
    assert wait_until(lambda: late.closed)                      # loaded after stop: closed
    assert q.engine is None and events.swapped == []
    assert not q.reload(lambda: LoadResult(ToneEngine('after'), 'after'))
