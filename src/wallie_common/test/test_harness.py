"""The process harness: start a node executable, see its topic, tune it, stop it."""

from pathlib import Path

from wallie_interfaces.msg import AssistantState

NODE = str(Path(__file__).with_name('stage_fixture_node.py'))


def test_start_see_topic_stop(probe, node_process):
    proc = node_process(NODE, params={'label': 'hello', 'autostart': True})
    msgs = probe.subscribe('fixture/state', AssistantState)
    probe.wait_for_topic('fixture/state', procs=[proc])
    probe.wait_for(lambda: len(msgs) >= 3, 20, 'fixture/state messages', [proc])
    assert msgs[-1].detail == 'hello'
    assert probe.lifecycle_state('fixture') == 'active'
    assert proc.stop() == 0, proc.log()
    assert not proc.alive()


def test_lifecycle_and_params(probe, node_process):
    proc = node_process(NODE)
    probe.wait_for(lambda: probe.lifecycle_state('fixture') == 'unconfigured', 20,
                   'unconfigured fixture', [proc])
    probe.activate('fixture')
    assert probe.lifecycle_state('fixture') == 'active'
    ok, = probe.set_params('fixture', rate_hz=50.0)
    assert ok.successful
    bad, = probe.set_params('fixture', rate_hz=1000.0)
    assert not bad.successful and 'max' in bad.reason.lower()
    wrong, = probe.set_params('fixture', rate_hz='fast')
    assert not wrong.successful
    assert probe.get_params('fixture', 'rate_hz') == [50.0]
    assert proc.alive()
    # the node survives a full cleanup/configure cycle
    assert probe.lifecycle('fixture', 'deactivate')
    assert probe.lifecycle('fixture', 'cleanup')
    probe.activate('fixture')
    assert proc.stop() == 0, proc.log()


def test_sigkill_reports_signal(probe, node_process):
    proc = node_process(NODE, params={'autostart': True})
    probe.wait_for_topic('fixture/state', procs=[proc])
    proc.kill()
    assert proc.proc.returncode == -9
