"""The manager's lifecycle tables, conversation states and config reload, without ROS.

The watch loop that uses them is stage_watcher.py, the governor governor.py; manager_node.py
does the talking (services, topics).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable

from wallie_bringup.ros_params import GLOBAL, Params

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


# -- conversation state (AssistantState constants) ------------------------------------------
STARTING, IDLE, LISTENING, THINKING, SPEAKING, DEGRADED, ERROR = range(7)
STATE_NAMES = ('starting', 'idle', 'listening', 'thinking', 'speaking', 'degraded', 'error')


def summarize(stages: Iterable[Any], was_ready: bool, conv: int,
              governor: str = '') -> tuple[int, bool, str]:
    """(AssistantState constant, ready, detail) from stage health and conversation.

    `stages`: the StageWatcher's records; `was_ready`: every required stage was active
    once; `conv`: the conversation state; `governor`: what the governor is doing ('' = at
    the baseline).
    """
    stages = list(stages)
    required = [s for s in stages if s.spec.required]
    failed = [s for s in required if s.phase == 'failed']
    down = [s for s in stages if s.phase != 'active']
    ready = all(s.phase == 'active' for s in required)
    if failed:
        return ERROR, False, '; '.join(f'{s.spec.name}: {s.detail}' for s in failed)
    if not was_ready:
        parts = [f'{s.spec.name}: {s.detail or s.label}' for s in down]
        return STARTING, False, 'starting: ' + '; '.join(parts)
    if not ready:
        parts = [f'{s.spec.name}: {s.detail or s.label}' for s in down]
        return DEGRADED, False, '; '.join(parts)
    detail = governor
    if not detail and down:
        detail = '; '.join(f'{s.spec.name}: {s.detail or s.label}' for s in down)
    if detail and conv == IDLE:
        conv = DEGRADED
    return conv, True, detail


def oom_marker(values: Iterable[tuple[str, str]], message: str) -> str:
    """From a stage's diagnostic (key/values, message): a token that changes with every
    new OOM report ('' = none)."""
    for key, value in values:
        if 'oom' in key.lower() and value not in ('', '0', 'false', 'False'):
            return f'{key}={value}'
    text = message.lower()
    if 'out of memory' in text or ' oom' in f' {text}':
        return f'msg:{message}'
    return ''


def write_state_file(path: Path, data: dict[str, Any]) -> None:
    """Replace `path` (state.json) atomically; a write error is ignored (reported next
    time)."""
    tmp = path.with_suffix('.tmp')
    try:
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path)
    except OSError:
        pass


# -- config reload --------------------------------------------------------------------------
def apply_changes(changes: Params, nodes: list[str],
                  set_params: Callable[[str, dict[str, Any]], dict[str, str] | None],
                  accepted: Params) -> tuple[list[str], list[str]]:
    """Send changed parameters to their nodes (the global section to every one of `nodes`).

    `set_params(node, values)` answers {param: '' if taken else why not}, or None when the
    node is not reachable. What was taken is merged into `accepted` (a global value once every
    node was tried). Returns (applied, rejected) as lines for the log.
    """
    applied: list[str] = []
    rejected: list[str] = []
    for node, values in changes.items():
        targets = list(nodes) if node == GLOBAL else [node]
        for name in targets:
            results = set_params(name, values)
            if results is None:
                rejected.append(f'{name}: not reachable, not applied '
                                '(reload again once it runs)')
                continue
            ok = {k: v for k, v in values.items() if not results.get(k)}
            rejected += [f'{name}/{k}: {r}' for k, r in results.items() if r]
            if node != GLOBAL or name == targets[-1]:
                accepted.setdefault(node, {}).update(ok)
            applied += [f'{name}/{k}={v!r}' for k, v in ok.items()]
    return applied, rejected
