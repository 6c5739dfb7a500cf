"""Helpers of the `wallie up` tests: run it as a real process and inspect its run dir."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

DUMMY = str(Path(__file__).with_name('dummy_stage.py'))  # run as a script by the tests
WALLIE = str(Path(sys.executable).with_name('wallie'))
STAGES = [('player', ()), ('tts', ('player',)), ('llm', ('tts',)), ('asr', ('llm',))]


def alive(pid):
    """True if process `pid` exists and is not a zombie."""
    try:
        with open(f'/proc/{pid}/stat') as fh:
            return fh.read().rsplit(')', 1)[1].split()[0] not in ('Z', 'X')
    except OSError:
        return False


def state_of(probe, name, attempts=20):
    """GetState with retries: after a SIGKILL the dead process's service lingers (~20 s)
    and a request can go nowhere; a fresh attempt reaches the new process."""
    for _ in range(attempts):
        try:
            return probe.lifecycle_state(name, timeout=1.0)
        except AssertionError:
            continue
    raise AssertionError(f'{name}: no answer to get_state')


def params_of(probe, name, *params, attempts=20):
    """The values of `params` of node `name` (GetParameters, with retries)."""
    from rcl_interfaces.srv import GetParameters
    from rclpy.parameter import parameter_value_to_python
    for _ in range(attempts):
        try:
            res = probe.call(GetParameters, f'{name}/get_parameters',
                             GetParameters.Request(names=list(params)), timeout=1.0)
        except AssertionError:
            continue
        return [parameter_value_to_python(v) for v in res.values]
    raise AssertionError(f'{name}: no answer to get_parameters')


class Up:
    """`wallie up` as a real process, with its run directory inspectable."""

    def __init__(self, tmp: Path, *args: str, env: dict | None = None,
                 stages=STAGES) -> None:
        """Run the dummy `stages` (None: the real graph of wallie_bringup.graph)."""
        self.tmp = tmp
        self.run_dir = tmp / 'run'
        self.names = [n for n, _ in stages] if stages else [
            n.name for n in __import__('wallie_bringup.graph').graph.NODES if n.name != 'manager']
        graph_args: list[str] = []
        if stages is not None:
            nodes = [{'name': n, 'package': 'wallie_manager', 'executable': 'dummy',
                      'after': list(a), 'command': ['python', DUMMY]} for n, a in stages]
            nodes.append({'name': 'manager', 'package': 'wallie_manager',
                          'executable': 'manager_node', 'lifecycle': False})
            graph = tmp / 'graph.yaml'
            graph.write_text(yaml.safe_dump({'nodes': nodes}))
            graph_args = ['--graph', str(graph)]
        full_env = dict(os.environ)
        full_env.update({'WALLIE_HOME': str(tmp / 'home'), 'PYTHONUNBUFFERED': '1'})
        full_env.update(env or {})
        self.out_path = tmp / 'up.out'
        self.out = open(self.out_path, 'w')
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [WALLIE, 'up', *graph_args, '--run-dir', str(self.run_dir),
             '--set', 'manager:watch.period_s=0.2', *args],
            stdout=self.out, stderr=subprocess.STDOUT, env=full_env, start_new_session=True)
        self.seen_pids: set[int] = set()

    def output(self) -> str:
        return self.out_path.read_text()

    def log(self, name: str) -> str:
        path = self.run_dir / 'logs' / f'{name}.log'
        return path.read_text() if path.exists() else ''

    def state(self) -> dict:
        try:
            return json.loads((self.run_dir / 'state.json').read_text())
        except (OSError, ValueError):
            return {}

    def pid(self, name: str) -> int | None:
        try:
            pid = int((self.run_dir / 'pids' / name).read_text())
        except (OSError, ValueError):
            return None
        self.seen_pids.add(pid)
        return pid

    def wait(self, pred, timeout: float, what: str) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return time.monotonic()
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f'timed out waiting for {what}\n--- wallie up ---\n'
                             f'{self.output()[-3000:]}\n--- manager ---\n'
                             f'{self.log("manager")[-4000:]}')

    def wait_ready(self, timeout: float = 60.0) -> float:
        return self.wait(lambda: self.state().get('ready'), timeout, 'ready')

    def stage(self, name: str) -> dict:
        return self.state().get('stages', {}).get(name, {})

    def stop(self, sig=signal.SIGINT, timeout: float = 30.0) -> int:
        for name in self.names + ['manager']:
            self.pid(name)
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.out.close()
        return self.proc.returncode
