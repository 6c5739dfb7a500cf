"""Does an early transcript read as a whole turn? (text-only, no model)

The voice gate normally waits `endpoint.min_silence_ms` of silence before it ends a turn,
because people pause inside sentences. When the ASR's early final (made right after the
speech probably ended) is a finished sentence -- "What is the capital of France?" -- that
wait buys nothing, so the gate ends the turn after the shorter `complete_silence_ms`.

Whisper punctuates what it hears: a trailing '.', '?' or '!' is the main signal. It also
punctuates fragments ("What is the capital of?"), so a sentence that stops on a word which
cannot end an English sentence (an article, preposition, conjunction, auxiliary or filler)
does not count, and neither does a trailing ellipsis, comma or dash.
"""

from __future__ import annotations

from wallie_common.text import ends_on_continuation, words

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
