"""Linters as tests: ruff (99 columns) on everything, mypy on the ROS-free engine modules."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# Engine modules: plain Python, typed, importing neither rclpy nor *_msgs.
ENGINE_GLOBS = [
    'src/wallie_audio/wallie_audio/*.py',
    'src/wallie_asr/wallie_asr/*.py',
    'src/wallie_llm/wallie_llm/*.py',
    'src/wallie_tts/wallie_tts/*.py',
    'src/wallie_common/wallie_common/model_store.py',
]


def _engine_modules() -> list[Path]:
    out = []
    for pattern in ENGINE_GLOBS:
        for path in sorted(ROOT.glob(pattern)):
            if path.name.endswith('_node.py') or path.name in ('__init__.py', 'bench.py'):
                continue
            text = path.read_text()
            if 'import rclpy' in text or 'from rclpy' in text or '_msgs' in text or \
                    'wallie_interfaces' in text:
                continue
            out.append(path)
    return out


def test_ruff():
    res = subprocess.run([str(BIN / 'ruff'), 'check', '--no-cache', str(ROOT)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_mypy_engines():
    modules = _engine_modules()
    if not modules:
        pytest.skip('no engine modules yet')
    res = subprocess.run([str(BIN / 'mypy'), '--ignore-missing-imports', '--no-error-summary',
                          '--cache-dir', '/tmp/wallie-mypy-cache', '--follow-imports=silent',
                          *map(str, modules)], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr


def test_engines_do_not_import_ros():
    """Thin node, fat library: an engine module that needs rclpy is a design smell."""
    names = ['vad', 'wake', 'endpoint', 'echo', 'engine', 'chunker', 'memory', 'normalize',
             'streaming', 'speech_text']
    offenders = []
    for pkg in ('wallie_audio', 'wallie_asr', 'wallie_llm', 'wallie_tts'):
        for name in names:
            path = ROOT / 'src' / pkg / pkg / f'{name}.py'
            if path.exists():
                text = path.read_text()
                if 'rclpy' in text or 'wallie_interfaces' in text:
                    offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, offenders
