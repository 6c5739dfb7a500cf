"""StageWatcher without ROS: a scripted lifecycle client, fake processes and a fake clock.

The scripted stage behaves like a Jazzy rclpy lifecycle node: it answers GetState with its
state, runs a valid transition, and records (then "dies" on) an invalid one.
"""

import logging

import pytest

from wallie_bringup.graph import NodeSpec
from wallie_manager import manager_logic as L
from wallie_manager.stage_watcher import StageWatcher, WatchConfig

AFTER = {'configure': 'inactive', 'activate': 'active', 'deactivate': 'inactive',
         'cleanup': 'unconfigured'}
INTERIM = {'configure': 'configuring', 'activate': 'activating',
           'deactivate': 'deactivating', 'cleanup': 'cleaningup'}


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t

    def advance(self, dt):
        self.t += dt


class ScriptedStage:
    """A lifecycle node as the watcher sees it through its LifecycleClient."""

    def __init__(self, name, clock, state='unconfigured'):
        self.name, self.clock, self.state = name, clock, state
        self.answering = True
        self.fail = set()        # transitions whose callback fails (back to the start state)
        self.unanswered = {}     # transition: GetState polls it stays transitional, no reply
        self.wait_share = 1.0    # share of the timeout an unanswered request waits
        self.pending = None      # (polls left, final state) of an unanswered transition
        self.requests = []       # (transition, state it was requested from)
        self.invalid = []
        self.params = []

    # LifecycleClient
    def get_state(self, timeout):
        if not self.answering:
            self.clock.advance(timeout)
            return None
        self.clock.advance(0.01)
        if self.pending is not None:
            left, final = self.pending
            if left <= 0:
                self.state, self.pending = final, None
            else:
                self.pending = (left - 1, final)
        return self.state

    def change_state(self, transition, timeout, abort):
        self.requests.append((transition, self.state))
        if not self.answering:
            self.clock.advance(timeout)
            return None
        if not L.is_valid(transition, self.state):
            self.invalid.append((transition, self.state))
            self.answering = False          # Jazzy's rclpy kills the node
            return None
        if transition in self.unanswered:
            self.pending = (self.unanswered[transition], AFTER[transition])
            self.state = INTERIM[transition]
            self.clock.advance(timeout * self.wait_share)
            return None
        self.clock.advance(0.1)
        if transition in self.fail:
            return False
        self.state = AFTER[transition]
        return True

    def set_params(self, values, why):
        self.params.append((dict(values), why))
        return []

    # helpers
    def sent(self):
        return [t for t, _ in self.requests]


class Processes:
    def __init__(self):
        self.pids, self.dead, self.killed = {}, set(), []

    def read_pid(self, stage):
        return self.pids.get(stage)

    def alive(self, pid):
        return pid not in self.dead

    def kill(self, pid):
        self.killed.append(pid)
        self.dead.add(pid)
        return True


def make(graph, **cfg):
    """graph: [(name, after)] in activation order; returns (watcher, {name: stage}, procs,
    clock)."""
    clock = Clock()
    procs = Processes()
    nodes = {name: ScriptedStage(name, clock) for name, _ in graph}
    specs = [(NodeSpec(name, 'p', 'e', after=tuple(after)), f'/{name}', nodes[name])
             for name, after in graph]
    w = StageWatcher(specs, config=WatchConfig(**cfg), logger=logging.getLogger('test'),
                     processes=procs, clock=clock)
    return w, nodes, procs, clock


def run(w, clock, seconds, order=None):
    """Step every stage (in `order`, default reverse activation order) each period."""
    end = clock() + seconds
    names = order or list(reversed(w.stages))
    while clock() < end:
        for name in names:
            w.step(w.stages[name])
        clock.advance(w.config.period_s)


def activations(nodes):
    return [(n, t) for n, stage in nodes.items() for t in stage.sent() if t == 'activate']


def test_activation_follows_dependency_order():
    order_seen = []
    w, nodes, _, clock = make([('player', ()), ('tts', ('player',)), ('llm', ('tts',))])
    for name, stage in nodes.items():
        original = stage.change_state

        def spy(transition, timeout, abort, _name=name, _orig=original):
            order_seen.append((_name, transition))
            return _orig(transition, timeout, abort)
        stage.change_state = spy
    run(w, clock, 5)                       # stepped llm first, player last
    assert all(st.phase == 'active' for st in w.stages.values())
    acts = [n for n, t in order_seen if t == 'activate']
    assert acts == ['player', 'tts', 'llm']
    # configure does not wait for dependencies (parallel configure): llm configures first
    assert order_seen[0] == ('llm', 'configure')
    assert w.ready_at is not None


def test_sequential_configure_waits_for_dependencies():
    w, nodes, _, clock = make([('player', ()), ('tts', ('player',))],
                              parallel_configure=False)
    w.step(w.stages['tts'])
    assert nodes['tts'].requests == []
    assert w.stages['tts'].detail == 'waiting for player'
    run(w, clock, 3)
    assert [st.phase for st in w.stages.values()] == ['active', 'active']


@pytest.mark.parametrize('start', ['unconfigured', 'inactive', 'active', 'configuring',
                                   'activating', 'deactivating', 'finalized'])
def test_no_invalid_transition_from_any_state(start):
    w, nodes, procs, clock = make([('asr', ())])
    stage = nodes['asr']
    stage.state = start
    if start in L.TRANSITIONAL:
        stage.pending = (3, AFTER[{v: k for k, v in INTERIM.items()}[start]])
    procs.pids['asr'] = 10
    w.step(w.stages['asr'])
    if start == 'finalized':        # only a process restart helps: it is killed
        assert procs.killed == [10]
        procs.pids['asr'] = 11
        stage.state = 'unconfigured'
    run(w, clock, 10)
    assert stage.invalid == []
    assert w.stages['asr'].phase == 'active'


def test_stale_label_is_checked_before_a_request():
    """The watcher saw 'unconfigured', someone configured the node since: no configure."""
    w, nodes, _, clock = make([('llm', ())])
    st = w.stages['llm']
    st.label = 'unconfigured'
    nodes['llm'].state = 'inactive'
    w.drive_up(st)
    assert nodes['llm'].requests == []          # configure skipped (not valid any more)
    run(w, clock, 2)
    assert nodes['llm'].requests == [('activate', 'inactive')]
    assert nodes['llm'].invalid == []


@pytest.mark.parametrize('wait_share', [1.0, 0.5])
def test_timed_out_transition_is_polled_not_resent(wait_share):
    """No answer (the whole timeout, or part of it when the call ends early): GetState is
    polled until the node settles; the request is never sent twice."""
    w, nodes, _, clock = make([('llm', ())])
    stage = nodes['llm']
    stage.unanswered['configure'] = 5           # no reply; configuring for 5 more polls
    stage.wait_share = wait_share
    w.step(w.stages['llm'])
    assert stage.sent() == ['configure']
    if wait_share < 1:                          # polled inside the same step till settled
        assert w.stages['llm'].label == 'inactive'
    run(w, clock, 5)
    assert stage.sent() == ['configure', 'activate']    # configure was never sent again
    assert w.stages['llm'].phase == 'active'


def test_transition_that_never_settles_reports_timeout():
    w, nodes, _, clock = make([('llm', ())])
    stage = nodes['llm']
    stage.unanswered['configure'] = 10 ** 6        # stays 'configuring'
    w.stages['llm'].spec = NodeSpec('llm', 'p', 'e', configure_timeout_s=3.0)
    w.step(w.stages['llm'])
    assert w.stages['llm'].detail.startswith('configure: timeout')
    run(w, clock, 30)
    assert stage.sent() == ['configure']           # polled only while transitional
    assert stage.invalid == []


def test_crash_backoff_then_restart_of_the_new_process():
    w, nodes, procs, clock = make([('tts', ())], backoff_initial_s=0.5, backoff_max_s=30.0)
    procs.pids['tts'] = 100
    run(w, clock, 2)
    st = w.stages['tts']
    assert st.phase == 'active' and st.pid == 100
    delays = []
    for crash, new_pid in enumerate((101, 102), start=1):
        procs.dead.add(st.pid)                     # the process dies
        w.step(st)
        assert st.phase == 'recovering'
        delays.append(st.next_attempt_at - clock())
        assert f'restart {crash} in' in st.detail
        # the supervisor respawns it: a fresh unconfigured instance
        procs.pids['tts'] = new_pid
        nodes['tts'].state = 'unconfigured'
        before = len(nodes['tts'].requests)
        w.step(st)                                  # still inside the backoff: nothing sent
        assert len(nodes['tts'].requests) == before
        run(w, clock, delays[-1] + 2)
        assert st.phase == 'active' and st.pid == new_pid
        assert nodes['tts'].sent()[before:] == ['configure', 'activate']
        assert st.recoveries == crash and st.last_recovery_s is not None
    assert delays == [pytest.approx(0.5), pytest.approx(1.0)]     # the backoff grows
    assert nodes['tts'].invalid == []


def test_respawn_that_never_comes_is_reported_failed():
    w, nodes, procs, clock = make([('tts', ())], respawn_timeout_s=10.0)
    procs.pids['tts'] = 100
    run(w, clock, 2)
    procs.dead.add(100)
    run(w, clock, 12)
    st = w.stages['tts']
    assert st.phase == 'failed' and 'not restarted within' in st.detail


def test_restart_loop_gives_up_then_cools_down():
    w, nodes, _, clock = make([('asr', ())], max_restarts=2, backoff_initial_s=0.5,
                              window_s=60.0, cooldown_s=100.0)
    stage = nodes['asr']
    stage.fail.add('configure')                   # its model never loads
    run(w, clock, 10)
    st = w.stages['asr']
    assert st.phase == 'failed' and st.detail.startswith('restart loop: 3 failures')
    assert stage.sent() == ['configure'] * 3
    run(w, clock, 80)                             # cooling down: polled, never driven
    assert stage.sent() == ['configure'] * 3 and st.phase == 'failed'
    stage.fail.clear()                            # fixed meanwhile
    run(w, clock, 30)                             # cool-down over: a fresh series
    assert stage.sent() == ['configure'] * 4 + ['activate']
    assert st.phase == 'active'


def test_restart_loop_without_cooldown_stays_failed():
    w, nodes, _, clock = make([('asr', ())], max_restarts=1, cooldown_s=0.0)
    nodes['asr'].fail.add('activate')
    run(w, clock, 600)
    assert w.stages['asr'].phase == 'failed'
    assert nodes['asr'].sent().count('activate') == 2


def test_hung_stage_is_killed_once_its_heartbeat_stops():
    w, nodes, procs, clock = make([('llm', ())], unresponsive_after=3, heartbeat_timeout_s=5.0,
                                  hung_timeout_s=20.0, call_timeout_s=2.0)
    procs.pids['llm'] = 200
    run(w, clock, 2)
    st = w.stages['llm']
    assert st.phase == 'active'
    nodes['llm'].answering = False                # executor stuck: no GetState answers
    end = clock() + 25
    while clock() < end:                          # its diagnostics thread still beats
        st.heartbeat_at = clock()
        w.step(st)
        clock.advance(w.config.period_s)
    assert st.phase == 'active' and procs.killed == []    # a live heartbeat: tolerated
    assert st.misses >= 3
    run(w, clock, 8)                              # heartbeat stops: killed, one failure
    assert procs.killed == [200]
    assert st.tracker.total == 1 and st.phase == 'recovering'
    assert 'not responding' in st.detail
    run(w, clock, 2)                              # its death is not counted a second time
    assert st.tracker.total == 1


def test_unresponsive_without_heartbeat_is_a_failure_without_kill():
    w, nodes, procs, clock = make([('llm', ())], unresponsive_after=3, hung_timeout_s=20.0)
    procs.pids['llm'] = 200
    run(w, clock, 2)
    nodes['llm'].answering = False
    run(w, clock, 10)
    st = w.stages['llm']
    assert st.phase == 'recovering' and st.tracker.total == 1
    assert procs.killed == []                     # not hung long enough to be killed


def test_found_deactivated_is_reactivated_and_counted():
    w, nodes, _, clock = make([('tts', ())])
    run(w, clock, 2)
    nodes['tts'].state = 'inactive'               # someone deactivated it
    run(w, clock, 3)
    st = w.stages['tts']
    assert st.phase == 'active' and st.recoveries == 1 and st.tracker.total == 1
    assert nodes['tts'].sent() == ['configure', 'activate', 'activate']


def test_new_instance_gets_its_parameters_before_configure():
    w, nodes, procs, clock = make([('llm', ())])
    w.instance_params = lambda st: {'llm.history_json': '[]'} if st.ever_active else {}
    procs.pids['llm'] = 1
    run(w, clock, 2)
    assert nodes['llm'].params == []              # first start: nothing to restore
    procs.dead.add(1)
    procs.pids['llm'] = 2
    nodes['llm'].state = 'unconfigured'
    run(w, clock, 3)
    assert nodes['llm'].params == [({'llm.history_json': '[]'}, 'restart')]
    assert w.stages['llm'].phase == 'active'


def test_stop_deactivates_in_reverse_order():
    w, nodes, _, clock = make([('player', ()), ('tts', ('player',))])
    run(w, clock, 3)
    log = []
    for name, stage in nodes.items():
        original = stage.change_state
        stage.change_state = lambda t, to, ab, _n=name, _o=original: (
            log.append((_n, t)), _o(t, to, ab))[1]
    w.stop(deactivate=True, timeout_s=3.0)
    assert log == [('tts', 'deactivate'), ('player', 'deactivate')]


def test_reload_goes_down_and_up_with_the_new_values():
    w, nodes, _, clock = make([('asr', ())])
    run(w, clock, 2)
    w.reload(w.stages['asr'], {'asr.compute_type': 'int8'}, 'governor step 1')
    assert nodes['asr'].sent() == ['configure', 'activate', 'deactivate', 'cleanup',
                                   'configure', 'activate']
    assert nodes['asr'].params == [({'asr.compute_type': 'int8'}, 'governor step 1')]
    assert w.stages['asr'].phase == 'active'
