"""Privacy plumbing: where Wallie writes, private files, transcript archive and its retention.

Pure Python (no rclpy): used by the metrics node, the `wallie privacy` verb and tests.

Promises enforced here:
* everything Wallie writes under its home (``$WALLIE_HOME`` or ``~/.wallie_voice_bot``) is
  private to the user: directories 0700, files 0600, whatever the umask;
* transcripts and replies reach the disk only when ``archive.enabled`` is true, one JSON file
  per turn in ``<home>/archive``; archive files older than ``archive.retention_h`` (24 h) are
  deleted at start and periodically, whether archiving is still enabled or not.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import stat
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from wallie_common.files import make_private_dirs
from wallie_manager.turn_metrics import safe_id

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEFAULT_HOME = '~/.wallie_voice_bot'
ENV_HOME = 'WALLIE_HOME'
LOG_FILE_NAME = 'wallie.jsonl'
CONFIG_FILE_NAME = 'config.toml'
ARCHIVE_SUFFIX = '.json'
DIR_MODE = 0o700
FILE_MODE = 0o600
DEFAULT_RETENTION_H = 24.0
DEFAULT_PURGE_PERIOD_S = 600.0
DEFAULT_LOG_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_LOG_BACKUPS = 5
# Microphone audio lives only in a RAM ring of at most this many seconds (wallie_audio).
AUDIO_RING_MAX_S = 600.0


# -- where ------------------------------------------------------------------------------
def home_dir(explicit: str | os.PathLike | None = None,
             environ: Mapping[str, str] | None = None) -> Path:
    """Wallie's home: `explicit`, else $WALLIE_HOME, else ~/.wallie_voice_bot."""
    env = os.environ if environ is None else environ
    chosen = os.fspath(explicit) if explicit else env.get(ENV_HOME) or DEFAULT_HOME
    return Path(chosen).expanduser()


def logs_dir(home: Path) -> Path:
    """The directory of Wallie's log files under `home`."""
    return home / 'logs'


def log_file(home: Path) -> Path:
    """Wallie's JSONL log file under `home`."""
    return logs_dir(home) / LOG_FILE_NAME


def archive_dir(home: Path) -> Path:
    """The transcript archive directory under `home`."""
    return home / 'archive'


def config_file(home: Path) -> Path:
    """The user's config.toml under `home`."""
    return home / CONFIG_FILE_NAME


# -- private files ----------------------------------------------------------------------
def ensure_private_dir(path: str | os.PathLike) -> Path:
    """Create `path` (and missing parents) as 0700 directories; tighten it if it exists."""
    target = Path(path).expanduser()
    missing = make_private_dirs(target)
    if not missing:
        mode = stat.S_IMODE(target.stat().st_mode)
        if mode & 0o077 and target.stat().st_uid == os.getuid():
            os.chmod(target, DIR_MODE)
    return target


def open_private(path: str | os.PathLike, append: bool = True, encoding: str = 'utf-8'):
    """Open a text file for writing that only the user can read (0600, even if it existed)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(os.fspath(path), flags | getattr(os, 'O_CLOEXEC', 0), FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        return os.fdopen(fd, 'a' if append else 'w', encoding=encoding)
    except BaseException:
        os.close(fd)
        raise


def write_private_json(path: str | os.PathLike, data: Any) -> Path:
    """Write JSON atomically into a 0600 file (temporary file + rename)."""
    target = Path(path)
    ensure_private_dir(target.parent)
    tmp = target.with_name(f'.{target.name}.{os.getpid()}.tmp')
    with open_private(tmp, append=False) as fh:
        json.dump(data, fh, ensure_ascii=True, allow_nan=False, indent=1)
        fh.write('\n')
    os.replace(tmp, target)
    return target


def loose_permissions(root: str | os.PathLike) -> list[tuple[Path, int]]:
    """Files and directories under `root` that others (group/world) can access."""
    base = Path(root).expanduser()
    if not base.exists():
        return []
    found = []
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
        for name in [''] + dirnames + filenames:
            path = Path(dirpath) / name if name else Path(dirpath)
            try:
                st = path.lstat()
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(st.st_mode):
                continue
            mode = stat.S_IMODE(st.st_mode)
            if mode & 0o077:
                found.append((path, mode))
        dirnames[:] = [d for d in dirnames if not (Path(dirpath) / d).is_symlink()]
    return found


# -- archive and retention --------------------------------------------------------------
@dataclass(frozen=True)
class PurgeResult:
    """What an archive purge deleted, kept and could not delete."""

    deleted: tuple[Path, ...]
    kept: int
    errors: tuple[str, ...] = ()


def purge_archive(directory: str | os.PathLike, retention_h: float,
                  now: float | None = None) -> PurgeResult:
    """Delete archive files last written more than `retention_h` hours ago.

    retention_h <= 0 keeps everything (only meaningful with archiving enabled).
    """
    base = Path(directory).expanduser()
    if not base.is_dir():
        return PurgeResult((), 0)
    if retention_h <= 0:
        return PurgeResult((), sum(1 for _ in _archive_files(base)))
    limit = (time.time() if now is None else now) - retention_h * 3600.0
    deleted, errors, kept = [], [], 0
    for path in _archive_files(base):
        try:
            if path.lstat().st_mtime < limit:
                path.unlink()
                deleted.append(path)
            else:
                kept += 1
        except FileNotFoundError:
            continue
        except OSError as exc:
            errors.append(f'{path}: {exc.strerror or exc}')
    return PurgeResult(tuple(deleted), kept, tuple(errors))


def archive_summary(directory: str | os.PathLike, now: float | None = None) -> dict:
    """How many archive files there are and how old the oldest is (hours)."""
    files = list(_archive_files(Path(directory).expanduser()))
    if not files:
        return {'files': 0, 'oldest_h': None}
    oldest = min(p.lstat().st_mtime for p in files)
    age = ((time.time() if now is None else now) - oldest) / 3600.0
    return {'files': len(files), 'oldest_h': round(age, 2)}


def _archive_files(base: Path):
    if not base.is_dir():
        return
    for path in base.iterdir():
        if path.suffix == ARCHIVE_SUFFIX and path.is_file() and not path.is_symlink():
            yield path


class TranscriptArchive:
    """Writes one private JSON file per turn, only when archiving is enabled."""

    def __init__(self, directory: str | os.PathLike, enabled: bool) -> None:
        self.directory = Path(directory).expanduser()
        self.enabled = enabled

    def write(self, turn_id: str, transcript: str, reply: str, timings: Mapping[str, Any],
              when: float | None = None) -> Path | None:
        """Archive a turn's text; returns the file, or None when archiving is off."""
        if not self.enabled:
            return None
        moment = _dt.datetime.fromtimestamp(time.time() if when is None else when,
                                            _dt.timezone.utc)
        name = f'{moment:%Y%m%dT%H%M%S}{moment.microsecond // 1000:03d}Z-{safe_id(turn_id)}'
        record = {'time': moment.isoformat(timespec='milliseconds'), 'turn_id': turn_id,
                  'transcript': transcript, 'reply': reply, 'timings': dict(timings)}
        return write_private_json(self.directory / (name + ARCHIVE_SUFFIX), record)


# -- settings and the report of `wallie privacy check` -----------------------------------
@dataclass(frozen=True)
class PrivacySettings:
    """The privacy-relevant parameters of the metrics node, as a run would get them."""

    home: str
    config_path: str
    config_found: bool
    source: str = 'defaults'
    archive_enabled: bool = False
    retention_h: float = DEFAULT_RETENTION_H
    enable_prometheus: bool = False
    prometheus_port: int = 9090
    log_max_bytes: int = DEFAULT_LOG_MAX_BYTES
    log_backup_count: int = DEFAULT_LOG_BACKUPS


# metrics node parameter -> (settings field, type)
METRICS_PARAMS = {
    'archive.enabled': ('archive_enabled', bool),
    'archive.retention_h': ('retention_h', float),
    'prometheus.enabled': ('enable_prometheus', bool),
    'prometheus.port': ('prometheus_port', int),
    'log.max_bytes': ('log_max_bytes', int),
    'log.backup_count': ('log_backup_count', int),
}
# brief key in config.toml / WALLIE_<KEY> -> metrics node parameter (fallback reader)
BRIEF_KEYS = {'enable_prometheus': 'prometheus.enabled', 'prometheus_port': 'prometheus.port'}


def _flatten(table: Mapping[str, Any], prefix: str = '') -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = f'{prefix}{key}'
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + '.'))
        else:
            out[name] = value
    return out


def _coerce(value: Any, kind: type) -> Any:
    if kind is bool:
        if isinstance(value, str):
            return value.strip().lower() in ('1', 'true', 'yes', 'on')
        return bool(value)
    return kind(value)


def _metrics_params_from_config(env: Mapping[str, str]) -> tuple[dict[str, Any], str, str]:
    """The metrics node's parameters resolved by the bringup configuration layers."""
    from wallie_bringup import config as C
    resolved = C.resolve(C.RunConfig(environ=dict(env), create_config=False))
    return (C.for_node(resolved.params, 'metrics'), str(resolved.config_file),
            'wallie configuration (defaults, profile, config.toml, WALLIE_*)')


def _metrics_params_fallback(path: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """Minimal reader: brief keys and [params.metrics] of config.toml, WALLIE_* keys."""
    params: dict[str, Any] = {}
    if path.is_file():
        with open(path, 'rb') as fh:
            data = tomllib.load(fh)
        for key, param in BRIEF_KEYS.items():
            if key in data:
                params[param] = data[key]
        table = data.get('params', {}).get('metrics', {}) if isinstance(
            data.get('params'), dict) else {}
        params.update(_flatten(table) if isinstance(table, Mapping) else {})
    for key, param in BRIEF_KEYS.items():
        if f'WALLIE_{key.upper()}' in env:
            params[param] = env[f'WALLIE_{key.upper()}']
    return params


def load_settings(home: str | os.PathLike | None = None,
                  environ: Mapping[str, str] | None = None) -> PrivacySettings:
    """What the metrics node of a `wallie up` run would use (falls back to a plain read)."""
    env = os.environ if environ is None else environ
    root = home_dir(home, env)
    path = Path(env['WALLIE_CONFIG']).expanduser() if env.get('WALLIE_CONFIG') \
        else config_file(root)
    try:
        params, cfg, source = _metrics_params_from_config(env)
        path = Path(cfg)
    except Exception:  # bringup configuration unavailable or invalid: read what we can
        params, source = _metrics_params_fallback(path, env), f'{path} and WALLIE_* (fallback)'
    if params.get('home_dir'):
        root = Path(str(params['home_dir'])).expanduser()
    values: dict[str, Any] = {}
    for param, (name, kind) in METRICS_PARAMS.items():
        if param in params:
            try:
                values[name] = _coerce(params[param], kind)
            except (TypeError, ValueError):
                pass
    return PrivacySettings(home=str(root), config_path=str(path), config_found=path.is_file(),
                           source=source, **values)


def report(settings: PrivacySettings, environ: Mapping[str, str] | None = None) -> dict:
    """Everything `wallie privacy check` shows, with problems (fail) and warnings."""
    from wallie_common.runtime import OFFLINE_ENV, ROS_PRIVACY_ENV

    env = os.environ if environ is None else environ
    home = Path(settings.home)
    problems: list[str] = []
    warnings: list[str] = []

    offline = {key: env.get(key) for key in OFFLINE_ENV}
    for key, expected in OFFLINE_ENV.items():
        if env.get(key) != expected:
            problems.append(f'{key} is {env.get(key)!r}, expected {expected!r}')
    discovery = env.get('ROS_AUTOMATIC_DISCOVERY_RANGE') or \
        ROS_PRIVACY_ENV['ROS_AUTOMATIC_DISCOVERY_RANGE']
    static_peers = env.get('ROS_STATIC_PEERS', '')
    security = env.get('ROS_SECURITY_ENABLE', 'false').lower() == 'true'
    if discovery.upper() not in ('LOCALHOST', 'OFF'):
        warnings.append(f'ROS discovery range is {discovery}: other machines on the network '
                        'can see and publish to Wallie topics' +
                        ('' if security else ' (consider SROS2, see the README)'))
    if static_peers:
        warnings.append(f'ROS_STATIC_PEERS={static_peers}: discovery reaches those hosts')
    if env.get('ROS_LOCALHOST_ONLY') == '0' and 'ROS_AUTOMATIC_DISCOVERY_RANGE' not in env:
        warnings.append('ROS_LOCALHOST_ONLY=0 is set (deprecated; Wallie uses '
                        'ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST)')
    dds_profiles = {k: env[k] for k in ('FASTRTPS_DEFAULT_PROFILES_FILE',
                                        'FASTDDS_DEFAULT_PROFILES_FILE', 'CYCLONEDDS_URI')
                    if env.get(k)}
    if dds_profiles:
        warnings.append('a custom DDS profile is set; it may override the discovery range: '
                        + ', '.join(f'{k}={v}' for k, v in dds_profiles.items()))

    loose = loose_permissions(home)
    for path, mode in loose[:20]:
        problems.append(f'{path} is readable by others (mode {mode:04o}); '
                        f'run: chmod go-rwx {path}')
    if len(loose) > 20:
        problems.append(f'... and {len(loose) - 20} more paths readable by others')

    archive = archive_summary(archive_dir(home))
    oldest = archive['oldest_h']
    if oldest is not None and settings.retention_h > 0 and oldest > settings.retention_h:
        warnings.append(f'{archive["files"]} archive file(s), the oldest {oldest:.1f} h old: '
                        'they are deleted at the next start of Wallie (or run '
                        '`wallie privacy purge`)')
    if settings.enable_prometheus:
        endpoint = f'http://127.0.0.1:{settings.prometheus_port}/metrics (loopback only)'
    else:
        endpoint = 'off'
    ros_log = env.get('ROS_LOG_DIR') or str(Path(env.get('ROS_HOME', '~/.ros')) / 'log')
    try:
        from wallie_common.model_store import store_dir
        models = str(store_dir())
    except Exception:  # model store module unavailable
        models = str(Path(env.get('WALLIE_MODEL_DIR') or '~/.wallie_voice_bot/models'))
    return {
        'settings': asdict(settings),
        'network': {
            'model_libraries_offline': offline,
            'ros_discovery_range': discovery,
            'ros_static_peers': static_peers,
            'ros_domain_id': env.get('ROS_DOMAIN_ID', '0'),
            'sros2_enabled': security,
            'sros2_keystore': env.get('ROS_SECURITY_KEYSTORE', ''),
            'dds_profiles': dds_profiles,
            'metrics_endpoint': endpoint,
        },
        'storage': {
            'home': str(home),
            'log': {'path': str(log_file(home)), 'content': 'timings and health only, no text',
                    'max_bytes': settings.log_max_bytes * (settings.log_backup_count + 1)},
            'archive': {'path': str(archive_dir(home)), 'enabled': settings.archive_enabled,
                        'retention_h': settings.retention_h, **archive},
            'audio': {'ram_ring_max_s': AUDIO_RING_MAX_S,
                      'on_disk': 'never by default (only an explicit recording/output file)'},
            'ros_logs': str(Path(ros_log).expanduser()),
            'models': str(Path(models).expanduser()),
        },
        'problems': problems,
        'warnings': warnings,
    }
