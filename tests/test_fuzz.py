"""Fuzz the running graph: malformed and extreme input on every topic and service.

Every stage node that exists is started as a real process (headless parameters, real
models). The test finds each node's subscriptions and services in the ROS graph, checks
that a good input is handled, then for a bounded time (``$WALLIE_FUZZ_SECONDS``, default
10 s, service calls not counted) publishes malformed/extreme messages (empty, huge, NaN
audio, wrong rates, channels and encodings, invalid UTF-8 as raw CDR, absurd indices,
unknown turn ids, garbage bytes) to all of them and calls the services, actions and
parameter services with bad requests. Afterwards, per node:

* the process is alive and its lifecycle state is still ``active``;
* it reported the problem on /diagnostics (a WARN/ERROR level or a ``count.*`` key that
  grew), if it has inputs;
* the next good input is handled (the same check as before the fuzz);
* bad service requests got an answer (Transcribe: success=false) and bad parameter values
  were rejected.

The full report is written to ``<tmp>/fuzz/report.json`` and printed (``pytest -s``).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import time
from typing import Any

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from wallie_testing.fuzz_cases import HUGE_TEXT, cases_for
from wallie_testing.harness import NodeProcess, Probe
from wallie_testing.stages import STAGES, available_stages, wait_active

FUZZ_SECONDS = float(os.environ.get('WALLIE_FUZZ_SECONDS', '10'))
MAX_PARAMS_PER_NODE = 8
IGNORED_TOPICS = {'/parameter_events', '/rosout', '/clock'}
WARN = int.from_bytes(DiagnosticStatus.WARN, 'little')


def msg_class(type_name: str):
    pkg, kind, name = type_name.split('/')
    return getattr(importlib.import_module(f'{pkg}.{kind}'), name)


def _level(status) -> int:
    return int.from_bytes(status.level, 'little') if isinstance(status.level, bytes) \
        else int(status.level)


def _counts(status) -> dict[str, float]:
    out = {}
    for kv in status.values:
        if kv.key.startswith('count.'):
            try:
                out[kv.key] = float(kv.value)
            except ValueError:
                pass
    return out


def diagnostics_evidence(diags: list, start: int, name: str) -> list[str]:
    """What /diagnostics said about node `name` since index `start` that baseline did not."""
    before = None
    for arr in diags[:start]:
        for st in arr.status:
            if st.name == name:
                before = st
    base = _counts(before) if before is not None else {}
    evidence: set[str] = set()
    for arr in diags[start:]:
        for st in arr.status:
            if st.name != name:
                continue
            if _level(st) >= WARN:
                evidence.add(f'level {_level(st)}: {st.message[:80]}')
            for key, value in _counts(st).items():
                if value > base.get(key, 0):
                    evidence.add(key)
    return sorted(evidence)


# -- services, parameters and actions ----------------------------------------------------------
def fuzz_services(probe: Probe, services: dict[str, str], problems: dict[str, list[str]],
                  owner: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, type_name in sorted(services.items()):
        node = owner[name]
        if type_name == 'wallie_interfaces/srv/Transcribe':
            T = msg_class(type_name)
            noise = (np.random.default_rng(1).normal(0, 3000, 16000 * 70)).astype(np.int16)
            bad = {'empty': T.Request(), 'rate 0': T.Request(sample_rate=0),
                   'rate u32 max': T.Request(sample_rate=2**32 - 1),
                   '70 s (limit 60 s)': T.Request(sample_rate=16000),
                   'huge language': T.Request(sample_rate=16000, language='x' * 10000)}
            import array
            bad['rate 0'].samples = array.array('h', [0] * 1600)
            bad['rate u32 max'].samples = array.array('h', [0] * 1600)
            bad['70 s (limit 60 s)'].samples = array.array('h', noise.tobytes())
            bad['huge language'].samples = array.array('h', [0] * 1600)
            for label, req in bad.items():
                try:
                    res = probe.call(T, name, req, timeout=30)
                    out[f'{name} {label}'] = {'success': res.success, 'message': res.message}
                    if res.success and label not in ('huge language', 'rate 0'):
                        problems[node].append(f'{name}: {label} request was accepted')
                except AssertionError as exc:
                    out[f'{name} {label}'] = {'error': str(exc)[:200]}
                    problems[node].append(f'{name}: no answer to a {label} request')
        elif type_name == 'std_srvs/srv/SetBool':
            T = msg_class(type_name)
            for i in range(20):
                try:
                    probe.call(T, name, T.Request(data=i % 2 == 0), timeout=5)
                except AssertionError:
                    problems[node].append(f'{name}: no answer to rapid toggling')
                    break
            probe.call(T, name, T.Request(data=False), timeout=5)
            out[name] = 'toggled 20 times'
        elif type_name == 'wallie_interfaces/srv/ResetConversation':
            T = msg_class(type_name)
            for _ in range(5):
                try:
                    probe.call(T, name, T.Request(), timeout=5)
                except AssertionError:
                    problems[node].append(f'{name}: no answer')
                    break
            out[name] = 'called 5 times'
    return out


def fuzz_parameters(probe: Probe, node: str, problems: list[str]) -> dict[str, Any]:
    """Wrong types, NaN and huge numbers must be rejected by every numeric parameter."""
    from rcl_interfaces.srv import ListParameters
    try:
        names = probe.call(ListParameters, f'/{node}/list_parameters',
                           ListParameters.Request(), timeout=10).result.names
        values = probe.get_params(f'/{node}', *names)
    except AssertionError as exc:
        problems.append(f'parameter services: {exc}')
        return {}
    tried = accepted = 0
    numeric = [(n, v) for n, v in zip(names, values) if n != 'use_sim_time'
               and isinstance(v, (int, float)) and not isinstance(v, bool)]
    for name, value in numeric[:MAX_PARAMS_PER_NODE]:
        bad = ['fuzz', math.nan] if isinstance(value, float) else ['fuzz', 2**62]
        for b in bad:
            tried += 1
            result, = probe.set_params(f'/{node}', **{name: b})
            if result.successful:
                accepted += 1
                problems.append(f'parameter {name} accepted {b!r}')
                probe.set_params(f'/{node}', **{name: value})
    return {'tried': tried, 'accepted': accepted}


def fuzz_actions(probe: Probe, actions: dict[str, str]) -> dict[str, str]:
    from rclpy.action import ActionClient
    out = {}
    goals = {
        'wallie_interfaces/action/Ask': [{'text': HUGE_TEXT[:200_000]}, {'text': ''},
                                         {'text': '\x00\x1b[31m', 'speak': True}],
        'wallie_interfaces/action/Speak': [{'text': HUGE_TEXT[:200_000]}, {'text': ''}],
        'wallie_interfaces/action/Listen': [{'timeout_s': math.nan}, {'timeout_s': -1.0},
                                            {'timeout_s': 1e30}],
    }
    for name, type_name in sorted(actions.items()):
        if type_name not in goals:
            continue
        T = msg_class(type_name)
        client = ActionClient(probe.node, T, name)
        try:
            if not client.wait_for_server(timeout_sec=5):
                out[name] = 'server not available'
                continue
            results = []
            for fields in goals[type_name]:
                goal = T.Goal(**fields)
                fut = client.send_goal_async(goal)
                deadline = time.monotonic() + 10
                while not fut.done() and time.monotonic() < deadline:
                    time.sleep(0.02)
                if not fut.done():
                    results.append('no answer to goal')
                    continue
                handle = fut.result()
                if handle.accepted:
                    time.sleep(1.0)
                    handle.cancel_goal_async()
                    results.append('accepted, canceled')
                else:
                    results.append('rejected')
            out[name] = ', '.join(results)
        finally:
            client.destroy()
    return out


# -- the run -------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def fuzz_report(ros_env, tmp_path_factory):
    stages, missing = available_stages()
    if not stages:
        pytest.skip(f'no stage node can run here: {missing}')
    workdir = tmp_path_factory.mktemp('fuzz')
    probe = Probe('fuzz_probe')
    diags = probe.subscribe('/diagnostics', DiagnosticArray, QoSProfile(depth=500))
    env = {'WALLIE_HOME': str(workdir / 'home')}
    procs = {}
    report: dict[str, Any] = {'missing': missing, 'nodes': {}, 'sent': 0,
                              'workdir': str(workdir)}
    try:
        for stage in stages:
            params = dict(stage.params, autostart=True)
            procs[stage.node] = NodeProcess(stage.exe, name=stage.node, params=params,
                                            env=env, workdir=workdir)
        t0 = time.monotonic()
        phases = report['phases_s'] = {}
        states = wait_active(probe, list(procs.values()),
                             time.monotonic() + max(s.ready_timeout_s for s in stages))
        active = [s for s in stages if states[s.node]['state'] == 'active']
        phases['start-up'] = round(time.monotonic() - t0, 1)
        problems: dict[str, list[str]] = {s.node: [] for s in stages}
        for stage in stages:
            r = report['nodes'][stage.node] = {'state_before': states[stage.node]['state'],
                                               'problems': problems[stage.node]}
            if stage not in active:
                problems[stage.node].append(
                    f'not active after start-up (state {states[stage.node]["state"]}) with '
                    f'params {stage.params}')
        # the graph as the nodes declared it
        inputs: dict[str, set[str]] = {}
        services: dict[str, str] = {}
        owner: dict[str, str] = {}
        actions: dict[str, str] = {}
        from rclpy.action import get_action_server_names_and_types_by_node
        for stage in active:
            subs = probe.node.get_subscriber_names_and_types_by_node(stage.node, '/')
            topics = sorted(t for t, _ in subs if t not in IGNORED_TOPICS)
            report['nodes'][stage.node]['inputs'] = topics
            for topic, types in subs:
                if topic not in IGNORED_TOPICS:
                    inputs.setdefault(topic, set()).update(types)
            for name, types in probe.node.get_service_names_and_types_by_node(stage.node, '/'):
                if not any(k in types[0] for k in ('rcl_interfaces', 'lifecycle_msgs',
                                                   'type_description')):
                    services[name] = types[0]
                    owner[name] = stage.node
            for name, types in get_action_server_names_and_types_by_node(
                    probe.node, stage.node, '/'):
                actions[name] = types[0]
            report['nodes'][stage.node]['services'] = sorted(
                n for n, o in owner.items() if o == stage.node)
        # a good input works before the fuzz (so a failure afterwards means something)
        for stage in active:
            r = report['nodes'][stage.node]
            try:
                state = probe.lifecycle_state(stage.node, timeout=10)
                if state != 'active':
                    raise AssertionError(f'state {state} before the fuzz')
                stage.check(probe)
                r['good_before'] = 'ok'
            except Exception as exc:
                r['good_before'] = f'FAILED: {str(exc)[:300]}'
        phases['good input before'] = round(time.monotonic() - t0 - sum(phases.values()), 1)
        # publishers matching each subscription's durability
        plan = []
        for topic, types in sorted(inputs.items()):
            type_name = sorted(types)[0]
            T = msg_class(type_name)
            infos = probe.node.get_subscriptions_info_by_topic(topic)
            durable = any(i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
                          for i in infos)
            qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL if durable
                             else DurabilityPolicy.VOLATILE)
            plan.append((topic, probe.node.create_publisher(T, topic, qos),
                         cases_for(type_name, T)))
        report['topics'] = {t: len(c) for t, _, c in plan}
        time.sleep(1.0)                                   # let the publishers match
        start = len(diags)
        t_end = time.monotonic() + FUZZ_SECONDS
        rounds = 0
        while time.monotonic() < t_end:
            for topic, pub, cases in plan:
                for label, payload, heavy in cases:
                    if heavy and rounds:
                        continue
                    pub.publish(payload)
                    report['sent'] += 1
                    time.sleep(0.1 if heavy else 0.003)
            if rounds == 0:
                t1 = time.monotonic()
                report['services'] = fuzz_services(probe, services, problems, owner)
                phases['services'] = round(time.monotonic() - t1, 1)
                report['actions'] = fuzz_actions(probe, actions)
                phases['actions'] = round(time.monotonic() - t1 - phases['services'], 1)
                t1 = time.monotonic()
                for stage in active:
                    report['nodes'][stage.node]['parameters'] = fuzz_parameters(
                        probe, stage.node, problems[stage.node])
                phases['parameters'] = round(time.monotonic() - t1, 1)
                t_end += phases['services'] + phases['actions'] + phases['parameters']
            rounds += 1
        report['rounds'] = rounds
        t1 = time.monotonic()
        report['fuzz_s'] = FUZZ_SECONDS
        time.sleep(3.0)                                   # let queued work drain
        for stage in active:
            r = report['nodes'][stage.node]
            proc = procs[stage.node]
            r['alive'] = proc.alive()
            if not proc.alive():
                problems[stage.node].append(f'process died (exit code {proc.proc.poll()})')
                continue
            try:
                r['state_after'] = probe.lifecycle_state(stage.node, timeout=10)
            except AssertionError as exc:
                r['state_after'] = f'no answer: {exc}'
            if r['state_after'] != 'active':
                problems[stage.node].append(f'lifecycle state after fuzz: {r["state_after"]}')
            r['diagnostics'] = diagnostics_evidence(list(diags), start, f'/{stage.node}')
            if r.get('inputs') and not r['diagnostics']:
                problems[stage.node].append(
                    'no WARN/ERROR and no growing count.* key on /diagnostics for the bad '
                    f'input on {r["inputs"]}')
            try:
                if r['state_after'] != 'active':
                    raise AssertionError(f'state {r["state_after"]}')
                stage.check(probe)
                r['good_after'] = 'ok'
            except Exception as exc:
                r['good_after'] = f'FAILED: {str(exc)[:300]}'
                problems[stage.node].append(
                    'the next good input was not handled' +
                    ('' if r.get('good_before') == 'ok' else ' (nor before the fuzz)'))
        phases['after'] = round(time.monotonic() - t1, 1)
    finally:
        for name, proc in procs.items():
            r = report['nodes'].setdefault(name, {'problems': []})
            log = proc.log()
            r['tracebacks'] = log.count('Traceback')
            r['log_tail'] = log[-2500:]
            code = proc.stop()
            r['exit_code'] = code
            if code != 0:
                r['problems'].append(f'exit code {code} at SIGINT')
        probe.close()
        (workdir / 'report.json').write_text(json.dumps(report, indent=1, default=str))
        keep = os.environ.get('WALLIE_FUZZ_KEEP')      # copy report and logs for later
        if keep:
            import shutil
            shutil.copytree(workdir, keep, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns('home'))
        print(f'\nfuzz report: {workdir / "report.json"}; sent {report["sent"]} messages; '
              f'phases {report.get("phases_s")}')
        for name, r in report['nodes'].items():
            print(f'  {name}: problems={r.get("problems")} diag={r.get("diagnostics")} '
                  f'good={r.get("good_before")}/{r.get("good_after")}')
    return report


@pytest.mark.parametrize('node', list(STAGES))
def test_node_survives_fuzz(fuzz_report, node):
    r = fuzz_report['nodes'].get(node)
    if r is None:
        pytest.skip(fuzz_report['missing'].get(node, 'not started'))
    assert not r['problems'], (
        f'{node}: ' + '; '.join(r['problems']) + f'\n--- log tail ---\n{r.get("log_tail", "")}')


def test_fuzz_reached_every_input(fuzz_report):
    assert fuzz_report['sent'] > 0
    assert fuzz_report['topics'], 'no input topic found in the graph'
