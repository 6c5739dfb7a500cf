"""The `wallie up` / `wallie service` / `wallie status` command lines (no nodes started)."""

import os
import subprocess
import sys
from pathlib import Path

import yaml

WALLIE = str(Path(sys.executable).with_name('wallie'))


def wallie(*args, env=None, tmp=None):
    full = dict(os.environ)
    if tmp is not None:
        full['WALLIE_HOME'] = str(tmp / 'home')
        full['XDG_CONFIG_HOME'] = str(tmp / 'xdg')
        full['PATH'] = '/nonexistent'          # no systemctl: install must still work
    full.update(env or {})
    return subprocess.run([WALLIE, *args], capture_output=True, text=True, env=full,
                          timeout=60)


def test_print_params_shows_merged_values_and_sources(tmp_path):
    res = wallie('up', '--print-params', '--profile', 'cpu', '--no-wake',
                 '--set', 'asr:asr.beam_size=2', env={'WALLIE_LLM_MAX_TOKENS': '50'},
                 tmp=tmp_path)
    assert res.returncode == 0, res.stderr
    assert '# llm/llm.max_tokens: environment' in res.stdout
    assert '# asr/asr.beam_size: command line' in res.stdout
    assert '# asr/asr.device: cpu.yaml' in res.stdout
    body = yaml.safe_load('\n'.join(line for line in res.stdout.splitlines()
                                    if not line.startswith('#')))
    assert body['/**/voice_gate']['ros__parameters']['wake.engine'] == 'none'
    assert body['/**/llm']['ros__parameters']['llm.max_tokens'] == 50
    assert (tmp_path / 'home' / 'config.toml').is_file()


def test_up_refuses_bad_configuration_with_a_reason(tmp_path):
    res = wallie('up', '--profile', 'cpu', env={'WALLIE_LLM_MAX_TOKENS': 'lots'},
                 tmp=tmp_path)
    assert res.returncode == 2 and 'WALLIE_LLM_MAX_TOKENS' in res.stderr
    graph = tmp_path / 'g.yaml'
    graph.write_text(yaml.safe_dump({'nodes': [
        {'name': 'ghost', 'package': 'nowhere', 'executable': 'ghost_node_xyz'},
        {'name': 'manager', 'package': 'wallie_manager', 'executable': 'manager_node',
         'lifecycle': False}]}))
    res = wallie('up', '--graph', str(graph), tmp=tmp_path)
    assert res.returncode == 2 and 'not built yet' in res.stderr and 'ghost' in res.stderr


def test_up_refuses_values_a_node_would_reject(tmp_path, ros_env):
    """Checked against the node's own table (in a side process, during start-up)."""
    res = wallie('up', '--only', 'asr', '--set', 'asr:asr.beam_size=99',
                 '--run-dir', str(tmp_path / 'run'), tmp=tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode == 2, out
    assert 'invalid configuration' in out and 'asr.beam_size' in out
    assert 'above the maximum' in out and 'command line' in out
    assert 'stopped' in out


def test_service_unit_print_and_install(tmp_path):
    res = wallie('service', 'print', '--profile', 'gpu', tmp=tmp_path)
    assert res.returncode == 0
    unit = res.stdout
    assert 'ExecStart=' in unit and ' up --profile gpu' in unit
    assert 'ExecReload=/bin/kill -HUP $MAINPID' in unit
    assert 'KillSignal=SIGINT' in unit and 'KillMode=mixed' in unit
    assert 'Restart=on-failure' in unit and 'WantedBy=default.target' in unit
    res = wallie('service', 'install', tmp=tmp_path)
    path = tmp_path / 'xdg' / 'systemd' / 'user' / 'wallie.service'
    assert res.returncode == 0 and path.is_file(), res.stdout + res.stderr
    assert 'systemctl --user daemon-reload' in res.stdout
    res = wallie('service', 'uninstall', tmp=tmp_path)
    assert res.returncode == 0 and not path.exists()


def test_status_without_a_run(tmp_path):
    res = wallie('status', tmp=tmp_path)
    assert res.returncode == 1 and 'no state' in res.stderr
