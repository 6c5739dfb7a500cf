"""The voice gate's inbox (no ROS): typed items, and a full queue drops its oldest audio."""

import threading

import numpy as np
import pytest

from wallie_audio.gate_inbox import (
    Inbox,
    MicBlock,
    ParamsChanged,
    PushToTalk,
    ReferenceFrame,
    TranscriptIn,
)


def mic(i: int) -> MicBlock:
    return MicBlock(np.zeros(512, np.float32), i)


def drain(box: Inbox) -> list:
    out = []
    while (item := box.get(timeout=0.0)) is not None:
        out.append(item)
    return out


def test_full_queue_drops_the_oldest_block_not_the_newest():
    box = Inbox(4)
    for i in range(4):
        assert box.put(mic(i)) is None
    dropped = box.put(mic(4))
    assert dropped is not None and dropped.stamp_ns == 0
    assert [m.stamp_ns for m in drain(box)] == [1, 2, 3, 4]      # the newest is kept


def test_a_lagging_worker_gets_the_most_recent_audio():
    box = Inbox(3)
    for i in range(10):
        box.put(mic(i))
    assert [m.stamp_ns for m in drain(box)] == [7, 8, 9]


def test_events_and_requests_survive_while_there_is_audio_to_drop():
    box = Inbox(3)
    params = ParamsChanged({'vad.threshold': 0.6}, {'vad.threshold': 0.5})
    box.put(params)
    box.put(mic(1))
    box.put(ReferenceFrame(np.zeros(320, np.float32), 2, 'r', 1))
    ptt = PushToTalk(True)
    assert box.put(ptt).stamp_ns == 1                              # the oldest audio
    newest = mic(3)
    assert isinstance(box.put(newest), ReferenceFrame)
    assert drain(box) == [params, ptt, newest]


def test_without_audio_the_oldest_item_goes():
    box = Inbox(2)
    first = TranscriptIn('t1', 'hello', True, False, 0)
    box.put(first)
    box.put(TranscriptIn('t2', 'again', True, False, 0))
    assert box.put(TranscriptIn('t3', 'more', True, False, 0)) is first
    assert [t.turn_id for t in drain(box)] == ['t2', 't3']


def test_get_waits_for_an_item_and_times_out_empty():
    box = Inbox(2)
    assert box.get(timeout=0.01) is None
    threading.Timer(0.05, box.put, args=(mic(7),)).start()
    item = box.get(timeout=5.0)
    assert item is not None and item.stamp_ns == 7


def test_request_reply_reports_an_unanswered_request():
    ptt = PushToTalk(True)
    assert ptt.reply.wait(0.0) is None              # the worker has not answered
    ptt.reply.set('')                               # answered: no turn
    assert ptt.reply.wait(0.0) == ''


def test_size_must_be_positive():
    with pytest.raises(ValueError):
        Inbox(0)
