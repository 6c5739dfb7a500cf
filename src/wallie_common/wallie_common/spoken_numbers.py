"""Numbers as spoken English words: cardinals, ordinals, years and digit strings.

Pure Python. The LLM's reply shaping (`wallie_llm.speech_text`) and the TTS's text
normalisation (`wallie_tts.normalize`) both spell numbers with these, so a number reads the
same whichever stage spelled it.
"""

from __future__ import annotations

ONES = ('zero one two three four five six seven eight nine ten eleven twelve thirteen '
        'fourteen fifteen sixteen seventeen eighteen nineteen').split()
TENS = 'zero ten twenty thirty forty fifty sixty seventy eighty ninety'.split()
_SCALES = ((10 ** 12, 'trillion'), (10 ** 9, 'billion'), (10 ** 6, 'million'),
           (1000, 'thousand'))
_ORDINAL_IRREGULAR = {'one': 'first', 'two': 'second', 'three': 'third', 'five': 'fifth',
                      'eight': 'eighth', 'nine': 'ninth', 'twelve': 'twelfth'}
MAX_NUMBER = 10 ** 15 - 1      # beyond this, digits are read one by one


def digits_to_words(digits: str) -> str:
    """Read a digit string one digit at a time ("0042" -> "zero zero four two")."""
    return ' '.join(ONES[int(d)] for d in digits if d.isdigit())


def _below_thousand(n: int) -> str:
    parts = []
    if n >= 100:
        parts.append(ONES[n // 100] + ' hundred')
        n %= 100
    if n >= 20:
        parts.append(TENS[n // 10] + ('-' + ONES[n % 10] if n % 10 else ''))
    elif n or not parts:
        parts.append(ONES[n])
    return ' '.join(parts)


def number_to_words(n: int) -> str:
    """Cardinal number in English words: 1234 -> 'one thousand two hundred thirty-four'."""
    if n < 0:
        return 'minus ' + number_to_words(-n)
    if n > MAX_NUMBER:
        return digits_to_words(str(n))
    parts = []
    for value, name in _SCALES:
        if n >= value:
            parts.append(_below_thousand(n // value) + ' ' + name)
            n %= value
    if n or not parts:
        parts.append(_below_thousand(n))
    return ' '.join(parts)


def ordinal_to_words(n: int) -> str:
    """3 -> 'third', 21 -> 'twenty-first', 100 -> 'one hundredth'."""
    words = number_to_words(n)
    cut = max(words.rfind(' '), words.rfind('-')) + 1
    head, last = words[:cut], words[cut:]
    if last in _ORDINAL_IRREGULAR:
        last = _ORDINAL_IRREGULAR[last]
    elif last.endswith('y'):
        last = last[:-1] + 'ieth'
    else:
        last += 'th'
    return head + last


def year_to_words(n: int) -> str:
    """A year the way people say it: 1984 -> 'nineteen eighty-four', 1905 -> 'nineteen oh
    five', 1900 -> 'nineteen hundred', 2005 -> 'two thousand five', 2010 -> 'twenty ten'."""
    if n % 1000 == 0 or (n >= 2000 and n % 1000 < 10):
        return number_to_words(n)
    high, low = divmod(n, 100)
    if low == 0:
        return number_to_words(high) + ' hundred'
    if low < 10:
        return number_to_words(high) + ' oh ' + ONES[low]
    return number_to_words(high) + ' ' + number_to_words(low)
