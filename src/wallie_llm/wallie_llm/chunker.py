"""Clause chunker: cut streamed reply text into speakable pieces as early as possible.

The first chunk goes out as soon as it can be spoken on its own: at the first clause break
(comma, semicolon, colon, dash) after a few words, at a sentence end, or, when neither comes,
at a word boundary after `first_max_words` words -- backed off over a trailing article,
preposition or auxiliary, so the piece ends where a speaker could pause. Later chunks are
whole sentences (the TTS sounds better with a whole sentence and is by then ahead of
playback), cut at a clause break only when a sentence runs past `max_chars`.

A boundary is confirmed only by the character after it (a space or a newline), so "3.5",
"1,000", "e.g." and "Dr. Smith" are not cut; the text's end confirms the last boundary.
"""

from __future__ import annotations

import re

from wallie_common.text import ends_on_continuation
from wallie_llm.config import ChunkerConfig

SENTENCE_END = '.!?…'
CLAUSE_BREAK = ',;:—–'
CLOSERS = '"\')]}»”’'
ABBREVIATIONS = frozenset({
    'mr', 'mrs', 'ms', 'dr', 'prof', 'sr', 'jr', 'st', 'vs', 'etc', 'e.g', 'i.e', 'approx',
    'no', 'fig', 'inc', 'ltd', 'co', 'mt', 'ft', 'jan', 'feb', 'mar', 'apr', 'jun', 'jul',
    'aug', 'sep', 'sept', 'oct', 'nov', 'dec', 'u.s', 'u.k', 'a.m', 'p.m',
})
_WORD = re.compile(r'\S+')
_LIST_MARKER = re.compile(r'(?:^|\n)\s*\d{1,3}$')


def _word_count(text: str) -> int:
    return len(_WORD.findall(text))


class ClauseChunker:
    """Feed text pieces in, get speakable chunks out (no markdown shaping here)."""

    def __init__(self, cfg: ChunkerConfig | None = None) -> None:
        self.cfg = cfg or ChunkerConfig()
        self._buf = ''
        self.emitted = 0

    def feed(self, piece: str) -> list[str]:
        """Add streamed text; return the chunks that are now complete."""
        self._buf += piece
        out: list[str] = []
        while True:
            cut = self._find_cut()
            if cut is None:
                break
            chunk, self._buf = self._buf[:cut].strip(), self._buf[cut:].lstrip()
            if chunk:
                out.append(chunk)
                self.emitted += 1
        return out

    def flush(self) -> list[str]:
        """End of the reply: whatever is left is the last chunk."""
        chunk, self._buf = self._buf.strip(), ''
        if not chunk:
            return []
        self.emitted += 1
        return [chunk]

    def reset(self) -> None:
        self._buf = ''
        self.emitted = 0

    # -- boundary search ------------------------------------------------------------
    def _find_cut(self) -> int | None:
        """Index just after the chunk to emit now, or None to wait for more text."""
        buf = self._buf
        first = self.emitted == 0
        i = 0
        n = len(buf)
        last_clause: int | None = None
        while i < n:
            ch = buf[i]
            if ch == '\n':
                if buf[:i].strip():
                    return i + 1
            elif ch in SENTENCE_END or ch in CLAUSE_BREAK:
                j = i + 1
                while j < n and (buf[j] in SENTENCE_END or buf[j] in CLOSERS):
                    j += 1
                if j >= n:
                    return None          # need the next character to confirm the boundary
                if buf[j].isspace():
                    head = buf[:j]
                    if ch in SENTENCE_END and self._is_sentence_end(buf, i):
                        if _word_count(head) >= 1:
                            return j
                    elif ch in CLAUSE_BREAK or ch == '.':
                        if ch in CLAUSE_BREAK:
                            if j <= self.cfg.max_chars:
                                last_clause = j
                            if first and _word_count(head) >= self.cfg.first_min_words:
                                return j
                i = j
                continue
            i += 1
        words = _WORD.findall(buf)
        complete = len(words) - (0 if buf[-1:].isspace() else 1)
        if first and complete >= self.cfg.first_max_words:
            return self._word_cut(buf, self.cfg.first_max_words, self.cfg.first_min_words)
        if len(buf) > self.cfg.max_chars:
            if last_clause is not None:
                return last_clause
            space = buf.rfind(' ', 0, self.cfg.max_chars)
            return space + 1 if space > 0 else self.cfg.max_chars
        return None

    @staticmethod
    def _word_cut(buf: str, max_words: int, min_words: int) -> int:
        """End of the first `max_words` words, backed off over words a phrase cannot end
        on ("The largest planet | in our solar system"), keeping at least `min_words`."""
        found = [m for _, m in zip(range(max_words), _WORD.finditer(buf))]
        if not found:
            return len(buf)
        k = len(found)
        while k > max(1, min_words) and ends_on_continuation(found[k - 1].group()):
            k -= 1
        return found[k - 1].end()

    @staticmethod
    def _is_sentence_end(buf: str, i: int) -> bool:
        """False for the period of an abbreviation, an initial or a list marker."""
        if buf[i] != '.':
            return True
        if i + 2 < len(buf) and buf[i + 1] == '.':
            return True                    # ellipsis "..."
        start = i
        while start > 0 and not buf[start - 1].isspace():
            start -= 1
        word = buf[start:i].lower().strip('"\'([{')
        if word in ABBREVIATIONS:
            return False
        if len(word) == 1 and word.isalpha():
            return False                   # an initial: "J. K. Rowling"
        if _LIST_MARKER.search(buf[:i]):
            return False                   # "1. first item"
        return True
