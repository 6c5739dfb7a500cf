"""Voice gate and capture reload parameters never lie (in process, real rclpy nodes).

A VAD or wake model, or an input file, that is not there is refused by `ros2 param set` with
the reason; a VAD model that is there but does not load is put back and reported at ERROR.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter

from wallie_audio import fixtures as F
from wallie_testing.harness import wait_param

OK = TransitionCallbackReturn.SUCCESS


@pytest.fixture
def gate(ros_context):
    from wallie_audio.voice_gate_node import VoiceGateNode
    node = VoiceGateNode(context=ros_context,
                         parameter_overrides=[Parameter('wake.engine', value='none')])
    yield node
    node.destroy_node()


@pytest.mark.parametrize('values, why', [
    ({'vad.model_path': '/nonexistent/silero.onnx'}, 'does not exist'),
    ({'wake.engine': 'openwakeword', 'wake.word': 'hey_nobody_knows'},
     "no openWakeWord model for 'hey_nobody_knows'"),
])
def test_a_model_that_is_not_there_is_refused(gate, values, why):
    before = {k: gate.get_parameter(k).value for k in values}
    res = gate.set_parameters_atomically([Parameter(k, value=v) for k, v in values.items()])
    assert not res.successful and why in res.reason, res.reason
    assert {k: gate.get_parameter(k).value for k in values} == before


def test_a_bundled_wake_model_is_accepted(gate):
    res = gate.set_parameters_atomically([Parameter('wake.engine', value='openwakeword'),
                                          Parameter('wake.word', value='hey_jarvis')])
    assert res.successful, res.reason


def test_a_vad_model_that_does_not_load_is_put_back(gate, tmp_path):
    assert gate.trigger_configure() == OK and gate.trigger_activate() == OK
    running = gate.gate.vad
    broken = tmp_path / 'broken.onnx'
    broken.write_bytes(b'not an onnx model')
    res, = gate.set_parameters([Parameter('vad.model_path', value=str(broken))])
    assert res.successful                  # the file is there; only loading it tells
    assert wait_param(gate, 'vad.model_path', '') == ''
    deadline = time.monotonic() + 5
    while gate.diag.level != DiagnosticStatus.ERROR and time.monotonic() < deadline:
        time.sleep(0.02)
    assert 'vad.model_path not applied' in gate.diag.message
    assert gate.gate.vad is running
    assert gate.trigger_deactivate() == OK and gate.trigger_shutdown() == OK


def test_capture_refuses_an_input_file_that_is_not_there(ros_context, tmp_path):
    from wallie_audio.capture_node import CaptureNode
    wav = F.Scene(np.zeros(1600, np.float32)).write(tmp_path / 'silence.wav')
    node = CaptureNode(context=ros_context, parameter_overrides=[
        Parameter('source', value='file'), Parameter('file.path', value=str(wav))])
    try:
        res, = node.set_parameters([Parameter('file.path', value='/nonexistent/in.wav')])
        assert not res.successful and 'does not exist' in res.reason, res.reason
        assert node.get_parameter('file.path').value == str(wav)
        res, = node.set_parameters([Parameter('file.path', value=str(wav))])
        assert res.successful
    finally:
        node.destroy_node()
