"""Conversation memory: persona, rolling history within a token budget, forgetting.

The prompt of a turn is: the system prompt (persona, plus a one-line note of dropped
topics), then as many past exchanges as fit the budget, newest kept, then the new user
text. Dropped exchanges are gone for good (a note of their topics stays if enabled), so
the prompt never overflows the context. The assistant's side of an exchange can be trimmed
to what the user actually heard before an interrupt.

Export/import as JSON lets the manager keep the conversation across an LLM restart.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from wallie_llm.engine import Message, approx_tokens

MESSAGE_OVERHEAD_TOKENS = 5        # <|im_start|>role\n ... <|im_end|>\n
HISTORY_FORMAT = 'wallie.conversation/1'
MAX_IMPORT_TURNS = 200
MAX_IMPORT_CHARS = 200_000
SUMMARY_ITEM_CHARS = 60


@dataclass
class Exchange:
    """One user turn and the assistant's reply to it."""

    turn_id: str
    user: str
    assistant: str
    stamp: float = 0.0                       # wall-clock seconds when it happened
    _tokens: int | None = None

    def tokens(self, count: Callable[[str], int]) -> int:
        if self._tokens is None:
            self._tokens = (count(self.user) + count(self.assistant)
                            + 2 * MESSAGE_OVERHEAD_TOKENS)
        return self._tokens

    def messages(self) -> list[Message]:
        out = [{'role': 'user', 'content': self.user}]
        if self.assistant:
            out.append({'role': 'assistant', 'content': self.assistant})
        return out


class HistoryFormatError(ValueError):
    """Imported history JSON is not in the expected shape; the message says where."""


class ConversationMemory:
    """Thread-safe rolling conversation history (the node's worker and callbacks share it)."""

    def __init__(self, system_prompt: str, count_tokens: Callable[[str], int] = approx_tokens,
                 history_max_tokens: int = 1024, prompt_budget_tokens: int = 1900,
                 idle_timeout_s: float = 300.0, summarize_dropped: bool = True,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.RLock()
        self._system = system_prompt
        self._count = count_tokens
        self.history_max_tokens = history_max_tokens
        self.prompt_budget_tokens = prompt_budget_tokens
        self.idle_timeout_s = idle_timeout_s
        self.summarize_dropped = summarize_dropped
        self._clock = clock
        self._wall = wall_clock
        self._turns: list[Exchange] = []
        self._dropped_topics: list[str] = []
        self._last_activity = clock()
        self.revision = 0                     # bumps on every change (for publishing)

    # -- configuration ----------------------------------------------------------------
    @property
    def system_prompt(self) -> str:
        return self._system

    @system_prompt.setter
    def system_prompt(self, text: str) -> None:
        with self._lock:
            self._system = text
            self._changed()

    def set_token_counter(self, count: Callable[[str], int]) -> None:
        """Use the loaded model's tokenizer (cached counts are recomputed)."""
        with self._lock:
            self._count = count
            for turn in self._turns:
                turn._tokens = None

    # -- reading ----------------------------------------------------------------------
    def system_messages(self) -> list[Message]:
        """The fixed prompt prefix (what the engine caches)."""
        with self._lock:
            content = self._system
            if self._dropped_topics:
                content += ('\nEarlier in this conversation the user asked about: '
                            + '; '.join(self._dropped_topics) + '.')
            return [{'role': 'system', 'content': content}]

    def messages_for(self, user_text: str, reserve_tokens: int = 0) -> list[Message]:
        """The whole prompt for a new user turn, dropping the oldest turns to fit the budget.

        `reserve_tokens` (e.g. the reply's max tokens) is kept free on top of the budget.
        """
        with self._lock:
            self.expire_if_idle()
            user_cost = self._count(user_text) + MESSAGE_OVERHEAD_TOKENS + 3
            while True:
                system = self.system_messages()
                fixed = self._count(system[0]['content']) + MESSAGE_OVERHEAD_TOKENS + user_cost
                budget = min(self.history_max_tokens,
                             self.prompt_budget_tokens - reserve_tokens - fixed)
                used = sum(t.tokens(self._count) for t in self._turns)
                if used <= max(0, budget) or not self._turns:
                    break
                self._drop_oldest()
            out = list(system)
            for turn in self._turns:
                out.extend(turn.messages())
            out.append({'role': 'user', 'content': user_text})
            return out

    def turns(self) -> list[Exchange]:
        with self._lock:
            return [Exchange(t.turn_id, t.user, t.assistant, t.stamp) for t in self._turns]

    def __len__(self) -> int:
        with self._lock:
            return len(self._turns)

    # -- writing ----------------------------------------------------------------------
    def add_exchange(self, turn_id: str, user: str, assistant: str) -> None:
        with self._lock:
            self._turns.append(Exchange(turn_id, user, assistant.strip(), self._wall()))
            self.touch()
            self._changed()

    def trim_assistant(self, turn_id: str, heard: str) -> bool:
        """Keep only the heard part of the assistant's reply of `turn_id`."""
        with self._lock:
            for turn in reversed(self._turns):
                if turn.turn_id == turn_id:
                    heard = heard.strip()
                    if heard == turn.assistant:
                        return False
                    turn.assistant = heard
                    turn._tokens = None
                    self._changed()
                    return True
            return False

    def forget_last(self) -> bool:
        """Remove the latest exchange ("forget that")."""
        with self._lock:
            if not self._turns:
                return False
            self._turns.pop()
            self._changed()
            return True

    def reset(self) -> None:
        """Forget the whole conversation (the system prompt stays)."""
        with self._lock:
            self._turns.clear()
            self._dropped_topics.clear()
            self.touch()
            self._changed()

    def touch(self) -> None:
        with self._lock:
            self._last_activity = self._clock()

    def expire_if_idle(self) -> bool:
        """Reset if nothing happened for `idle_timeout_s`; True if it did."""
        with self._lock:
            if self.idle_timeout_s <= 0 or not (self._turns or self._dropped_topics):
                return False
            if self._clock() - self._last_activity < self.idle_timeout_s:
                return False
            self.reset()
            return True

    def _drop_oldest(self) -> None:
        turn = self._turns.pop(0)
        if self.summarize_dropped:
            topic = ' '.join(turn.user.split())
            if len(topic) > SUMMARY_ITEM_CHARS:
                topic = topic[:SUMMARY_ITEM_CHARS].rsplit(' ', 1)[0] + '...'
            self._dropped_topics.append(topic)
            del self._dropped_topics[:-4]   # the note stays a few dozen tokens at most
        self._changed()

    def _changed(self) -> None:
        self.revision += 1

    # -- persistence ------------------------------------------------------------------
    def export_json(self) -> str:
        with self._lock:
            return json.dumps({
                'format': HISTORY_FORMAT,
                'dropped_topics': list(self._dropped_topics),
                'turns': [{'turn_id': t.turn_id, 'user': t.user, 'assistant': t.assistant,
                           'stamp': t.stamp} for t in self._turns],
            }, ensure_ascii=False)

    def import_json(self, text: str) -> int:
        """Replace the history with an exported one; return the number of turns loaded.

        An empty string clears the history. Raises HistoryFormatError (nothing changed).
        """
        turns, topics = parse_history(text)
        with self._lock:
            self._turns = turns
            self._dropped_topics = topics
            self.touch()
            self._changed()
            return len(turns)


def parse_history(text: str) -> tuple[list[Exchange], list[str]]:
    """Validate exported history JSON; raise HistoryFormatError with the reason."""
    if not text.strip():
        return [], []
    if len(text) > MAX_IMPORT_CHARS:
        raise HistoryFormatError(f'history JSON is {len(text)} characters '
                                 f'(limit {MAX_IMPORT_CHARS})')
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HistoryFormatError(f'history is not valid JSON: {exc}') from exc
    if not isinstance(data, dict) or data.get('format') != HISTORY_FORMAT:
        raise HistoryFormatError(f"history JSON must be an object with format "
                                 f"'{HISTORY_FORMAT}'")
    raw_turns = data.get('turns', [])
    if not isinstance(raw_turns, list) or len(raw_turns) > MAX_IMPORT_TURNS:
        raise HistoryFormatError(f"'turns' must be a list of at most {MAX_IMPORT_TURNS}")
    turns = []
    for i, item in enumerate(raw_turns):
        if not isinstance(item, dict):
            raise HistoryFormatError(f'turns[{i}] is not an object')
        user, assistant = item.get('user'), item.get('assistant', '')
        if not isinstance(user, str) or not isinstance(assistant, str):
            raise HistoryFormatError(f"turns[{i}]: 'user' and 'assistant' must be strings")
        stamp = item.get('stamp', 0.0)
        turns.append(Exchange(str(item.get('turn_id', '')), user, assistant,
                              float(stamp) if isinstance(stamp, (int, float)) else 0.0))
    topics = data.get('dropped_topics', [])
    if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
        raise HistoryFormatError("'dropped_topics' must be a list of strings")
    return turns, topics[-4:]


# ------------------------------------------------------------------ spoken commands

FORGET_LAST = 'forget_last'
RESET = 'reset'
_POLITE = r'(?:(?:hey |ok |okay )?wallie,? |please |can you |could you |would you )*'
_TAIL = r'(?: please| now| thanks| thank you)*'
_FORGET_LAST = re.compile(
    rf'^{_POLITE}(?:forget (?:that|this|it|what i (?:just )?said|the last '
    rf'(?:thing|question|answer))|scratch that|delete that|don\'t remember that){_TAIL}$')
_RESET = re.compile(
    rf'^{_POLITE}(?:forget everything|forget our conversation|start over|start again|'
    rf'(?:start )?a new conversation|new conversation|reset (?:the |our )?conversation|'
    rf'clear (?:the |our |your )?(?:conversation|history|memory)){_TAIL}$')
COMMAND_REPLIES = {FORGET_LAST: "Okay, I've forgotten that.",
                   RESET: "Okay, let's start over."}


def voice_command(text: str) -> str | None:
    """FORGET_LAST or RESET if the whole utterance is such a command, else None."""
    norm = ' '.join(re.sub(r"[^\w' ]+", ' ', text.lower()).split())
    if _FORGET_LAST.match(norm):
        return FORGET_LAST
    if _RESET.match(norm):
        return RESET
    return None
