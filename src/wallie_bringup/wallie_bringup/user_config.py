"""The user's configuration: config.toml and WALLIE_* variables, with the brief's key names.

Pure Python (no rclpy). Each key maps onto one or more ROS parameters (``KEYS``); a few choose
how Wallie runs (``RUN_KEYS``). ``~/.wallie_voice_bot/config.toml`` is created private (0600)
with every key commented out when it is missing; ``[params.<node>]`` tables set any other ROS
parameter. ``wallie_bringup.config`` layers the result over the parameter files.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from wallie_bringup.ros_params import (
    ConfigError,
    Params,
    config_dir,
    flatten,
    for_node,
    load_params_file,
    merge,
    node_key,
    profile_path,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

_LOG = logging.getLogger(__name__)

HOME_ENV = 'WALLIE_HOME'
DEFAULT_HOME = '~/.wallie_voice_bot'
CONFIG_ENV = 'WALLIE_CONFIG'
ENV_PREFIX = 'WALLIE_'

# WALLIE_* variables that are not configuration keys (tooling, tests, paths).
NON_CONFIG_ENV = frozenset({
    'WALLIE_HOME', 'WALLIE_CONFIG', 'WALLIE_MODEL_DIR', 'WALLIE_CACHE_DIR', 'WALLIE_VENV',
    'WALLIE_PYTHON', 'WALLIE_SKIP_MODELS', 'WALLIE_TEST_DOMAIN_SET', 'WALLIE_CONFIG_DIR',
    'WALLIE_RUN_DIR',
})


@dataclass(frozen=True)
class ConfigKey:
    """A key of config.toml / WALLIE_* and the ROS parameter(s) it sets."""

    key: str
    type: type
    targets: tuple[tuple[str, str], ...]  # (node name, ROS parameter)
    description: str
    example: Any = None                   # shown in the template when there is no default

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.key.upper()


def _k(key: str, typ: type, targets: Iterable[tuple[str, str]], description: str,
       example: Any = None) -> ConfigKey:
    return ConfigKey(key, typ, tuple(targets), description, example)


# The brief's configuration keys and the ROS parameters they map to. The parameter names
# are those declared in the stage packages' PARAMS tables (checked by a test when the
# stage packages are importable).
KEYS: tuple[ConfigKey, ...] = (
    _k('wake_word', str, [('voice_gate', 'wake.word')],
       'Wake word of wake.engine: an openWakeWord model name (the default engine and '
       'word: hey_jarvis); with wake.engine embedding, "wallie" (an acoustic model from the '
       'model store) or any word or phrase ("hey robot": built from the text on first use, '
       'or from your voice with `wallie wake enroll`); a Porcupine keyword or .ppn; or the '
       'transcript phrase.',
       'hey_jarvis'),
    _k('wake_word_sensitivity', float, [('voice_gate', 'wake.sensitivity')],
       'Wake word sensitivity in [0, 1]; higher wakes more easily.'),
    _k('asr_model', str, [('asr', 'asr.model')],
       'faster-whisper model id from the model store, or a path (tiny.en, base.en, small...).'),
    _k('asr_compute_type', str, [('asr', 'asr.compute_type')],
       'CTranslate2 compute type: int8, int8_float16, float16 or float32.'),
    _k('asr_device', str, [('asr', 'asr.device')], 'ASR device: cpu, cuda or auto.'),
    _k('llm_model', str, [('llm', 'llm.model')],
       'LLM: a model-store id or GGUF path (llama.cpp), or a Hugging Face id / path (vLLM).'),
    _k('llm_engine', str, [('llm', 'llm.engine')], 'LLM engine: llama_cpp or vllm.'),
    _k('llm_max_tokens', int, [('llm', 'llm.max_tokens')],
       'Upper bound on the number of tokens in one reply.'),
    _k('llm_gpu_memory_fraction', float, [('llm', 'llm.gpu_memory_fraction')],
       'Fraction of GPU memory vLLM may take (leave room for ASR and TTS).'),
    _k('system_prompt', str, [('llm', 'llm.system_prompt')],
       'Persona / system prompt of the assistant.'),
    _k('tts_engine', str, [('tts', 'tts.engine')], 'TTS engine: piper, xtts or espeak.'),
    _k('tts_voice', str, [('tts', 'tts.piper.voice')], 'Piper voice: a model-store id.'),
    _k('tts_speaker_wav', str, [('tts', 'tts.speaker_wav')],
       'XTTS v2 voice cloning: 10-30 s of clear mono speech (WAV, 22050 Hz or more).',
       example='/path/to/voice.wav'),
    _k('input_device', str, [('capture', 'device.name')],
       'Microphone: a name substring or an index ("" = system default).'),
    _k('output_device', str, [('player', 'device.name')],
       'Speaker: a name substring or an index ("" = system default).'),
    _k('enable_prometheus', bool, [('metrics', 'prometheus.enabled')],
       'Serve Prometheus metrics on localhost.'),
    _k('prometheus_port', int, [('metrics', 'prometheus.port')],
       'Port of the Prometheus endpoint (bound to 127.0.0.1).'),
)
KEYS_BY_NAME = {k.key: k for k in KEYS}
# Keys that choose how Wallie runs rather than a node parameter.
RUN_KEYS: dict[str, tuple[type, str, Any]] = {
    'profile': (str, 'Parameter profile: cpu or gpu.', 'cpu'),
    'log_level': (str, 'Log level of every node: debug, info, warn, error.', 'info'),
}


# -- locations ------------------------------------------------------------------------------
def home_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Wallie's home: $WALLIE_HOME, else ~/.wallie_voice_bot."""
    env = os.environ if environ is None else environ
    return Path(env.get(HOME_ENV) or DEFAULT_HOME).expanduser()


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """The config.toml to read: $WALLIE_CONFIG, else config.toml in Wallie's home."""
    env = os.environ if environ is None else environ
    explicit = env.get(CONFIG_ENV)
    return Path(explicit).expanduser() if explicit else home_dir(env) / 'config.toml'


# -- typed values ---------------------------------------------------------------------------
_TRUE = {'1', 'true', 'yes', 'on'}
_FALSE = {'0', 'false', 'no', 'off'}


def coerce(value: Any, typ: type, what: str) -> Any:
    """Convert a TOML value or an environment string to `typ`, or raise ConfigError."""
    if isinstance(value, str) and typ is not str:
        text = value.strip()
        if typ is bool:
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ConfigError(f'{what}: expected a boolean (true/false), got {value!r}')
        try:
            return typ(text)
        except ValueError:
            raise ConfigError(f'{what}: expected {typ.__name__}, got {value!r}') from None
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ is bool and not isinstance(value, bool):
        raise ConfigError(f'{what}: expected a boolean (true/false), got {value!r}')
    if typ is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f'{what}: expected an integer, got {value!r}')
    if not isinstance(value, typ):
        raise ConfigError(f'{what}: expected {typ.__name__}, got {type(value).__name__} '
                          f'{value!r}')
    if typ is float and value != value:  # NaN
        raise ConfigError(f'{what}: NaN is not a valid value')
    return value


def keys_to_params(values: Mapping[str, Any], where: str) -> Params:
    """Brief key values (checked and converted to their types) as the ROS parameters they set;
    `where` names their source in errors."""
    out: Params = {}
    for key, value in values.items():
        spec = KEYS_BY_NAME[key]
        typed = coerce(value, spec.type, f'{where}: {key}')
        for node, param in spec.targets:
            out.setdefault(node, {})[param] = typed
    return out


# -- config.toml ----------------------------------------------------------------------------
@dataclass
class UserConfig:
    """What config.toml says: brief keys, run keys and raw ``[params.<node>]`` tables."""

    keys: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    params: Params = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    path: Path | None = None


def read_config_toml(path: str | os.PathLike, create: bool = True) -> UserConfig:
    """Parse config.toml (creating the commented template, mode 0600, if missing)."""
    path = Path(path).expanduser()
    if not path.exists():
        if not create:
            return UserConfig(path=path)
        write_template(path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f'{path}: not valid TOML: {exc}') from None
    cfg = UserConfig(path=path)
    for key, value in data.items():
        if key in KEYS_BY_NAME:
            cfg.keys[key] = coerce(value, KEYS_BY_NAME[key].type, f'{path}: {key}')
        elif key in RUN_KEYS:
            cfg.run[key] = coerce(value, RUN_KEYS[key][0], f'{path}: {key}')
        elif key == 'params' and isinstance(value, dict):
            for node, table in value.items():
                if not isinstance(table, dict):
                    raise ConfigError(f'{path}: [params.{node}] must be a table')
                flat: dict[str, Any] = {}
                flatten('', table, flat)
                cfg.params.setdefault(node_key(node), {}).update(flat)
        else:
            cfg.warnings.append(f'{path}: unknown key {key!r} ignored (known: '
                                f'{", ".join(sorted(KEYS_BY_NAME) + sorted(RUN_KEYS))})')
    return cfg


def template_text(defaults: Params | None = None) -> str:
    """config.toml with every key commented out, showing the effective default."""
    lines = [
        '# Wallie configuration. Uncomment a line to change a setting.',
        '# Every key can also be set with an environment variable WALLIE_<KEY> (upper case),',
        '# which wins over this file; `wallie up` flags win over both.',
        '# Send SIGHUP to `wallie up` (or `systemctl --user reload wallie`) to apply edits live.',
        '# Precedence: defaults.yaml < <profile>.yaml < this file < WALLIE_* < --params < flags.',
        '',
    ]
    for key, (typ, desc, default) in RUN_KEYS.items():
        lines += [f'# {desc}', f'# {key} = {_toml_value(default)}', '']
    for spec in KEYS:
        default = None
        for node, param in spec.targets:
            if defaults and param in for_node(defaults, node):
                default = for_node(defaults, node)[param]
                break
        shown = default if default is not None else spec.example
        lines.append(f'# {spec.description}')
        targets = ', '.join(f'{n}/{p}' for n, p in spec.targets)
        if shown is None:
            lines.append(f'# {spec.key} = ...            (ROS parameter {targets}; '
                         'node default)')
        else:
            lines.append(f'# {spec.key} = {_toml_value(shown)}   (ROS parameter {targets})')
        lines.append('')
    lines += [
        '# Any other ROS parameter, per node, e.g.:',
        '# [params.voice_gate]',
        '# "vad.min_silence_ms" = 300',
        '',
    ]
    return '\n'.join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def write_template(path: Path) -> Path:
    """Create config.toml (and its directory) private to the user."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        defaults = merge(load_params_file(config_dir() / 'defaults.yaml'),
                         load_params_file(profile_path('cpu')))
    except ConfigError:
        defaults = {}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, 'w') as fh:
        fh.write(template_text(defaults))
    return path


# -- environment ----------------------------------------------------------------------------
def read_env(environ: Mapping[str, str] | None = None) -> tuple[dict[str, Any], dict[str, Any],
                                                                list[str]]:
    """WALLIE_<KEY> variables: (brief keys, run keys, warnings)."""
    env = os.environ if environ is None else environ
    keys: dict[str, Any] = {}
    run: dict[str, Any] = {}
    warnings: list[str] = []
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name in NON_CONFIG_ENV:
            continue
        key = name[len(ENV_PREFIX):].lower()
        if key in KEYS_BY_NAME:
            keys[key] = coerce(value, KEYS_BY_NAME[key].type, f'${name}')
        elif key in RUN_KEYS:
            run[key] = coerce(value, RUN_KEYS[key][0], f'${name}')
        else:
            _LOG.debug('ignoring %s (not a configuration key)', name)
    return keys, run, warnings
