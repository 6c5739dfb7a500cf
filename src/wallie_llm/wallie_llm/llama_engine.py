"""llama.cpp engine (llama-cpp-python): the CPU default, GGUF models from the model store.

Prefix reuse: llama.cpp keeps the KV cache of the last evaluated tokens, and
``Llama.generate`` reuses the longest common token prefix with the new prompt. The system
prompt is evaluated once in ``prepare()``; every later prompt starts with the same tokens,
so a turn prefills only the history that changed and the new user text.
"""

from __future__ import annotations

import codecs
import os
import threading
import time
from pathlib import Path
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

# Used when a GGUF carries no chat template (every Qwen2.5 GGUF does).
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
WARMUP_MESSAGES: list[Message] = [{'role': 'user', 'content': 'Say hi.'}]
CONTEXT_MARGIN = 4   # tokens kept free at the end of the context


def model_file(cfg: EngineConfig) -> Path:
    """The GGUF file to load: explicit path, a path given as `model`, or the model store."""
    from wallie_common import model_store
    if cfg.model_path:
        return model_store.resolve_file(cfg.model, cfg.model_path)
    as_path = Path(cfg.model).expanduser()
    if cfg.model.endswith('.gguf') or as_path.is_absolute():
        if not as_path.exists():
            raise ModelLoadError(f'model file {as_path} does not exist')
        return as_path
    return model_store.resolve_file(cfg.model)


class LlamaCppEngine(LlmEngine):
    """Qwen2.5 (or any chat GGUF) through llama-cpp-python."""

    def __init__(self, cfg: EngineConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self._llm: Any = None
        self._format: Any = None
        self._lock = threading.Lock()      # one generation at a time per context
        self.info = EngineInfo(engine='llama_cpp', model=cfg.model,
                               context_tokens=cfg.context_tokens)

    # -- loading ----------------------------------------------------------------------
    def load(self) -> None:
        try:
            from llama_cpp import Llama
        except ImportError as exc:  # pragma: no cover - the setup script installs it
            raise ModelLoadError(
                f'llama-cpp-python is not installed ({exc}); run scripts/setup.sh') from exc
        from wallie_common.model_store import ModelStoreError
        try:
            path = model_file(self.cfg)
        except ModelStoreError as exc:
            raise ModelLoadError(str(exc)) from exc
        threads = self.cfg.threads or (os.cpu_count() or 1)
        t0 = time.perf_counter()
        try:
            self._llm = Llama(model_path=str(path), n_ctx=self.cfg.context_tokens,
                              n_threads=threads, n_threads_batch=threads,
                              n_batch=self.cfg.batch_tokens, verbose=False)
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(f'llama.cpp could not load {path}: {exc}') from exc
        self.info = EngineInfo(engine='llama_cpp', model=str(path),
                               context_tokens=int(self._llm.n_ctx()),
                               load_s=time.perf_counter() - t0,
                               extra={'threads': str(threads)})
        self._format = self._make_formatter()
        if self.cfg.warmup:
            # The first decode after load pages the weights in (mmap) and is several
            # times slower than the next; pay that here, not in the user's first turn.
            t1 = time.perf_counter()
            for _ in self.stream(WARMUP_MESSAGES, threading.Event(), 4, 0.0, 1.0):
                pass
            self.info.warmup_s = time.perf_counter() - t1

    def _make_formatter(self) -> Any:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        meta = getattr(self._llm, 'metadata', {}) or {}
        template = meta.get('tokenizer.chat_template') or CHATML_TEMPLATE

        def token_text(key: str) -> str:
            tid = meta.get(key)
            if tid is None:
                return ''
            try:
                return bytes(self._llm.detokenize([int(tid)], special=True)).decode(
                    'utf-8', 'replace')
            except Exception:
                return ''
        return Jinja2ChatFormatter(template, eos_token=token_text('tokenizer.ggml.eos_token_id'),
                                   bos_token=token_text('tokenizer.ggml.bos_token_id'),
                                   add_generation_prompt=True)

    # -- prompts ----------------------------------------------------------------------
    def render(self, messages: Sequence[Message], generation_prompt: bool = True) -> str:
        """The prompt text for `messages` in the model's chat template."""
        if self._llm is None:
            raise EngineError('model not loaded')
        self._format.add_generation_prompt = generation_prompt
        try:
            return str(self._format(messages=list(messages)).prompt)
        finally:
            self._format.add_generation_prompt = True

    def _tokens(self, prompt: str) -> list[int]:
        # special=True: the template's own markers (<|im_start|>) become control tokens.
        # User text was cleaned of such markers by the input sanitiser beforehand.
        return list(self._llm.tokenize(prompt.encode('utf-8'), add_bos=False, special=True))

    def prepare(self, prefix: Sequence[Message]) -> None:
        if self._llm is None or not prefix:
            return
        tokens = self._tokens(self.render(prefix, generation_prompt=False))
        if len(tokens) + CONTEXT_MARGIN >= self.context_tokens:
            raise ContextOverflowError(f'system prompt of {len(tokens)} tokens does not fit '
                                       f'the {self.context_tokens}-token context')
        with self._lock:
            cached = self._llm.longest_token_prefix(list(self._llm._input_ids), tokens)
            if cached == len(tokens):
                return
            self._llm.reset()
            self._llm.eval(tokens)

    def count_tokens(self, text: str) -> int:
        if self._llm is None:
            raise EngineError('model not loaded')
        return len(self._llm.tokenize(text.encode('utf-8', 'replace'), add_bos=False,
                                      special=False))

    def reset_cache(self) -> None:
        if self._llm is not None:
            with self._lock:
                self._llm.reset()
                self._llm._ctx.kv_cache_clear()

    # -- generation -------------------------------------------------------------------
    def stream(self, messages: Sequence[Message], stop_event: threading.Event,
               max_tokens: int, temperature: float, top_p: float) -> Iterator[str]:
        if self._llm is None:
            raise EngineError('model not loaded')
        import llama_cpp
        t0 = time.perf_counter()
        stats = GenerationStats()
        self.last_stats = stats
        tokens = self._tokens(self.render(messages))
        stats.prompt_tokens = len(tokens)
        room = self.context_tokens - len(tokens) - CONTEXT_MARGIN
        if room < 1:
            stats.finish = 'error'
            raise ContextOverflowError(f'prompt of {len(tokens)} tokens leaves no room in the '
                                       f'{self.context_tokens}-token context')
        max_tokens = max(1, min(max_tokens, room))
        llm = self._llm
        vocab = llm._model.vocab
        decoder = codecs.getincrementaldecoder('utf-8')(errors='replace')
        with self._lock:
            stats.cached_tokens = max(0, llm.longest_token_prefix(list(llm._input_ids), tokens)
                                      if llm.n_tokens else 0)
            gen = llm.generate(tokens, temp=max(0.0, temperature), top_p=top_p, top_k=40,
                               min_p=0.05, repeat_penalty=1.05)
            try:
                for token in gen:
                    if stats.generated_tokens == 0:
                        stats.first_token_s = time.perf_counter() - t0
                    if stop_event.is_set():
                        stats.finish = 'cancelled'
                        break
                    if llama_cpp.llama_vocab_is_eog(vocab, token):
                        stats.finish = 'stop'
                        break
                    stats.generated_tokens += 1
                    piece = decoder.decode(bytes(llm.detokenize([token])))
                    if piece:
                        yield piece
                    if stop_event.is_set():
                        stats.finish = 'cancelled'
                        break
                    if stats.generated_tokens >= max_tokens:
                        stats.finish = 'length'
                        break
                tail = decoder.decode(b'', final=True)
                if tail and stats.finish != 'cancelled':
                    yield tail
            finally:
                gen.close()
                stats.total_s = time.perf_counter() - t0
                if not stats.finish:
                    stats.finish = 'cancelled' if stop_event.is_set() else 'error'

    def close(self) -> None:
        with self._lock:
            llm, self._llm = self._llm, None
            if llm is not None:
                close = getattr(llm, 'close', None)
                if close is not None:
                    close()
                del llm
