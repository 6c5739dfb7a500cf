"""What the voice gate node's callbacks hand its worker (no ROS): one small dataclass per
kind of input, and the bounded queue between them.

The callbacks only decode and `put`; the worker thread takes items one by one and runs the
VoiceGate engine on them. When the worker falls behind, the queue drops its oldest audio
(image_pipeline's BufferQueue: what the user says now matters more than what they said
seconds ago); events and requests are dropped only when no audio is left to drop.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import numpy as np


@dataclass(frozen=True, eq=False)
class MicBlock:
    """One BLOCK of cleaned microphone audio (float32 mono 16 kHz) captured at stamp_ns."""

    samples: np.ndarray
    stamp_ns: int


@dataclass(frozen=True, eq=False)
class ReferenceFrame:
    """Playback reference audible from stamp_ns; seq is the player's frame counter."""

    samples: np.ndarray
    stamp_ns: int
    stream_id: str
    seq: int


@dataclass(frozen=True)
class PlaybackStarted:
    """The player's FIRST_AUDIBLE for a reply."""

    stream_id: str
    stamp_ns: int


@dataclass(frozen=True)
class PlaybackEnded:
    """The player's FINISHED or FLUSHED: the reply was audible until end_ns (0: unknown)."""

    stream_id: str
    end_ns: int


@dataclass(frozen=True)
class TranscriptIn:
    """A final or early-final transcript of a turn."""

    turn_id: str
    text: str
    is_final: bool
    is_early_final: bool
    speech_end_ns: int


class TurnReply:
    """The turn id a request opened, handed back from the worker to the waiting caller."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self.turn_id = ''

    def set(self, turn_id: str) -> None:
        self.turn_id = turn_id
        self._done.set()

    def wait(self, timeout: float) -> Optional[str]:
        """The turn id ('' = none), or None if the worker did not answer in time."""
        return self.turn_id if self._done.wait(timeout) else None


@dataclass(frozen=True)
class PushToTalk:
    """Push-to-talk pressed (on) or released."""

    on: bool
    reply: TurnReply = field(default_factory=TurnReply)


@dataclass(frozen=True)
class ListenRequest:
    """A listen goal: open a turn now, or wait for the wake word (require_wake)."""

    require_wake: bool
    reply: TurnReply = field(default_factory=TurnReply)


@dataclass(frozen=True)
class ParamsChanged:
    """Parameters that changed, and the values they had (to put back if a model fails)."""

    changed: dict[str, Any]
    previous: dict[str, Any]


Item = Union[MicBlock, ReferenceFrame, PlaybackStarted, PlaybackEnded, TranscriptIn,
             PushToTalk, ListenRequest, ParamsChanged]
AUDIO = (MicBlock, ReferenceFrame)


class Inbox:
    """Bounded FIFO of items; `put` never blocks: when full it drops the oldest audio item
    (the oldest item of any kind if none is audio) and returns it."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError('maxsize must be >= 1')
        self.maxsize = maxsize
        self._items: deque[Item] = deque()
        self._cv = threading.Condition()

    def put(self, item: Item) -> Optional[Item]:
        """Queue `item`; return the item dropped to make room, or None."""
        dropped: Optional[Item] = None
        with self._cv:
            if len(self._items) >= self.maxsize:
                index = next((i for i, old in enumerate(self._items)
                              if isinstance(old, AUDIO)), 0)
                dropped = self._items[index]
                del self._items[index]
            self._items.append(item)
            self._cv.notify()
        return dropped

    def get(self, timeout: float) -> Optional[Item]:
        """The oldest item, waiting at most `timeout` s for one; None if there is none."""
        with self._cv:
            if not self._items:
                self._cv.wait(timeout)
            return self._items.popleft() if self._items else None

    def clear(self) -> None:
        with self._cv:
            self._items.clear()

    def __len__(self) -> int:
        with self._cv:
            return len(self._items)
