"""Test double for the engine interface (unit tests of the glue only)."""

from __future__ import annotations

import threading
import time
from typing import Iterator, Sequence

from wallie_llm.engine import (
    EngineInfo,
    GenerationStats,
    LlmEngine,
    Message,
    ModelLoadError,
    approx_tokens,
)


class ScriptedEngine(LlmEngine):
    """Replies with a fixed text per question, word by word, honouring the stop event."""

    def __init__(self, replies: dict[str, str] | None = None, default: str = 'Okay.',
                 token_delay_s: float = 0.0, fail_load: bool = False,
                 context_tokens: int = 2048) -> None:
        super().__init__()
        self.replies = replies or {}
        self.default = default
        self.token_delay_s = token_delay_s
        self.fail_load = fail_load
        self.loaded = False
        self.closed = False
        self.prepared: list[list[Message]] = []
        self.prompts: list[list[Message]] = []
        self.tokens_after_stop = 0
        self.info = EngineInfo(engine='scripted', model='scripted',
                               context_tokens=context_tokens)

    def load(self) -> None:
        if self.fail_load:
            raise ModelLoadError('scripted load failure')
        self.loaded = True

    def prepare(self, prefix: Sequence[Message]) -> None:
        self.prepared.append(list(prefix))

    def stream(self, messages: Sequence[Message], stop_event: threading.Event,
               max_tokens: int, temperature: float, top_p: float) -> Iterator[str]:
        assert self.loaded and not self.closed
        self.prompts.append(list(messages))
        stats = GenerationStats(prompt_tokens=sum(approx_tokens(m['content'])
                                                  for m in messages))
        self.last_stats = stats
        text = self.replies.get(messages[-1]['content'], self.default)
        t0 = time.perf_counter()
        words = text.split(' ')
        for i, word in enumerate(words):
            if stop_event.is_set():
                stats.finish = 'cancelled'
                break
            if stats.generated_tokens >= max_tokens:
                stats.finish = 'length'
                break
            if self.token_delay_s:
                time.sleep(self.token_delay_s)
            if stats.generated_tokens == 0:
                stats.first_token_s = time.perf_counter() - t0
            stats.generated_tokens += 1
            yield word if i == 0 else ' ' + word
        else:
            stats.finish = 'stop'
        stats.total_s = time.perf_counter() - t0

    def count_tokens(self, text: str) -> int:
        return approx_tokens(text)

    def close(self) -> None:
        self.closed = True
