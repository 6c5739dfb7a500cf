"""The busy-robot load and its summary (wallie bench --busy-cores)."""

from __future__ import annotations

import time

import pytest

from wallie_cli import busy
from wallie_cli.bench_report import stats


def _row(condition, e2e, answered=True):
    return {'condition': condition, 'answered': answered,
            'latency_ms': {'true_e2e_ms': e2e if answered else None}}


def test_load_is_bounded_in_time_and_measured():
    load = busy.RobotLoad(cores=0.6, processes=2, max_s=1.5)
    load.start()
    time.sleep(1.0)
    assert load.used_cores() > 0.05          # it computes (a loaded box gives it less)
    time.sleep(2.5)
    assert all(p.poll() is not None for p in load._procs)    # stopped by itself
    info = load.stop()
    assert info['cores_wanted'] == 0.6 and info['processes'] == 2


def test_a_process_is_at_most_one_core():
    with pytest.raises(ValueError, match='cores'):
        busy.RobotLoad(cores=4, processes=3)
    with pytest.raises(ValueError):
        busy.RobotLoad(cores=0)


def test_summary_ratio_lost_turns_and_target():
    loads = [{'cores_wanted': 1.0, 'cores_used': 0.9, 'processes': 3}]
    rows = [_row('quiet', 1000), _row('quiet', 1200), _row('busy', 1800), _row('busy', 2800)]
    s = busy.busy_summary(rows, loads, stats)
    assert s['p50_ratio'] == pytest.approx(2300 / 1100)
    assert s['lost_turns'] == 0 and s['turns'] == 2 and s['met'] is False   # 2.09x
    rows[3] = _row('busy', 2000)
    s = busy.busy_summary(rows, loads, stats)
    assert s['p50_ratio'] == pytest.approx(1900 / 1100) and s['met'] is True
    rows.append(_row('busy', None, answered=False))
    s = busy.busy_summary(rows, loads, stats)
    assert s['lost_turns'] == 1 and s['met'] is False            # a lost turn fails it
