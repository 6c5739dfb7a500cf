"""The graph (single node list) and its translation for the launch file and `wallie up`."""

import ast
import py_compile
from pathlib import Path

import pytest
import yaml

from wallie_bringup import bringup, graph

LAUNCH = Path(__file__).resolve().parents[1] / 'launch'


def test_contract_nodes_and_executables():
    names = [n.name for n in graph.NODES]
    assert sorted(names) == sorted(['capture', 'voice_gate', 'player', 'asr', 'llm', 'tts',
                                    'manager', 'metrics'])
    by = graph.by_name()
    assert (by['voice_gate'].package, by['voice_gate'].executable) == ('wallie_audio',
                                                                       'voice_gate_node')
    assert (by['asr'].package, by['asr'].executable) == ('wallie_asr', 'asr_node')
    assert not by['manager'].lifecycle and not by['metrics'].lifecycle
    assert {n.name for n in graph.stages()} == {'capture', 'voice_gate', 'player', 'asr',
                                                'llm', 'tts'}


def test_activation_order_respects_dependencies():
    order = [n.name for n in graph.activation_order()]
    for spec in graph.stages():
        for dep in spec.after:
            assert order.index(dep) < order.index(spec.name), (dep, spec.name)
    # consumers first, the microphone last
    assert order[0] == 'player' and order[-1] == 'capture'
    assert [n.name for n in graph.shutdown_order()] == list(reversed(order))


def test_validation_rejects_bad_graphs():
    a = graph.NodeSpec('a', 'p', 'x', after=('b',))
    b = graph.NodeSpec('b', 'p', 'y', after=('a',))
    with pytest.raises(ValueError, match='cycle'):
        graph.validate([a, b])
    with pytest.raises(ValueError, match='unknown dependency'):
        graph.validate([a])
    with pytest.raises(ValueError, match='duplicate'):
        graph.validate([graph.NodeSpec('a', 'p', 'x'), graph.NodeSpec('a', 'p', 'x')])


def test_select_keeps_manager_and_drops_missing_dependencies():
    sub = graph.select(graph.NODES, only=['asr', 'llm'])
    assert [n.name for n in sub] == ['llm', 'asr', 'manager']
    assert graph.by_name(sub)['asr'].after == ('llm',)
    assert graph.by_name(sub)['llm'].after == ()      # tts not selected
    assert 'capture' not in [n.name for n in graph.select(graph.NODES, skip=['capture'])]
    with pytest.raises(ValueError, match='unknown'):
        graph.select(graph.NODES, only=['nope'])


def test_graph_file_round_trip(tmp_path):
    path = graph.dump_graph(graph.NODES, tmp_path / 'g.yaml')
    assert graph.load_graph(path) == graph.NODES
    bad = tmp_path / 'bad.yaml'
    bad.write_text(yaml.safe_dump({'nodes': [{'name': 'x', 'package': 'p',
                                              'executable': 'e', 'colour': 'red'}]}))
    with pytest.raises(ValueError, match='colour'):
        graph.load_graph(bad)


def test_node_argv_quotes_strings_and_lists():
    spec = graph.by_name()['asr']
    argv = graph.node_argv(spec, '/r/params.yaml', namespace='robot1', log_level='debug',
                           extra_params={'run_dir': '/r', 'stages': ['y', 'n'], 'on': True})
    assert argv[:3] == ['--ros-args', '-r', '__node:=asr']
    assert '__ns:=/robot1' in argv and '/r/params.yaml' in argv
    assert "run_dir:='/r'" in argv and "stages:=['y','n']" in argv and 'on:=true' in argv
    assert argv[-2:] == ['--log-level', 'debug']


def test_launch_plan_matches_graph():
    opts = graph.LaunchOptions(namespace='/robot1', params_files=('/x/params.yaml',),
                               use_respawn=True, log_level='warn', skip=('capture',))
    plan = graph.launch_plan(opts)
    names = [p['name'] for p in plan]
    assert names == [n.name for n in graph.NODES if n.name != 'capture']
    by = {p['name']: p for p in plan}
    assert by['asr']['kind'] == 'lifecycle' and by['manager']['kind'] == 'node'
    assert by['asr']['executable'] == 'asr_node' and by['asr']['package'] == 'wallie_asr'
    assert by['asr']['parameters'] == ['/x/params.yaml']
    assert by['asr']['respawn'] is True and by['asr']['respawn_delay'] > 0
    assert by['asr']['namespace'] == 'robot1'
    assert by['asr']['ros_arguments'] == ['--log-level', 'warn']
    # the manager learns which stages were launched (no capture in a replay)
    assert by['manager']['parameters'][-1]['stages'] == [
        n.name for n in graph.activation_order() if n.name != 'capture']
    no_respawn = graph.launch_plan(graph.LaunchOptions(use_respawn=False))
    assert not any(p['respawn'] for p in no_respawn)


def test_launch_plan_for_writes_the_same_run_files(tmp_path, monkeypatch):
    monkeypatch.setenv('WALLIE_HOME', str(tmp_path / 'home'))
    plan, run_dir = bringup.launch_plan_for(profile='cpu', skip=('capture',),
                                            run_dir=tmp_path / 'run')
    assert (run_dir / 'params.yaml').is_file() and (run_dir / 'run.json').is_file()
    loaded = graph.load_graph(run_dir / 'graph.yaml')
    assert 'capture' not in [n.name for n in loaded]
    manager = next(p for p in plan if p['name'] == 'manager')
    extra = manager['parameters'][-1]
    assert extra['run_dir'] == str(run_dir) and extra['autostart'] is True
    assert all(str(run_dir / 'params.yaml') in p['parameters'] for p in plan)


@pytest.mark.parametrize('name', ['bringup.launch.py', 'replay.launch.py'])
def test_launch_files_compile_and_use_the_graph(name, tmp_path):
    path = LAUNCH / name
    py_compile.compile(str(path), cfile=str(tmp_path / 'x.pyc'), doraise=True)
    tree = ast.parse(path.read_text())
    funcs = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert 'generate_launch_description' in funcs
    text = path.read_text()
    if name == 'bringup.launch.py':
        # the node list comes from wallie (graph via bringup.launch_plan_for), not the file
        assert 'launch_plan_for' in text and 'LifecycleNode' in text
        assert "package='" not in text and 'executable=' not in text
        for arg in ('namespace', 'params_file', 'profile', 'use_respawn', 'log_level',
                    'autostart'):
            assert f"('{arg}'," in text
    else:
        assert 'bringup.launch.py' in text and "'skip': 'capture'" in text
