"""Chunk joining: trimming, fades, pauses, resampling and framing (engine is a test double)."""

import threading

import numpy as np
import pytest

from wallie_tts import clauses
from wallie_tts.config import StreamSettings
from wallie_tts.engine import TtsEngine
from wallie_tts.stream import ChunkSynthesizer, EdgeTrimmer, Resampler, frame_stream

RATE = 22050


class ToneEngine(TtsEngine):
    """Each piece: 200 ms silence, 0.1 s of tone per word, 300 ms silence; optional blocks."""

    name = 'tone'

    def __init__(self, blocks=1, rate=RATE):
        self.blocks = blocks
        self.rate = rate
        self.calls = []

    @property
    def sample_rate(self):
        return self.rate

    def load(self):
        pass

    def synthesize(self, text, stop, speed=1.0):
        self.calls.append(text)
        n = int(0.1 * self.rate) * len(text.split())
        t = np.arange(n) / self.rate
        tone = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
        audio = np.concatenate([np.zeros(int(0.2 * self.rate), np.float32), tone,
                                np.zeros(int(0.3 * self.rate), np.float32)])
        for part in np.array_split(audio, self.blocks):
            if stop.is_set():
                return
            yield part


def voiced_runs(x, thr=0.01):
    """(start, end) sample ranges where |x| > thr, merging gaps shorter than 5 ms."""
    loud = np.flatnonzero(np.abs(x) > thr)
    if not loud.size:
        return []
    runs, start, prev = [], loud[0], loud[0]
    for i in loud[1:]:
        if i - prev > 0.005 * RATE:
            runs.append((start, prev + 1))
            start = i
        prev = i
    runs.append((start, prev + 1))
    return runs


def test_trimmer_keeps_lead_and_tail_and_fades():
    tr = EdgeTrimmer(RATE, 0.01, lead_ms=5, tail_ms=40, fade_ms=4)
    eng = ToneEngine()
    audio = np.concatenate(list(eng.synthesize('one two', threading.Event())))
    out = np.concatenate([tr.push(audio), tr.finish()])
    lead = np.flatnonzero(np.abs(out) > 0.01)[0]
    tail = len(out) - 1 - np.flatnonzero(np.abs(out) > 0.01)[-1]
    assert lead == pytest.approx(0.005 * RATE, abs=2)
    assert tail == pytest.approx(0.040 * RATE, abs=2)
    assert abs(out[0]) < 1e-3 and abs(out[-1]) < 1e-3


@pytest.mark.parametrize('blocks', [1, 3, 17, 200])
def test_trimmer_streaming_equals_whole(blocks):
    eng = ToneEngine(blocks=1)
    whole = np.concatenate(list(eng.synthesize('one two three', threading.Event())))
    ref_tr = EdgeTrimmer(RATE, 0.01, 5, 40, 4)
    ref = np.concatenate([ref_tr.push(whole), ref_tr.finish()])
    tr = EdgeTrimmer(RATE, 0.01, 5, 40, 4)
    parts = [tr.push(b) for b in np.array_split(whole, blocks)] + [tr.finish()]
    np.testing.assert_allclose(np.concatenate(parts), ref, atol=1e-6)


def test_trimmer_silent_piece_gives_nothing():
    tr = EdgeTrimmer(RATE, 0.01, 5, 40, 4)
    assert tr.push(np.zeros(5000, np.float32)).size == 0
    assert tr.finish().size == 0 and not tr.started


@pytest.mark.parametrize('n_samples, frame', [(0, 10), (5, 10), (10, 10), (25, 10), (1000, 882)])
def test_frame_stream_sizes_and_last_flag(n_samples, frame):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, n_samples).astype(np.float32)
    blocks = np.array_split(x, 7) if n_samples else []
    frames = list(frame_stream(blocks, frame))
    assert len(frames) == -(-n_samples // frame)
    assert all(len(f) == frame for f, _ in frames)
    assert [last for _, last in frames] == [False] * (len(frames) - 1) + [True] * bool(frames)
    if frames:
        joined = np.concatenate([f for f, _ in frames])
        np.testing.assert_array_equal(joined[:n_samples], x)
        assert not joined[n_samples:].any()


@pytest.mark.parametrize('out_rate', [16000, 22050, 24000, 48000])
def test_resampler_streaming_length(out_rate):
    rs = Resampler(RATE, out_rate)
    x = np.sin(np.arange(RATE) / 10).astype(np.float32)
    parts = [rs.process(b) for b in np.array_split(x, 9)]
    parts.append(rs.process(np.zeros(0, np.float32), last=True))
    y = np.concatenate(parts)
    assert abs(len(y) - out_rate) <= 2


def test_chunk_pauses_between_pieces():
    eng = ToneEngine()
    s = StreamSettings(output_rate_hz=RATE, sentence_pause_ms=200, clause_pause_ms=100,
                       lead_ms=5, tail_ms=40, fade_ms=4)
    synth = ChunkSynthesizer(eng, s)
    out = synth.synthesize_all('Okay, one two three. Four five.', first=True)
    assert eng.calls == ['Okay,', 'one two three.', 'Four five.']
    runs = voiced_runs(out)
    assert len(runs) == 3
    gaps_ms = [(b[0] - a[1]) / RATE * 1000 for a, b in zip(runs, runs[1:])]
    # tail 40 + pause + lead 5 between voiced parts: consistent, no doubled engine silence
    assert gaps_ms[0] == pytest.approx(40 + 100 + 5, abs=1)
    assert gaps_ms[1] == pytest.approx(40 + 200 + 5, abs=1)


def test_chunks_join_without_clicks():
    eng = ToneEngine()
    synth = ChunkSynthesizer(eng, StreamSettings(output_rate_hz=16000))
    audio = np.concatenate([synth.synthesize_all(t, first=i == 0)
                            for i, t in enumerate(['Hello there, friend.', 'How are you?'])])
    # every chunk starts and ends at (near) zero, and there is no jump larger than the tone's
    # own largest sample-to-sample step anywhere in the joined stream
    tone_step = 0.5 * 2 * np.pi * 220 / 16000
    assert np.abs(np.diff(audio)).max() <= tone_step * 1.2
    assert abs(audio[0]) < 0.01 and abs(audio[-1]) < 0.01


def test_first_piece_is_short_for_latency():
    pieces = clauses.split_pieces(
        'I have set a timer for ten minutes and I will tell you when it is done.', True,
        first_piece_max_words=5)
    assert pieces[0].text == 'I have set a timer'
    assert pieces[0].pause == clauses.WORD
    assert ' '.join(p.text for p in pieces) == ('I have set a timer for ten minutes and I '
                                                'will tell you when it is done.')


@pytest.mark.parametrize('text, first, expected', [
    ('Sure.', True, [('Sure.', 'sentence')]),
    ('Okay, done. Next one!', True, [('Okay,', 'clause'), ('done.', 'sentence'),
                                     ('Next one!', 'sentence')]),
    ('Okay, done. Next one!', False, [('Okay, done.', 'sentence'), ('Next one!', 'sentence')]),
    ('no punctuation here', True, [('no punctuation here', 'word')]),
    ('  ', True, []),
])
def test_split_pieces_table(text, first, expected):
    got = [(p.text, p.pause) for p in clauses.split_pieces(text, first)]
    assert got == expected


def test_stop_event_ends_synthesis():
    eng = ToneEngine(blocks=50)
    synth = ChunkSynthesizer(eng, StreamSettings())
    stop = threading.Event()
    frames = synth.frames('one two three four five six seven. Eight nine ten.', False, stop)
    next(frames)
    stop.set()
    assert list(frames) == []
    assert len(eng.calls) == 1


def test_volume_and_rate_applied():
    eng = ToneEngine()
    loud = ChunkSynthesizer(eng, StreamSettings(output_rate_hz=16000)).synthesize_all('one.')
    quiet = ChunkSynthesizer(eng, StreamSettings(output_rate_hz=16000, volume=0.5)) \
        .synthesize_all('one.')
    assert np.abs(quiet).max() == pytest.approx(0.5 * np.abs(loud).max(), rel=0.02)
