"""Shutdown of a node process as ROS tools and launch do it: exit 0, quickly, quietly.

A Ctrl-C in a terminal reaches every process of the group and `ros2 launch` forwards its own
SIGINT on top, so a node gets two signals a few ms apart; launch escalates to SIGTERM after
5 s. Here: a burst of signals during the whole teardown still exits 0, a teardown blocked in
a callback still ends before launch would escalate, and nothing prints a traceback.
"""

import signal
import time
from pathlib import Path

from wallie_common.runtime import SHUTDOWN_WATCHDOG_S
from wallie_interfaces.msg import AssistantState

NODE = str(Path(__file__).with_name('stage_fixture_node.py'))
LAUNCH_SIGTERM_TIMEOUT_S = 5.0      # launch_ros ExecuteProcess default sigterm_timeout


def _up(probe, node_process, **params):
    proc = node_process(NODE, params={'autostart': True, **params})
    msgs = probe.subscribe('fixture/state', AssistantState)
    probe.wait_for(lambda: len(msgs) >= 2, 30, 'fixture/state messages', [proc])
    return proc


def _signal_until_exit(proc, sig_seq, every_s: float, timeout: float) -> float:
    """Send the signals of `sig_seq` (cycled) every `every_s` until the process is gone;
    return the seconds from the first signal to its exit."""
    t0 = time.monotonic()
    sent = 0
    while proc.alive() and time.monotonic() - t0 < timeout:
        if time.monotonic() - t0 >= sent * every_s:
            try:
                proc.proc.send_signal(sig_seq[sent % len(sig_seq)])
            except ProcessLookupError:
                break
            sent += 1
        time.sleep(0.005)
    proc.proc.wait(timeout)
    return time.monotonic() - t0


def _quiet(log: str) -> None:
    for bad in ('Traceback', 'KeyboardInterrupt', 'never retrieved', '[ERROR]', '[FATAL]'):
        assert bad not in log, f'{bad!r} in the node log:\n{log[-3000:]}'


def test_repeated_sigint_during_teardown_exits_0(probe, node_process):
    # The teardown takes ~1 s here, and SIGINTs keep coming every 20 ms until the process
    # is gone, so some land in every phase of it, interpreter finalization included.
    proc = _up(probe, node_process, shutdown_busy_s=1.0)
    _signal_until_exit(proc, [signal.SIGINT], 0.02, 15)
    assert proc.proc.returncode == 0, proc.log()
    _quiet(proc.log())


def test_sigint_then_sigterm_exits_0(probe, node_process):
    proc = _up(probe, node_process, shutdown_busy_s=0.5)
    _signal_until_exit(proc, [signal.SIGINT, signal.SIGTERM], 0.05, 15)
    assert proc.proc.returncode == 0, proc.log()
    _quiet(proc.log())


def test_a_stuck_teardown_ends_before_launch_escalates(probe, node_process):
    assert SHUTDOWN_WATCHDOG_S < LAUNCH_SIGTERM_TIMEOUT_S - 0.5
    proc = _up(probe, node_process, shutdown_busy_s=60.0)
    took = _signal_until_exit(proc, [signal.SIGINT], 30.0, 15)
    assert took < LAUNCH_SIGTERM_TIMEOUT_S, f'{took:.1f} s:\n{proc.log()}'
    assert proc.proc.returncode == 0, proc.log()
    assert 'shutdown took longer than' in proc.log()
