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


BURN = """
import sys, time
sys.stdin.readline()
end = time.process_time() + 0.3
while time.process_time() < end:
    pass
print('done', flush=True)
time.sleep(30)
"""


def test_meter_tells_a_busy_process_from_a_sleeping_one():
    # CPU seconds, not shares of a core: the busy child burns a fixed 0.3 s of CPU however
    # loaded the machine is, and the meter must see that amount.
    busy = subprocess.Popen([sys.executable, '-c', BURN], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    idle = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
    try:
        time.sleep(0.5)                               # both past their start-up
        meter = cpu.CpuMeter({'busy': busy.pid, 'idle': idle.pid})
        meter.start()
        busy.stdin.write('go\n')
        busy.stdin.flush()
        assert busy.stdout.readline().strip() == 'done'
        usage = meter.stop()
    finally:
        busy.kill()
        idle.kill()
        busy.wait()
        idle.wait()
    assert 0.25 <= usage.cpu_s['busy'] <= 0.6
    assert usage.cpu_s['idle'] <= 0.05
    pct = usage.percent()
    assert pct['busy'] == pytest.approx(100.0 * usage.cpu_s['busy'] / usage.wall_s)
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
