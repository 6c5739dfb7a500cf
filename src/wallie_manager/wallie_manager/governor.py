"""The performance governor, without ROS: the ladder, the step policy, and applying a step.

A ladder is a list of rungs, mildest first, each a few parameter values of some stages.
`Governor` decides when to step down (GPU OOM, median latency over budget) and back up;
`Ladder` applies a rung to the stages: it remembers each parameter's baseline, sets
live values, reloads a stage for `!` values (through the StageWatcher), and keeps the overlay
that a restarted stage must be given again. The node feeds it latencies (`TurnLatency`) and
OOM reports.
"""

from __future__ import annotations

import math
import statistics
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Iterable, Mapping

import yaml


# -- the ladder and when to step ------------------------------------------------------------
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
    """Parse every non-empty rung (see parse_rung), mildest first."""
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
        """An OOM report: one step down at once (no cool-down); the new rung or None."""
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
        """Add one stamp; the turn's end-to-end latency (ms) once both ends are in."""
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




# -- applying a rung ------------------------------------------------------------------------
Rungs = tuple[tuple[Assignment, ...], ...]


class Ladder:
    """Applies the governor's steps to the stages and remembers what a restart needs.

    `get_params(node, names)` reads current values (the baseline, read once per parameter),
    `set_params(node, values, why)` sets live ones, `reload(node, values, why)` applies
    `!` values through a lifecycle reload. Only the stages in `nodes` are touched.
    """

    def __init__(self, rungs: Rungs, policy: Governor, *, nodes: Collection[str],
                 get_params: Callable[[str, list[str]], Mapping[str, Any]],
                 set_params: Callable[[str, dict[str, Any], str], Any],
                 reload: Callable[[str, dict[str, Any], str], Any],
                 logger: Any, enabled: bool = True) -> None:
        self.rungs = rungs
        self.policy = policy
        self.policy.rungs = len(rungs)
        self.nodes = nodes
        self.enabled = enabled
        self._get, self._set, self._reload = get_params, set_params, reload
        self.log = logger
        self.baseline: dict[tuple[str, str], Any] = {}
        self.overlay: dict[str, dict[str, Any]] = {}   # re-applied to a restarted stage
        self.applied: dict[tuple[str, str], Any] = {}  # what the governor last set
        self._apply_lock = threading.Lock()     # one step at a time
        self._overlay_lock = threading.Lock()

    def set_rungs(self, rungs: Rungs) -> None:
        """A new ladder (the current step is kept, capped at the new length)."""
        self.rungs = rungs
        self.policy.rungs = len(rungs)
        self.policy.rung = min(self.policy.rung, len(rungs))

    @property
    def active(self) -> bool:
        """True when enabled and the ladder has a rung."""
        return self.enabled and bool(self.rungs)

    def on_latency(self, e2e_ms: float, now: float) -> None:
        """One turn's end-to-end latency; steps in the background when the policy says so."""
        if self.active:
            self._step(self.policy.on_latency(e2e_ms, now))

    def on_oom(self, now: float, what: str) -> None:
        """A stage reported GPU out of memory: step down at once."""
        if self.active:
            self._step(self.policy.on_oom(now, what))

    def overlay_for(self, node: str) -> dict[str, Any]:
        """The governor's values a new instance of `node` must be given."""
        with self._overlay_lock:
            return dict(self.overlay.get(node, {}))

    def _step(self, rung: int | None) -> None:
        if rung is not None:
            threading.Thread(target=self.apply, args=(rung,), daemon=True,
                             name='governor').start()

    def apply(self, rung: int) -> None:
        """Bring every laddered parameter to its value at `rung` (0 = the baseline)."""
        with self._apply_lock:
            self._apply(rung)

    def _apply(self, rung: int) -> None:
        self.log.warning(f'governor: step {rung}/{len(self.rungs)} ({self.policy.reason})')
        touched = {(a.node, a.param): a for step in self.rungs for a in step}
        for (node, param) in touched:
            if (node, param) not in self.baseline and node in self.nodes:
                got = self._get(node, [param])
                if param in got and got[param] is not None:
                    self.baseline[(node, param)] = got[param]
        target = rung_values(self.rungs, rung, self.baseline)
        per_node: dict[str, dict[str, dict[str, Any]]] = {}
        for (node, param), value in target.items():
            if value is None or node not in self.nodes:
                continue
            if self.applied.get((node, param), self.baseline.get((node, param))) == value:
                continue          # unchanged: no needless reload
            kind = 'reconfigure' if touched[(node, param)].reconfigure else 'live'
            per_node.setdefault(node, {}).setdefault(kind, {})[param] = value
            self.applied[(node, param)] = value
            with self._overlay_lock:
                if rung:
                    self.overlay.setdefault(node, {})[param] = value
                else:         # back at the baseline: a restart needs nothing re-applied
                    self.overlay.get(node, {}).pop(param, None)
        for node, kinds in per_node.items():
            if kinds.get('live'):
                self._set(node, kinds['live'], f'governor step {rung}')
            if kinds.get('reconfigure'):
                self._reload(node, kinds['reconfigure'], f'governor step {rung}')
