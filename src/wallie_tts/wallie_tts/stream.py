"""From reply text to a continuous stream of fixed-size frames at the output rate.

Pure Python (no ROS imports). For each piece of a chunk (see ``clauses.py``) the engine's audio
is trimmed to a consistent amount of leading/trailing silence, given short raised-cosine
fades at the cut edges (no clicks), followed by a pause that depends on the punctuation
(no gaps, no doubled silences), scaled by the volume, resampled with soxr to the output
rate and cut into frames of ``frame_ms``. The last frame of a chunk is padded with silence
and marked, so every frame of a reply has the same length.
"""

from __future__ import annotations

import threading
from typing import Iterable, Iterator, Optional

import numpy as np

from wallie_tts import clauses
from wallie_tts.config import StreamSettings
from wallie_tts.engine import TtsEngine

_EMPTY = np.zeros(0, dtype=np.float32)


def fade_curve(n: int) -> np.ndarray:
    """Rising raised-cosine ramp of n samples (0 -> 1, exclusive of both ends)."""
    if n <= 0:
        return _EMPTY
    t = (np.arange(n, dtype=np.float32) + 0.5) / n
    return (0.5 - 0.5 * np.cos(np.pi * t)).astype(np.float32)


class EdgeTrimmer:
    """Trim leading/trailing silence of one piece of streamed audio and fade its edges.

    ``push`` returns audio that can be played now (leading silence removed, everything up
    to the last loud sample seen so far); the quiet tail is held back because it may turn
    out to be the end. ``finish`` returns the kept part of the tail, faded out.
    """

    def __init__(self, rate: int, threshold: float, lead_ms: float, tail_ms: float,
                 fade_ms: float) -> None:
        self.threshold = threshold
        self.lead = int(rate * lead_ms / 1000)
        self.fade = int(rate * fade_ms / 1000)
        self.tail = max(int(rate * tail_ms / 1000), self.fade)
        self._started = False
        self._held = _EMPTY

    @property
    def started(self) -> bool:
        """True once a loud sample was seen."""
        return self._started

    def push(self, block: np.ndarray) -> np.ndarray:
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        if not self._started:
            if self._held.size:  # the end of the leading silence, kept for the lead-in
                block = np.concatenate((self._held, block))
            loud = np.flatnonzero(np.abs(block) > self.threshold)
            if loud.size == 0:
                self._held = block[len(block) - self.lead:] if self.lead else _EMPTY
                return _EMPTY  # still in the leading silence
            block = block[max(0, int(loud[0]) - self.lead):].copy()
            n = min(self.fade, len(block))
            block[:n] *= fade_curve(self.fade)[:n]
            self._started = True
            self._held = _EMPTY
        data = np.concatenate((self._held, block)) if self._held.size else block
        loud = np.flatnonzero(np.abs(data) > self.threshold)
        if loud.size == 0:
            self._held = data
            return _EMPTY
        cut = int(loud[-1]) + 1
        self._held = data[cut:]
        return data[:cut]

    def finish(self) -> np.ndarray:
        """The kept tail (``tail_ms``), faded out; the trimmer is done afterwards."""
        if not self._started:
            return _EMPTY
        tail = self._held[:self.tail].copy()
        n = min(self.fade, len(tail))
        if n:
            tail[len(tail) - n:] *= fade_curve(self.fade)[::-1][self.fade - n:]
        self._held = _EMPTY
        return tail


class Resampler:
    """Streaming resampler (soxr HQ) from the engine rate to the output rate."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = int(in_rate)
        self.out_rate = int(out_rate)
        self._stream = None
        if self.in_rate != self.out_rate:
            import soxr
            self._stream = soxr.ResampleStream(self.in_rate, self.out_rate, 1,
                                               dtype='float32', quality='HQ')

    def process(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self._stream is None:
            return x
        return np.asarray(self._stream.resample_chunk(x, last=last), dtype=np.float32)


def frame_stream(blocks: Iterable[np.ndarray],
                 frame_samples: int) -> Iterator[tuple[np.ndarray, bool]]:
    """Cut blocks into frames of ``frame_samples``; the last is zero-padded and marked True."""
    pending: list[np.ndarray] = []
    pending_n = 0
    held: Optional[np.ndarray] = None
    for block in blocks:
        if block.size == 0:
            continue
        pending.append(block)
        pending_n += block.size
        if pending_n < frame_samples:
            continue
        buf = np.concatenate(pending)
        full = len(buf) // frame_samples
        for i in range(full):
            if held is not None:
                yield held, False
            held = buf[i * frame_samples:(i + 1) * frame_samples]
        rest = buf[full * frame_samples:]
        pending, pending_n = ([rest], rest.size) if rest.size else ([], 0)
    if pending_n:
        if held is not None:
            yield held, False
        last = np.zeros(frame_samples, dtype=np.float32)
        buf = np.concatenate(pending)
        last[:len(buf)] = buf
        held = last
    if held is not None:
        yield held, True


class ChunkSynthesizer:
    """Synthesize reply chunks with one engine into output-rate blocks and frames."""

    def __init__(self, engine: TtsEngine, settings: StreamSettings) -> None:
        self.engine = engine
        self.settings = settings

    def pause_ms(self, kind: str) -> float:
        s = self.settings
        return {clauses.SENTENCE: s.sentence_pause_ms, clauses.CLAUSE: s.clause_pause_ms,
                clauses.WORD: s.word_pause_ms}.get(kind, s.word_pause_ms)

    def pieces(self, text: str, first: bool) -> list[clauses.Piece]:
        s = self.settings
        return clauses.split_pieces(text, first, s.split_first_clause, s.first_piece_max_words)

    def blocks(self, text: str, first: bool,
               stop: Optional[threading.Event] = None) -> Iterator[np.ndarray]:
        """Output-rate float32 blocks for one chunk of (normalised) text."""
        stop = stop or threading.Event()
        s = self.settings
        rate = self.engine.sample_rate
        volume = np.float32(s.volume)
        pieces = self.pieces(text, first)
        resampler = Resampler(rate, s.output_rate_hz)
        flushed = False
        for i, piece in enumerate(pieces):
            trimmer = EdgeTrimmer(rate, s.silence_threshold, s.lead_ms, s.tail_ms, s.fade_ms)
            for block in self.engine.synthesize(piece.text, stop, s.speaking_rate):
                if stop.is_set():
                    return
                out = trimmer.push(block)
                if out.size:
                    out = resampler.process(out * volume)
                    if out.size:
                        yield out
            if stop.is_set():
                return
            if not trimmer.started:
                continue  # nothing audible in this piece
            tail = trimmer.finish() * volume
            pause = np.zeros(int(rate * self.pause_ms(piece.pause) / 1000), np.float32)
            flushed = i == len(pieces) - 1
            out = resampler.process(np.concatenate((tail, pause)), last=flushed)
            if out.size:
                yield out
        if pieces and not flushed:
            out = resampler.process(_EMPTY, last=True)
            if out.size:
                yield out

    def frames(self, text: str, first: bool,
               stop: Optional[threading.Event] = None) -> Iterator[tuple[np.ndarray, bool]]:
        """(frame, is_last_of_chunk) pairs for one chunk; nothing more once stop is set."""
        stop = stop or threading.Event()
        for item in frame_stream(self.blocks(text, first, stop), self.settings.frame_samples):
            if stop.is_set():
                return
            yield item

    def synthesize_all(self, text: str, first: bool = True) -> np.ndarray:
        """The whole chunk as one array (tests and benchmarks)."""
        parts = list(self.blocks(text, first))
        return np.concatenate(parts) if parts else _EMPTY.copy()
