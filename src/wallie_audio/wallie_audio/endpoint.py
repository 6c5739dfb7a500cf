"""Endpointing: turn a stream of per-block speech probabilities into speech events.

Pure state machine (no audio, no ROS). One call to :meth:`Endpointer.step` per VAD block
(32 ms by default). Times are nanoseconds on the capture clock (block start stamps).

States: SILENCE -> STARTING (voiced, not yet debounced) -> SPEECH -> TRAILING (silence
after speech) -> back to SPEECH (resumed) or to SILENCE (endpoint confirmed / discarded).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

MS = 1_000_000
# Silero keeps a speech probability above threshold for a while after the voice stops (its
# recurrent state and 32 ms blocks lag the acoustics). Tuned on the benchmark's espeak-ng
# fixtures (3 voices x 3 questions, clean and at -45 dBFS noise) so that the median
# speech-end error is ~0 ms: `python -m wallie_audio.bench` reports it.
VAD_END_LAG_MS = 70


@dataclass(frozen=True)
class EndpointConfig:
    """Endpointing parameters (all durations in milliseconds)."""

    threshold: float = 0.5          # probability at/above which a block is voiced
    neg_threshold: float = 0.35     # probability below which a block is silent (hysteresis)
    speech_start_ms: int = 64       # voiced time needed to confirm a speech start
    min_silence_ms: int = 400       # silence after speech that confirms the end of the turn
    probable_end_ms: int = 64       # silence after speech that signals "probably ended"
    complete_silence_ms: int = 200  # ... when the early transcript reads as complete (0 = off)
    min_speech_ms: int = 120        # voiced time below which the utterance is discarded
    max_utterance_ms: int = 15000   # forced endpoint after this much speech
    end_offset_ms: int = VAD_END_LAG_MS  # reported speech end = last voiced block end - this

    def __post_init__(self) -> None:
        if not 0.0 <= self.neg_threshold <= self.threshold <= 1.0:
            raise ValueError('need 0 <= neg_threshold <= threshold <= 1')
        for name in ('speech_start_ms', 'min_silence_ms', 'probable_end_ms',
                     'complete_silence_ms', 'min_speech_ms', 'max_utterance_ms', 'end_offset_ms'):
            if getattr(self, name) < 0:
                raise ValueError(f'{name} must be >= 0')


class State(enum.Enum):
    """Where the endpointer is in an utterance."""

    SILENCE = 'silence'
    STARTING = 'starting'
    SPEECH = 'speech'
    TRAILING = 'trailing'


class Kind(enum.Enum):
    """The kinds of decision the endpointer reports."""

    START = 'start'                  # speech confirmed (after the debounce)
    PROBABLY_ENDED = 'probably_ended'
    RESUMED = 'resumed'              # speech again after PROBABLY_ENDED
    END = 'end'                      # endpoint confirmed
    DISCARD = 'discard'              # speech too short: not a turn


@dataclass(frozen=True)
class Event:
    """One endpointer decision, with the utterance's voiced start and end stamps (ns)."""

    kind: Kind
    stamp_ns: int                    # when the decision was made (end of the current block)
    speech_start_ns: int             # first voiced sample of the utterance
    speech_end_ns: int = 0           # last voiced sample (PROBABLY_ENDED, END, DISCARD)
    probability: float = 0.0
    reason: str = ''                 # END: 'silence' | 'complete' | 'max_length' | ...;
                                     # DISCARD: why


class Endpointer:
    """Speech start / probable end / endpoint decisions from VAD probabilities."""

    def __init__(self, config: EndpointConfig | None = None) -> None:
        self.config = config or EndpointConfig()
        self.reset()

    def reset(self) -> None:
        self.state = State.SILENCE
        self._run_start_ns = 0       # first voiced block of the current voiced run
        self._voiced_ns = 0          # voiced time of the current run (STARTING)
        self._speech_start_ns = 0
        self._last_voiced_end_ns = 0
        self._speech_voiced_ns = 0   # total voiced time of the utterance
        self._silence_ns = 0
        self._probable_sent = False
        self._complete = False       # the text so far reads as a whole turn (see complete())

    def reconfigure(self, config: EndpointConfig) -> None:
        """Apply new parameters; the current utterance continues under the new rules."""
        self.config = config

    @property
    def in_speech(self) -> bool:
        return self.state in (State.SPEECH, State.TRAILING)

    @property
    def speech_start_ns(self) -> int:
        return self._speech_start_ns

    @property
    def last_voiced_end_ns(self) -> int:
        return self._last_voiced_end_ns

    @property
    def trailing(self) -> bool:
        """In the silence after speech, PROBABLY_ENDED sent, endpoint not yet confirmed."""
        return self.state is State.TRAILING and self._probable_sent

    @property
    def probable_speech_end_ns(self) -> int:
        """The speech end PROBABLY_ENDED reported for the current silence (0 if none)."""
        return self._speech_end_ns() if self.trailing else 0

    def _required_silence_ns(self) -> int:
        c = self.config
        if self._complete and c.complete_silence_ms > 0:
            return min(c.min_silence_ms, c.complete_silence_ms) * MS
        return c.min_silence_ms * MS

    def complete(self, stamp_ns: int) -> Event | None:
        """The words so far form a complete turn (decided elsewhere, from the early
        transcript): from now on `complete_silence_ms` of silence confirms the endpoint.

        Returns the END event at once when that much silence was already seen (stamped
        `stamp_ns`), else None (a later `step` confirms it; speech again cancels it).
        No effect unless trailing after PROBABLY_ENDED or with complete_silence_ms = 0."""
        if not self.trailing or self.config.complete_silence_ms <= 0:
            return None
        self._complete = True
        if self._silence_ns >= self._required_silence_ns():
            return self._finish(stamp_ns, 0.0, 'complete')
        return None

    def _speech_end_ns(self) -> int:
        """Acoustic speech end estimate: the end of the last voiced block, moved back by the
        VAD's lag once silence was seen (not when speech is cut off by max length or a
        push-to-talk release mid-word), never before the speech start."""
        end = self._last_voiced_end_ns
        if self.state is State.TRAILING:
            end -= self.config.end_offset_ms * MS
        return max(self._speech_start_ns, end)

    def step(self, prob: float, start_ns: int, dur_ns: int) -> list[Event]:
        """Feed one block [start_ns, start_ns + dur_ns) with speech probability `prob`."""
        c = self.config
        end_ns = start_ns + dur_ns
        voiced = prob >= c.threshold
        silent = prob < c.neg_threshold
        out: list[Event] = []
        if self.state is State.SILENCE:
            if voiced:
                self.state = State.STARTING
                self._run_start_ns = start_ns
                self._voiced_ns = 0
        if self.state is State.STARTING:
            if voiced:
                self._voiced_ns += dur_ns
                if self._voiced_ns >= c.speech_start_ms * MS:
                    self.state = State.SPEECH
                    self._speech_start_ns = self._run_start_ns
                    self._speech_voiced_ns = self._voiced_ns
                    self._last_voiced_end_ns = end_ns
                    self._probable_sent = False
                    out.append(Event(Kind.START, end_ns, self._speech_start_ns,
                                     probability=prob))
            elif silent:
                self.state = State.SILENCE
            return out
        if self.state is State.SPEECH:
            if silent:
                self.state = State.TRAILING
                self._silence_ns = 0
            else:
                self._speech_voiced_ns += dur_ns
                self._last_voiced_end_ns = end_ns
        if self.state is State.TRAILING:
            if voiced:
                self.state = State.SPEECH
                self._speech_voiced_ns += dur_ns
                self._last_voiced_end_ns = end_ns
                self._complete = False      # the transcript no longer covers the speech
                if self._probable_sent:
                    self._probable_sent = False
                    out.append(Event(Kind.RESUMED, end_ns, self._speech_start_ns,
                                     probability=prob))
            else:
                self._silence_ns += dur_ns
                if not self._probable_sent and self._silence_ns >= c.probable_end_ms * MS \
                        and self._silence_ns < c.min_silence_ms * MS:
                    self._probable_sent = True
                    out.append(Event(Kind.PROBABLY_ENDED, end_ns, self._speech_start_ns,
                                     self._speech_end_ns(), prob))
                if self._silence_ns >= self._required_silence_ns():
                    out.append(self._finish(end_ns, prob,
                                            'complete' if self._complete else 'silence'))
                    return out
        if self.in_speech and end_ns - self._speech_start_ns >= c.max_utterance_ms * MS:
            if self.state is State.SPEECH:
                self._last_voiced_end_ns = end_ns
            out.append(self._finish(end_ns, prob, 'max_length'))
        return out

    def force_speech(self, speech_start_ns: int, voiced_ns: int, last_voiced_end_ns: int) -> None:
        """Enter SPEECH directly (barge-in decided the speech start elsewhere)."""
        self.reset()
        self.state = State.SPEECH
        self._speech_start_ns = speech_start_ns
        self._speech_voiced_ns = voiced_ns
        self._last_voiced_end_ns = last_voiced_end_ns

    def finish_now(self, stamp_ns: int, reason: str = 'forced') -> Event | None:
        """Force the endpoint (e.g. push-to-talk released); None if not in speech."""
        if not self.in_speech:
            self.reset()
            return None
        return self._finish(stamp_ns, 0.0, reason)

    def _finish(self, stamp_ns: int, prob: float, reason: str) -> Event:
        c = self.config
        speech_end_ns = self._speech_end_ns()
        if self._speech_voiced_ns < c.min_speech_ms * MS:
            ev = Event(Kind.DISCARD, stamp_ns, self._speech_start_ns, speech_end_ns,
                       prob, f'only {self._speech_voiced_ns / MS:.0f} ms of speech '
                       f'(< min_speech_ms {c.min_speech_ms})')
        else:
            ev = Event(Kind.END, stamp_ns, self._speech_start_ns, speech_end_ns,
                       prob, reason)
        self.reset()
        return ev
