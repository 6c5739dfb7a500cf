"""Turn logic of the streaming ASR with a fake engine: partials, early final, wake phrase."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from wallie_asr.config import SAMPLE_RATE, StreamConfig
from wallie_asr.engine import AsrResult
from wallie_asr.streaming import EARLY, FINAL, PARTIAL, TurnStreamer
from wallie_asr.wake_phrase import apply_wake_phrase

S = 1_000_000_000
T0 = 1_000 * S


class FakeEngine:
    """Transcribes to 'words<N>' where N = number of 100 ms blocks; sleeps `delay` s."""

    def __init__(self, delay: float = 0.05, text: str | None = None) -> None:
        self.delay = delay
        self.text = text
        self.calls: list[int] = []
        self.closed = False
        self.gate = threading.Event()
        self.gate.set()

    def transcribe(self, audio, *, language=None, vad_speech=None, extra_prompt='', max_s=60.0):
        self.gate.wait(5)
        self.calls.append(audio.size)
        time.sleep(self.delay)
        text = self.text if self.text is not None else f'words{audio.size // 1600}'
        return AsrResult(text=text, confidence=0.9, language='en', audio_s=audio.size / 16000)

    def close(self) -> None:
        self.closed = True


class Harness:
    def __init__(self, engine=None, **cfg) -> None:
        self.engine = engine or FakeEngine()
        self.events = []
        self.warnings = []
        self.s = TurnStreamer(self.engine, StreamConfig(**cfg), self.events.append,
                              lambda k, m: self.warnings.append(k))
        self.s.start()

    def audio(self, turn, seq, seconds, is_final=False, speech_end_ns=0, wake='',
              discarded=False):
        start = T0 + int(seq * 0.1 * S)
        self.s.add_audio(turn, seq, np.full(int(seconds * SAMPLE_RATE), 1000, np.int16),
                         start_ns=start, is_final=is_final, speech_end_ns=speech_end_ns,
                         wake_phrase=wake, discarded=discarded)

    def wait(self, pred, timeout=3.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return
            time.sleep(0.005)
        raise AssertionError(f'timeout; events={self.events} warnings={self.warnings}')

    def kinds(self):
        return [e.kind for e in self.events]

    def finals(self):
        return [e for e in self.events if e.kind == FINAL]


@pytest.fixture
def h():
    harness = Harness(partials=False)
    yield harness
    harness.s.stop()


def test_final_without_early(h):
    for i in range(10):
        h.audio('t1', i, 0.1)
    h.audio('t1', 10, 0.1, is_final=True, speech_end_ns=T0 + S)
    h.wait(lambda: h.finals())
    f = h.finals()[0]
    assert f.text == 'words11' and f.speech_end_ns == T0 + S and not f.reused_early
    assert h.engine.calls == [11 * 1600]


def test_early_final_reused_without_second_transcription(h):
    for i in range(10):
        h.audio('t1', i, 0.1)                 # audio covers T0 .. T0+1 s
    h.s.speech_probably_ended('t1', speech_end_ns=T0 + int(0.9 * S))
    h.wait(lambda: EARLY in h.kinds())
    h.audio('t1', 10, 0.1)                    # trailing silence of the endpoint wait
    h.s.end_of_turn('t1', speech_end_ns=T0 + int(0.9 * S))
    h.wait(lambda: h.finals())
    assert h.kinds() == [EARLY, FINAL]
    assert h.finals()[0].reused_early and h.finals()[0].text == 'words10'
    assert len(h.engine.calls) == 1           # the final did not transcribe again


def test_end_of_turn_while_early_running_waits_for_it():
    h = Harness(FakeEngine(delay=0.3), partials=False)
    try:
        for i in range(10):
            h.audio('t1', i, 0.1)
        h.s.speech_probably_ended('t1', speech_end_ns=T0 + int(0.9 * S))
        time.sleep(0.05)
        h.s.end_of_turn('t1', speech_end_ns=T0 + int(0.9 * S))
        h.wait(lambda: h.finals())
        assert h.kinds() == [EARLY, FINAL] and h.finals()[0].reused_early
        assert len(h.engine.calls) == 1
    finally:
        h.s.stop()


def test_speech_resumed_discards_early(h):
    for i in range(10):
        h.audio('t1', i, 0.1)
    h.s.speech_probably_ended('t1', speech_end_ns=T0 + int(0.9 * S))
    h.wait(lambda: EARLY in h.kinds())
    h.s.speech_resumed('t1')
    for i in range(10, 20):
        h.audio('t1', i, 0.1)
    h.audio('t1', 20, 0.1, is_final=True, speech_end_ns=T0 + int(1.9 * S))
    h.wait(lambda: h.finals())
    assert h.finals()[0].text == 'words21' and not h.finals()[0].reused_early
    assert len(h.engine.calls) == 2


def test_new_voiced_audio_after_early_is_transcribed_again(h):
    """No SPEECH_RESUMED seen, but the final speech_end is after what the early result covered."""
    for i in range(10):
        h.audio('t1', i, 0.1)
    h.s.speech_probably_ended('t1', speech_end_ns=T0 + int(0.9 * S))
    h.wait(lambda: EARLY in h.kinds())
    for i in range(10, 15):
        h.audio('t1', i, 0.1)
    h.audio('t1', 15, 0.1, is_final=True, speech_end_ns=T0 + int(1.4 * S))
    h.wait(lambda: h.finals())
    assert not h.finals()[0].reused_early and h.finals()[0].text == 'words16'


def test_early_waits_for_the_audio_that_covers_speech_end(h):
    for i in range(5):
        h.audio('t1', i, 0.1)                 # covers 0.5 s only
    h.s.speech_probably_ended('t1', speech_end_ns=T0 + int(0.8 * S))
    time.sleep(0.1)
    assert h.engine.calls == []
    for i in range(5, 9):
        h.audio('t1', i, 0.1)
    h.wait(lambda: EARLY in h.kinds())
    assert h.engine.calls == [8 * 1600]      # went as soon as 0.8 s was covered


def test_partials_never_delay_the_final():
    eng = FakeEngine(delay=0.2)
    h = Harness(eng, partials=True, partial_interval_ms=100, min_partial_audio_ms=200)
    try:
        for i in range(12):
            h.audio('t1', i, 0.1)
            time.sleep(0.1)
        h.s.speech_probably_ended('t1', speech_end_ns=T0 + int(1.2 * S))
        h.s.end_of_turn('t1', speech_end_ns=T0 + int(1.2 * S))
        t = time.monotonic()
        h.wait(lambda: h.finals())
        waited = time.monotonic() - t
        partials = [e for e in h.events if e.kind == PARTIAL]
        assert partials and partials[0].first_partial
        assert h.s.stats['partials_skipped_busy'] > 0   # busy worker -> partial skipped
        assert waited < 0.2 + 0.2 + 0.15                 # at most one partial ahead of it
        assert h.kinds()[-1] == FINAL
    finally:
        h.s.stop()


def test_running_partial_is_promoted_to_early_final():
    eng = FakeEngine(delay=0.3)
    h = Harness(eng, partials=True, partial_interval_ms=100, min_partial_audio_ms=1000)
    try:
        for i in range(9):
            h.audio('t1', i, 0.1)
        h.audio('t1', 9, 0.1)                 # starts the partial over 1.0 s
        h.wait(lambda: h.s._running is not None)
        h.s.speech_probably_ended('t1', speech_end_ns=T0 + int(0.9 * S))
        h.s.end_of_turn('t1', speech_end_ns=T0 + int(0.9 * S))
        h.wait(lambda: h.finals())
        assert h.s.stats['early_promoted'] == 1
        assert len(eng.calls) == 1 and h.finals()[0].reused_early
    finally:
        h.s.stop()


def test_end_of_turn_without_final_piece_times_out_into_final():
    h = Harness(partials=False, final_wait_ms=100, early_final=False)
    try:
        for i in range(5):
            h.audio('t1', i, 0.1)
        h.s.end_of_turn('t1', speech_end_ns=T0 + int(0.5 * S))
        h.wait(lambda: h.finals())
        assert h.finals()[0].text == 'words5'
    finally:
        h.s.stop()


def test_interrupt_and_discard_drop_turns(h):
    h.engine.gate.clear()
    for i in range(5):
        h.audio('t1', i, 0.1)
    h.audio('t1', 5, 0.1, is_final=True)
    h.s.interrupt('t1')
    h.audio('t2', 0, 0.5)
    h.s.discard('t2')
    h.audio('t3', 0, 0.5)
    h.audio('t3', 1, 0.1, is_final=True, discarded=True)
    h.engine.gate.set()
    time.sleep(0.3)
    assert h.finals() == []
    assert h.s.active_turns() == []


def test_unknown_turn_and_bad_pieces_are_counted(h):
    h.s.speech_probably_ended('nope')
    h.s.add_audio('', 0, np.zeros(10, np.int16))
    h.audio('t1', 3, 0.1)                     # first piece missing
    h.audio('t1', 3, 0.1)                     # duplicate
    assert {'unknown_turn', 'bad_input', 'missed_pieces', 'duplicate_piece'} <= \
        set(h.warnings)


def test_too_long_turn_is_truncated():
    h = Harness(partials=False, max_utterance_s=1.0)
    try:
        h.audio('t1', 0, 0.8)
        h.audio('t1', 1, 0.8, is_final=True)
        h.wait(lambda: h.finals())
        assert h.engine.calls == [16000] and 'utterance_too_long' in h.warnings
    finally:
        h.s.stop()


def test_empty_final_for_rejected_audio():
    h = Harness(FakeEngine(text=''), partials=False)
    try:
        h.audio('t1', 0, 0.5, is_final=True)
        h.wait(lambda: h.finals())
        assert h.finals()[0].text == '' and h.kinds() == [FINAL]
    finally:
        h.s.stop()


def test_wake_phrase_mode():
    h = Harness(FakeEngine(text='Hey Wally, what time is it?'), partials=False)
    try:
        h.audio('t1', 0, 0.5, is_final=True, wake='wallie')
        h.audio('t2', 0, 0.5, is_final=True, wake='computer')
        h.wait(lambda: len(h.finals()) == 2)
        by = {e.turn_id: e for e in h.finals()}
        assert by['t1'].text == 'What time is it?' and not by['t1'].wake_missing
        assert by['t2'].text == '' and by['t2'].wake_missing
    finally:
        h.s.stop()


@pytest.mark.parametrize('text,phrase,expected', [
    ('Wallie, turn on the lights.', 'wallie', 'Turn on the lights.'),
    ('OK Wall-E what is the time', 'wallie', 'What is the time'),
    ('What is the time, Wally?', 'wallie', 'What is the time'),
    ('Hey Jarvis, play music', 'hey jarvis', 'Play music'),
    ('Play some music', 'wallie', None),
    ('', 'wallie', None),
])
def test_apply_wake_phrase(text, phrase, expected):
    aliases = StreamConfig().wake_aliases
    assert apply_wake_phrase(text, phrase, aliases) == expected


def test_service_job_and_engine_swap(h):
    fut = h.s.submit(np.zeros(3200, np.int16))
    assert fut.result(3).text == 'words2'
    old = h.engine
    old.gate.clear()
    h.audio('t1', 0, 0.5)                     # turn in flight on the old engine
    new = FakeEngine(text='new')
    h.s.set_engine(new)
    assert not old.closed
    old.gate.set()
    h.audio('t1', 1, 0.1, is_final=True)
    h.wait(lambda: h.finals())
    assert h.finals()[0].text == 'words6'     # finished on the old model
    h.wait(lambda: old.closed)
    h.audio('t2', 0, 0.5, is_final=True)
    h.wait(lambda: len(h.finals()) == 2)
    assert h.finals()[1].text == 'new'
