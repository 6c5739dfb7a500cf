"""ROS parameter files and the ``{node: {dotted.param: value}}`` dictionaries they hold.

Pure Python (no rclpy). The packaged files (``config/defaults.yaml`` and one YAML per profile,
package data of wallie_bringup) and the merged per-run file use the usual ROS layout
(``<node>: {ros__parameters: {...}}``; ``/**`` applies to every node). ``wallie_bringup.config``
layers them with the user's configuration.
"""

from __future__ import annotations

import copy
import os
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

GLOBAL = '*'          # internal key for the ``/**`` section (every node)


class ConfigError(ValueError):
    """A configuration value or file that cannot be used; the message says which and why."""


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
    """The YAML file of parameter profile `profile`; ConfigError naming the available ones if
    there is none."""
    path = config_dir() / f'{profile}.yaml'
    if not path.is_file():
        available = sorted(p.stem for p in config_dir().glob('*.yaml') if p.stem != 'defaults')
        raise ConfigError(f'unknown profile {profile!r}; available: {", ".join(available)}')
    return path


# -- parameter dictionaries -----------------------------------------------------------------
Params = dict[str, dict[str, Any]]   # node name (or GLOBAL) -> flat dotted parameter -> value


def flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    """Nested mappings into ``out`` as dotted names (``a: {b: 1}`` -> ``a.b``)."""
    if isinstance(value, dict):
        for k, v in value.items():
            flatten(f'{prefix}.{k}' if prefix else str(k), v, out)
    else:
        out[prefix] = value


def node_key(key: str) -> str:
    """A parameter-file node key as a node name (``/**``: GLOBAL; namespaces dropped)."""
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
        flatten('', body['ros__parameters'] or {}, flat)
        out.setdefault(node_key(node), {}).update(flat)
    return out


def load_params_file(path: str | os.PathLike) -> Params:
    """Read a ROS parameter file as {node: {dotted.param: value}}; ConfigError if it is missing
    or not valid YAML."""
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
    """Write `params` as a private (0600) ROS parameter file, atomically, with a header on where
    the values come from."""
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
    """The layers merged node by node; a later layer wins."""
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
