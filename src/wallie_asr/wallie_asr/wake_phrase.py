"""The wake phrase in a transcript (no ROS): transcript wake mode strips it from the final,
and a final without it is not answered."""

from __future__ import annotations

import difflib
import re
from typing import Optional

_GREETINGS = frozenset({'hey', 'hi', 'hello', 'ok', 'okay', 'oh', 'yo'})
_WORD = re.compile(r"[\w']+", re.UNICODE)


def _norm_word(word: str) -> str:
    return word.lower().replace("'", '')


def _word_matches(token: str, target: str, aliases: frozenset[str]) -> bool:
    if token == target:
        return True
    if token in aliases and target in aliases:
        return True
    return len(target) >= 4 and difflib.SequenceMatcher(None, token, target).ratio() >= 0.8


def find_wake_phrase(text: str, phrase: str,
                     aliases: tuple[str, ...] = ()) -> Optional[tuple[int, int]]:
    """Character span of `phrase` in `text` (case/punctuation-insensitive, fuzzy), or None.

    A phrase word may match one token or two joined tokens ("Wall-E" for "wallie"); words in
    `aliases` are interchangeable (common spellings of the same name).
    """
    targets = [_norm_word(w) for w in _WORD.findall(phrase)]
    tokens = [(_norm_word(m.group()), m.start(), m.end()) for m in _WORD.finditer(text)]
    if not targets:
        return None
    alias_set = frozenset(_norm_word(a) for a in aliases)

    def match(ti: int, pi: int) -> Optional[int]:
        if pi == len(targets):
            return ti
        for width in (2, 1):
            if ti + width > len(tokens):
                continue
            joined = ''.join(t[0] for t in tokens[ti:ti + width])
            if _word_matches(joined, targets[pi], alias_set):
                end = match(ti + width, pi + 1)
                if end is not None:
                    return end
        return None

    for start in range(len(tokens)):
        end = match(start, 0)
        if end is not None:
            return tokens[start][1], tokens[end - 1][2]
    return None


def apply_wake_phrase(text: str, phrase: str, aliases: tuple[str, ...] = ()) -> Optional[str]:
    """Text with the wake phrase removed, or None when the phrase is not in it."""
    span = find_wake_phrase(text, phrase, aliases)
    if span is None:
        return None
    before = text[:span[0]].strip(' ,;:-')
    after = text[span[1]:].lstrip(' ,.;:!?-')
    if before and all(w.lower() in _GREETINGS for w in _WORD.findall(before)):
        before = ''
    out = f'{before} {after}'.strip()
    return out[:1].upper() + out[1:]
