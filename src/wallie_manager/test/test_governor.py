"""The governor without ROS: the ladder, the step policy, applying a step to the stages."""

import logging
import math

import pytest

from wallie_manager import governor as G


def test_parse_ladder():
    rung = G.parse_rung('llm:llm.max_tokens=96; !asr:asr.compute_type=int8 ;tts:x=true')
    assert rung == (G.Assignment('llm', 'llm.max_tokens', 96),
                    G.Assignment('asr', 'asr.compute_type', 'int8', reconfigure=True),
                    G.Assignment('tts', 'x', True))
    for bad in ('llm.max_tokens=96', 'llm:=3', 'llm:x=[1, 2]'):
        with pytest.raises(ValueError):
            G.parse_rung(bad)


def test_rung_values_are_cumulative_and_restore_the_baseline():
    ladder = G.parse_ladder(['llm:t=96', 'asr:c=int8; llm:t=64'])
    base = {('llm', 't'): 256, ('asr', 'c'): 'float16'}
    assert G.rung_values(ladder, 0, base) == base
    assert G.rung_values(ladder, 1, base) == {('llm', 't'): 96, ('asr', 'c'): 'float16'}
    assert G.rung_values(ladder, 2, base) == {('llm', 't'): 64, ('asr', 'c'): 'int8'}


def test_governor_steps_down_on_latency_and_back_up():
    g = G.Governor(rungs=2, budget_ms=1000, window=3, up_turns=4, up_ratio=0.5, cooldown_s=10)
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
    g = G.Governor(rungs=3, cooldown_s=1000)
    assert g.on_oom(0.0) == 1
    assert g.on_oom(0.1) == 2                    # OOM ignores the cool-down
    assert g.on_latency(10, 5.0) is None         # no step up right after trouble


def test_turn_latency_joins_stamps():
    t = G.TurnLatency(max_turns=2)
    assert t.add('a', 'speech_end', 1_000_000_000) is None
    assert t.add('a', 'first_audible', 1_700_000_000) == pytest.approx(700.0)
    assert t.add('', 'speech_end', 5) is None
    for turn in 'bcd':
        t.add(turn, 'speech_end', 1)
    assert t.add('b', 'first_audible', 2) is None    # evicted (bounded memory)


def test_ladder_applies_steps_and_restores_the_baseline():
    current = {('llm', 't'): 256, ('asr', 'c'): 'float16'}
    calls = []

    def get_params(node, names):
        return {n: current[(node, n)] for n in names}

    def set_params(node, values, why):
        calls.append(('set', node, values))
        current.update({(node, k): v for k, v in values.items()})

    def reload(node, values, why):
        calls.append(('reload', node, values))
        current.update({(node, k): v for k, v in values.items()})
    ladder = G.Ladder(G.parse_ladder(['llm:t=96', '!asr:c=int8; llm:t=64']),
                      G.Governor(rungs=0), nodes={'llm', 'asr'}, get_params=get_params,
                      set_params=set_params, reload=reload, logger=logging.getLogger('t'))
    assert ladder.policy.rungs == 2
    ladder.apply(1)
    assert calls == [('set', 'llm', {'t': 96})]
    assert ladder.overlay_for('llm') == {'t': 96} and ladder.overlay_for('asr') == {}
    ladder.apply(2)
    assert calls[1:] == [('set', 'llm', {'t': 64}), ('reload', 'asr', {'c': 'int8'})]
    ladder.apply(2)                               # nothing changed: no needless reload
    assert len(calls) == 3
    ladder.apply(0)                               # back to the values read at the start
    assert calls[3:] == [('set', 'llm', {'t': 256}), ('reload', 'asr', {'c': 'float16'})]
    assert ladder.overlay_for('llm') == {} and ladder.overlay_for('asr') == {}


def test_ladder_off_or_empty_never_steps():
    ladder = G.Ladder((), G.Governor(rungs=0), nodes=set(), get_params=None,
                      set_params=None, reload=None, logger=logging.getLogger('t'))
    ladder.on_oom(0.0, 'oom')
    assert ladder.policy.rung == 0
    ladder.set_rungs(G.parse_ladder(['llm:t=1']))
    ladder.enabled = False
    ladder.on_oom(0.0, 'oom')
    assert ladder.policy.rung == 0
