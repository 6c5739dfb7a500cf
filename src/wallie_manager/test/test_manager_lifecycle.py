"""The manager against real lifecycle node processes (the small dummy stage).

Jazzy's rclpy 7.1.6 kills a Python lifecycle node that receives an invalid transition id.
The manager here runs with lifecycle.send_labels=false, so any invalid request it made would
kill a stage (and the dummy logs every request with its validity): the tests check that
nodes found in every state are driven to active with valid requests only.
"""

import json
import re
import time
from pathlib import Path

import pytest
import yaml
from lifecycle_msgs.srv import ChangeState

from wallie_common.qos import STATE_QOS
from wallie_interfaces.msg import AssistantState
from wallie_testing import dummy_stage

DUMMY = dummy_stage.__file__


def graph_file(path, names_after):
    nodes = [{'name': n, 'package': 'wallie', 'executable': 'dummy', 'after': list(after),
              'command': ['python', DUMMY]} for n, after in names_after]
    nodes.append({'name': 'manager', 'package': 'wallie', 'executable': 'manager_node',
                  'lifecycle': False})
    path.write_text(yaml.safe_dump({'nodes': nodes}))
    return str(path)


def log_entries(path):
    if not Path(path).exists():
        return []
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line]


def send_async(probe, node, transition_id):
    client = probe.node.create_client(ChangeState, f'{node}/change_state')
    assert client.wait_for_service(timeout_sec=20)
    req = ChangeState.Request()
    req.transition.id = transition_id
    return client.call_async(req)


def test_invalid_transition_kills_a_jazzy_node(node_process, probe, tmp_path):
    """The hazard the manager must avoid is real here (so the next test can fail)."""
    log = tmp_path / 'transitions.jsonl'
    proc = node_process(DUMMY, name='victim', params={'dummy.transition_log': str(log)})
    probe.wait_for(lambda: probe.node.count_publishers('/diagnostics') > 0, 20, procs=[proc])
    assert probe.lifecycle_state('victim') == 'unconfigured'
    send_async(probe, 'victim', 3)            # activate from unconfigured: invalid
    probe.wait_for(lambda: not proc.alive(), 10, 'the node to die', procs=[proc])
    assert {'transition': 3, 'state': 'unconfigured', 'valid': False}.items() <= \
        log_entries(log)[0].items()


def test_manager_drives_nodes_in_any_state_without_invalid_requests(
        node_process, probe, tmp_path):
    log = tmp_path / 'transitions.jsonl'
    names = [('player', ()), ('tts', ('player',)), ('llm', ('tts',)), ('asr', ('llm',))]
    procs = {}
    for name, _ in names:
        params = {'dummy.transition_log': str(log)}
        if name == 'asr':
            params['dummy.configure_s'] = 3.0
        procs[name] = node_process(DUMMY, name=name, params=params)
    states = probe.subscribe('assistant/state', AssistantState, qos=STATE_QOS)
    for name in procs:
        probe.wait_for(lambda n=name: probe.lifecycle_state(n) == 'unconfigured', 30,
                       f'{name} up', procs=procs.values())
    # Put them in different states before the manager sees them.
    assert probe.lifecycle('tts', 'configure')
    probe.activate('llm')
    configuring = send_async(probe, 'asr', 1)     # asr is still configuring (3 s) ...
    manager = node_process('manager_node', name='manager', params={
        'graph_file': graph_file(tmp_path / 'g.yaml', names),
        'lifecycle.send_labels': False, 'watch.period_s': 0.2})
    everyone = list(procs.values()) + [manager]
    for name in procs:
        probe.wait_for(lambda n=name: probe.lifecycle_state(n) == 'active', 40,
                       f'{name} active', procs=everyone)
    probe.wait_for(configuring.done, 10, 'the probe configure', procs=everyone)
    probe.wait_for(lambda: states and states[-1].ready, 10, 'ready state', procs=everyone)
    assert states[-1].state == AssistantState.IDLE
    # Someone deactivates a stage: the manager notices and re-activates it.
    assert probe.lifecycle('tts', 'deactivate')
    probe.wait_for(lambda: probe.lifecycle_state('tts') == 'active', 20, 'tts re-activated',
                   procs=everyone)
    for name, proc in procs.items():
        assert proc.alive(), f'{name} died:\n{proc.log()[-3000:]}'
    entries = log_entries(log)
    bad = [e for e in entries if not e['valid']]
    assert not bad, f'invalid transitions were requested: {bad}\n{manager.log()[-3000:]}'
    by_node = {}
    for e in entries:
        by_node.setdefault(e['node'], []).append(e['transition'])
    assert by_node['player'] == [1, 3]             # configure, activate
    assert by_node['llm'] == [1, 3]                # only the probe's: nothing left to do
    assert by_node['asr'] == [1, 3]                # the probe's configure, the manager's activate
    assert by_node['tts'] == [1, 3, 4, 3]          # probe configure, activate, probe deactivate,
    #                                                manager activate


def test_invalid_parameters_are_rejected_with_a_reason(node_process, probe, tmp_path):
    proc = node_process(DUMMY, name='llm')
    manager = node_process('manager_node', name='manager', params={
        'graph_file': graph_file(tmp_path / 'g.yaml', [('llm', ())])})
    probe.wait_for(lambda: probe.lifecycle_state('llm') == 'active', 30, 'llm active',
                   procs=[proc, manager])
    for name, value, why in (('dummy.level', 5.0, 'out of range|above the maximum'),
                             ('dummy.mode', 'z', 'not one of'),
                             ('dummy.level', 'high', 'expected float|type'),
                             ('dummy.transition_log', '/tmp/x', 'read-only|read only')):
        res = probe.set_params('llm', **{name: value})[0]
        assert not res.successful and re.search(why, res.reason), (name, res.reason)
    res = probe.set_params('manager', **{'restart.max_restarts': 0})[0]
    assert not res.successful and re.search('out of range|minimum', res.reason)
    res = probe.set_params('manager', **{'governor.ladder': ['llm.max_tokens=5']})[0]
    assert not res.successful and 'node:param=value' in res.reason
    assert probe.set_params('llm', **{'dummy.level': 0.75})[0].successful
    assert probe.get_params('llm', 'dummy.level') == [0.75]
    assert proc.alive() and manager.alive()
    assert probe.lifecycle_state('llm') == 'active'


@pytest.mark.parametrize('labels', [True])
def test_manager_stop_deactivates_in_reverse_order(node_process, probe, tmp_path, labels):
    log = tmp_path / 'transitions.jsonl'
    names = [('player', ()), ('tts', ('player',))]
    procs = [node_process(DUMMY, name=n, params={'dummy.transition_log': str(log)})
             for n, _ in names]
    manager = node_process('manager_node', name='manager', params={
        'graph_file': graph_file(tmp_path / 'g.yaml', names),
        'lifecycle.send_labels': labels})
    for n, _ in names:
        probe.wait_for(lambda n=n: probe.lifecycle_state(n) == 'active', 30, f'{n} active',
                       procs=procs + [manager])
    t0 = time.monotonic()
    assert manager.stop() == 0
    assert time.monotonic() - t0 < 6
    tail = [(e['node'], e['transition']) for e in log_entries(log)][-2:]
    assert tail == [('tts', 4), ('player', 4)]      # consumers of others stop last
    assert all(e['valid'] for e in log_entries(log))


def test_governor_reload_step_goes_through_lifecycle(node_process, probe, tmp_path):
    """A `!` ladder step is applied while the stage is unconfigured (a model reload)."""
    from wallie_common import timeutil
    from wallie_interfaces.msg import StageStamp
    log = tmp_path / 'transitions.jsonl'
    proc = node_process(DUMMY, name='llm', params={'dummy.transition_log': str(log)})
    manager = node_process('manager_node', name='manager', params={
        'graph_file': graph_file(tmp_path / 'g.yaml', [('llm', ())]),
        'lifecycle.send_labels': False, 'governor.ladder': ['!llm:dummy.mode=b'],
        'governor.window_turns': 1, 'governor.latency_budget_ms': 100.0,
        'governor.cooldown_s': 0.0})
    probe.wait_for(lambda: probe.lifecycle_state('llm') == 'active', 30, 'llm active',
                   procs=[proc, manager])
    stamps = probe.publisher('metrics/stamps', StageStamp)
    probe.wait_for_subscribers(stamps, procs=[manager])
    now = timeutil.now_ns()
    for stage, t in (('speech_end', now - 2_000_000_000), ('first_audible', now)):
        stamps.publish(StageStamp(turn_id='slow', stage=stage, node='test',
                                  stamp=timeutil.to_msg(t)))
    probe.wait_for(lambda: probe.get_params('llm', 'dummy.mode') == ['b'], 20, 'step applied',
                   procs=[proc, manager])
    probe.wait_for(lambda: probe.lifecycle_state('llm') == 'active', 20, 'active again',
                   procs=[proc, manager])
    entries = log_entries(log)
    assert all(e['valid'] for e in entries), entries
    assert [e['transition'] for e in entries] == [1, 3, 4, 2, 1, 3]
    assert proc.alive()
