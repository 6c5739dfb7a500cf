"""The manager's policies without ROS: lifecycle steps, backoff, restart loop cap, summary."""

import pytest
from lifecycle_msgs.msg import Transition

from wallie_common.restart import Backoff, RestartTracker
from wallie_manager import manager_logic as L


def test_transition_table_matches_lifecycle_msgs():
    assert L.TRANSITIONS['configure'][0] == Transition.TRANSITION_CONFIGURE
    assert L.TRANSITIONS['activate'][0] == Transition.TRANSITION_ACTIVATE
    assert L.TRANSITIONS['deactivate'][0] == Transition.TRANSITION_DEACTIVATE
    assert L.TRANSITIONS['cleanup'][0] == Transition.TRANSITION_CLEANUP
    assert L.TRANSITIONS['active_shutdown'][0] == Transition.TRANSITION_ACTIVE_SHUTDOWN
    assert L.TRANSITIONS['unconfigured_shutdown'][0] == \
        Transition.TRANSITION_UNCONFIGURED_SHUTDOWN


@pytest.mark.parametrize('state,goal,step', [
    ('unconfigured', 'active', 'configure'),
    ('inactive', 'active', 'activate'),
    ('active', 'active', None),
    ('active', 'unconfigured', 'deactivate'),
    ('inactive', 'unconfigured', 'cleanup'),
    ('configuring', 'active', None),       # wait for a transitional state
    ('finalized', 'active', None),         # only a process restart helps
    ('errorprocessing', 'active', None),
])
def test_step_towards(state, goal, step):
    assert L.step_towards(state, goal) == step
    if step is not None:
        assert L.is_valid(step, state)


def test_every_invalid_pair_is_refused():
    for transition in L.TRANSITIONS:
        for state in L.PRIMARY + L.TRANSITIONAL:
            assert L.is_valid(transition, state) == (L.TRANSITIONS[transition][1] == state)


def test_backoff_doubles_up_to_the_cap():
    b = Backoff(0.5, 4.0)
    assert [b.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_restart_loop_is_capped_then_cools_down():
    t = RestartTracker(backoff=Backoff(0.5, 30), max_restarts=3, window_s=60,
                         cooldown_s=100)
    assert [t.record_failure(0), t.record_failure(1), t.record_failure(2)] == [0.5, 1.0, 2.0]
    assert t.record_failure(3) is None and t.given_up
    assert not t.may_retry(50)
    assert t.may_retry(103) and not t.given_up
    assert t.record_failure(104) == 0.5          # a fresh series
    # failures older than the window are forgotten: the backoff resets
    t2 = RestartTracker(backoff=Backoff(0.5, 30), max_restarts=3, window_s=10)
    t2.record_failure(0)
    t2.record_failure(1)
    assert t2.record_failure(100) == 0.5 and t2.total == 3


class _St:
    def __init__(self, name, phase, required=True, detail='', label='active'):
        self.spec = type('Spec', (), {'name': name, 'required': required})()
        self.phase, self.detail, self.label = phase, detail, label


def test_summary():
    up = [_St('asr', 'active'), _St('tts', 'active')]
    assert L.summarize(up, False, L.IDLE)[:2] == (L.STARTING, False)
    assert L.summarize(up, True, L.IDLE) == (L.IDLE, True, '')
    assert L.summarize(up, True, L.SPEAKING, 'governor step 1/2: slow') == \
        (L.SPEAKING, True, 'governor step 1/2: slow')
    assert L.summarize(up, True, L.IDLE, 'governor step 1/2: slow')[0] == L.DEGRADED
    optional_down = up + [_St('wake', 'recovering', required=False, detail='crashed')]
    assert L.summarize(optional_down, True, L.IDLE) == (L.DEGRADED, True, 'wake: crashed')
    down = [_St('asr', 'recovering', detail='restart 1 in 0.5 s'), _St('tts', 'active')]
    assert L.summarize(down, True, L.IDLE) == (L.DEGRADED, False,
                                                'asr: restart 1 in 0.5 s')
    failed = [_St('asr', 'failed', detail='restart loop'), _St('tts', 'active')]
    assert L.summarize(failed, True, L.IDLE) == (L.ERROR, False, 'asr: restart loop')


def test_oom_marker():
    assert L.oom_marker([('gpu_oom_count', '2')], 'ok') == 'gpu_oom_count=2'
    assert L.oom_marker([('gpu_oom_count', '0')], 'ok') == ''
    assert L.oom_marker([], 'CUDA out of memory') == 'msg:CUDA out of memory'
    assert L.oom_marker([], 'room tone') == ''


def test_config_reload_sends_each_change_to_its_nodes_and_keeps_what_was_taken():
    sent = []
    answers = {'asr': {'asr.model': ''}, 'llm': {'llm.max_tokens': 'out of range'},
               'tts': None}

    def set_params(node, values):
        sent.append((node, dict(values)))
        reply = answers.get(node, {k: '' for k in values})
        return None if reply is None else {k: reply.get(k, '') for k in values}

    accepted = {'asr': {'asr.model': 'tiny.en', 'asr.device': 'cpu'}}
    changes = {'asr': {'asr.model': 'base.en'}, 'llm': {'llm.max_tokens': 9999},
               'tts': {'tts.engine': 'espeak'}, L.GLOBAL: {'log_level': 'debug'}}
    applied, rejected = L.apply_changes(changes, ['asr', 'metrics'], set_params, accepted)
    assert sent[:3] == [('asr', {'asr.model': 'base.en'}), ('llm', {'llm.max_tokens': 9999}),
                        ('tts', {'tts.engine': 'espeak'})]
    assert [n for n, _ in sent[3:]] == ['asr', 'metrics']      # the global section: every node
    assert applied == ["asr/asr.model='base.en'", "asr/log_level='debug'",
                       "metrics/log_level='debug'"]
    assert rejected == ['llm/llm.max_tokens: out of range',
                        'tts: not reachable, not applied (reload again once it runs)']
    assert accepted == {'asr': {'asr.model': 'base.en', 'asr.device': 'cpu'}, 'llm': {},
                        L.GLOBAL: {'log_level': 'debug'}}
