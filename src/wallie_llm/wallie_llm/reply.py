"""One reply, start to end: prompt from memory, stream, chunk, shape, bound, commit.

Pure Python (no ROS): the node calls `ReplyGenerator.run()` on its worker thread and
publishes what `on_chunk` hands it; the benchmark drives the same code directly.
Memory is changed only by `commit()`, so a speculative reply that gets discarded leaves
no trace.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from wallie_llm.chunker import ClauseChunker
from wallie_llm.config import ChunkerConfig, GenerationConfig
from wallie_llm.engine import EngineError, GenerationStats, LlmEngine
from wallie_llm.memory import (
    COMMAND_REPLIES,
    FORGET_LAST,
    RESET,
    ConversationMemory,
    voice_command,
)
from wallie_llm.speech_text import bound_reply, shape_for_speech

ChunkCallback = Callable[[int, str, bool], None]     # (index, text, is_final)


@dataclass
class ReplyResult:
    """What one reply produced."""

    turn_id: str
    user_text: str
    chunks: list[str] = field(default_factory=list)    # spoken chunks, in order
    finish: str = ''          # 'stop', 'length', 'cancelled', 'error', 'command', 'not_heard'
    not_heard: str = ''       # why the transcript was not answered (finish 'not_heard')
    command: str | None = None
    error: str = ''
    stats: GenerationStats = field(default_factory=GenerationStats)
    start_ns: int = 0
    first_token_ns: int = 0
    first_chunk_ns: int = 0
    done_ns: int = 0

    @property
    def text(self) -> str:
        return ' '.join(c for c in self.chunks if c)

    @property
    def cancelled(self) -> bool:
        return self.finish == 'cancelled'


def heard_text(chunks: list[str], segments_complete: int, segment_fraction: float) -> str:
    """The part of a reply the player reports as heard: whole chunks + a share of the next."""
    n = max(0, min(segments_complete, len(chunks)))
    heard = [c for c in chunks[:n] if c]
    if n < len(chunks) and segment_fraction > 0:
        words = chunks[n].split()
        k = int(len(words) * min(1.0, segment_fraction) + 0.5)
        if k:
            heard.append(' '.join(words[:k]) + ('' if k == len(words) else '...'))
    return ' '.join(heard)


class ReplyGenerator:
    """Runs replies against an engine and a memory (one at a time per engine)."""

    def __init__(self, engine: LlmEngine, memory: ConversationMemory,
                 generation: GenerationConfig | None = None,
                 chunking: ChunkerConfig | None = None,
                 voice_commands: bool = True,
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.engine = engine
        self.memory = memory
        self.generation = generation or GenerationConfig()
        self.chunking = chunking or ChunkerConfig()
        self.voice_commands = voice_commands
        self._clock = clock_ns

    def prepare(self) -> None:
        """Evaluate the system-prompt prefix in the engine (after load or a prompt change)."""
        self.engine.prepare(self.memory.system_messages())

    def run(self, turn_id: str, user_text: str, stop_event: threading.Event,
            on_chunk: ChunkCallback | None = None,
            on_first_token: Callable[[int], None] | None = None,
            not_heard: str = '') -> ReplyResult:
        """Generate the reply to `user_text` (already sanitised); never raises EngineError.

        `not_heard`: the transcript was unreliable for this reason; the reply is the short
        ``not_heard_reply`` instead of an answer, and memory keeps nothing of the turn.
        """
        gen = self.generation
        res = ReplyResult(turn_id, user_text, start_ns=self._clock())
        emit = on_chunk or (lambda i, t, f: None)

        def send(text: str, final: bool) -> None:
            if text and not res.first_chunk_ns:
                res.first_chunk_ns = self._clock()
            if text:
                res.chunks.append(text)
            emit(len(res.chunks) - 1 if text else len(res.chunks), text, final)

        if not_heard:
            res.finish, res.not_heard = 'not_heard', not_heard
            res.first_token_ns = self._clock()
            send(gen.not_heard_reply, True)
            res.done_ns = self._clock()
            return res
        command = voice_command(user_text) if self.voice_commands else None
        if command is not None:
            res.command, res.finish = command, 'command'
            res.first_token_ns = self._clock()
            send(COMMAND_REPLIES[command], True)
            res.done_ns = self._clock()
            return res

        chunker = ClauseChunker(self.chunking)
        spoken_chars = 0
        length_hit = False
        try:
            messages = self.memory.messages_for(user_text, reserve_tokens=gen.max_tokens)
            pieces = self.engine.stream(messages, stop_event, gen.max_tokens,
                                        gen.temperature, gen.top_p)
            for piece in pieces:
                if not res.first_token_ns:
                    res.first_token_ns = self._clock()
                    if on_first_token is not None:
                        on_first_token(res.first_token_ns)
                for raw in chunker.feed(piece):
                    text = shape_for_speech(raw)
                    if not text or stop_event.is_set():
                        continue
                    if spoken_chars + len(text) > gen.max_reply_chars:
                        if not res.chunks:
                            send(bound_reply(text, gen.max_reply_chars)[0], False)
                        length_hit = True
                        break
                    spoken_chars += len(text) + 1
                    send(text, False)
                if length_hit:
                    break
            close = getattr(pieces, 'close', None)
            if close is not None:
                close()
        except EngineError as exc:
            res.stats = self.engine.last_stats
            res.finish, res.error = 'error', str(exc)
            send('', True)
            res.done_ns = self._clock()
            return res
        res.stats = self.engine.last_stats
        if stop_event.is_set():
            res.finish = 'cancelled'
            send('', True)
        else:
            tail = ' '.join(shape_for_speech(c) for c in chunker.flush())
            if length_hit:
                tail = ''
            elif tail and spoken_chars + len(tail) > gen.max_reply_chars:
                tail = bound_reply(tail, max(0, gen.max_reply_chars - spoken_chars))[0]
                length_hit = True
            res.finish = 'length' if length_hit else (res.stats.finish or 'stop')
            send(tail.strip(), True)
        res.done_ns = self._clock()
        return res

    def commit(self, res: ReplyResult, assistant_text: str | None = None) -> None:
        """Record the exchange (or apply the spoken command) in memory."""
        if res.command == FORGET_LAST:
            self.memory.forget_last()
        elif res.command == RESET:
            self.memory.reset()
        elif res.finish not in ('error', 'not_heard'):
            self.memory.add_exchange(res.turn_id, res.user_text,
                                     res.text if assistant_text is None else assistant_text)
        self.memory.touch()
