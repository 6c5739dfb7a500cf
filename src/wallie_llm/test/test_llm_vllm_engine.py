"""vLLM engine: runs for real only with vLLM and a CUDA GPU; skips cleanly otherwise."""

import os
import threading

import pytest

from wallie_llm.config import EngineConfig
from wallie_llm.engine import ModelLoadError, create_engine
from wallie_llm.vllm_engine import vllm_available

# A small chat model the GPU machine has locally (HF id resolved from its cache, or a path).
VLLM_MODEL = os.environ.get('WALLIE_VLLM_MODEL', 'Qwen/Qwen2.5-0.5B-Instruct')


def test_without_vllm_load_fails_with_a_clear_message():
    if vllm_available():
        pytest.skip('vLLM is available here')
    eng = create_engine(EngineConfig(engine='vllm', model=VLLM_MODEL))
    with pytest.raises(ModelLoadError, match='vLLM'):
        eng.load()


@pytest.mark.gpu
def test_vllm_streams_answers_and_stops():
    if not vllm_available():
        pytest.skip('needs vLLM and a CUDA GPU')
    eng = create_engine(EngineConfig(engine='vllm', model=VLLM_MODEL, context_tokens=2048,
                                     gpu_memory_fraction=0.35))
    eng.load()
    try:
        system = [{'role': 'system', 'content': 'Answer in one short sentence.'}]
        eng.prepare(system)
        msgs = system + [{'role': 'user', 'content': 'What is the capital of France?'}]
        text = ''.join(eng.stream(msgs, threading.Event(), 32, 0.0, 1.0))
        assert 'Paris' in text
        stop = threading.Event()
        pieces = []
        story = system + [{'role': 'user', 'content': 'Tell me a long story.'}]
        for piece in eng.stream(story, stop, 300, 0.0, 1.0):
            pieces.append(piece)
            if len(pieces) == 3:
                stop.set()
        assert eng.last_stats.finish == 'cancelled' and len(pieces) == 3
    finally:
        eng.close()
