"""Small English text facts shared by the stages (no dependencies).

`looks_complete`: does a transcript read as a whole turn? The voice gate normally waits
`endpoint.min_silence_ms` of silence before it ends a turn, because people pause inside
sentences; when the ASR's early final is a finished sentence -- "What is the capital of
France?" -- that wait buys nothing, so the gate ends the turn sooner, and the LLM may start
on a partial transcript that already reads complete. Whisper punctuates what it hears: a
trailing '.', '?' or '!' is the main signal. It also punctuates fragments ("What is the
capital of?"), so a sentence that stops on a word which cannot end an English sentence (an
article, preposition, conjunction, auxiliary or filler) does not count, and neither does a
trailing ellipsis, comma or dash.
"""

from __future__ import annotations

import re

# Words after which an English sentence (practically) never ends: articles, determiners,
# prepositions, conjunctions, auxiliaries, question words and fillers. The voice gate uses
# them to tell a finished early transcript from a fragment; the LLM's clause chunker does not
# end a forced first chunk on one (it would be spoken with a dangling intonation).
CONTINUATION_WORDS = frozenset('''
a an the this that these those my your his her its our their some any every each no
of to for with in on at from by about into onto over under between through during without
than as like per via
and or but nor so because although though if unless until while whereas since whether
is are was were be been am do does did can could will would shall should may might must
have has had not
what which who whom whose when where why how
um uh uhm er erm hmm mm ah eh
'''.split())

_WORD = re.compile(r"[a-z0-9']+")


def words(text: str) -> list[str]:
    """Lower-case words of `text` (letters, digits, apostrophes)."""
    return _WORD.findall(text.lower())


def ends_on_continuation(text: str) -> bool:
    """True if the last word of `text` is one a sentence cannot end on."""
    w = words(text)
    return bool(w) and w[-1] in CONTINUATION_WORDS


TERMINAL = '.?!'
CLOSERS = '"\')]}»”’'


def looks_complete(text: str, min_words: int = 2) -> bool:
    """True if `text` ends like a finished sentence of at least `min_words` words."""
    t = text.strip().rstrip(CLOSERS).rstrip()
    if not t or t[-1] not in TERMINAL:
        return False
    if t.endswith('..') or t.endswith('…'):
        return False                       # trailing off
    if len(words(t)) < min_words:
        return False
    return not ends_on_continuation(t)
