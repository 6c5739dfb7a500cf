"""vLLM engine: the GPU option (Hugging Face id or local path, async streaming).

vLLM ships only a CUDA build, so it is an optional extra: importing this module works
without it; ``load()`` raises ModelLoadError naming the problem. The async engine runs on
its own event loop in a background thread; ``stream()`` bridges its output to the caller's
thread through a queue and aborts the request as soon as the stop event is set.
Prefix caching (``enable_prefix_caching``) gives the system-prompt reuse llama.cpp gets from
its KV cache.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
import time
from typing import Any, Iterator, Sequence

from wallie_llm.config import EngineConfig
from wallie_llm.engine import (
    ContextOverflowError,
    EngineError,
    EngineInfo,
    GenerationStats,
    LlmEngine,
    Message,
    ModelLoadError,
)

_DONE = object()


def vllm_available() -> bool:
    """True if vLLM imports and a CUDA device is visible."""
    try:
        import torch
        import vllm  # noqa: F401
    except Exception:
        return False
    return bool(torch.cuda.is_available())


class VllmEngine(LlmEngine):
    """Any chat model vLLM can serve, streamed through AsyncLLMEngine."""

    def __init__(self, cfg: EngineConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self._engine: Any = None
        self._tokenizer: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ids = itertools.count()
        self.info = EngineInfo(engine='vllm', model=cfg.model_path or cfg.model,
                               context_tokens=cfg.context_tokens)

    def _run(self, coro: Any, timeout: float | None = None) -> Any:
        if self._loop is None:
            raise EngineError('vLLM engine not loaded')
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def load(self) -> None:
        try:
            from vllm import AsyncEngineArgs, AsyncLLMEngine
        except Exception as exc:
            raise ModelLoadError(
                f'vLLM is not available ({exc.__class__.__name__}: {exc}); it needs a CUDA GPU '
                f'and `pip install vllm`. Use llm.engine=llama_cpp on CPU.') from exc
        model = self.cfg.model_path or self.cfg.model
        args = AsyncEngineArgs(model=model, gpu_memory_utilization=self.cfg.gpu_memory_fraction,
                               max_model_len=self.cfg.context_tokens,
                               enable_prefix_caching=True, disable_log_stats=True)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name='vllm-loop',
                                        daemon=True)
        self._thread.start()
        t0 = time.perf_counter()
        try:
            self._engine = AsyncLLMEngine.from_engine_args(args)
            self._tokenizer = self._run(self._engine.get_tokenizer(), 600)
        except Exception as exc:
            self.close()
            raise ModelLoadError(f'vLLM could not load {model}: {exc}') from exc
        self.info = EngineInfo(engine='vllm', model=model, context_tokens=self.cfg.context_tokens,
                               load_s=time.perf_counter() - t0,
                               extra={'gpu_memory_fraction': str(self.cfg.gpu_memory_fraction)})
        if self.cfg.warmup:
            t1 = time.perf_counter()
            for _ in self.stream([{'role': 'user', 'content': 'Say hi.'}], threading.Event(),
                                 4, 0.0, 1.0):
                pass
            self.info.warmup_s = time.perf_counter() - t1

    def render(self, messages: Sequence[Message]) -> str:
        if self._tokenizer is None:
            raise EngineError('vLLM engine not loaded')
        return str(self._tokenizer.apply_chat_template(list(messages), tokenize=False,
                                                       add_generation_prompt=True))

    def prepare(self, prefix: Sequence[Message]) -> None:
        # Automatic prefix caching keeps the system prompt's KV blocks after the first turn;
        # a one-token generation of the prefix puts them there now.
        if self._engine is not None and prefix:
            for _ in self.stream(prefix, threading.Event(), 1, 0.0, 1.0):
                pass

    def count_tokens(self, text: str) -> int:
        if self._tokenizer is None:
            raise EngineError('vLLM engine not loaded')
        return len(self._tokenizer.encode(text, add_special_tokens=False))

    def stream(self, messages: Sequence[Message], stop_event: threading.Event,
               max_tokens: int, temperature: float, top_p: float) -> Iterator[str]:
        from vllm import SamplingParams
        t0 = time.perf_counter()
        stats = GenerationStats()
        self.last_stats = stats
        prompt = self.render(messages)
        stats.prompt_tokens = len(self._tokenizer.encode(prompt, add_special_tokens=False))
        if stats.prompt_tokens + 4 >= self.context_tokens:
            stats.finish = 'error'
            raise ContextOverflowError(f'prompt of {stats.prompt_tokens} tokens does not fit '
                                       f'the {self.context_tokens}-token context')
        params = SamplingParams(max_tokens=max_tokens, temperature=max(0.0, temperature),
                                top_p=top_p if temperature > 0 else 1.0)
        request_id = f'wallie-{next(self._ids)}'
        out: queue.Queue = queue.Queue()

        async def produce() -> None:
            sent = 0
            try:
                async for result in self._engine.generate(prompt, params, request_id):
                    if stop_event.is_set():
                        await self._engine.abort(request_id)
                        break
                    completion = result.outputs[0]
                    text = completion.text
                    if len(text) > sent:
                        out.put((text[sent:], len(completion.token_ids)))
                        sent = len(text)
                    if result.finished:
                        out.put(('', -1 if completion.finish_reason == 'length' else -2))
            except Exception as exc:  # surfaced in the caller's thread
                out.put(exc)
            finally:
                out.put(_DONE)

        if self._loop is None:
            raise EngineError('vLLM engine not loaded')
        future = asyncio.run_coroutine_threadsafe(produce(), self._loop)
        try:
            while True:
                try:
                    item = out.get(timeout=0.05)
                except queue.Empty:
                    if stop_event.is_set():
                        stats.finish = 'cancelled'
                        self._loop.call_soon_threadsafe(
                            lambda: asyncio.ensure_future(self._engine.abort(request_id)))
                        break
                    continue
                if item is _DONE:
                    break
                if isinstance(item, Exception):
                    stats.finish = 'error'
                    raise EngineError(f'vLLM generation failed: {item}') from item
                text, n = item
                if n == -1:
                    stats.finish = 'length'
                    continue
                if n == -2:
                    stats.finish = 'stop'
                    continue
                if stats.generated_tokens == 0:
                    stats.first_token_s = time.perf_counter() - t0
                stats.generated_tokens = n
                if stop_event.is_set():
                    stats.finish = 'cancelled'
                    break
                yield text
        finally:
            if not future.done():
                self._loop.call_soon_threadsafe(
                    lambda: asyncio.ensure_future(self._engine.abort(request_id)))
            stats.total_s = time.perf_counter() - t0
            if not stats.finish:
                stats.finish = 'cancelled' if stop_event.is_set() else 'stop'

    def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            shutdown = getattr(engine, 'shutdown', None)
            if shutdown is not None:
                try:
                    shutdown()
                except Exception:
                    pass
            del engine
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join(5)
            self._loop.close()
            self._loop = None
        try:
            import gc

            import torch
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:
            pass
