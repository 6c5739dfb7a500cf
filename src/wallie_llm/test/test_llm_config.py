"""The llm parameter table and its mapping (no ROS): the table's defaults are the config
dataclasses' defaults, and set values land in the right field."""

import pytest

from wallie_common.param_table import defaults
from wallie_llm.config import (
    DEFAULT_SYSTEM_PROMPT,
    PARAMS,
    ChunkerConfig,
    EngineConfig,
    GenerationConfig,
    MemoryConfig,
    SchedulerConfig,
    chunker_from_params,
    engine_from_params,
    generation_from_params,
    memory_from_params,
    scheduler_from_params,
)


def test_defaults_are_the_configs_defaults():
    p = defaults(PARAMS)
    assert engine_from_params(p) == EngineConfig()
    assert generation_from_params(p) == GenerationConfig()
    assert chunker_from_params(p) == ChunkerConfig()
    assert memory_from_params(p) == MemoryConfig()
    assert memory_from_params(p).system_prompt == DEFAULT_SYSTEM_PROMPT
    assert scheduler_from_params(p) == SchedulerConfig()


def test_values_land_in_the_config():
    p = defaults(PARAMS)
    p.update({'llm.model_path': '/models/x.gguf', 'llm.threads': 4, 'llm.max_tokens': 12,
              'llm.chunk.max_chars': 80, 'llm.system_prompt': 'Be brief.',
              'llm.history.publish': False, 'llm.speculative_partials': False})
    assert (engine_from_params(p).model_path, engine_from_params(p).threads) == \
        ('/models/x.gguf', 4)
    assert generation_from_params(p).max_tokens == 12
    assert chunker_from_params(p).max_chars == 80
    assert memory_from_params(p).system_prompt == 'Be brief.'
    s = scheduler_from_params(p)
    assert (s.publish_history, s.speculative_partials) == (False, False)


@pytest.mark.parametrize('spec', PARAMS, ids=[s.name for s in PARAMS])
def test_every_parameter_documented_and_its_default_valid(spec):
    assert len(spec.description) > 10
    assert spec.check(spec.default) is None
