"""Configuration: ROS parameters are the truth; config.toml and WALLIE_* map onto them.

Layers, lowest to highest precedence (a later layer overrides an earlier one, parameter by
parameter):

1. ``config/defaults.yaml``   parameters common to every profile (this package)
2. ``config/<profile>.yaml``  the profile (``cpu`` or ``gpu``)
3. ``~/.wallie_voice_bot/config.toml``  the user's file, with the product brief's key names
   (created private, 0600, with every key commented out when missing)
4. ``WALLIE_<KEY>`` environment variables (``WALLIE_ASR_MODEL=base.en``)
5. ``--params FILE``          a ROS parameter file given on the command line
6. command-line flags         (``--input``, ``--output``, ``--no-wake``, ...)

The result is one merged ROS parameter file per run (``<run dir>/params.yaml``) that every
process gets with ``--params-file``. Parameter files use the usual ROS layout
(``<node>: {ros__parameters: {...}}``; ``/**`` applies to every node). Pure Python: no rclpy.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

_LOG = logging.getLogger(__name__)

HOME_ENV = 'WALLIE_HOME'
DEFAULT_HOME = '~/.wallie_voice_bot'
CONFIG_ENV = 'WALLIE_CONFIG'
ENV_PREFIX = 'WALLIE_'
GLOBAL = '*'          # internal key for the ``/**`` section (every node)

# WALLIE_* variables that are not configuration keys (tooling, tests, paths).
NON_CONFIG_ENV = frozenset({
    'WALLIE_HOME', 'WALLIE_CONFIG', 'WALLIE_MODEL_DIR', 'WALLIE_CACHE_DIR', 'WALLIE_VENV',
    'WALLIE_PYTHON', 'WALLIE_SKIP_MODELS', 'WALLIE_TEST_DOMAIN_SET', 'WALLIE_CONFIG_DIR',
    'WALLIE_RUN_DIR',
})


class ConfigError(ValueError):
    """A configuration value or file that cannot be used; the message says which and why."""


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
       'Wake word: an openWakeWord model name (hey_jarvis, alexa, ...), a Porcupine keyword, '
       'a .ppn file name in ~/.wallie_voice_bot/wake_words/, or any phrase (transcript wake). '
       '"none" = always listening.'),
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


# The command-line flags of `wallie up` and the parameters they set (highest precedence).
NO_WAKE_PARAMS = {'wake.engine': 'none'}


def input_params(source: str) -> dict[str, Any]:
    """capture parameters for ``--input``: a WAV/FLAC file or a rosbag2 (dir or .mcap/.db3)."""
    path = Path(source).expanduser().resolve()
    if not path.exists():
        raise ConfigError(f'--input {source}: no such file or directory')
    if path.is_dir() or path.suffix in ('.mcap', '.db3'):
        bag = path if path.is_dir() else path.parent
        return {'source': 'bag', 'bag.path': str(bag)}
    return {'source': 'file', 'file.path': str(path)}


def output_params(target: str) -> dict[str, Any]:
    """player parameters for ``--output``: a .wav file, or ``null`` (real-time null sink)."""
    if target == 'null':
        return {'sink': 'null'}
    path = Path(target).expanduser().resolve()
    if not path.parent.is_dir():
        raise ConfigError(f'--output {target}: directory {path.parent} does not exist')
    return {'sink': 'file', 'file_path': str(path)}


def parse_set(item: str) -> tuple[str, str, Any]:
    """``NODE:PARAM=VALUE`` (value parsed as a YAML scalar, as ``ros2 param set`` does)."""
    try:
        target, raw = item.split('=', 1)
        node, param = target.split(':', 1)
    except ValueError:
        raise ConfigError(f'--set {item!r}: expected NODE:PARAM=VALUE') from None
    if not node.strip() or not param.strip():
        raise ConfigError(f'--set {item!r}: expected NODE:PARAM=VALUE')
    value = yaml.safe_load(raw) if raw.strip() else ''
    if isinstance(value, dict) or value is None:
        raise ConfigError(f'--set {item!r}: value must be a scalar or a list')
    return node.strip(), param.strip(), value


# -- locations ------------------------------------------------------------------------------
def home_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(env.get(HOME_ENV) or DEFAULT_HOME).expanduser()


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    explicit = env.get(CONFIG_ENV)
    return Path(explicit).expanduser() if explicit else home_dir(env) / 'config.toml'


def config_dir() -> Path:
    """Where defaults.yaml and the profiles live: package data of wallie_bringup.

    ``$WALLIE_CONFIG_DIR`` overrides it. The same files are installed to
    ``share/wallie_bringup/config`` for ROS users; the package copy is the one read, so a
    pip, editable or colcon install all find them without a source tree.
    """
    candidates = []
    if os.environ.get('WALLIE_CONFIG_DIR'):
        candidates.append(Path(os.environ['WALLIE_CONFIG_DIR']))
    candidates.append(Path(str(resources.files('wallie_bringup') / 'config')))
    for c in candidates:
        if (c / 'defaults.yaml').is_file():
            return c
    raise ConfigError('cannot find the wallie parameter files (defaults.yaml); looked in: '
                      + ', '.join(str(c) for c in candidates))


def profile_path(profile: str) -> Path:
    path = config_dir() / f'{profile}.yaml'
    if not path.is_file():
        available = sorted(p.stem for p in config_dir().glob('*.yaml') if p.stem != 'defaults')
        raise ConfigError(f'unknown profile {profile!r}; available: {", ".join(available)}')
    return path


# -- parameter dictionaries -----------------------------------------------------------------
Params = dict[str, dict[str, Any]]   # node name (or GLOBAL) -> flat dotted parameter -> value


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f'{prefix}.{k}' if prefix else str(k), v, out)
    else:
        out[prefix] = value


def _node_key(key: str) -> str:
    key = str(key).strip()
    if key in ('/**', '**'):
        return GLOBAL
    for prefix in ('/**/', '**/'):
        if key.startswith(prefix):
            key = key[len(prefix):]
    return key.strip('/')


def parse_ros_params(data: Any, where: str) -> Params:
    """Turn a ROS parameter-file structure into {node: {dotted.param: value}}."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f'{where}: expected a mapping of node names')
    out: Params = {}
    for node, body in data.items():
        if not isinstance(body, dict) or 'ros__parameters' not in body:
            raise ConfigError(f'{where}: {node!r} has no ros__parameters section')
        flat: dict[str, Any] = {}
        _flatten('', body['ros__parameters'] or {}, flat)
        out.setdefault(_node_key(node), {}).update(flat)
    return out


def load_params_file(path: str | os.PathLike) -> Params:
    path = Path(path).expanduser()
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f'parameter file not found: {path}') from None
    except yaml.YAMLError as exc:
        raise ConfigError(f'{path}: not valid YAML: {exc}') from None
    return parse_ros_params(data, str(path))


def to_ros_yaml(params: Params) -> dict[str, Any]:
    """Back to a ROS parameter-file structure (node names match in any namespace).

    Empty lists are left out: rcl reads ``[]`` as "not set", which a typed parameter
    rejects at start-up; leaving it out gives the node's own default.
    """
    out: dict[str, Any] = {}

    def body(values: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in sorted(values.items()) if not (isinstance(v, list) and not v)}
    if params.get(GLOBAL) and body(params[GLOBAL]):
        out['/**'] = {'ros__parameters': body(params[GLOBAL])}
    for node in sorted(k for k in params if k != GLOBAL):
        if body(params[node]):
            out[f'/**/{node}'] = {'ros__parameters': body(params[node])}
    return out


def write_params_file(params: Params, path: str | os.PathLike) -> Path:
    path = Path(path)
    header = ('# Merged Wallie parameters for this run (generated; edit config.toml or the\n'
              '# profile YAML instead). Precedence: defaults < profile < config.toml < '
              'WALLIE_* < --params < flags.\n')
    text = header + yaml.safe_dump(to_ros_yaml(params), sort_keys=False,
                                   default_flow_style=False)
    tmp = path.with_suffix(path.suffix + '.tmp')
    tmp.write_text(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def merge(*layers: Params) -> Params:
    out: Params = {}
    for layer in layers:
        for node, values in layer.items():
            out.setdefault(node, {}).update(copy.deepcopy(values))
    return out


def diff(old: Params, new: Params) -> Params:
    """Parameters whose value differs in `new` (or is new), per node."""
    out: Params = {}
    for node, values in new.items():
        before = old.get(node, {})
        changed = {k: v for k, v in values.items() if k not in before or before[k] != v}
        if changed:
            out[node] = changed
    return out


def for_node(params: Params, node: str) -> dict[str, Any]:
    """The parameters a node receives: the global section, then its own."""
    out = dict(params.get(GLOBAL, {}))
    out.update(params.get(node, {}))
    return out


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
                _flatten('', table, flat)
                cfg.params.setdefault(_node_key(node), {}).update(flat)
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


# -- the whole stack ------------------------------------------------------------------------
@dataclass
class RunConfig:
    """Everything needed to rebuild the merged parameters (again on SIGHUP)."""

    profile: str | None = None                  # None: config.toml / env / 'cpu'
    params_files: tuple[str, ...] = ()          # --params, in order
    config_file: str | None = None              # None: config_path()
    cli_params: Params = field(default_factory=dict)
    environ: dict[str, str] | None = None       # None: os.environ (snapshot at start)
    create_config: bool = True

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> 'RunConfig':
        data = json.loads(text)
        data['params_files'] = tuple(data.get('params_files') or ())
        return cls(**data)


@dataclass
class Resolved:
    """The merged parameters of a run and where each value came from."""

    params: Params
    profile: str
    log_level: str
    sources: dict[tuple[str, str], str]
    warnings: list[str]
    config_file: Path


def resolve(run: RunConfig) -> Resolved:
    """Apply the layers in precedence order and return the merged parameters."""
    env = dict(os.environ if run.environ is None else run.environ)
    cfg_path = Path(run.config_file).expanduser() if run.config_file else config_path(env)
    user = read_config_toml(cfg_path, create=run.create_config)
    env_keys, env_run, env_warn = read_env(env)
    profile = run.profile or env_run.get('profile') or user.run.get('profile') or 'cpu'
    log_level = env_run.get('log_level') or user.run.get('log_level') or 'info'
    layers: list[tuple[str, Params]] = [
        ('defaults.yaml', load_params_file(config_dir() / 'defaults.yaml')),
        (f'{profile}.yaml', load_params_file(profile_path(profile))),
        (str(cfg_path), merge(keys_to_params(user.keys, str(cfg_path)), user.params)),
        ('environment', keys_to_params(env_keys, 'environment')),
    ]
    for f in run.params_files:
        layers.append((str(f), load_params_file(f)))
    layers.append(('command line', run.cli_params))
    sources: dict[tuple[str, str], str] = {}
    for name, layer in layers:
        for node, values in layer.items():
            for param in values:
                sources[(node, param)] = name
    merged = merge(*(layer for _, layer in layers))
    return Resolved(merged, profile, log_level, sources, user.warnings + env_warn, cfg_path)


# -- validation against the nodes' parameter tables -----------------------------------------
def node_param_table(package: str, executable: str) -> dict[str, Any] | None:
    """The {name: Param} table a node executable declares (None: it declares no table).

    A console script that is not installed, or whose module fails to import, is a
    ConfigError that says so: that node could not start either.
    """
    from importlib import metadata
    module_name = next((ep.value.split(':', 1)[0]
                        for ep in metadata.entry_points(group='console_scripts')
                        if ep.name == executable), None)
    if module_name is None:
        raise ConfigError(f'{package}/{executable}: no such node executable is installed '
                          '(run scripts/setup.sh)')
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(f'{package}/{executable}: module {module_name} does not import: '
                          f'{exc!r}') from exc
    for obj in vars(module).values():
        table = getattr(obj, 'PARAMS', None)
        if isinstance(obj, type) and isinstance(table, tuple) and table \
                and getattr(obj, '__module__', '') == module.__name__:
            return {p.name: p for p in table if hasattr(p, 'check')}
    return None


def check_values(params: Params, tables: Mapping[str, Mapping[str, Any]],
                 sources: Mapping[tuple[str, str], str] | None = None) -> list[str]:
    """Problems with values the nodes would reject (a bad start-up value kills a node)."""
    problems = []
    for node, table in tables.items():
        for name, value in for_node(params, node).items():
            spec = table.get(name)
            if spec is None:
                continue
            why = spec.check(value)
            if why:
                src = (sources or {}).get((node, name)) or (sources or {}).get((GLOBAL, name))
                problems.append(f'{node}: {why}' + (f' (from {src})' if src else ''))
    return problems


def check_run(path: str | os.PathLike) -> list[str]:
    """Check a run's merged parameters against the node tables (see bringup.prepare).

    ``path`` is a JSON file: {"params": ..., "sources": [[node, param, layer], ...],
    "nodes": [[name, package, executable], ...]}. Run in a separate process so that the
    supervisor of `wallie up` never imports the node modules (and their libraries).
    """
    data = json.loads(Path(path).read_text())
    tables, problems = {}, []
    for name, package, executable in data['nodes']:
        try:
            table = node_param_table(package, executable)
        except ConfigError as exc:
            problems.append(f'{name}: {exc}')
            continue
        if table:
            tables[name] = table
    sources = {(n, p): layer for n, p, layer in data.get('sources', [])}
    return problems + check_values(data['params'], tables, sources)


if __name__ == '__main__':  # python -m wallie_bringup.config check RUN.json
    if len(sys.argv) == 3 and sys.argv[1] == 'check':
        problems = check_run(sys.argv[2])
        print(json.dumps(problems))
        sys.exit(1 if problems else 0)
    print('usage: python -m wallie_bringup.config check RUN.json', file=sys.stderr)
    sys.exit(2)
