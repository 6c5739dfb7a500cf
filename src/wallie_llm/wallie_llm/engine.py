"""The LLM engine interface: the node drives any engine through this and nothing else.

An engine loads a chat model, warms it up, keeps the system-prompt prefix evaluated
(prefix/KV cache) and streams reply text piece by piece, checking a stop event between
tokens so an interrupt ends generation within one token.
"""

from __future__ import annotations

import abc
import os
import threading
from dataclasses import dataclass, field
from typing import Iterator, Sequence

from wallie_llm.config import ENGINES, EngineConfig

Message = dict[str, str]   # {'role': 'system' | 'user' | 'assistant', 'content': str}


class EngineError(RuntimeError):
    """Generation failed (the engine stays usable unless `closed`)."""


class ModelLoadError(EngineError):
    """The model could not be loaded: missing file, bad format, no GPU, out of memory."""


class ContextOverflowError(EngineError):
    """The prompt does not fit into the context window."""


@dataclass
class GenerationStats:
    """What the last `stream()` call did (times in seconds from the call)."""

    prompt_tokens: int = 0
    cached_tokens: int = 0        # prompt tokens reused from the prefix/KV cache
    generated_tokens: int = 0
    first_token_s: float = float('nan')
    total_s: float = float('nan')
    finish: str = ''              # 'stop' (end of turn), 'length', 'cancelled', 'error'

    @property
    def tokens_per_s(self) -> float:
        """Decode speed after the first token (NaN if unknown)."""
        if self.generated_tokens < 2 or not self.total_s > self.first_token_s:
            return float('nan')
        return (self.generated_tokens - 1) / (self.total_s - self.first_token_s)


@dataclass
class EngineInfo:
    """What is loaded, for logs and diagnostics."""

    engine: str
    model: str
    context_tokens: int
    load_s: float = float('nan')
    warmup_s: float = float('nan')
    extra: dict[str, str] = field(default_factory=dict)


class LlmEngine(abc.ABC):
    """A chat model that streams replies and can be stopped between tokens."""

    def __init__(self) -> None:
        self.last_stats = GenerationStats()
        self.info = EngineInfo(engine='', model='', context_tokens=0)

    @abc.abstractmethod
    def load(self) -> None:
        """Load the model and run the warm-up generation (blocking; raises ModelLoadError)."""

    def prepare(self, prefix: Sequence[Message]) -> None:
        """Evaluate the fixed prompt prefix (system prompt) so turns only prefill new text."""

    @abc.abstractmethod
    def stream(self, messages: Sequence[Message], stop_event: threading.Event,
               max_tokens: int, temperature: float, top_p: float) -> Iterator[str]:
        """Yield reply text pieces (about one token each) until done or `stop_event` is set.

        Updates `last_stats`. Raises ContextOverflowError if the prompt cannot fit.
        """

    @abc.abstractmethod
    def count_tokens(self, text: str) -> int:
        """Number of tokens `text` takes in this model's vocabulary."""

    @property
    def context_tokens(self) -> int:
        return self.info.context_tokens

    def reset_cache(self) -> None:
        """Forget every cached prompt prefix (benchmarks measure a cold prefix with it)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Free the model's memory; the engine cannot be used afterwards."""


def create_engine(cfg: EngineConfig) -> LlmEngine:
    """Instantiate (not load) the engine `cfg.engine` names; optional ones import lazily."""
    if cfg.engine == 'llama_cpp':
        from wallie_llm.llama_engine import LlamaCppEngine
        return LlamaCppEngine(cfg)
    if cfg.engine == 'vllm':
        from wallie_llm.vllm_engine import VllmEngine
        return VllmEngine(cfg)
    raise ModelLoadError(f'unknown LLM engine {cfg.engine!r} (one of {", ".join(ENGINES)})')


def check_model(cfg: EngineConfig) -> str | None:
    """Why the model `cfg` names cannot be loaded here, or None. Cheap (no loading): a
    llama.cpp model must be a .gguf file or complete in the model store; a vLLM model given
    as a path must exist (a Hugging Face id is vLLM's to find in its offline cache)."""
    from wallie_common.model_store import ModelStoreError
    if cfg.engine == 'llama_cpp':
        from wallie_llm.llama_engine import model_file
        try:
            model_file(cfg)
        except (ModelStoreError, ModelLoadError) as exc:
            return str(exc)
        return None
    if cfg.engine == 'vllm':
        path = cfg.model_path or (cfg.model if cfg.model.startswith(('/', '.', '~')) else '')
        if path and not os.path.exists(os.path.expanduser(path)):
            return f'vLLM model path {path!r} does not exist'
    return None


def approx_tokens(text: str) -> int:
    """Token estimate used before a model is loaded (about 3.5 characters per token)."""
    return max(1, (len(text) * 2 + 6) // 7) if text else 0
