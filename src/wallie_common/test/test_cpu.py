"""CPU accounting from /proc: the figures the idle and per-phase measurements rest on."""

import os
import subprocess
import sys
import time

import pytest

from wallie_common import cpu

pytestmark = pytest.mark.skipif(not os.path.exists('/proc/self/stat'), reason='needs /proc')


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_own_process_cpu_grows_with_work():
    before = cpu.process_cpu_s(os.getpid())
    _burn(0.3)
    after = cpu.process_cpu_s(os.getpid())
    assert before is not None and after is not None
    assert 0.2 <= after - before <= 1.0


def test_meter_tells_a_busy_process_from_a_sleeping_one():
    busy = subprocess.Popen([sys.executable, '-c', 'while True: pass'])
    idle = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])
    try:
        time.sleep(0.3)                               # both past their start-up
        usage = cpu.measure({'busy': busy.pid, 'idle': idle.pid}, 1.0)
    finally:
        busy.kill()
        idle.kill()
        busy.wait()
        idle.wait()
    pct = usage.percent()
    assert usage.wall_s >= 1.0
    assert pct['idle'] < 5.0
    # A spinning process gets well over a third of a core even on a shared 2-core box.
    assert pct['busy'] > 30.0
    assert usage.total_percent == pytest.approx(pct['busy'] + pct['idle'])


def test_gone_process_is_left_out():
    proc = subprocess.Popen([sys.executable, '-c', 'pass'])
    proc.wait()
    assert cpu.process_cpu_s(proc.pid) is None
    assert cpu.snapshot({'gone': proc.pid, 'me': os.getpid()}).keys() == {'me'}


def test_command_names_with_spaces_and_parentheses(tmp_path):
    # /proc/<pid>/stat's second field is the command name in parentheses, which may hold
    # both: the parser splits after the last ')'.
    script = tmp_path / 'a) b (c.py'
    script.write_text('import time; time.sleep(5)\n')
    link = tmp_path / 'x) y'
    link.symlink_to(sys.executable)
    proc = subprocess.Popen([str(link), str(script)])
    try:
        time.sleep(0.2)
        assert cpu.process_cpu_s(proc.pid) is not None
    finally:
        proc.kill()
        proc.wait()
