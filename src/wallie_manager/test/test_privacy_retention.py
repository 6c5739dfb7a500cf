"""Private files, the JSONL log's rotation and the archive's retention (no ROS)."""

import json
import os
import stat
import time

import pytest

from wallie_manager import privacy
from wallie_manager.jsonl_log import JsonlLog


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def loose_umask():
    old = os.umask(0o000)      # the worst case: everything world-writable by default
    yield
    os.umask(old)


def test_private_dirs_and_files_despite_umask(tmp_path, loose_umask):
    home = tmp_path / 'a' / 'b' / 'home'
    privacy.ensure_private_dir(home / 'logs')
    for d in (tmp_path / 'a', tmp_path / 'a' / 'b', home, home / 'logs'):
        assert mode(d) == 0o700, d
    f = home / 'logs' / 'x.txt'
    with privacy.open_private(f) as fh:
        fh.write('x')
    assert mode(f) == 0o600
    f.chmod(0o644)                        # an existing file is tightened when reopened
    with privacy.open_private(f) as fh:
        fh.write('y')
    assert mode(f) == 0o600 and f.read_text() == 'xy'
    loose = home / 'loose'
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    privacy.ensure_private_dir(loose)
    assert mode(loose) == 0o700


def test_loose_permissions_are_found(tmp_path):
    privacy.ensure_private_dir(tmp_path / 'home')
    bad = tmp_path / 'home' / 'config.toml'
    bad.write_text('x')
    bad.chmod(0o644)
    found = privacy.loose_permissions(tmp_path / 'home')
    assert [p for p, _ in found] == [bad]


def test_jsonl_log_rotates_within_bounds_and_stays_private(tmp_path, loose_umask):
    path = tmp_path / 'logs' / 'wallie.jsonl'
    log = JsonlLog(path, max_bytes=4096, backup_count=2)
    for i in range(500):
        assert log.write({'stage': 'asr', 'event': 'asr_final', 'i': i, 'x': float('nan')})
    log.close()
    files = sorted(path.parent.iterdir())
    assert [f.name for f in files] == ['wallie.jsonl', 'wallie.jsonl.1', 'wallie.jsonl.2']
    for f in files:
        assert mode(f) == 0o600 and f.stat().st_size <= 4096
        for line in f.read_text().splitlines():
            rec = json.loads(line)
            assert rec['stage'] == 'asr' and rec['x'] is None and rec['ts'].endswith('+00:00')
    assert mode(path.parent) == 0o700


def test_purge_deletes_old_archive_files_and_keeps_new(tmp_path):
    arc = privacy.TranscriptArchive(tmp_path / 'archive', enabled=True)
    now = time.time()
    old = arc.write('old-turn', 'what time is it', 'It is noon.', {'e2e_ms': 700.0}, now - 90000)
    new = arc.write('new-turn', 'hello', 'Hi!', {}, now)
    os.utime(old, (now - 25 * 3600, now - 25 * 3600))
    other = tmp_path / 'archive' / 'notes.txt'           # not an archive file: left alone
    other.write_text('keep')
    os.utime(other, (now - 99 * 3600, now - 99 * 3600))
    result = privacy.purge_archive(tmp_path / 'archive', 24.0, now=now)
    assert result.deleted == (old,) and result.kept == 1
    assert not old.exists() and new.exists() and other.exists()
    assert mode(new) == 0o600 and mode(tmp_path / 'archive') == 0o700
    data = json.loads(new.read_text())
    assert data['transcript'] == 'hello' and data['reply'] == 'Hi!'
    # retention 0 keeps everything
    os.utime(new, (now - 1e6, now - 1e6))
    assert privacy.purge_archive(tmp_path / 'archive', 0, now=now).deleted == ()


def test_archive_disabled_writes_nothing(tmp_path):
    arc = privacy.TranscriptArchive(tmp_path / 'archive', enabled=False)
    assert arc.write('t', 'secret', 'reply', {}) is None
    assert not (tmp_path / 'archive').exists()


def test_archive_file_names_are_safe(tmp_path):
    arc = privacy.TranscriptArchive(tmp_path / 'archive', enabled=True)
    path = arc.write('../../etc/passwd' + 'x' * 500, 'a', 'b', {})
    assert path.parent == tmp_path / 'archive' and len(path.name) < 100


def test_settings_from_config_toml_and_env(tmp_path):
    home = tmp_path / 'home'
    home.mkdir()
    (home / 'config.toml').write_text(
        'enable_prometheus = true\n[params.metrics]\n"archive.enabled" = true\n'
        '"archive.retention_h" = 12.0\n')
    env = {'WALLIE_HOME': str(home), 'WALLIE_PROMETHEUS_PORT': '9200'}
    s = privacy.load_settings(environ=env)
    assert s.home == str(home)
    assert s.enable_prometheus and s.prometheus_port == 9200
    assert s.archive_enabled and s.retention_h == 12.0
    # the same from the plain reader used when the bringup configuration is unavailable
    params = privacy._metrics_params_fallback(home / 'config.toml', env)
    assert params == {'prometheus.enabled': True, 'prometheus.port': '9200',
                      'archive.enabled': True, 'archive.retention_h': 12.0}


def test_report_flags_problems_and_wide_discovery(tmp_path):
    from wallie_common.runtime import OFFLINE_ENV
    home = tmp_path / 'home'
    privacy.ensure_private_dir(home)
    env = dict(OFFLINE_ENV, WALLIE_HOME=str(home))
    s = privacy.load_settings(environ=env)
    rep = privacy.report(s, env)
    assert rep['problems'] == [] and rep['network']['ros_discovery_range'] == 'LOCALHOST'
    env2 = dict(env, ROS_AUTOMATIC_DISCOVERY_RANGE='SUBNET', HF_HUB_OFFLINE='0')
    (home / 'leak.json').write_text('{}')
    (home / 'leak.json').chmod(0o644)
    rep = privacy.report(s, env2)
    assert any('HF_HUB_OFFLINE' in p for p in rep['problems'])
    assert any('leak.json' in p for p in rep['problems'])
    assert any('SUBNET' in w and 'SROS2' in w for w in rep['warnings'])
