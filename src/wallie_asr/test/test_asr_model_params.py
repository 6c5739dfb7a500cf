"""ASR reload parameters never lie (in process, real rclpy node, real Whisper model).

A model that is not there is refused by `ros2 param set` with the reason; one that is there
but does not load is put back, reported at ERROR, and the running model stays.
"""

from __future__ import annotations

import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter

from wallie_testing.harness import wait_param

OK = TransitionCallbackReturn.SUCCESS


@pytest.fixture
def asr(ros_context):
    from wallie_asr.asr_node import AsrNode
    node = AsrNode(context=ros_context, parameter_overrides=[
        Parameter('asr.device', value='cpu'), Parameter('asr.cpu_threads', value=1)])
    yield node
    node.destroy_node()


@pytest.mark.parametrize('model, why', [
    ('no-such-model', "unknown model 'no-such-model'"),
    ('/nonexistent/whisper-dir', 'does not exist'),
])
def test_a_model_that_is_not_there_is_refused(asr, model, why):
    res, = asr.set_parameters([Parameter('asr.model', value=model)])
    assert not res.successful and why in res.reason, res.reason
    assert asr.get_parameter('asr.model').value == 'whisper-tiny.en'


def test_a_known_model_missing_from_the_store_names_the_fetch_command(asr, tmp_path,
                                                                      monkeypatch):
    monkeypatch.setenv('WALLIE_MODEL_DIR', str(tmp_path))
    res, = asr.set_parameters([Parameter('asr.model', value='whisper-base')])
    assert not res.successful and 'wallie models fetch whisper-base' in res.reason, res.reason


def test_a_model_that_does_not_load_is_put_back(asr, tmp_path):
    assert asr.trigger_configure() == OK
    broken = tmp_path / 'broken-whisper'
    broken.mkdir()
    (broken / 'model.bin').write_bytes(b'not a model')
    res, = asr.set_parameters([Parameter('asr.model', value=str(broken))])
    assert res.successful                  # the directory is there; only loading it tells
    assert wait_param(asr, 'asr.model', 'whisper-tiny.en', 30) == 'whisper-tiny.en'
    assert asr.diag.level == DiagnosticStatus.ERROR
    assert 'ASR reload failed' in asr.diag.message
    assert asr._slot.current.config.model == 'whisper-tiny.en'
    assert asr.trigger_shutdown() == OK
