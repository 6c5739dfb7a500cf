"""The Wallie node graph: THE single list of nodes, used by the launch files and `wallie up`.

Each entry says which executable runs a node, under which name, whether it is a lifecycle
node the manager drives, which stages must be active before it is activated, and how its
process is respawned. ``bringup.launch.py`` (ROS distro) and ``wallie up`` (no distro) both
build their process list from :data:`NODES` through this module, so the two cannot drift.

Pure Python: no rclpy and no launch imports here (launch is not installable without a
ROS distro); :func:`launch_plan` returns plain keyword dictionaries that the launch file
hands to ``launch_ros.actions.Node`` / ``LifecycleNode``.

A robot integrator may replace the list with a YAML file (``wallie up --graph FILE`` or the
manager's ``graph_file`` parameter) holding a ``nodes:`` list with the fields of
:class:`NodeSpec`; tests use this to run small stand-in stages.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml

MANAGER = 'manager'


@dataclass(frozen=True)
class NodeSpec:
    """One node of the graph and how to run it."""

    name: str                             # fixed node name (the graph contract)
    package: str                          # ROS package (``ros2 run <package> <executable>``)
    executable: str                       # console script / lib/<package>/<executable>
    lifecycle: bool = True                # driven by the manager (configure -> activate)
    after: tuple[str, ...] = ()           # activated only once these stages are active
    required: bool = True                 # the assistant is not "ready" without it
    respawn: bool = True                  # restart the process when it exits
    respawn_delay_s: float = 0.5          # first respawn delay (doubles per quick crash)
    configure_timeout_s: float = 180.0    # model loads happen in on_configure
    description: str = ''
    command: tuple[str, ...] = ()         # explicit argv instead of the executable (tests)
    optional: bool = False                # skipped (with a warning) if not installed

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data['after'] = list(self.after)
        data['command'] = list(self.command)
        return data


# Activation order follows the data flow backwards: consumers are active before their
# producers, so nothing is published into a stage that is not listening yet, and the
# microphone opens last. Configuration (model loading) starts for all stages at once.
NODES: tuple[NodeSpec, ...] = (
    NodeSpec('player', 'wallie_audio', 'player_node',
             description='Plays reply audio (device, WAV file or null sink).'),
    NodeSpec('tts', 'wallie_tts', 'tts_node', after=('player',),
             description='Text to speech (Piper on CPU, XTTS v2 on GPU).'),
    NodeSpec('llm', 'wallie_llm', 'llm_node', after=('tts',),
             description='Streaming, interruptible LLM with conversation memory.'),
    NodeSpec('asr', 'wallie_asr', 'asr_node', after=('llm',),
             description='Streaming faster-whisper speech recognition.'),
    NodeSpec('voice_gate', 'wallie_audio', 'voice_gate_node', after=('asr', 'player'),
             description='VAD, wake word, endpointing and barge-in.'),
    NodeSpec('capture', 'wallie_audio', 'capture_node', after=('voice_gate',),
             description='Microphone / file / bag audio source.'),
    NodeSpec('metrics', 'wallie_manager', 'metrics_node', lifecycle=False, required=False,
             optional=True,
             description='Per-turn latency, Prometheus endpoint, JSONL log.'),
    NodeSpec(MANAGER, 'wallie_manager', 'manager_node', lifecycle=False,
             description='Brings the stages up, watches and restarts them.'),
)

PROFILES = ('cpu', 'cpu-accurate', 'gpu')


# -- graph files and queries ----------------------------------------------------------------
def load_graph(path: str | os.PathLike | None = None) -> tuple[NodeSpec, ...]:
    """Return the built-in graph, or the one in a YAML file (``nodes:`` list)."""
    if not path:
        return NODES
    data = yaml.safe_load(Path(path).read_text()) or {}
    raw = data.get('nodes') if isinstance(data, dict) else data
    if not isinstance(raw, list) or not raw:
        raise ValueError(f'{path}: expected a non-empty `nodes:` list')
    known = {f.name for f in dataclasses.fields(NodeSpec)}
    nodes = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise ValueError(f'{path}: nodes[{i}] is not a mapping')
        unknown = set(item) - known
        if unknown:
            raise ValueError(f'{path}: nodes[{i}]: unknown field(s) {sorted(unknown)}')
        kw = dict(item)
        for key in ('after', 'command'):
            if key in kw:
                kw[key] = tuple(str(x) for x in (kw[key] or ()))
        try:
            nodes.append(NodeSpec(**kw))
        except TypeError as exc:
            raise ValueError(f'{path}: nodes[{i}]: {exc}') from None
    graph = tuple(nodes)
    validate(graph)
    return graph


def dump_graph(nodes: Sequence[NodeSpec], path: str | os.PathLike) -> Path:
    """Write a graph file that :func:`load_graph` reads back unchanged."""
    path = Path(path)
    path.write_text(yaml.safe_dump({'nodes': [n.to_dict() for n in nodes]}, sort_keys=False))
    return path


def validate(nodes: Sequence[NodeSpec]) -> None:
    """Check names are unique, dependencies exist and are lifecycle stages, no cycles."""
    names = [n.name for n in nodes]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f'duplicate node name(s): {sorted(dup)}')
    by_name = {n.name: n for n in nodes}
    for n in nodes:
        for dep in n.after:
            if dep not in by_name:
                raise ValueError(f'{n.name}: unknown dependency {dep!r}')
            if not by_name[dep].lifecycle:
                raise ValueError(f'{n.name}: dependency {dep!r} is not a lifecycle stage')
    activation_order(nodes)


def stages(nodes: Sequence[NodeSpec] = NODES) -> tuple[NodeSpec, ...]:
    """The lifecycle stages (what the manager drives), in activation order."""
    return activation_order(nodes)


def activation_order(nodes: Sequence[NodeSpec] = NODES) -> tuple[NodeSpec, ...]:
    """Lifecycle stages sorted so that every stage comes after its dependencies.

    Stable: among stages whose dependencies are met, the graph's own order wins.
    """
    pending = [n for n in nodes if n.lifecycle]
    done: list[NodeSpec] = []
    placed: set[str] = set()
    while pending:
        ready = [n for n in pending if set(n.after) <= placed]
        if not ready:
            cycle = ', '.join(f'{n.name} after {list(n.after)}' for n in pending)
            raise ValueError(f'dependency cycle among: {cycle}')
        first = ready[0]
        done.append(first)
        placed.add(first.name)
        pending.remove(first)
    return tuple(done)


def shutdown_order(nodes: Sequence[NodeSpec] = NODES) -> tuple[NodeSpec, ...]:
    """Reverse activation order: the microphone stops first, the player last."""
    return tuple(reversed(activation_order(nodes)))


def by_name(nodes: Sequence[NodeSpec] = NODES) -> dict[str, NodeSpec]:
    """The node specs keyed by node name."""
    return {n.name: n for n in nodes}


def select(nodes: Sequence[NodeSpec], only: Iterable[str] | None = None,
           skip: Iterable[str] = ()) -> tuple[NodeSpec, ...]:
    """Keep a subset (the manager is always kept); dependencies outside it are dropped."""
    keep = set(only) if only else {n.name for n in nodes}
    keep -= set(skip)
    unknown = keep - {n.name for n in nodes}
    if unknown:
        raise ValueError(f'unknown node(s): {sorted(unknown)}')
    keep.add(MANAGER)
    chosen = [n for n in nodes if n.name in keep]
    names = {n.name for n in chosen}
    return tuple(dataclasses.replace(n, after=tuple(d for d in n.after if d in names))
                 for n in chosen)


# -- finding executables --------------------------------------------------------------------
def _prefixes() -> list[Path]:
    out = [Path(sys.prefix)]
    for entry in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep):
        if entry:
            out.append(Path(entry))
    return out


def find_executable(spec: NodeSpec) -> list[str] | None:
    """argv that runs this node outside launch, or None if it is not installed.

    Looked up in order: the explicit ``command``; the console script next to this
    interpreter (the venv); ``<prefix>/lib/<package>/<executable>`` for colcon installs;
    the PATH.
    """
    if spec.command:
        cmd = list(spec.command)
        if cmd[0] in ('python', 'python3'):
            cmd[0] = sys.executable
        return cmd
    bindir = Path(sys.executable).parent
    found = shutil.which(spec.executable, path=str(bindir))
    if found:
        return [found]
    for prefix in _prefixes():
        candidate = prefix / 'lib' / spec.package / spec.executable
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return [str(candidate)]
    found = shutil.which(spec.executable)
    return [found] if found else None


def node_argv(spec: NodeSpec, params_file: str | os.PathLike | None = None,
              namespace: str = '', log_level: str = '',
              extra_params: Mapping[str, Any] | None = None) -> list[str]:
    """The ``--ros-args`` that give a process its name, namespace and parameters."""
    args = ['--ros-args', '-r', f'__node:={spec.name}']
    ns = normalize_namespace(namespace)
    if ns != '/':
        args += ['-r', f'__ns:={ns}']
    if params_file:
        args += ['--params-file', str(params_file)]
    for key, value in (extra_params or {}).items():
        args += ['-p', f'{key}:={_param_literal(value)}']
    if log_level:
        args += ['--log-level', log_level]
    return args


def _param_literal(value: Any) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (list, tuple)):
        return '[' + ','.join(_param_literal(v) for v in value) + ']'
    if isinstance(value, str):
        return yaml.safe_dump(value, default_style="'").strip().splitlines()[0]
    return str(value)


def normalize_namespace(namespace: str) -> str:
    """`namespace` as an absolute ROS namespace ('' -> '/', 'robot1/' -> '/robot1')."""
    ns = '/' + namespace.strip().strip('/')
    return ns


def fq_name(name: str, namespace: str = '') -> str:
    """The fully qualified name of node `name` in `namespace` ('/name' or '/ns/name')."""
    ns = normalize_namespace(namespace)
    return f'/{name}' if ns == '/' else f'{ns}/{name}'


# -- launch translation (pure data; the launch file instantiates the actions) ---------------
@dataclass(frozen=True)
class LaunchOptions:
    """Resolved values of the bringup launch arguments."""

    namespace: str = ''
    params_files: tuple[str, ...] = ()    # merged parameter files, in order
    use_respawn: bool = True
    respawn_delay_s: float | None = None  # None: each node's own delay
    log_level: str = 'info'
    skip: tuple[str, ...] = ()            # node names left out (replay: capture)
    extra_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def launch_plan(options: LaunchOptions,
                nodes: Sequence[NodeSpec] = NODES) -> list[dict[str, Any]]:
    """One keyword dictionary per node for ``launch_ros.actions.(Lifecycle)Node``.

    Each dictionary has ``kind`` ('lifecycle' or 'node') plus the constructor keywords:
    package, executable, name, namespace, output, parameters, respawn, respawn_delay,
    ros_arguments. Lifecycle stages are brought up by the manager (not by launch events):
    after a SIGKILL a respawned node's first requests can go to the dead process's
    lingering services, and only a driver that retries and confirms with get_state
    recovers from that (measured with these wheels: a lingering service for ~20 s).
    """
    plan = []
    chosen = [n for n in nodes if n.name not in set(options.skip)]
    names = [n.name for n in chosen]
    for spec in chosen:
        params: list[Any] = list(options.params_files)
        extra = dict(options.extra_params.get(spec.name, {}))
        if spec.name == MANAGER:
            extra.setdefault('stages', [n.name for n in activation_order(chosen)])
        if extra:
            params.append(extra)
        delay = spec.respawn_delay_s if options.respawn_delay_s is None \
            else options.respawn_delay_s
        plan.append({
            'kind': 'lifecycle' if spec.lifecycle else 'node',
            'package': spec.package,
            'executable': spec.executable,
            'name': spec.name,
            'namespace': options.namespace.strip('/'),
            'output': 'screen',
            'parameters': params,
            'respawn': bool(options.use_respawn and spec.respawn),
            'respawn_delay': float(delay),
            'ros_arguments': ['--log-level', options.log_level],
        })
    assert [p['name'] for p in plan] == names
    return plan
