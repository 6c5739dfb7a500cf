"""The manager's decisions, without ROS: lifecycle steps, restart backoff, the governor.

manager_node.py does the talking (services, topics); everything here is plain Python so the
policies can be unit-tested with a fake clock.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import yaml

# -- lifecycle ------------------------------------------------------------------------------
# lifecycle_msgs/msg/Transition ids and the state each valid transition starts from. The
# manager only ever sends one of these, and only after get_state returned its start state:
# Jazzy's rclpy 7.1.6 kills a Python lifecycle node that receives an invalid transition id.
TRANSITIONS: dict[str, tuple[int, str]] = {
    'configure': (1, 'unconfigured'),
    'cleanup': (2, 'inactive'),
    'activate': (3, 'inactive'),
    'deactivate': (4, 'active'),
    'unconfigured_shutdown': (5, 'unconfigured'),
    'inactive_shutdown': (6, 'inactive'),
    'active_shutdown': (7, 'active'),
}
PRIMARY = ('unconfigured', 'inactive', 'active', 'finalized')
TRANSITIONAL = ('configuring', 'cleaningup', 'shuttingdown', 'activating', 'deactivating',
                'errorprocessing')
# The label a lifecycle node accepts for each transition (ChangeState by label).
LABELS = {
    'configure': 'configure', 'cleanup': 'cleanup', 'activate': 'activate',
    'deactivate': 'deactivate', 'unconfigured_shutdown': 'shutdown',
    'inactive_shutdown': 'shutdown', 'active_shutdown': 'shutdown',
}


def is_valid(transition: str, state: str) -> bool:
    """True if `transition` may be requested from primary state `state`."""
    return transition in TRANSITIONS and TRANSITIONS[transition][1] == state


def step_towards(state: str, goal: str) -> str | None:
    """Next transition that moves a node in `state` towards `goal` (None: there or stuck).

    Goals: 'active', 'inactive', 'unconfigured'. Only primary states have a next step; a
    node in a transitional state must be waited for, a finalized one restarted.
    """
    if state == goal or state not in PRIMARY or state == 'finalized':
        return None
    up = {'unconfigured': 'configure', 'inactive': 'activate'}
    down = {'active': 'deactivate', 'inactive': 'cleanup'}
    order = ['unconfigured', 'inactive', 'active']
    if goal not in order:
        raise ValueError(f'unknown goal state {goal!r}')
    if order.index(state) < order.index(goal):
        return up[state]
    return down[state]


# -- governor -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Assignment:
    """One parameter value of a ladder rung; `reconfigure` = apply while unconfigured."""

    node: str
    param: str
    value: Any
    reconfigure: bool = False


def parse_rung(text: str) -> tuple[Assignment, ...]:
    """Parse ``"llm:llm.max_tokens=96; !asr:asr.compute_type=int8"``.

    Assignments are separated by ``;``. A leading ``!`` means the parameter only takes effect
    through a reload: the manager deactivates and cleans the stage up, sets it, then
    configures and activates it again. Values are YAML scalars (``96``, ``0.5``, ``true``,
    ``int8``).
    """
    out = []
    for part in text.split(';'):
        part = part.strip()
        if not part:
            continue
        reconf = part.startswith('!')
        if reconf:
            part = part[1:].strip()
        try:
            target, raw = part.split('=', 1)
            node, param = target.split(':', 1)
        except ValueError:
            raise ValueError(f'ladder step {part!r}: expected node:param=value') from None
        node, param = node.strip(), param.strip()
        if not node or not param:
            raise ValueError(f'ladder step {part!r}: expected node:param=value')
        value = yaml.safe_load(raw.strip()) if raw.strip() else ''
        if isinstance(value, (dict, list)) or value is None:
            raise ValueError(f'ladder step {part!r}: value must be a scalar')
        out.append(Assignment(node, param, value, reconf))
    return tuple(out)


def parse_ladder(rungs: Iterable[str]) -> tuple[tuple[Assignment, ...], ...]:
    return tuple(parse_rung(r) for r in rungs if r and r.strip())


def rung_values(ladder: tuple[tuple[Assignment, ...], ...], rung: int,
                baseline: Mapping[tuple[str, str], Any]) -> dict[tuple[str, str], Any]:
    """Every laddered parameter's value at `rung` (0 = baseline, rungs are cumulative)."""
    values = {key: baseline.get(key) for step in ladder for a in step
              for key in [(a.node, a.param)]}
    for step in ladder[:rung]:
        for a in step:
            values[(a.node, a.param)] = a.value
    return values


@dataclass
class Governor:
    """Steps down a ladder on GPU OOM or sustained latency over budget, and back up.

    Down: an OOM report, or the median end-to-end latency of the last `window` turns above
    `budget_ms`. Up: `up_turns` turns in a row under `budget_ms * up_ratio` and nothing
    bad for `cooldown_s`. At most one step per `cooldown_s`.
    """

    rungs: int
    budget_ms: float = 1500.0
    window: int = 5
    up_turns: int = 10
    up_ratio: float = 0.6
    cooldown_s: float = 30.0
    rung: int = 0
    latencies: deque = field(default_factory=lambda: deque(maxlen=50))
    good_streak: int = 0
    last_change: float = -math.inf
    last_trouble: float = -math.inf
    reason: str = ''

    def on_latency(self, e2e_ms: float, now: float) -> int | None:
        """Feed one turn's latency; return the new rung if it should change."""
        if not math.isfinite(e2e_ms) or e2e_ms < 0:
            return None
        self.latencies.append(e2e_ms)
        if e2e_ms < self.budget_ms * self.up_ratio:
            self.good_streak += 1
        else:
            self.good_streak = 0
        recent = list(self.latencies)[-self.window:]
        if len(recent) >= self.window and statistics.median(recent) > self.budget_ms:
            self.last_trouble = now
            median = statistics.median(recent)
            return self._down(now, f'median latency {median:.0f} ms over the last '
                                   f'{self.window} turns > budget {self.budget_ms:.0f} ms')
        if self.rung > 0 and self.good_streak >= self.up_turns \
                and now - self.last_trouble >= self.cooldown_s \
                and now - self.last_change >= self.cooldown_s:
            self.good_streak = 0
            self.rung -= 1
            self.last_change = now
            self.latencies.clear()
            self.reason = f'healthy for {self.up_turns} turns: stepping back up'
            return self.rung
        return None

    def on_oom(self, now: float, what: str = 'GPU out of memory') -> int | None:
        self.last_trouble = now
        self.good_streak = 0
        return self._down(now, what, force=True)

    def _down(self, now: float, why: str, force: bool = False) -> int | None:
        if self.rung >= self.rungs:
            self.reason = f'{why}; already at the lowest step'
            return None
        if not force and now - self.last_change < self.cooldown_s:
            return None
        self.rung += 1
        self.last_change = now
        self.latencies.clear()
        self.good_streak = 0
        self.reason = why
        return self.rung


# -- turn latency from stage stamps ---------------------------------------------------------
class TurnLatency:
    """Joins StageStamps by turn: end-to-end = first_audible - speech_end (ms)."""

    def __init__(self, max_turns: int = 64) -> None:
        self._turns: dict[str, dict[str, int]] = {}
        self._max = max_turns

    def add(self, turn_id: str, stage: str, stamp_ns: int) -> float | None:
        if not turn_id or stamp_ns <= 0:
            return None
        stamps = self._turns.setdefault(turn_id, {})
        if stage in stamps:
            return None
        stamps[stage] = stamp_ns
        while len(self._turns) > self._max:
            self._turns.pop(next(iter(self._turns)))
        if 'speech_end' in stamps and 'first_audible' in stamps:
            e2e = (stamps['first_audible'] - stamps['speech_end']) / 1e6
            self._turns.pop(turn_id, None)
            return e2e
        return None


# -- conversation state (AssistantState constants) ------------------------------------------
STARTING, IDLE, LISTENING, THINKING, SPEAKING, DEGRADED, ERROR = range(7)
STATE_NAMES = ('starting', 'idle', 'listening', 'thinking', 'speaking', 'degraded', 'error')
