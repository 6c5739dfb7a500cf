"""Every package installs (not editable) into an empty prefix with its launch files, parameter
profiles and data, and the `wallie` command runs from there with no source tree in sight."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ['wallie_common', 'wallie_testing', 'wallie_audio', 'wallie_asr', 'wallie_llm',
            'wallie_tts', 'wallie_eval', 'wallie_bringup', 'wallie_manager', 'wallie_cli',
            'wallie']
PY = f'python{sys.version_info.major}.{sys.version_info.minor}'


@pytest.fixture(scope='module')
def prefix(tmp_path_factory):
    out = tmp_path_factory.mktemp('prefix')
    build = tmp_path_factory.mktemp('build')
    # Copies of the package sources: setuptools writes build/ and egg-info next to them.
    srcs = []
    for name in PACKAGES:
        dst = build / name
        subprocess.run(['cp', '-r', str(ROOT / 'src' / name), str(dst)], check=True)
        srcs.append(str(dst))
    # --ignore-installed: never uninstall the venv's own (editable) copies.
    res = subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps',
                          '--no-build-isolation', '--ignore-installed', '--prefix', str(out),
                          *srcs],
                         capture_output=True, text=True, cwd=build)
    assert res.returncode == 0, res.stdout + res.stderr
    return out


def _run(prefix: Path, *cmd: str, cwd: Path) -> subprocess.CompletedProcess:
    site = prefix / 'lib' / PY / 'site-packages'
    env = dict(os.environ, PYTHONPATH=str(site), AMENT_PREFIX_PATH=str(prefix))
    return subprocess.run(list(cmd), capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=120)


def test_launch_files_config_and_ament_index_are_installed(prefix):
    share = prefix / 'share'
    for name in PACKAGES:
        assert (share / 'ament_index' / 'resource_index' / 'packages' / name).is_file(), name
        assert (share / name / 'package.xml').is_file(), name
    for launch in ('bringup.launch.py', 'replay.launch.py'):
        assert (share / 'wallie_bringup' / 'launch' / launch).is_file()
        assert (share / 'wallie' / 'launch' / launch).is_file()
    for profile in ('defaults.yaml', 'cpu.yaml', 'gpu.yaml'):
        assert (share / 'wallie_bringup' / 'config' / profile).is_file()
    site = prefix / 'lib' / PY / 'site-packages'
    assert (site / 'wallie_cli' / 'data' / 'question.wav').is_file()
    assert (site / 'wallie_cli' / 'fixtures' / 'manifest.json').is_file()
    assert list((site / 'wallie_cli' / 'fixtures' / 'bags').glob('*/*.mcap'))
    assert list((site / 'wallie_asr' / 'data').glob('*.flac'))
    assert (site / 'wallie_common' / 'models.yaml').is_file()


def test_installed_wallie_runs_without_the_source_tree(prefix, tmp_path):
    wallie = prefix / 'bin' / 'wallie'
    assert wallie.is_file()
    res = _run(prefix, sys.executable, str(wallie), '--help', cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert 'bench' in res.stdout
    # The modules and their data come from the prefix, not from the checkout.
    probe = ('import wallie_bringup.config as c, wallie_cli.fixture_set as e, wallie_cli, '
             'wallie_asr.fixtures as f; '
             'print(wallie_cli.__file__); print(c.config_dir()); '
             'print(e.default_fixtures_dir()); print(len(f.speech_clips()))')
    res = _run(prefix, sys.executable, '-c', probe, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    module, config_dir, fixtures, clips = res.stdout.split()
    for path in (module, config_dir, fixtures):
        assert path.startswith(str(prefix)), path
        assert not path.startswith(str(ROOT)), path
    assert int(clips) > 0
