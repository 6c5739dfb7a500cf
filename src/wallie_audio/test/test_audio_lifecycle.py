"""Lifecycle re-entrancy of the three audio nodes, in process.

configure -> activate -> (deactivate -> cleanup -> configure -> activate) x N must leave
exactly the entities one configure makes: no duplicate publishers, subscriptions,
services, action servers or timers; shutdown removes them all.
"""

from __future__ import annotations

import numpy as np
import pytest
from rclpy.lifecycle import TransitionCallbackReturn

from wallie_audio import fixtures as F

OK = TransitionCallbackReturn.SUCCESS


@pytest.fixture
def ctx(ros_context):
    return ros_context


def entities(node) -> dict:
    return {
        'publishers': sorted(p.topic_name for p in node.publishers),
        'subscriptions': sorted(s.topic_name for s in node.subscriptions),
        'services': sorted(s.srv_name for s in node.services),
        'timers': len(list(node.timers)),
        'waitables': len(list(node.waitables)),
    }


def _capture(ctx, tmp_path):
    from wallie_audio.capture_node import CaptureNode
    wav = F.Scene(np.zeros(16000, np.float32)).write(tmp_path / 'silence.wav')
    return CaptureNode(context=ctx, parameter_overrides=_params(
        source='file', **{'file.path': str(wav), 'file.realtime': True, 'file.loop': True}))


def _capture_topic(ctx, tmp_path):
    from wallie_audio.capture_node import CaptureNode
    return CaptureNode(context=ctx, parameter_overrides=_params(source='topic'))


def _gate(ctx, tmp_path):
    from wallie_audio.voice_gate_node import VoiceGateNode
    return VoiceGateNode(context=ctx, parameter_overrides=_params(**{'wake.engine': 'none'}))


def _player(ctx, tmp_path):
    from wallie_audio.player_node import PlayerNode
    return PlayerNode(context=ctx, parameter_overrides=_params(sink='null'))


def _params(**values):
    from rclpy.parameter import Parameter
    return [Parameter(k, value=v) for k, v in values.items()]


@pytest.mark.parametrize('make,topic', [
    (_capture, '/audio/in'), (_capture_topic, '/audio/in'),
    (_gate, '/voice/activity'), (_player, '/audio/playback')])
def test_configure_cleanup_loop_does_not_duplicate_entities(ctx, tmp_path, make, topic):
    node = make(ctx, tmp_path)
    try:
        bare = entities(node)
        assert node.trigger_configure() == OK
        assert node.trigger_activate() == OK
        first = entities(node)
        assert first['publishers'].count(topic) == 1
        for _ in range(3):
            assert node.trigger_deactivate() == OK
            assert node.trigger_cleanup() == OK
            assert entities(node) == bare, 'cleanup left entities behind'
            assert node.trigger_configure() == OK
            assert node.trigger_activate() == OK
            assert entities(node) == first
        assert node.count_publishers(topic) == 1
        assert node.trigger_shutdown() == OK
        assert entities(node) == bare, 'shutdown left entities behind'
    finally:
        node.destroy_node()


def test_player_sink_change_swaps_in_the_background_and_a_bad_one_keeps_the_old(
        ctx, tmp_path):
    import time

    from rclpy.parameter import Parameter
    node = _player(ctx, tmp_path)
    try:
        assert node.trigger_configure() == OK
        old = node.playout
        assert old is not None and type(old.sink).__name__ == 'NullSink'

        def wait(pred):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not pred():
                time.sleep(0.02)
            return pred()
        out = tmp_path / 'reply.wav'
        res = node.set_parameters([Parameter('file_path', value=str(out)),
                                   Parameter('sink', value='file')])
        assert all(r.successful for r in res)
        assert wait(lambda: node.playout is not old)
        assert type(node.playout.sink).__name__ == 'WavSink'
        assert not old._thread.is_alive()                             # the old one closed
        now = node.playout
        node.set_parameters([Parameter('sink', value='device'),
                             Parameter('device.name', value='no such device 42')])
        assert wait(lambda: 'sink change failed' in node.diag.message)
        assert node.playout is now                                    # the old one stays
        assert node.trigger_shutdown() == OK
        assert node.playout is None
    finally:
        node.destroy_node()
