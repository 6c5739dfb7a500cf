"""Fixtures of the bringup tests: the graph harness of wallie_common, and `up`."""

import os
import signal

import pytest

from wallie_testing.fixtures import node_process, probe, ros_env  # noqa: F401
from wallie_testing.up import Up, alive


@pytest.fixture
def up(ros_env, tmp_path):  # noqa: F811 - uses the ros_env fixture
    """Factory: ``up(*wallie_up_args, stages=...)``; every run is stopped at the end."""
    started = []

    def start(*args, **kwargs) -> Up:
        u = Up(tmp_path, *args, **kwargs)
        started.append(u)
        return u
    yield start
    for u in started:
        u.stop()
        for pid in u.seen_pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
