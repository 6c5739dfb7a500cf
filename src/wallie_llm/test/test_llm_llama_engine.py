"""llama.cpp engine with the real Qwen2.5 0.5B GGUF: prefix cache, stop, limits, errors."""

import threading

import pytest

from wallie_llm.config import DEFAULT_SYSTEM_PROMPT, EngineConfig
from wallie_llm.engine import ContextOverflowError, ModelLoadError, create_engine

pytest.importorskip('llama_cpp')

SYSTEM = [{'role': 'system', 'content': DEFAULT_SYSTEM_PROMPT}]


def ask(text):
    return SYSTEM + [{'role': 'user', 'content': text}]


@pytest.fixture(scope='module')
def engine():
    from wallie_common.model_store import ModelNotFoundError, resolve
    try:
        resolve('qwen2.5-0.5b-instruct')
    except ModelNotFoundError as exc:
        pytest.skip(str(exc))
    eng = create_engine(EngineConfig(context_tokens=1024))
    eng.load()
    yield eng
    eng.close()


def generate(engine, messages, max_tokens=48, stop=None):
    return ''.join(engine.stream(messages, stop or threading.Event(), max_tokens, 0.0, 1.0))


def test_load_reports_and_warms_up(engine):
    info = engine.info
    assert info.engine == 'llama_cpp' and info.model.endswith('.gguf')
    assert info.context_tokens == 1024
    assert info.load_s > 0 and info.warmup_s > 0


def test_answers_and_is_deterministic_at_temperature_zero(engine):
    first = generate(engine, ask('What is the capital of France?'))
    assert 'Paris' in first
    assert generate(engine, ask('What is the capital of France?')) == first
    stats = engine.last_stats
    assert stats.finish == 'stop' and stats.generated_tokens > 0


def test_system_prefix_is_evaluated_once_and_reused(engine):
    engine.reset_cache()
    generate(engine, ask('Hello there.'), max_tokens=4)
    assert engine.last_stats.cached_tokens == 0                      # cold
    engine.prepare(SYSTEM)
    generate(engine, ask('What is two plus two?'), max_tokens=4)
    stats = engine.last_stats
    prefix_tokens = engine.count_tokens(DEFAULT_SYSTEM_PROMPT)
    assert stats.cached_tokens >= prefix_tokens                      # warm: only new text
    assert stats.prompt_tokens - stats.cached_tokens < 20


def test_stop_event_ends_generation_within_one_token(engine):
    stop = threading.Event()
    pieces = []
    for piece in engine.stream(ask('Tell me a long story about a dragon.'), stop, 200, 0.0, 1.0):
        pieces.append(piece)
        if len(pieces) == 3:
            stop.set()
    stats = engine.last_stats
    assert stats.finish == 'cancelled'
    assert stats.generated_tokens <= 3 and len(pieces) == 3


def test_max_tokens_limits_the_reply(engine):
    generate(engine, ask('Tell me a long story about a dragon.'), max_tokens=5)
    assert engine.last_stats.generated_tokens == 5
    assert engine.last_stats.finish == 'length'


def test_prompt_too_long_for_the_context_is_an_error_not_a_crash(engine):
    with pytest.raises(ContextOverflowError):
        generate(engine, ask('word ' * 2000))
    assert 'Paris' in generate(engine, ask('What is the capital of France?'))


def test_count_tokens(engine):
    assert engine.count_tokens('') == 0
    assert 1 <= engine.count_tokens('Paris') <= 2
    assert engine.count_tokens('The capital of France is Paris.') < 12


def test_missing_model_names_the_fetch_command(tmp_path):
    eng = create_engine(EngineConfig(model='qwen2.5-0.5b-instruct',
                                     model_path=str(tmp_path / 'nope.gguf')))
    with pytest.raises(ModelLoadError, match='wallie models fetch'):
        eng.load()


def test_unknown_engine_is_refused():
    with pytest.raises(ModelLoadError, match='unknown LLM engine'):
        create_engine(EngineConfig(engine='gpt'))
