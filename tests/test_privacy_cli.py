"""`wallie privacy check|purge`, the offline switches and the bounded microphone ring."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wallie_common.runtime import OFFLINE_ENV, apply_privacy_env
from wallie_manager import privacy

WALLIE = str(Path(sys.executable).parent / 'wallie')


def run_wallie(*args: str, home: Path, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith(('WALLIE_', 'ROS_AUTO'))}
    full.update(WALLIE_HOME=str(home), **env)
    return subprocess.run([WALLIE, *args], capture_output=True, text=True, env=full,
                          timeout=60)


def test_privacy_check_reports_the_effective_settings(tmp_path):
    home = tmp_path / 'home'
    privacy.ensure_private_dir(home)
    res = run_wallie('privacy', 'check', home=home)
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert 'HF_HUB_OFFLINE=1' in out and 'ROS discovery range: LOCALHOST' in out
    assert 'metrics endpoint: off' in out and 'archive off' in out
    assert str(home / 'logs' / 'wallie.jsonl') in out and out.rstrip().endswith('OK')
    data = json.loads(run_wallie('privacy', 'check', '--json', home=home).stdout)
    assert data['network']['ros_discovery_range'] == 'LOCALHOST'
    assert data['storage']['archive']['enabled'] is False and data['problems'] == []


def test_privacy_check_fails_on_files_readable_by_others(tmp_path):
    home = tmp_path / 'home'
    privacy.ensure_private_dir(home / 'logs')
    leak = home / 'logs' / 'wallie.jsonl'
    leak.write_text('{}\n')
    leak.chmod(0o644)
    res = run_wallie('privacy', 'check', home=home, ROS_AUTOMATIC_DISCOVERY_RANGE='SUBNET')
    assert res.returncode == 1
    assert 'PROBLEM' in res.stdout and 'wallie.jsonl' in res.stdout
    assert 'WARNING: ROS discovery range is SUBNET' in res.stdout


def test_privacy_purge(tmp_path):
    home = tmp_path / 'home'
    arc = privacy.TranscriptArchive(privacy.archive_dir(home), enabled=True)
    old = arc.write('a', 'x', 'y', {})
    new = arc.write('b', 'x', 'y', {})
    os.utime(old, (time.time() - 30 * 3600,) * 2)
    res = run_wallie('privacy', 'purge', home=home)
    assert res.returncode == 0 and 'deleted 1' in res.stdout
    assert not old.exists() and new.exists()
    res = run_wallie('privacy', 'purge', '--all', home=home)
    assert res.returncode == 0 and not new.exists()


def test_offline_switches_are_forced():
    env = {'HF_HUB_OFFLINE': '0', 'ROS_AUTOMATIC_DISCOVERY_RANGE': 'SUBNET'}
    apply_privacy_env(env)
    assert env['HF_HUB_OFFLINE'] == '1' and env['DO_NOT_TRACK'] == '1'
    assert env['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'SUBNET'   # an explicit choice is kept
    env = {}
    apply_privacy_env(env)
    assert env['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'


def test_offline_switches_cover_onnxruntime_telemetry():
    """onnxruntime >= 1.2x on Linux ships 1DS telemetry: it resolves
    mobile.events.data.microsoft.com from a background thread (seen with strace from the
    voice gate and TTS nodes). ORT_DISABLE_TELEMETRY=1 in the process environment before the
    first session turns it off."""
    assert OFFLINE_ENV.get('ORT_DISABLE_TELEMETRY') == '1', (
        'add ORT_DISABLE_TELEMETRY=1 to wallie_common.runtime.OFFLINE_ENV')


def test_microphone_ring_is_bounded_to_ten_minutes():
    ring_mod = pytest.importorskip('wallie_audio.ring', reason='wallie_audio not installed')
    assert ring_mod.MAX_SECONDS <= privacy.AUDIO_RING_MAX_S
    ring = ring_mod.AudioRing(seconds=3600.0, rate=16000, block=512)
    assert ring.seconds <= 600.0
    import numpy as np
    block = np.zeros(512, np.int16)
    for i in range(ring.capacity + 100):
        ring.push(block, i)
    assert len(ring) == ring.capacity
    assert ring.bytes_used <= 600 * 16000 * 2 + 512 * 2
