"""Linters as tests: ruff (99 columns) on everything, mypy on the ROS-free engine modules, and
an import walk (ast) that keeps every module but the nodes, benches and named plumbing free of
ROS."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ROS_ROOTS = ('rclpy', 'wallie_interfaces', 'launch', 'launch_ros', 'ament_index_python')

# Modules that are ROS plumbing by design (besides *_node.py, bench.py, launch files and the
# test harness package). A listed module that stops importing ROS fails too: the list can't rot.
ROS_MODULES = {
    'src/wallie_common/wallie_common/conversions.py',    # message <-> numpy
    'src/wallie_common/wallie_common/diagnostics.py',    # DiagnosticStatus builder
    'src/wallie_common/wallie_common/node_base.py',      # StageNode
    'src/wallie_common/wallie_common/params.py',         # declare/validate a Param table
    'src/wallie_common/wallie_common/qos.py',
    'src/wallie_common/wallie_common/runtime.py',        # main loop, Intake
    'src/wallie_cli/wallie_cli/bags.py',                 # rosbag2 record / replay
    'src/wallie_cli/wallie_cli/observer.py',             # the live-graph harness's observer
    'src/wallie_cli/wallie_cli/feed.py',                 # and its audio/in feed
    'src/wallie_cli/wallie_cli/commands/ready.py',
    'src/wallie_cli/wallie_cli/commands/replay.py',
}

# mypy's set, named one by one: every ROS-free module of the engine packages. A new engine
# module must be added here (test_mypy_list_is_complete fails otherwise).
MYPY_MODULES = [
    'src/wallie_audio/wallie_audio/gate_outputs.py',
    'src/wallie_common/wallie_common/spoken_numbers.py',
    'src/wallie_common/wallie_common/engine_slot.py',
    'src/wallie_common/wallie_common/model_fetch.py',
    'src/wallie_common/wallie_common/model_inventory.py',
    'src/wallie_common/wallie_common/model_manifest.py',
    'src/wallie_common/wallie_common/model_store.py',
    'src/wallie_common/wallie_common/param_table.py',
    'src/wallie_common/wallie_common/restart.py',
    'src/wallie_common/wallie_common/services.py',
    'src/wallie_audio/wallie_audio/config.py',
    'src/wallie_audio/wallie_audio/echo.py',
    'src/wallie_audio/wallie_audio/endpoint.py',
    'src/wallie_audio/wallie_audio/fixtures.py',
    'src/wallie_audio/wallie_audio/gate_inbox.py',
    'src/wallie_audio/wallie_audio/playback_tracker.py',
    'src/wallie_audio/wallie_audio/voice_gate.py',
    'src/wallie_audio/wallie_audio/playout.py',
    'src/wallie_audio/wallie_audio/ring.py',
    'src/wallie_audio/wallie_audio/sinks.py',
    'src/wallie_audio/wallie_audio/sources.py',
    'src/wallie_audio/wallie_audio/synthetic.py',
    'src/wallie_audio/wallie_audio/vad.py',
    'src/wallie_audio/wallie_audio/wake.py',
    'src/wallie_audio/wallie_audio/wake_bench.py',
    'src/wallie_audio/wallie_audio/wake_data.py',
    'src/wallie_audio/wallie_audio/wake_model.py',
    'src/wallie_audio/wallie_audio/wake_train.py',
    'src/wallie_asr/wallie_asr/config.py',
    'src/wallie_asr/wallie_asr/engine.py',
    'src/wallie_asr/wallie_asr/fixtures.py',
    'src/wallie_asr/wallie_asr/streaming.py',
    'src/wallie_asr/wallie_asr/reliability.py',
    'src/wallie_asr/wallie_asr/wake_phrase.py',
    'src/wallie_llm/wallie_llm/chunker.py',
    'src/wallie_llm/wallie_llm/config.py',
    'src/wallie_llm/wallie_llm/engine.py',
    'src/wallie_llm/wallie_llm/llama_engine.py',
    'src/wallie_llm/wallie_llm/memory.py',
    'src/wallie_llm/wallie_llm/reply.py',
    'src/wallie_llm/wallie_llm/scheduler.py',
    'src/wallie_llm/wallie_llm/speech_text.py',
    'src/wallie_llm/wallie_llm/vllm_engine.py',
    'src/wallie_tts/wallie_tts/clauses.py',
    'src/wallie_tts/wallie_tts/config.py',
    'src/wallie_tts/wallie_tts/engine.py',
    'src/wallie_tts/wallie_tts/espeak_engine.py',
    'src/wallie_tts/wallie_tts/normalize.py',
    'src/wallie_tts/wallie_tts/piper_engine.py',
    'src/wallie_tts/wallie_tts/stream.py',
    'src/wallie_tts/wallie_tts/synthesis_queue.py',
    'src/wallie_tts/wallie_tts/xtts_engine.py',
    'src/wallie_manager/wallie_manager/governor.py',
    'src/wallie_manager/wallie_manager/manager_logic.py',
    'src/wallie_manager/wallie_manager/stage_watcher.py',
]
ENGINE_PACKAGES = ('wallie_audio', 'wallie_asr', 'wallie_llm', 'wallie_tts')


def ros_imports(path: Path) -> list[str]:
    """The ROS modules `path` imports (anywhere in the file, as parsed by ast)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split('.')[0]
            if top in ROS_ROOTS or top.endswith(('_msgs', '_srvs')):
                found.append(name)
    return found


def _sources() -> list[Path]:
    return sorted(p for p in ROOT.glob('src/*/*/**/*.py')
                  if 'test' not in p.relative_to(ROOT).parts)


def _ros_by_design(rel: str, path: Path) -> bool:
    return (path.name.endswith('_node.py') or path.name in ('bench.py',)
            or path.name.endswith('.launch.py') or rel.startswith('src/wallie_testing/')
            or rel in ROS_MODULES)


def test_ruff():
    res = subprocess.run([str(BIN / 'ruff'), 'check', '--no-cache', str(ROOT)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_only_nodes_benches_and_plumbing_import_ros():
    """Thin node, fat library: every other module is ROS-free, checked on its parsed imports."""
    offenders, stale = [], []
    for path in _sources():
        rel = str(path.relative_to(ROOT))
        imports = ros_imports(path)
        if imports and not _ros_by_design(rel, path):
            offenders.append(f'{rel}: {imports}')
        if rel in ROS_MODULES and not imports:
            stale.append(rel)
    assert not offenders, offenders
    assert not stale, f'listed as ROS plumbing but import no ROS: {stale}'


def test_ros_import_walk_catches_an_import():
    """The walk sees imports inside functions and `from x import y`, not only top-level text."""
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / 'm.py'
        p.write_text('def f():\n    from rclpy.node import Node\n    import std_msgs.msg\n')
        assert ros_imports(p) == ['rclpy.node', 'std_msgs.msg']
        p.write_text('"""Mentions rclpy and audio_common_msgs only in text."""\n')
        assert ros_imports(p) == []


def test_mypy_list_is_complete():
    """Every ROS-free module of the engine packages is type-checked (none silently dropped)."""
    missing = []
    for pkg in ENGINE_PACKAGES:
        for path in sorted((ROOT / 'src' / pkg / pkg).glob('*.py')):
            rel = str(path.relative_to(ROOT))
            if path.name == '__init__.py' or _ros_by_design(rel, path):
                continue
            if rel not in MYPY_MODULES:
                missing.append(rel)
    assert not missing, f'add to MYPY_MODULES: {missing}'
    assert all((ROOT / m).is_file() for m in MYPY_MODULES)


def test_mypy_engines():
    res = subprocess.run([str(BIN / 'mypy'), '--ignore-missing-imports', '--no-error-summary',
                          '--cache-dir', '/tmp/wallie-mypy-cache', '--follow-imports=silent',
                          *MYPY_MODULES], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr


def test_pytest_only_in_test_code():
    """pytest is a test dependency: only tests and wallie_testing.fixtures import it."""
    offenders = []
    for path in _sources():
        rel = str(path.relative_to(ROOT))
        if rel == 'src/wallie_testing/wallie_testing/fixtures.py':
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            if any(n.split('.')[0] == 'pytest' for n in names):
                offenders.append(rel)
    assert not offenders, offenders
