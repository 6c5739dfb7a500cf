"""Per-turn streaming ASR: partials, early final, final, wake-phrase check (no ROS).

The voice gate streams a turn's audio in pieces. While the user speaks, partials are
transcribed at a cadence, but only when the worker is idle, so a partial never delays
anything. At SPEECH_PROBABLY_ENDED the turn is transcribed at once (the *early final*; a
partial already running over all the voiced audio is promoted instead of transcribing again).
At END_OF_TURN (or the final piece) the early result is published as the final when no voiced
audio came after it; SPEECH_RESUMED discards it. One worker thread runs the engine; jobs are
taken by priority: final, early final, service request, partial.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol

import numpy as np

from wallie_asr.config import SAMPLE_RATE, StreamConfig
from wallie_asr.engine import AsrResult
from wallie_asr.wake_phrase import apply_wake_phrase

PARTIAL, EARLY, FINAL = 'partial', 'early', 'final'
TICK_S = 0.05                      # the worker's time-based checks while a turn is open
_PRIORITY = {FINAL: 0, EARLY: 1, 'service': 2, PARTIAL: 3}


class Transcriber(Protocol):
    """What the streamer needs from an engine (WhisperEngine, or a fake in tests)."""

    def transcribe(self, audio: np.ndarray, *, language: Optional[str] = None,
                   vad_speech: Optional[bool] = None, extra_prompt: str = '',
                   max_s: float = 60.0) -> AsrResult:
        ...

    def close(self) -> None:
        ...


@dataclass(frozen=True)
class TranscriptEvent:
    """A transcript to publish."""

    turn_id: str
    kind: str                      # partial | early | final
    text: str
    result: AsrResult
    speech_end_ns: int = 0
    reused_early: bool = False     # final taken from the early result without transcribing
    first_partial: bool = False
    wake_missing: bool = False     # transcript wake mode: the phrase was not heard


# --------------------------------------------------------------------------- turns


@dataclass
class _AsrJob:
    kind: str
    audio: np.ndarray
    engine: Transcriber
    turn: Optional['_AsrTurn'] = None
    covered_end_ns: int = 0
    early: bool = False            # also counts as the turn's early final (promoted partial)
    future: Optional[Future] = None
    language: Optional[str] = None
    cancelled: bool = False


@dataclass
class _AsrTurn:
    turn_id: str
    engine: Transcriber
    wake_phrase: str = ''
    start_ns: int = 0
    chunks: list[np.ndarray] = field(default_factory=list)
    n: int = 0
    next_seq: int = 0
    last_partial_at: float = -1e9
    last_partial_text: str = ''
    partials_sent: int = 0
    probably_ended: bool = False
    early_speech_end_ns: int = 0
    early_wanted: bool = False     # waiting for the audio that covers speech_end
    early_job: Optional[_AsrJob] = None
    early_result: Optional[AsrResult] = None
    early_covered_ns: int = 0
    final_from_early: bool = False
    audio_complete: bool = False
    eot_at: Optional[float] = None
    speech_end_ns: int = 0
    finalizing: bool = False
    running: int = 0
    last_news: float = 0.0
    truncated: bool = False

    def covered_end_ns(self) -> int:
        if not self.start_ns:
            return 0
        return self.start_ns + self.n * 1_000_000_000 // SAMPLE_RATE

    def audio(self) -> np.ndarray:
        if not self.chunks:
            return np.zeros(0, np.float32)
        if len(self.chunks) > 1:
            self.chunks = [np.concatenate(self.chunks)]
        return self.chunks[0]


class TurnStreamer:
    """Turn state machine plus the single worker thread that runs the engine."""

    def __init__(self, engine: Transcriber, config: StreamConfig,
                 emit: Callable[[TranscriptEvent], None],
                 warn: Callable[[str, str], None] = lambda key, msg: None,
                 clock: Callable[[], float] = time.monotonic,
                 language: Optional[str] = None) -> None:
        self._engine = engine
        self.config = config
        self._emit = emit
        self._warn = warn
        self._clock = clock
        self.language = language
        self._lock = threading.Condition()
        self._turns: dict[str, _AsrTurn] = {}
        self._finished: deque[str] = deque(maxlen=256)
        self._queue: list[tuple[int, int, _AsrJob]] = []
        self._seq = itertools.count()
        self._running: Optional[_AsrJob] = None
        self._retired: list[Transcriber] = []
        self._outbox: list[TranscriptEvent] = []
        self._emit_lock = threading.Lock()
        self._stop = False
        self._thread: Optional[threading.Thread] = None
        self.stats: dict[str, int] = {k: 0 for k in (
            'partials', 'partials_skipped_busy', 'early_finals', 'early_promoted',
            'early_discarded', 'finals', 'finals_reused', 'empty_finals', 'rejected',
            'service_calls', 'errors')}

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            self._stop = False
        self._thread = threading.Thread(target=self._work, name='asr-worker', daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the worker; pending jobs are dropped (service callers get an error)."""
        with self._lock:
            self._stop = True
            for _, _, job in self._queue:
                if job.future is not None and not job.future.done():
                    job.future.set_exception(RuntimeError('ASR is shutting down'))
            self._queue.clear()
            self._turns.clear()
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def engine(self) -> Transcriber:
        return self._engine

    def set_engine(self, engine: Transcriber) -> None:
        """Use `engine` for new turns; turns in flight finish on the old one, then it closes."""
        with self._lock:
            if engine is self._engine:
                return
            self._retired.append(self._engine)
            self._engine = engine
        self._close_retired()

    def set_config(self, config: StreamConfig) -> None:
        with self._lock:
            self.config = config

    def busy(self) -> bool:
        with self._lock:
            return self._running is not None or bool(self._queue)

    def active_turns(self) -> list[str]:
        with self._lock:
            return list(self._turns)

    # -- inputs ---------------------------------------------------------------------------
    def add_audio(self, turn_id: str, seq: int, samples: np.ndarray, start_ns: int = 0,
                  is_final: bool = False, discarded: bool = False, speech_end_ns: int = 0,
                  wake_phrase: str = '') -> None:
        """One UtteranceAudio piece (mono float32 or int16 at 16 kHz)."""
        if not turn_id:
            self._warn('bad_input', 'utterance piece without a turn_id dropped')
            return
        with self._lock:
            if turn_id in self._finished:
                return  # late piece of a turn already answered
            if discarded:
                self._drop(turn_id, 'discarded')
                return
            turn = self._turns.get(turn_id)
            if turn is None:
                if seq != 0:
                    self._warn('missed_pieces', f'turn {turn_id}: first piece seen has seq '
                               f'{seq}; earlier audio was lost')
                turn = _AsrTurn(turn_id, self._engine, wake_phrase=wake_phrase,
                                start_ns=start_ns, next_seq=seq)
                self._turns[turn_id] = turn
                self._lock.notify_all()         # the worker now has time-based work
            turn.last_news = self._clock()
            if seq < turn.next_seq:
                self._warn('duplicate_piece', f'turn {turn_id}: piece {seq} repeated; ignored')
                return
            if seq > turn.next_seq:
                self._warn('missed_pieces', f'turn {turn_id}: pieces {turn.next_seq}..{seq - 1}'
                           ' missing')
            turn.next_seq = seq + 1
            if wake_phrase and not turn.wake_phrase:
                turn.wake_phrase = wake_phrase
            audio = _to_float(samples)
            limit = int(self.config.max_utterance_s * SAMPLE_RATE)
            if turn.n + audio.size > limit:
                audio = audio[:max(0, limit - turn.n)]
                if not turn.truncated:
                    turn.truncated = True
                    self._warn('utterance_too_long', f'turn {turn_id}: audio beyond '
                               f'{self.config.max_utterance_s:.0f} s dropped')
            if audio.size:
                turn.chunks.append(audio)
                turn.n += audio.size
            if is_final:
                turn.audio_complete = True
                if speech_end_ns:
                    turn.speech_end_ns = speech_end_ns
            self._advance(turn)
        self._flush()

    def speech_probably_ended(self, turn_id: str, speech_end_ns: int = 0) -> None:
        with self._lock:
            turn = self._known(turn_id, 'SPEECH_PROBABLY_ENDED')
            if turn is None or turn.finalizing:
                return
            turn.probably_ended = True
            turn.early_speech_end_ns = speech_end_ns
            if self.config.early_final:
                turn.early_wanted = True
            self._advance(turn)

    def speech_resumed(self, turn_id: str) -> None:
        with self._lock:
            turn = self._known(turn_id, 'SPEECH_RESUMED')
            if turn is None or turn.finalizing:
                return
            if turn.early_job is not None or turn.early_result is not None:
                self.stats['early_discarded'] += 1
            if turn.early_job is not None and turn.early_job.kind == EARLY:
                turn.early_job.cancelled = True
            if turn.early_job is not None:
                turn.early_job.early = False
            turn.early_job = None
            turn.early_result = None
            turn.early_wanted = False
            turn.probably_ended = False

    def end_of_turn(self, turn_id: str, speech_end_ns: int = 0) -> None:
        with self._lock:
            turn = self._known(turn_id, 'END_OF_TURN')
            if turn is None:
                return
            if turn.eot_at is None:
                turn.eot_at = self._clock()
            if speech_end_ns:
                turn.speech_end_ns = speech_end_ns
            self._advance(turn)
        self._flush()

    def discard(self, turn_id: str) -> None:
        with self._lock:
            self._drop(turn_id, 'discarded')

    def interrupt(self, turn_id: str = '') -> None:
        """Stop work for a turn ('' = every turn in progress)."""
        with self._lock:
            for tid in ([turn_id] if turn_id else list(self._turns)):
                self._drop(tid, 'interrupted')

    def submit(self, audio: np.ndarray, language: Optional[str] = None) -> Future:
        """Transcribe a clip outside any turn (the service); the Future gives an AsrResult."""
        fut: Future = Future()
        with self._lock:
            if self._stop:
                fut.set_exception(RuntimeError('ASR is not running'))
                return fut
            self.stats['service_calls'] += 1
            self._push(_AsrJob('service', _to_float(audio), self._engine, future=fut,
                               language=language))
        return fut

    def _tick(self) -> None:
        now = self._clock()
        for turn in list(self._turns.values()):
            if now - turn.last_news > self.config.turn_timeout_s and not turn.running:
                self._warn('turn_timeout', f'turn {turn.turn_id}: no news for '
                           f'{self.config.turn_timeout_s:.0f} s; forgotten')
                self._drop(turn.turn_id, 'timeout')
            elif turn.eot_at is not None:
                self._advance(turn)

    # -- state machine (lock held) --------------------------------------------------------
    def _known(self, turn_id: str, what: str) -> Optional[_AsrTurn]:
        turn = self._turns.get(turn_id)
        if turn is None and turn_id not in self._finished:
            self._warn('unknown_turn', f'{what} for unknown turn {turn_id!r} ignored')
        if turn is not None:
            turn.last_news = self._clock()
        return turn

    def _drop(self, turn_id: str, why: str) -> None:
        turn = self._turns.pop(turn_id, None)
        self._finished.append(turn_id)
        if turn is None:
            return
        for _, _, job in self._queue:
            if job.turn is turn:
                job.cancelled = True
        if self._running is not None and self._running.turn is turn:
            self._running.cancelled = True

    def _early_reusable(self, turn: _AsrTurn) -> bool:
        if turn.early_job is None and turn.early_result is None:
            return False
        covered = turn.early_covered_ns
        if not turn.speech_end_ns or not covered:
            return True  # no stamps to compare; SPEECH_RESUMED would have discarded it
        return turn.speech_end_ns <= covered + self.config.reuse_tolerance_ms * 1_000_000

    def _advance(self, turn: _AsrTurn) -> None:
        """Start whatever the turn needs now."""
        if turn.finalizing:
            return
        cfg = self.config
        now = self._clock()
        ended = turn.audio_complete or turn.eot_at is not None
        # 1. final
        if ended:
            if self._early_reusable(turn):
                turn.finalizing = True
                if turn.early_result is not None:
                    self._finish_from_early(turn)
                else:
                    turn.final_from_early = True
                return
            waited = turn.eot_at is not None and now - turn.eot_at >= cfg.final_wait_ms / 1e3
            if turn.audio_complete or waited:
                turn.finalizing = True
                self._cancel_queued_partials(turn)
                if turn.early_job is not None:
                    turn.early_job.cancelled = turn.early_job.kind == EARLY
                    turn.early_job.early = False
                    turn.early_job = None
                self._push(_AsrJob(FINAL, turn.audio().copy(), turn.engine, turn,
                                   covered_end_ns=turn.covered_end_ns()))
            return
        # 2. early final
        if turn.early_wanted and turn.early_job is None and turn.early_result is None:
            covered = turn.covered_end_ns()
            if turn.early_speech_end_ns and covered and covered < turn.early_speech_end_ns:
                return  # the voiced audio has not all arrived yet
            running = self._running
            if running is not None and running.turn is turn and running.kind == PARTIAL and \
                    not running.cancelled and (not turn.early_speech_end_ns or
                                               running.covered_end_ns >= turn.early_speech_end_ns):
                running.early = True
                turn.early_job = running
                turn.early_covered_ns = running.covered_end_ns
                self.stats['early_promoted'] += 1
            else:
                self._cancel_queued_partials(turn)
                job = _AsrJob(EARLY, turn.audio().copy(), turn.engine, turn,
                              covered_end_ns=covered, early=True)
                turn.early_job = job
                turn.early_covered_ns = covered
                self._push(job)
            turn.early_wanted = False
            return
        # 3. partial
        if cfg.partials and not turn.probably_ended and \
                turn.n >= cfg.min_partial_audio_ms * SAMPLE_RATE // 1000 and \
                now - turn.last_partial_at >= cfg.partial_interval_ms / 1e3:
            if self._running is not None or self._queue:
                self.stats['partials_skipped_busy'] += 1
                return
            turn.last_partial_at = now
            self._push(_AsrJob(PARTIAL, turn.audio().copy(), turn.engine, turn,
                               covered_end_ns=turn.covered_end_ns()))

    def _cancel_queued_partials(self, turn: _AsrTurn) -> None:
        for _, _, job in self._queue:
            if job.turn is turn and job.kind == PARTIAL:
                job.cancelled = True

    def _push(self, job: _AsrJob) -> None:
        if job.turn is not None:
            job.turn.running += 1
        heapq.heappush(self._queue, (_PRIORITY[job.kind], next(self._seq), job))
        self._lock.notify_all()

    def _finish_from_early(self, turn: _AsrTurn) -> None:
        assert turn.early_result is not None
        self.stats['finals_reused'] += 1
        self._final_event(turn, turn.early_result, reused=True)

    def _final_event(self, turn: _AsrTurn, result: AsrResult, reused: bool) -> None:
        text, wake_missing = self._wake(turn, result.text)
        self.stats['finals'] += 1
        if not text:
            self.stats['empty_finals'] += 1
        self._turns.pop(turn.turn_id, None)
        self._finished.append(turn.turn_id)
        if text or self.config.publish_empty_finals:
            self._out(TranscriptEvent(
                turn.turn_id, FINAL, text, result, speech_end_ns=turn.speech_end_ns,
                reused_early=reused, wake_missing=wake_missing))

    def _wake(self, turn: _AsrTurn, text: str) -> tuple[str, bool]:
        if not turn.wake_phrase or not text:
            return text, False
        stripped = apply_wake_phrase(text, turn.wake_phrase, self.config.wake_aliases)
        if stripped is None:
            return '', True
        return stripped, False

    # -- worker ---------------------------------------------------------------------------
    def _out(self, event: TranscriptEvent) -> None:
        """Queue an event for publication (lock held); _flush() publishes it in order."""
        self._outbox.append(event)

    def _flush(self) -> None:
        with self._emit_lock:
            with self._lock:
                events, self._outbox = self._outbox, []
            for ev in events:
                try:
                    self._emit(ev)
                except Exception as exc:
                    self.stats['errors'] += 1
                    self._warn('emit_error', f'publishing a transcript failed: {exc!r}')

    def _work(self) -> None:
        while True:
            job: Optional[_AsrJob] = None
            with self._lock:
                if self._stop:
                    return
                if not self._queue:
                    # Time-based work exists only while a turn is open: with none, sleep
                    # until something arrives (no polling in an idle graph).
                    self._lock.wait(TICK_S if self._turns else None)
                    if not self._stop:
                        self._tick()
                else:
                    _, _, job = heapq.heappop(self._queue)
                    if job.cancelled:
                        self._job_done(job)
                        job = None
                    else:
                        self._running = job
            self._flush()
            if job is None:
                continue
            result: Optional[AsrResult] = None
            error: Optional[BaseException] = None
            try:
                extra = job.turn.wake_phrase if job.turn is not None else ''
                result = job.engine.transcribe(job.audio, language=job.language or self.language,
                                               extra_prompt=extra,
                                               max_s=max(60.0, self.config.max_utterance_s))
            except Exception as exc:  # report, never kill the worker
                error = exc
            with self._lock:
                self._running = None
                self._complete(job, result, error)
                self._job_done(job)
            self._flush()
            self._close_retired()

    def _job_done(self, job: _AsrJob) -> None:
        if job.turn is not None:
            job.turn.running -= 1

    def _complete(self, job: _AsrJob, result: Optional[AsrResult],
                  error: Optional[BaseException]) -> None:
        if job.future is not None:
            if error is not None:
                job.future.set_exception(error)
            else:
                job.future.set_result(result)
            return
        turn = job.turn
        if error is not None or result is None:
            self.stats['errors'] += 1
            self._warn('engine_error', f'{job.kind} transcription failed: {error!r}')
            if turn is not None and job.kind == FINAL and not job.cancelled:
                result = AsrResult(text='', rejected='error')
            elif turn is not None and job.early and turn.early_job is job:
                turn.early_job = None
                turn.finalizing = False
                turn.final_from_early = False
                turn.early_covered_ns = 0
                self._advance(turn)
                return
            else:
                return
        if result.rejected:
            self.stats['rejected'] += 1
        if turn is None or job.cancelled or self._turns.get(turn.turn_id) is not turn:
            return
        if job.kind == FINAL:
            self._final_event(turn, result, reused=False)
            return
        if job.kind == PARTIAL and result.text and result.text != turn.last_partial_text \
                and not turn.finalizing:
            turn.last_partial_text = result.text
            turn.partials_sent += 1
            self.stats['partials'] += 1
            self._out(TranscriptEvent(
                turn.turn_id, PARTIAL, result.text, result,
                first_partial=turn.partials_sent == 1))
        if job.early and turn.early_job is job:
            turn.early_result = result
            text, _ = self._wake(turn, result.text)
            if text:
                self.stats['early_finals'] += 1
                self._out(TranscriptEvent(
                    turn.turn_id, EARLY, text, result,
                    speech_end_ns=turn.early_speech_end_ns))
            if turn.final_from_early:
                self._finish_from_early(turn)
            else:
                self._advance(turn)
        else:
            self._advance(turn)

    def _close_retired(self) -> None:
        with self._lock:
            in_use = {id(t.engine) for t in self._turns.values()}
            in_use |= {id(j.engine) for _, _, j in self._queue}
            if self._running is not None:
                in_use.add(id(self._running.engine))
            done = [e for e in self._retired if id(e) not in in_use]
            self._retired = [e for e in self._retired if id(e) in in_use]
        for engine in done:
            try:
                engine.close()
            except Exception as exc:
                self._warn('close_error', f'closing the old model failed: {exc!r}')

    def close_all(self) -> None:
        """Close retired engines now (cleanup)."""
        with self._lock:
            retired, self._retired = self._retired, []
        for engine in retired:
            engine.close()


def _to_float(samples: Any) -> np.ndarray:
    arr = np.asarray(samples)
    if arr.dtype == np.int16:
        return arr.astype(np.float32) * (1.0 / 32768.0)
    return arr.astype(np.float32, copy=False)
