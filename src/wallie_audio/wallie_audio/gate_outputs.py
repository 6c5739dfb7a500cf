"""What the voice gate engine returns: voice activity, wake, audio pieces for the ASR,
interrupts and latency stamps (plain dataclasses, no ROS; the node publishes them)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Union

import numpy as np

# VoiceActivity event names (the node maps them to the message constants)
SPEECH_START = 'speech_start'
SPEECH_PROBABLY_ENDED = 'speech_probably_ended'
SPEECH_RESUMED = 'speech_resumed'
END_OF_TURN = 'end_of_turn'
TURN_DISCARDED = 'turn_discarded'
BARGE_IN = 'barge_in'


@dataclass(frozen=True)
class ActivityOut:
    """A voice activity event of turn `turn_id`; `kind` is one of the event names above."""

    kind: str
    turn_id: str
    stamp_ns: int
    probability: float = 0.0
    speech_start_ns: int = 0
    speech_end_ns: int = 0
    reason: str = ''


@dataclass(frozen=True)
class WakeOut:
    """A wake opening turn `turn_id`: acoustic, a transcript match, or a service/action request."""

    keyword: str
    engine: str
    score: float
    turn_id: str
    stamp_ns: int


@dataclass(frozen=True)
class PieceOut:
    """A piece of a turn's audio (int16 mono) for ASR; the last one is final (and discarded if
    the turn was dropped)."""

    turn_id: str
    seq: int
    samples: np.ndarray              # int16 mono
    stamp_ns: int                    # capture time of the first sample
    is_final: bool = False
    discarded: bool = False
    wake_phrase: str = ''
    speech_start_ns: int = 0
    speech_end_ns: int = 0


@dataclass(frozen=True)
class InterruptOut:
    """A request to stop the reply `turn_id` (barge-in or a new wake word)."""

    turn_id: str                     # the reply being interrupted ('' = whatever is current)
    stamp_ns: int
    reason: str = 'barge_in'         # barge_in | new_wake


@dataclass(frozen=True)
class StampOut:
    """A latency stamp: turn `turn_id` reached `stage` at `stamp_ns`."""

    turn_id: str
    stage: str                       # StageStamp constant value
    stamp_ns: int


Output = Union[ActivityOut, WakeOut, PieceOut, InterruptOut, StampOut]


def new_turn_id() -> str:
    """A new random turn id (12 hex digits)."""
    return uuid.uuid4().hex[:12]
