"""Text normalisation for speech: what a TTS voice should say for a written reply.

Pure Python (no ROS imports). Numbers, currencies, percentages, times, ordinals, units,
abbreviations and symbols become words; markdown leftovers, URLs' punctuation noise,
control characters and emoji are removed. Every engine gets the same normalised text, so
Piper, XTTS and espeak-ng read a reply the same way.
"""

from __future__ import annotations

import re
import unicodedata

from wallie_common.spoken_numbers import (
    digits_to_words,
    number_to_words,
    ordinal_to_words,
    year_to_words,
)


def _plural(words: str) -> str:
    return words[:-1] + 'ies' if words.endswith('y') else words + 's'


def decimal_to_words(text: str) -> str:
    """Spell a decimal number ("3.14" -> "three point one four", "-2" -> "minus two")."""
    sign = ''
    if text.startswith(('-', '\u2212')):
        sign, text = 'minus ', text[1:]
    whole, _, frac = text.partition('.')
    whole = whole.replace(',', '')
    words = number_to_words(int(whole)) if whole else 'zero'
    if frac:
        words += ' point ' + digits_to_words(frac)
    return sign + words


# -- tables --------------------------------------------------------------------------

ABBREVIATIONS = {
    'Dr.': 'Doctor', 'Mr.': 'Mister', 'Mrs.': 'Missus', 'Ms.': 'Miz', 'Prof.': 'Professor',
    'St.': 'Saint', 'Jr.': 'Junior', 'Sr.': 'Senior', 'Mt.': 'Mount', 'Ave.': 'Avenue',
    'e.g.': 'for example', 'i.e.': 'that is', 'etc.': 'et cetera', 'vs.': 'versus',
    'approx.': 'approximately', 'No.': 'number', 'Jan.': 'January', 'Feb.': 'February',
    'Aug.': 'August', 'Sept.': 'September', 'Oct.': 'October', 'Nov.': 'November',
    'Dec.': 'December', 'a.m.': 'A M', 'p.m.': 'P M',
}

# unit symbol -> (singular, plural); matched only right after a number
UNITS = {
    'km/h': ('kilometer per hour', 'kilometers per hour'), 'kph': ('kilometer per hour',
                                                                  'kilometers per hour'),
    'mph': ('mile per hour', 'miles per hour'), 'm/s': ('meter per second',
                                                        'meters per second'),
    'km': ('kilometer', 'kilometers'), 'cm': ('centimeter', 'centimeters'),
    'mm': ('millimeter', 'millimeters'), 'm': ('meter', 'meters'), 'mi': ('mile', 'miles'),
    'ft': ('foot', 'feet'), 'kg': ('kilogram', 'kilograms'),
    'g': ('gram', 'grams'), 'mg': ('milligram', 'milligrams'), 'lb': ('pound', 'pounds'),
    'lbs': ('pound', 'pounds'), 'oz': ('ounce', 'ounces'), 'l': ('liter', 'liters'),
    'L': ('liter', 'liters'), 'ml': ('milliliter', 'milliliters'),
    'mL': ('milliliter', 'milliliters'), 'h': ('hour', 'hours'), 'hr': ('hour', 'hours'),
    'hrs': ('hour', 'hours'), 'min': ('minute', 'minutes'), 's': ('second', 'seconds'),
    'sec': ('second', 'seconds'), 'ms': ('millisecond', 'milliseconds'),
    'Hz': ('hertz', 'hertz'), 'kHz': ('kilohertz', 'kilohertz'),
    'MHz': ('megahertz', 'megahertz'), 'GHz': ('gigahertz', 'gigahertz'),
    'KB': ('kilobyte', 'kilobytes'), 'MB': ('megabyte', 'megabytes'),
    'GB': ('gigabyte', 'gigabytes'), 'TB': ('terabyte', 'terabytes'),
    'W': ('watt', 'watts'), 'kW': ('kilowatt', 'kilowatts'), 'V': ('volt', 'volts'),
    'mAh': ('milliamp hour', 'milliamp hours'),
    '°C': ('degree Celsius', 'degrees Celsius'), '°F': ('degree Fahrenheit',
                                                      'degrees Fahrenheit'),
    '°': ('degree', 'degrees'), '%': ('percent', 'percent'),
}

CURRENCIES = {'$': ('dollar', 'dollars', 'cent', 'cents'),
              '€': ('euro', 'euros', 'cent', 'cents'),
              '£': ('pound', 'pounds', 'penny', 'pence'),
              '¥': ('yen', 'yen', '', '')}

SYMBOLS = {
    '&': ' and ', '+': ' plus ', '=': ' equals ', '@': ' at ', '#': ' number ',
    '×': ' times ', '÷': ' divided by ', '<': ' less than ', '>': ' greater than ',
    '~': ' about ', '±': ' plus or minus ', '→': ', ', '…': '...', '–': ', ', '—': ', ',
    '/': ' slash ', '|': ', ', '\\': ' ',
}

# -- regular expressions ----------------------------------------------------------------

_NUM = r'\d{1,3}(?:,\d{3})+|\d+'
_CURRENCY_RE = re.compile(
    r'([$€£¥])\s?(' + _NUM + r')(?:\.(\d{1,2}))?(?!\d)(\s?(?:million|billion|trillion|k)\b)?')
_PERCENT_RE = re.compile(r'(-?(?:' + _NUM + r')(?:\.\d+)?)\s?%')
_TIME_RE = re.compile(r'\b([01]?\d|2[0-3]):([0-5]\d)(?:\s?(am|pm)\b)?', re.I)
_ORDINAL_RE = re.compile(r'\b(\d+)(st|nd|rd|th)\b', re.I)
_DECADE_RE = re.compile(r"(?<![\w.])'?(1[1-9]\d0|20\d0|[1-9]0)s\b")
_YEAR_RE = re.compile(r'\b(?:in|since|from|until|by|of|year)\s+(1[1-9]\d\d|20\d\d)\b', re.I)
_UNIT_RE = re.compile(
    r'(?<![\w.])(-?(?:' + _NUM + r')(?:\.\d+)?)\s?(' + '|'.join(
        re.escape(u) for u in sorted(UNITS, key=len, reverse=True) if u != '%')
    + r')(?![\w/])')
_NUMBER_RE = re.compile(r'(?<![\w.])([-\u2212]?(?:' + _NUM + r')(?:\.\d+)?)(?![\w])')
_LONG_DIGITS_RE = re.compile(r'\d{16,}')
_RANGE_RE = re.compile(r'(\d)\s?[-–]\s?(\d)')
_URL_RE = re.compile(r'https?://\S+|www\.\S+')
_MARKDOWN_RE = re.compile(r'(\*\*|__|\*|`+|^#{1,6}\s*|^\s*[-*+]\s+|^\s*>\s?)', re.M)
_LINK_RE = re.compile(r'\[([^\]]+)\]\([^)]*\)')
_SPACES_RE = re.compile(r'\s+')
_SPACE_PUNCT_RE = re.compile(r'\s+([,.!?;:])')
_REPEAT_PUNCT_RE = re.compile(r'([,;:])(\s*[,;:])+')


def _strip_emoji_and_controls(text: str) -> str:
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat == 'So' and ch not in '°':
            continue  # emoji, pictographs, dingbats
        if cat in ('Cc', 'Cf', 'Co', 'Cs', 'Cn') and ch not in '\n\t':
            continue  # control, format (ZWJ, variation selectors), private use, unassigned
        if cat == 'Mn' and 0xFE00 <= ord(ch) <= 0xFE0F:
            continue
        if 0x1F3FB <= ord(ch) <= 0x1F3FF:  # skin-tone modifiers (category Sk)
            continue
        out.append(ch)
    return ''.join(out)


def _currency(m: re.Match) -> str:
    one, many, sub_one, sub_many = CURRENCIES[m.group(1)]
    whole = int(m.group(2).replace(',', ''))
    cents = m.group(3)
    scale = (m.group(4) or '').strip().lower()
    if scale:
        scale = {'k': 'thousand'}.get(scale, scale)
        amount = number_to_words(whole)
        if cents:
            amount = decimal_to_words(f'{whole}.{cents}')
        return f' {amount} {scale} {many} '
    words = f'{number_to_words(whole)} {one if whole == 1 else many}'
    if cents and int(cents.ljust(2, '0')) and sub_one:
        c = int(cents.ljust(2, '0'))
        words += f' and {number_to_words(c)} {sub_one if c == 1 else sub_many}'
    return f' {words} '


def _unit(m: re.Match) -> str:
    value, unit = m.group(1), m.group(2)
    one, many = UNITS[unit]
    singular = value.replace(',', '') in ('1', '-1')
    return f'{decimal_to_words(value)} {one if singular else many}'


def _time(m: re.Match) -> str:
    hour, minute, suffix = int(m.group(1)), int(m.group(2)), m.group(3)
    words = number_to_words(hour)
    if minute == 0:
        words += '' if suffix else " o'clock"
    elif minute < 10:
        words += ' oh ' + number_to_words(minute)
    else:
        words += ' ' + number_to_words(minute)
    if suffix:
        words += ' ' + ('A M' if suffix.lower().startswith('a') else 'P M')
    return words


def normalize(text: str) -> str:
    """Turn written reply text into what should be spoken (see the module docstring)."""
    text = unicodedata.normalize('NFC', text)
    text = _strip_emoji_and_controls(text)
    text = _LINK_RE.sub(r'\1', text)
    text = _URL_RE.sub(' a link ', text)
    text = _MARKDOWN_RE.sub(' ', text)
    for abbr, full in ABBREVIATIONS.items():
        text = re.sub(r'(?<!\w)' + re.escape(abbr), full, text)
    text = _LONG_DIGITS_RE.sub(lambda m: ' ' + digits_to_words(m.group(0)) + ' ', text)
    text = _CURRENCY_RE.sub(_currency, text)
    text = _PERCENT_RE.sub(lambda m: decimal_to_words(m.group(1)) + ' percent', text)
    text = _TIME_RE.sub(_time, text)
    text = _ORDINAL_RE.sub(lambda m: ordinal_to_words(int(m.group(1))), text)
    text = _DECADE_RE.sub(lambda m: _plural(year_to_words(int(m.group(1))) if len(m.group(1)) == 4
                                            else number_to_words(int(m.group(1)))), text)
    text = _YEAR_RE.sub(lambda m: m.group(0)[:m.start(1) - m.start(0)]
                        + year_to_words(int(m.group(1))), text)
    text = _RANGE_RE.sub(r'\1 to \2', text)
    text = _UNIT_RE.sub(_unit, text)
    text = _NUMBER_RE.sub(lambda m: decimal_to_words(m.group(1)), text)
    for sym, words in SYMBOLS.items():
        text = text.replace(sym, words)
    text = text.replace('*', ' ').replace('_', ' ').replace('"', '').replace('[', '')
    text = text.replace(']', '').replace('{', '').replace('}', '')
    text = _REPEAT_PUNCT_RE.sub(r'\1', text)
    text = _SPACES_RE.sub(' ', text)
    text = _SPACE_PUNCT_RE.sub(r'\1', text)
    return text.strip().lstrip(',;: ')
