"""pytest fixtures of the graph harness: ``ros_env`` (session), ``probe``, ``node_process``,
``ros_context``.

Use from a conftest.py: ``from wallie_testing.fixtures import node_process, probe, ros_env``.
"""

from __future__ import annotations

from typing import Any

import pytest

from wallie_testing.harness import NodeProcess, Probe, configure_ros_env


@pytest.fixture(scope='session')
def ros_env(tmp_path_factory) -> dict[str, str]:
    """Isolated ROS domain, localhost discovery and a private log dir for this run."""
    return configure_ros_env(str(tmp_path_factory.mktemp('roslog')))


@pytest.fixture
def ros_context(ros_env):
    """An initialised rclpy Context of its own, for nodes built in the test process."""
    import rclpy
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.try_shutdown(context=ctx)


@pytest.fixture
def probe(ros_env):
    """A Probe node on the isolated ROS domain, closed after the test."""
    p = Probe()
    yield p
    p.close()


@pytest.fixture
def node_process(ros_env, tmp_path):
    """Factory: ``node_process('wallie_asr.asr_node', params={...})``; all stopped at the end."""
    started: list[NodeProcess] = []

    def start(exe: str, **kwargs: Any) -> NodeProcess:
        kwargs.setdefault('workdir', tmp_path)
        proc = NodeProcess(exe, **kwargs)
        started.append(proc)
        return proc
    yield start
    for proc in started:
        proc.stop()
