"""The process supervisor of `wallie up` with real processes (no ROS needed)."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from wallie_bringup.supervisor import ProcSpec, Supervisor, describe_exit

PY = sys.executable


def alive(pid):
    try:
        with open(f'/proc/{pid}/stat') as fh:
            return fh.read().rsplit(')', 1)[1].split()[0] not in ('Z', 'X')
    except OSError:
        return False


def wait(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


def py(code):
    return [PY, '-S', '-c', textwrap.dedent(code)]


def run_until(sup, pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sup.poll()
        if pred():
            return True
        time.sleep(0.02)
    return False


def test_respawn_with_exponential_backoff_then_give_up(tmp_path):
    events = []
    sup = Supervisor([ProcSpec('crasher', py('import sys; sys.exit(3)'),
                               respawn_delay_s=0.1)], tmp_path,
                     on_event=lambda k, n, d: events.append((k, d)), max_restarts=3,
                     window_s=60)
    sup.start()
    assert run_until(sup, lambda: any(k == 'gave_up' for k, _ in events), 15)
    delays = [d['respawn_in_s'] for k, d in events if k == 'exited']
    assert delays == [0.1, 0.2, 0.4]                       # doubled each time
    assert sum(1 for k, _ in events if k == 'started') == 4
    assert sup.children['crasher'].gave_up
    assert events[-1][1]['code'] == 3
    sup.stop()


def test_pid_files_follow_restarts(tmp_path):
    sup = Supervisor([ProcSpec('sleeper', py('import time; time.sleep(60)'),
                               respawn_delay_s=0.05)], tmp_path)
    sup.start()
    pid1 = int((tmp_path / 'pids' / 'sleeper').read_text())
    assert pid1 == sup.pid('sleeper')
    os.kill(pid1, signal.SIGKILL)
    assert run_until(sup, lambda: sup.pid('sleeper') not in (None, pid1), 5)
    pid2 = int((tmp_path / 'pids' / 'sleeper').read_text())
    assert pid2 == sup.pid('sleeper') != pid1
    assert not alive(pid1)                                  # reaped, not a zombie
    sup.stop()
    assert not (tmp_path / 'pids' / 'sleeper').exists()


def test_stop_order_sigint_then_sigkill_and_no_leftovers(tmp_path):
    order = tmp_path / 'order.txt'
    polite = py(f'''
        import signal, sys, time
        def bye(*_):
            open({str(order)!r}, 'a').write(sys.argv[1] + '\\n'); sys.exit(0)
        signal.signal(signal.SIGINT, bye)
        time.sleep(60)
    ''')
    stubborn = py('''
        import signal, subprocess, sys, time
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        child = subprocess.Popen([sys.executable, '-S', '-c', 'import time; time.sleep(60)'])
        open(sys.argv[1], 'w').write(str(child.pid))
        time.sleep(60)
    ''')
    grandchild_file = tmp_path / 'grandchild.pid'
    sup = Supervisor([ProcSpec('manager', polite + ['manager']),
                      ProcSpec('stage', polite + ['stage']),
                      ProcSpec('stubborn', stubborn + [str(grandchild_file)])], tmp_path)
    events = []
    sup._on_event = lambda k, n, d: events.append((k, n))
    sup.start()
    pids = {n: sup.pid(n) for n in sup.children}
    assert wait(lambda: grandchild_file.exists() and grandchild_file.read_text(), 10)
    time.sleep(0.3)    # let the children install their handlers
    grandchild = int(grandchild_file.read_text())
    t0 = time.monotonic()
    codes = sup.stop(first=['manager'], first_timeout_s=5, timeout_s=1.0)
    assert time.monotonic() - t0 < 8
    assert order.read_text().split() == ['manager', 'stage']   # manager stopped first
    assert codes['manager'] == 0 and codes['stage'] == 0
    assert codes['stubborn'] == -signal.SIGKILL and ('kill', 'stubborn') in events
    for pid in list(pids.values()) + [grandchild]:
        assert wait(lambda: not alive(pid), 5), f'{pid} left behind'


def test_no_orphans_when_the_supervisor_is_killed(tmp_path):
    """PR_SET_PDEATHSIG: children die with a SIGKILLed supervisor."""
    script = tmp_path / 'sup.py'
    script.write_text(textwrap.dedent(f'''
        import sys, time
        from wallie_bringup.supervisor import ProcSpec, Supervisor
        sup = Supervisor([ProcSpec('a', [sys.executable, '-S', '-c',
                                         'import time; time.sleep(60)'])], {str(tmp_path)!r})
        sup.start()
        print(sup.pid('a'), flush=True)
        while True:
            sup.poll(); time.sleep(0.05)
    '''))
    proc = subprocess.Popen([PY, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        child = int(proc.stdout.readline())
        assert alive(child)
        proc.kill()
        proc.wait(5)
        assert wait(lambda: not alive(child), 5), 'child outlived its supervisor'
    finally:
        proc.kill()


def test_describe_exit():
    assert describe_exit(-9) == 'killed by SIGKILL'
    assert describe_exit(2) == 'exit code 2'


@pytest.mark.parametrize('respawn', [False])
def test_no_respawn_policy(tmp_path, respawn):
    events = []
    sup = Supervisor([ProcSpec('once', py('pass'), respawn=respawn)], tmp_path,
                     on_event=lambda k, n, d: events.append((k, d)))
    sup.start()
    assert run_until(sup, lambda: any(k == 'exited' for k, _ in events), 5)
    time.sleep(0.2)
    sup.poll()
    assert sum(1 for k, _ in events if k == 'started') == 1
    sup.stop()
