"""TTS reload parameters never lie (in process, real rclpy node, real Piper voice).

A voice that is not there is refused by `ros2 param set` with the reason; one that is there
but does not load is put back, reported at ERROR, and the running voice keeps speaking.
"""

from __future__ import annotations

import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter

from wallie_testing.harness import wait_param

OK = TransitionCallbackReturn.SUCCESS


@pytest.fixture
def tts(ros_context):
    from wallie_tts.tts_node import TtsNode
    node = TtsNode(context=ros_context, parameter_overrides=[
        Parameter('tts.fallback_to_espeak', value=False)])
    yield node
    node.destroy_node()


@pytest.mark.parametrize('values, why', [
    ({'tts.piper.voice': 'piper-no-such-voice'}, "unknown model 'piper-no-such-voice'"),
    ({'tts.piper.model_path': '/nonexistent/voice.onnx'}, 'does not exist'),
    ({'tts.engine': 'xtts', 'tts.xtts.model_path': '/nonexistent/xtts'}, 'does not exist'),
])
def test_a_voice_that_is_not_there_is_refused(tts, values, why):
    before = {k: tts.get_parameter(k).value for k in values}
    res = tts.set_parameters_atomically([Parameter(k, value=v) for k, v in values.items()])
    assert not res.successful and why in res.reason, res.reason
    assert {k: tts.get_parameter(k).value for k in values} == before


def test_an_engine_change_to_a_voice_not_in_the_store_is_refused(tts, tmp_path, monkeypatch):
    monkeypatch.setenv('WALLIE_MODEL_DIR', str(tmp_path))        # an empty store
    res, = tts.set_parameters([Parameter('tts.engine', value='xtts')])
    assert not res.successful and "'xtts-v2'" in res.reason, res.reason
    assert tts.get_parameter('tts.engine').value == 'piper'


def test_a_voice_that_does_not_load_is_put_back(tts, tmp_path):
    assert tts.trigger_configure() == OK
    running = tts._queue.engine.describe()
    broken = tmp_path / 'broken.onnx'
    broken.write_bytes(b'not an onnx model')
    res, = tts.set_parameters([Parameter('tts.piper.model_path', value=str(broken))])
    assert res.successful                  # the file is there; only loading it tells
    assert wait_param(tts, 'tts.piper.model_path', '') == ''
    assert tts.diag.level == DiagnosticStatus.ERROR and 'TTS reload failed' in tts.diag.message
    assert tts._queue.engine.describe() == running
    assert tts.trigger_shutdown() == OK
