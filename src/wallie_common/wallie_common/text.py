"""Small English text facts shared by the stages (no dependencies)."""

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
