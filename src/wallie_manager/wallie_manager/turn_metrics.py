"""Join per-stage latency stamps into one record per turn (pure Python: no rclpy, no msgs).

Every stage publishes a StageStamp (turn id, stage name, system-clock time). The joiner
collects them per turn and decides when a turn is complete:

* the player reports the end of the reply (FINISHED or FLUSHED playback event, or the
  ``flushed`` stamp): complete after a short settle time, so stamps still in flight on
  other topics are included;
* the turn was interrupted before anything became audible: complete ``interrupt_grace_s``
  after the interrupt;
* nothing new arrived for ``turn_timeout_s`` (no reply, e.g. an empty transcript) or, once
  the reply is audible, for ``playback_timeout_s``: complete with what is known.

A completed turn id is remembered (bounded) so late stamps never open a second record.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from dataclasses import dataclass, field

SPEECH_END = 'speech_end'
ENDPOINT = 'endpoint'
ASR_FIRST_PARTIAL = 'asr_first_partial'
ASR_FINAL = 'asr_final'
LLM_FIRST_TOKEN = 'llm_first_token'
FIRST_CHUNK = 'first_chunk'
LLM_DONE = 'llm_done'
TTS_FIRST_AUDIO = 'tts_first_audio'
FIRST_AUDIBLE = 'first_audible'
INTERRUPT = 'interrupt'
FLUSHED = 'flushed'

STAGES = (SPEECH_END, ENDPOINT, ASR_FIRST_PARTIAL, ASR_FINAL, LLM_FIRST_TOKEN, FIRST_CHUNK,
          LLM_DONE, TTS_FIRST_AUDIO, FIRST_AUDIBLE, INTERRUPT, FLUSHED)

# The pipeline component each stamp belongs to: the `stage` field of the JSONL log, so
# `jq 'select(.stage=="asr")'` finds every ASR record (the stamp name is in `event`).
COMPONENT = {
    SPEECH_END: 'vad', ENDPOINT: 'vad',
    ASR_FIRST_PARTIAL: 'asr', ASR_FINAL: 'asr',
    LLM_FIRST_TOKEN: 'llm', FIRST_CHUNK: 'llm', LLM_DONE: 'llm',
    TTS_FIRST_AUDIO: 'tts',
    FIRST_AUDIBLE: 'player', FLUSHED: 'player',
    INTERRUPT: 'interrupt',
}

# (field of TurnMetrics, from stamp, to stamp): the durations the message carries.
DURATIONS = (
    ('endpoint_ms', SPEECH_END, ENDPOINT),
    ('asr_ms', ENDPOINT, ASR_FINAL),
    ('llm_first_chunk_ms', ASR_FINAL, FIRST_CHUNK),
    ('tts_first_audio_ms', FIRST_CHUNK, TTS_FIRST_AUDIO),
    ('playout_ms', TTS_FIRST_AUDIO, FIRST_AUDIBLE),
    ('e2e_ms', SPEECH_END, FIRST_AUDIBLE),
    ('e2e_from_endpoint_ms', ENDPOINT, FIRST_AUDIBLE),
    ('flush_ms', INTERRUPT, FLUSHED),
)
# Extra durations reported in the log and Prometheus only.
EXTRA_DURATIONS = (
    ('llm_first_token_ms', ASR_FINAL, LLM_FIRST_TOKEN),
    ('llm_total_ms', ASR_FINAL, LLM_DONE),
)

MAX_TURN_ID_CHARS = 128
MAX_TEXT_CHARS = 16384
# Stamps further than this from the local clock are malformed (every node stamps with the
# system clock of this machine).
MAX_CLOCK_SKEW_NS = 24 * 3600 * 10**9

OUTCOME_ANSWERED = 'answered'        # the reply became audible and was not cut short
OUTCOME_INTERRUPTED = 'interrupted'  # an interrupt or flush ended the reply
OUTCOME_UNANSWERED = 'unanswered'    # nothing became audible (empty transcript, failure)
OUTCOME_NOT_HEARD = 'not_heard'      # the transcript was unreliable: "I didn't catch that"

_SAFE_ID = re.compile(r'[^A-Za-z0-9_.-]+')


def ms_between(stamps: dict[str, int], start: str, end: str) -> float:
    """Milliseconds between two stamps of a turn; NaN if either is missing."""
    a, b = stamps.get(start, 0), stamps.get(end, 0)
    if a <= 0 or b <= 0:
        return math.nan
    return (b - a) / 1e6


def durations(stamps: dict[str, int], extra: bool = False) -> dict[str, float]:
    """Every derived duration of a turn (NaN where a stamp is missing)."""
    table = DURATIONS + (EXTRA_DURATIONS if extra else ())
    return {name: ms_between(stamps, a, b) for name, a, b in table}


def safe_id(turn_id: str, limit: int = 64) -> str:
    """A turn id reduced to a file-name-safe token."""
    return _SAFE_ID.sub('_', turn_id)[:limit] or 'turn'


def check_turn_id(turn_id: str) -> str | None:
    """Why `turn_id` cannot name a turn, or None if it can."""
    if not turn_id:
        return 'empty turn id'
    if len(turn_id) > MAX_TURN_ID_CHARS:
        return f'turn id of {len(turn_id)} chars (limit {MAX_TURN_ID_CHARS})'
    if not turn_id.isprintable():
        return 'turn id with control characters'
    return None


def check_stamp(stage: str, stamp_ns: int, now_ns: int) -> str | None:
    """Why a stamp is unusable, or None if it is fine."""
    if stage not in COMPONENT:
        return f'unknown stage {stage[:40]!r}'
    if stamp_ns <= 0:
        return 'unset stamp'
    if abs(stamp_ns - now_ns) > MAX_CLOCK_SKEW_NS:
        return f'stamp {(stamp_ns - now_ns) / 1e9:+.0f} s away from the local clock'
    return None


@dataclass(frozen=True)
class JoinerConfig:
    """When a turn counts as complete (seconds, on the caller's monotonic clock)."""

    turn_timeout_s: float = 30.0       # no new stamp for this long and nothing audible
    playback_timeout_s: float = 120.0  # reply audible but no end-of-playback event
    settle_s: float = 0.3              # wait for racing stamps after the end event
    interrupt_grace_s: float = 2.0     # interrupted before audible: wait for a flush
    max_open_turns: int = 256          # oldest open turn is dropped beyond this
    remember_done: int = 1024          # completed ids kept to ignore late stamps


@dataclass
class _Turn:
    turn_id: str
    opened_s: float
    updated_s: float
    stamps: dict[str, int] = field(default_factory=dict)
    nodes: dict[str, str] = field(default_factory=dict)
    end_due_s: float | None = None
    end_reason: str = ''
    flushed_event: bool = False
    event_flush_ms: float = math.nan
    transcript: str = ''
    reply: list[str] = field(default_factory=list)
    not_heard: str = ''                # why the final transcript was unreliable


@dataclass(frozen=True)
class CompletedTurn:
    """A joined turn, ready to be published, logged and observed."""

    turn_id: str
    stamps: dict[str, int]
    nodes: dict[str, str]
    durations: dict[str, float]
    interrupted: bool
    outcome: str
    reason: str                 # finished | flushed | interrupt | timeout | shutdown
    transcript: str = ''
    reply: str = ''
    not_heard: str = ''         # outcome not_heard: low_logprob | no_speech | repetitive | ...

    def log_record(self) -> dict:
        """The turn's JSONL record: timings only, never text."""
        rec: dict = {'stage': 'turn', 'event': 'turn_complete', 'turn_id': self.turn_id,
                     'outcome': self.outcome, 'interrupted': self.interrupted,
                     'completed_by': self.reason}
        if self.not_heard:
            rec['not_heard'] = self.not_heard
        rec.update({k: _finite(v) for k, v in self.durations.items()})
        rec['stamps_ns'] = dict(self.stamps)
        return rec


@dataclass(frozen=True)
class StampResult:
    """Whether a stage stamp was accepted into its turn, and why not."""

    accepted: bool
    reason: str = ''              # why it was dropped (empty when accepted)
    duplicate: bool = False
    since_speech_end_ms: float = math.nan


class TurnJoiner:
    """Collects stamps per turn id and hands out turns when they are complete.

    Not thread-safe on its own: the caller serialises calls (one lock or one thread).
    """

    def __init__(self, config: JoinerConfig | None = None) -> None:
        self.config = config or JoinerConfig()
        self._open: OrderedDict[str, _Turn] = OrderedDict()
        self._done: OrderedDict[str, None] = OrderedDict()
        self.evicted = 0

    # -- inputs -----------------------------------------------------------------------
    def add_stamp(self, turn_id: str, stage: str, stamp_ns: int, node: str,
                  now_s: float) -> StampResult:
        """Record that `turn_id` reached `stage` at `stamp_ns` (validated by the caller)."""
        if turn_id in self._done:
            return StampResult(False, 'late stamp for a completed turn')
        turn = self._turn(turn_id, now_s, create=True)
        assert turn is not None
        turn.updated_s = now_s
        duplicate = stage in turn.stamps
        if not duplicate:
            turn.stamps[stage] = stamp_ns
            turn.nodes[stage] = node
        if stage == FLUSHED:
            self._end(turn, now_s + self.config.settle_s, 'flushed')
        elif stage == INTERRUPT and FIRST_AUDIBLE not in turn.stamps:
            self._end(turn, now_s + self.config.interrupt_grace_s, 'interrupt')
        since = ms_between(turn.stamps, SPEECH_END, stage) if stage != SPEECH_END else math.nan
        return StampResult(True, duplicate=duplicate, since_speech_end_ms=since)

    def playback_event(self, turn_id: str, event: str, now_s: float,
                       first_audible_ns: int = 0, flush_ms: float = math.nan) -> bool:
        """Apply a player event ('first_audible' | 'finished' | 'flushed'); False if unknown."""
        turn = self._turn(turn_id, now_s, create=False)
        if turn is None:
            return False
        turn.updated_s = now_s
        if first_audible_ns > 0 and FIRST_AUDIBLE not in turn.stamps:
            turn.stamps[FIRST_AUDIBLE] = first_audible_ns
            turn.nodes[FIRST_AUDIBLE] = 'playback/events'
        if event == 'flushed':
            turn.flushed_event = True
            if math.isfinite(flush_ms) and flush_ms >= 0:
                turn.event_flush_ms = flush_ms
            self._end(turn, now_s + self.config.settle_s, 'flushed')
        elif event == 'finished':
            self._end(turn, now_s + self.config.settle_s, 'finished')
        return True

    def set_speech_end(self, turn_id: str, stamp_ns: int, now_s: float) -> None:
        """Fill the acoustic speech end from the gate's END_OF_TURN if no stamp carried it."""
        turn = self._turn(turn_id, now_s, create=False)
        if turn is not None and stamp_ns > 0:
            turn.stamps.setdefault(SPEECH_END, stamp_ns)
            turn.nodes.setdefault(SPEECH_END, 'voice/activity')

    def discard(self, turn_id: str) -> bool:
        """Forget a turn the voice gate dropped (too short, not addressed to us)."""
        turn = self._open.pop(turn_id, None)
        if turn is None:
            return False
        self._remember(turn_id)
        return True

    def mark_not_heard(self, turn_id: str, reason: str, now_s: float) -> None:
        """The turn's final transcript was unreliable (`reason`): it was not answered."""
        if turn_id in self._done:
            return
        turn = self._turn(turn_id, now_s, create=True)
        assert turn is not None
        turn.not_heard = reason[:64]

    def add_text(self, turn_id: str, kind: str, text: str, now_s: float) -> None:
        """Keep transcript ('transcript') or reply ('reply') text for the archive.

        The text may arrive before the first stamp of its turn (other topic): it opens it.
        """
        if turn_id in self._done:
            return
        turn = self._turn(turn_id, now_s, create=True)
        assert turn is not None
        if kind == 'transcript':
            turn.transcript = text[:MAX_TEXT_CHARS]
        elif sum(map(len, turn.reply)) < MAX_TEXT_CHARS:
            turn.reply.append(text[:MAX_TEXT_CHARS])

    # -- outputs ----------------------------------------------------------------------
    def due(self, now_s: float) -> list[CompletedTurn]:
        """Every turn that is complete at `now_s` (removed from the open set)."""
        cfg = self.config
        ready: list[tuple[str, str]] = []
        for turn_id, turn in self._open.items():
            idle = now_s - turn.updated_s
            if turn.end_due_s is not None and now_s >= turn.end_due_s:
                ready.append((turn_id, turn.end_reason))
            elif FIRST_AUDIBLE in turn.stamps:
                if idle >= cfg.playback_timeout_s:
                    ready.append((turn_id, 'timeout'))
            elif idle >= cfg.turn_timeout_s:
                ready.append((turn_id, 'timeout'))
        return [self._complete(turn_id, reason) for turn_id, reason in ready]

    def flush_all(self) -> list[CompletedTurn]:
        """Complete every open turn now (shutdown)."""
        return [self._complete(turn_id, 'shutdown') for turn_id in list(self._open)]

    @property
    def open_count(self) -> int:
        return len(self._open)

    # -- internals --------------------------------------------------------------------
    def _turn(self, turn_id: str, now_s: float, create: bool) -> _Turn | None:
        turn = self._open.get(turn_id)
        if turn is None and create:
            while len(self._open) >= self.config.max_open_turns:
                old_id, _ = self._open.popitem(last=False)
                self._remember(old_id)
                self.evicted += 1
            turn = _Turn(turn_id, now_s, now_s)
            self._open[turn_id] = turn
        return turn

    @staticmethod
    def _end(turn: _Turn, due_s: float, reason: str) -> None:
        # The first end reason wins, except that a flush overrides a pending interrupt grace.
        if turn.end_due_s is None or (reason == 'flushed' and turn.end_reason == 'interrupt'):
            turn.end_due_s = due_s
            turn.end_reason = reason

    def _remember(self, turn_id: str) -> None:
        self._done[turn_id] = None
        while len(self._done) > self.config.remember_done:
            self._done.popitem(last=False)

    def _complete(self, turn_id: str, reason: str) -> CompletedTurn:
        turn = self._open.pop(turn_id)
        self._remember(turn_id)
        durs = durations(turn.stamps, extra=True)
        if math.isnan(durs['flush_ms']) and math.isfinite(turn.event_flush_ms):
            durs['flush_ms'] = turn.event_flush_ms
        interrupted = (INTERRUPT in turn.stamps or FLUSHED in turn.stamps
                       or turn.flushed_event)
        if interrupted:
            outcome = OUTCOME_INTERRUPTED
        elif turn.not_heard:
            outcome = OUTCOME_NOT_HEARD
        elif FIRST_AUDIBLE in turn.stamps:
            outcome = OUTCOME_ANSWERED
        else:
            outcome = OUTCOME_UNANSWERED
        return CompletedTurn(turn_id, dict(turn.stamps), dict(turn.nodes), durs, interrupted,
                             outcome, reason, turn.transcript,
                             ' '.join(p.strip() for p in turn.reply if p.strip()),
                             turn.not_heard)


def _finite(value: float) -> float | None:
    """JSON has no NaN: unknown durations are written as null."""
    return round(value, 3) if math.isfinite(value) else None
