"""Configuration layers: defaults < profile < config.toml < WALLIE_* < --params < flags."""

import os
import stat
import subprocess
import sys
import textwrap

import pytest
import yaml

from wallie_bringup import config as C
from wallie_bringup import graph


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv('WALLIE_HOME', str(tmp_path / 'home'))
    monkeypatch.delenv('WALLIE_CONFIG', raising=False)
    for k in list(os.environ):
        if k.startswith('WALLIE_') and k[7:].lower() in C.KEYS_BY_NAME:
            monkeypatch.delenv(k)
    return tmp_path / 'home'


def resolve(**kw):
    kw.setdefault('environ', {k: v for k, v in os.environ.items()
                              if not k.startswith('WALLIE_') or k == 'WALLIE_HOME'})
    return C.resolve(C.RunConfig(**kw))


def test_missing_config_is_created_private_with_commented_defaults(home):
    res = resolve()
    path = home / 'config.toml'
    assert res.config_file == path and path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    text = path.read_text()
    for spec in C.KEYS:
        assert f'# {spec.key} = ' in text, spec.key
    # every line is a comment: the template changes nothing
    assert C.read_config_toml(path).keys == {}
    assert res.params == resolve().params
    # the template shows the effective default of the cpu profile
    assert '# asr_model = "whisper-tiny.en"' in text


def test_precedence_layers(home, tmp_path):
    home.mkdir(parents=True)
    (home / 'config.toml').write_text(textwrap.dedent('''
        asr_model = "from-toml"
        llm_max_tokens = 55
        wake_word_sensitivity = 0.3
        [params.asr]
        "asr.beam_size" = 3
    '''))
    params_file = tmp_path / 'p.yaml'
    params_file.write_text(yaml.safe_dump({'asr': {'ros__parameters': {'asr.beam_size': 4}}}))
    env = {'WALLIE_HOME': str(home), 'WALLIE_LLM_MAX_TOKENS': '77',
           'WALLIE_WAKE_WORD_SENSITIVITY': '0.9', 'WALLIE_MODEL_DIR': '/ignored'}
    res = resolve(environ=env)
    assert res.params['asr']['asr.model'] == 'from-toml'          # toml > profile
    assert res.params['asr']['asr.device'] == 'cpu'               # profile > defaults
    assert res.params['llm']['llm.max_tokens'] == 77              # env > toml
    assert res.params['voice_gate']['wake.sensitivity'] == 0.9
    assert res.params['asr']['asr.beam_size'] == 3                # [params.asr] table
    assert res.sources[('asr', 'asr.model')].endswith('config.toml')
    assert res.sources[('llm', 'llm.max_tokens')] == 'environment'
    res = resolve(environ=env, params_files=(str(params_file),),
                  cli_params={'llm': {'llm.max_tokens': 99}})
    assert res.params['asr']['asr.beam_size'] == 4                # --params > toml
    assert res.params['llm']['llm.max_tokens'] == 99              # flags > everything
    assert res.sources[('llm', 'llm.max_tokens')] == 'command line'


def test_profile_selection(home):
    assert resolve().profile == 'cpu'   # creates the (commented) config.toml
    (home / 'config.toml').write_text('profile = "gpu"\n')
    assert resolve().profile == 'gpu'
    assert resolve().params['asr']['asr.device'] == 'cuda'
    assert resolve(environ={'WALLIE_HOME': str(home), 'WALLIE_PROFILE': 'cpu'}).profile == 'cpu'
    assert resolve(profile='cpu').profile == 'cpu'
    with pytest.raises(C.ConfigError, match='unknown profile'):
        resolve(profile='tpu')


@pytest.mark.parametrize('toml,match', [
    ('llm_max_tokens = "many"', 'llm_max_tokens: expected int'),
    ('enable_prometheus = 1', 'expected a boolean'),
    ('wake_word_sensitivity = "x"', 'expected float'),
    ('asr_model = [1', 'not valid TOML'),
])
def test_bad_values_name_the_key(home, toml, match):
    home.mkdir(parents=True)
    (home / 'config.toml').write_text(toml + '\n')
    with pytest.raises(C.ConfigError, match=match):
        resolve()


def test_env_values_are_typed(home):
    env = {'WALLIE_HOME': str(home), 'WALLIE_ENABLE_PROMETHEUS': 'yes',
           'WALLIE_PROMETHEUS_PORT': '9191', 'WALLIE_LLM_GPU_MEMORY_FRACTION': '0.35'}
    res = resolve(environ=env)
    assert res.params['metrics']['prometheus.enabled'] is True
    assert res.params['metrics']['prometheus.port'] == 9191
    assert res.params['llm']['llm.gpu_memory_fraction'] == 0.35
    with pytest.raises(C.ConfigError, match='WALLIE_PROMETHEUS_PORT'):
        resolve(environ={**env, 'WALLIE_PROMETHEUS_PORT': 'ninety'})


def test_unknown_keys_warn(home):
    home.mkdir(parents=True)
    (home / 'config.toml').write_text('colour = "red"\n')
    assert any("unknown key 'colour'" in w for w in resolve().warnings)


def test_flags_and_set(tmp_path):
    wav = tmp_path / 'q.wav'
    wav.write_bytes(b'RIFF')
    assert C.input_params(str(wav)) == {'source': 'file', 'file.path': str(wav)}
    bag = tmp_path / 'bag'
    bag.mkdir()
    assert C.input_params(str(bag)) == {'source': 'bag', 'bag.path': str(bag)}
    with pytest.raises(C.ConfigError, match='no such file'):
        C.input_params(str(tmp_path / 'nope.wav'))
    assert C.output_params('null') == {'sink': 'null'}
    assert C.output_params(str(tmp_path / 'a.wav'))['sink'] == 'file'
    assert C.parse_set('asr:asr.beam_size=2') == ('asr', 'asr.beam_size', 2)
    assert C.parse_set('llm:llm.model=a=b') == ('llm', 'llm.model', 'a=b')
    with pytest.raises(C.ConfigError):
        C.parse_set('asr.beam_size=2')
    assert C.parse_sets(['asr:asr.beam_size=2', 'llm:llm.max_tokens=48',
                         'asr:asr.beam_size=3']) == {'asr': {'asr.beam_size': 3},
                                                     'llm': {'llm.max_tokens': 48}}


def test_written_params_file_is_read_by_rcl(tmp_path):
    params = {C.GLOBAL: {'g': 1}, 'asr': {'asr.model': 'x', 'empty': [], 'list': ['a', 'b']},
              'llm': {'llm.max_tokens': 5}}
    path = C.write_params_file(params, tmp_path / 'params.yaml')
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert C.load_params_file(path) == {C.GLOBAL: {'g': 1},
                                        'asr': {'asr.model': 'x', 'list': ['a', 'b']},
                                        'llm': {'llm.max_tokens': 5}}
    code = textwrap.dedent(f'''
        import rclpy
        from rclpy.node import Node
        ctx = rclpy.Context()
        rclpy.init(context=ctx, args=['--ros-args', '--params-file', {str(path)!r},
                                      '-r', '__ns:=/robot'])
        n = Node('asr', context=ctx, automatically_declare_parameters_from_overrides=True)
        print(sorted((k, v.value) for k, v in n._parameters.items() if k != 'use_sim_time'
                     and not k.startswith('start_type')))
    ''')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "('asr.model', 'x')" in out.stdout and "('g', 1)" in out.stdout
    assert "('list', ['a', 'b'])" in out.stdout and 'max_tokens' not in out.stdout


def test_diff_and_merge():
    old = {'asr': {'a': 1, 'b': 2}}
    new = {'asr': {'a': 1, 'b': 3, 'c': 4}, 'llm': {'x': 1}}
    assert C.diff(old, new) == {'asr': {'b': 3, 'c': 4}, 'llm': {'x': 1}}
    assert C.merge(old, {'asr': {'a': 5}}) == {'asr': {'a': 5, 'b': 2}}


def test_profiles_are_valid_parameter_files():
    for path in C.config_dir().glob('*.yaml'):
        params = C.load_params_file(path)
        nodes = {n.name for n in graph.NODES}
        assert set(params) <= nodes | {C.GLOBAL}, path


def _table(node):
    spec = graph.by_name()[node]
    return C.node_param_table(spec.package, spec.executable)


@pytest.mark.parametrize('key', [k.key for k in C.KEYS])
def test_brief_keys_map_onto_declared_parameters(key):
    """Every brief key targets a parameter the stage really declares."""
    spec = C.KEYS_BY_NAME[key]
    for node, param in spec.targets:
        table = _table(node)
        assert table is not None, f'{node} declares no parameter table'
        assert param in table, f'{key} -> {node}/{param}: not declared by {node}'
        default = table[param].default
        assert isinstance(default, spec.type) or (spec.type is float and
                                                  isinstance(default, int)), key


def test_profile_parameters_exist_and_are_valid():
    """Profile YAMLs only set parameters the nodes declare, with values they accept."""
    checked = 0
    for path in C.config_dir().glob('*.yaml'):
        params = C.load_params_file(path)
        for node, values in params.items():
            if node in (C.GLOBAL, 'manager'):
                continue
            table = _table(node)
            assert table is not None, f'{node} declares no parameter table'
            for name, value in values.items():
                assert name in table, f'{path.name}: {node}/{name} is not declared'
                assert table[name].check(value) is None, (path.name, node, name)
                checked += 1
    assert checked


def test_manager_parameters_in_profiles_exist():
    from wallie_manager.manager_node import ARRAY_PARAMS, PARAMS
    names = {p.name for p in PARAMS} | set(ARRAY_PARAMS) | {'run_dir', 'graph_file'}
    for path in C.config_dir().glob('*.yaml'):
        for name, value in C.load_params_file(path).get('manager', {}).items():
            assert name in names, (path.name, name)


def test_profile_ladders_name_real_parameters():
    from wallie_manager.governor import parse_ladder
    checked = 0
    for path in C.config_dir().glob('*.yaml'):
        ladder = C.load_params_file(path).get('manager', {}).get('governor.ladder', [])
        for step in parse_ladder(ladder):
            for a in step:
                table = _table(a.node)
                if table is None:
                    continue
                assert a.param in table, f'{path.name}: ladder sets undeclared {a.node}/{a.param}'
                assert table[a.param].check(a.value) is None, (path.name, a)
                checked += 1
    if not checked:
        pytest.skip('no stage built yet')
