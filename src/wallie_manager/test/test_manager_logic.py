"""The manager's policies without ROS: lifecycle steps, backoff, restart loop cap, governor."""

import math

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


def test_parse_ladder():
    rung = L.parse_rung('llm:llm.max_tokens=96; !asr:asr.compute_type=int8 ;tts:x=true')
    assert rung == (L.Assignment('llm', 'llm.max_tokens', 96),
                    L.Assignment('asr', 'asr.compute_type', 'int8', reconfigure=True),
                    L.Assignment('tts', 'x', True))
    for bad in ('llm.max_tokens=96', 'llm:=3', 'llm:x=[1, 2]'):
        with pytest.raises(ValueError):
            L.parse_rung(bad)


def test_rung_values_are_cumulative_and_restore_the_baseline():
    ladder = L.parse_ladder(['llm:t=96', 'asr:c=int8; llm:t=64'])
    base = {('llm', 't'): 256, ('asr', 'c'): 'float16'}
    assert L.rung_values(ladder, 0, base) == base
    assert L.rung_values(ladder, 1, base) == {('llm', 't'): 96, ('asr', 'c'): 'float16'}
    assert L.rung_values(ladder, 2, base) == {('llm', 't'): 64, ('asr', 'c'): 'int8'}


def test_governor_steps_down_on_latency_and_back_up():
    g = L.Governor(rungs=2, budget_ms=1000, window=3, up_turns=4, up_ratio=0.5, cooldown_s=10)
    now = 0.0
    assert g.on_latency(1500, now) is None and g.on_latency(1600, now) is None
    assert g.on_latency(1700, now) == 1          # median of 3 over budget
    assert 'median latency' in g.reason
    for _ in range(3):                           # cool-down: no second step at once
        assert g.on_latency(2000, now + 1) is None
    assert g.on_latency(2000, now + 11) == 2
    for i in range(3):                           # lowest step reached
        assert g.on_latency(5000, now + 30 + i) is None
    assert 'lowest' in g.reason
    # good turns: a step up only after 4 in a row and 10 s without trouble
    results = [g.on_latency(300, now + 100 + 4 * i) for i in range(8)]
    first_up = next(i for i, r in enumerate(results) if r is not None)
    assert results[first_up] == 1 and first_up >= 3
    assert 'stepping back up' in g.reason
    assert g.on_latency(math.nan, now + 200) is None


def test_governor_oom_steps_down_at_once():
    g = L.Governor(rungs=3, cooldown_s=1000)
    assert g.on_oom(0.0) == 1
    assert g.on_oom(0.1) == 2                    # OOM ignores the cool-down
    assert g.on_latency(10, 5.0) is None         # no step up right after trouble


def test_turn_latency_joins_stamps():
    t = L.TurnLatency(max_turns=2)
    assert t.add('a', 'speech_end', 1_000_000_000) is None
    assert t.add('a', 'first_audible', 1_700_000_000) == pytest.approx(700.0)
    assert t.add('', 'speech_end', 5) is None
    for turn in 'bcd':
        t.add(turn, 'speech_end', 1)
    assert t.add('b', 'first_audible', 2) is None    # evicted (bounded memory)
