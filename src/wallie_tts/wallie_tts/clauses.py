"""Split a reply chunk into the pieces that are synthesized one at a time.

Pure Python. Piper's latency grows with the length of the text it is given (~45 ms per
second of speech on 2 cores), so the first piece of a reply is kept short: the first
clause, cut after a few words (preferably before a conjunction) when the clause is long.
Everything after it is synthesized sentence by sentence. Each piece carries the kind of
pause that should follow it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SENTENCE = 'sentence'
CLAUSE = 'clause'
WORD = 'word'

_SENTENCE_END_RE = re.compile(r'(?<=[.!?])["\')\]]*\s+')
_CLAUSE_END_RE = re.compile(r'(?<=[,;:])\s+')
_CUT_BEFORE = frozenset('and but or so because which that when while if then where who '
                        'with for to of in on at as is are was were'.split())


@dataclass(frozen=True)
class Piece:
    """A piece of text to synthesize and the pause that follows it."""

    text: str
    pause: str  # SENTENCE, CLAUSE or WORD


def _pause_of(text: str) -> str:
    end = text.rstrip('"\')] ')[-1:]
    if end in '.!?' and end:
        return SENTENCE
    if end in ',;:' and end:
        return CLAUSE
    return WORD


def sentences(text: str) -> list[str]:
    """Split text at sentence ends (. ! ? followed by space)."""
    return [s for s in (p.strip() for p in _SENTENCE_END_RE.split(text)) if s]


def _head_cut(words: list[str], max_words: int) -> int:
    """Where to cut a long first clause: before a conjunction if there is one, else max."""
    for i in range(min(max_words, len(words) - 1), 1, -1):
        if words[i].lower().strip(',.;:') in _CUT_BEFORE and i >= 2:
            return i
    return max_words


def split_pieces(text: str, first: bool, split_first_clause: bool = True,
                 first_piece_max_words: int = 5) -> list[Piece]:
    """Pieces of ``text``: a short head when ``first`` (start of a reply), then sentences."""
    text = ' '.join(text.split())
    if not text:
        return []
    pieces: list[Piece] = []
    rest = text
    if first and split_first_clause:
        clause, _, after = _split_once(rest)
        words = clause.split()
        if first_piece_max_words > 0 and len(words) > first_piece_max_words + 1:
            cut = _head_cut(words, first_piece_max_words)
            clause = ' '.join(words[:cut])
            after = ' '.join(words[cut:] + ([after] if after else []))
        pieces.append(Piece(clause, _pause_of(clause)))
        rest = after
    for sentence in sentences(rest):
        pieces.append(Piece(sentence, _pause_of(sentence)))
    return pieces


def _split_once(text: str) -> tuple[str, str, str]:
    """Split at the first clause or sentence boundary: (head, separator, tail)."""
    best = None
    for regex in (_SENTENCE_END_RE, _CLAUSE_END_RE):
        m = regex.search(text)
        if m and (best is None or m.start() < best.start()):
            best = m
    if best is None:
        return text, '', ''
    return text[:best.start()], best.group(0), text[best.end():]
