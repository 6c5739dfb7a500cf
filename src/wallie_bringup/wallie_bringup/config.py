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

Parameter files and dictionaries are ``wallie_bringup.ros_params``, config.toml and WALLIE_*
are ``wallie_bringup.user_config``; this module stacks the layers, turns the command-line flags
into parameters and checks the result against the nodes' parameter tables. It is the module
the rest of Wallie imports.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from wallie_bringup.ros_params import (
    GLOBAL,
    ConfigError,
    Params,
    config_dir,
    diff,
    for_node,
    load_params_file,
    merge,
    profile_path,
    to_ros_yaml,
    write_params_file,
)
from wallie_bringup.user_config import (
    ENV_PREFIX,
    KEYS,
    KEYS_BY_NAME,
    NON_CONFIG_ENV,
    config_path,
    home_dir,
    keys_to_params,
    read_config_toml,
    read_env,
)

__all__ = [
    'ENV_PREFIX', 'GLOBAL', 'KEYS', 'KEYS_BY_NAME', 'NON_CONFIG_ENV', 'NO_WAKE_PARAMS',
    'ConfigError', 'Params', 'Resolved', 'RunConfig', 'check_run', 'check_values',
    'config_dir', 'diff', 'for_node', 'home_dir', 'input_params', 'load_params_file', 'merge',
    'node_param_table', 'output_params', 'parse_set', 'parse_sets', 'read_config_toml', 'resolve',
    'to_ros_yaml', 'write_params_file',
]


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


def parse_sets(items: Iterable[str]) -> Params:
    """Every ``--set NODE:PARAM=VALUE`` as ``{node: {param: value}}`` (a later one wins)."""
    out: Params = {}
    for item in items:
        node, param, value = parse_set(item)
        out.setdefault(node, {})[param] = value
    return out


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
