"""Text in and out of the model: clean user input, shape replies for speech.

- `sanitize_input`: what a transcript or an `ask` goal may contain before it reaches the
  prompt (encoding repaired, control characters and chat-template markers removed, length
  bounded, prompt-injection-looking phrases flagged).
- `shape_for_speech`: a reply chunk as the TTS should read it (no markdown, URLs, emoji;
  numbers and symbols as words).
- `bound_reply`: cut a reply at a sentence boundary under a character limit.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from wallie_common.spoken_numbers import ONES, number_to_words, ordinal_to_words, year_to_words

# -------------------------------------------------------------------------- input

# Chat-template control markers of the model families we load (ChatML/Qwen, Llama 3, Llama 2,
# Mistral, Gemma, Phi). Text that contains them could forge a system or assistant turn.
_TEMPLATE_MARKERS = re.compile(
    r'<\|[^|<>\n]{1,40}\|>'             # <|im_start|>, <|eot_id|>, <|endoftext|> ...
    r'|</?s>|\[/?INST\]|<</?SYS>>'
    r'|<start_of_turn>|<end_of_turn>',
    re.IGNORECASE)
_INJECTION = re.compile(
    r'\b(?:ignore|disregard|forget|override)\b[^.?!]{0,40}\b(?:previous|prior|above|earlier|'
    r'all|your|system)\b[^.?!]{0,20}\b(?:instructions?|prompts?|rules|guidelines|directions)'
    r'|\byou are now\b|\bnew (?:system )?instructions?\b|\bsystem prompt\b'
    r'|\b(?:developer|jailbreak|DAN) mode\b|\breveal (?:your|the) (?:instructions|prompt)',
    re.IGNORECASE)
_SURROGATES = re.compile('[\ud800-\udfff]')
_ZERO_WIDTH = dict.fromkeys(map(ord, '\u200b\u200c\u200d\u2060\ufeff'), None)


@dataclass
class CleanInput:
    """Sanitised user text and what was done to it."""

    text: str
    problems: list[str] = field(default_factory=list)   # 'empty', 'truncated', 'markers' ...
    injection_like: bool = False

    @property
    def empty(self) -> bool:
        return not self.text


def sanitize_input(raw: str | bytes, max_chars: int = 1000) -> CleanInput:
    """Make user text safe to put into a prompt; never raises."""
    problems: list[str] = []
    if isinstance(raw, (bytes, bytearray)):
        text = bytes(raw).decode('utf-8', 'replace')
    else:
        text = str(raw)
    repaired = _SURROGATES.sub('\ufffd', text)      # lone surrogates from a bad decoder
    if repaired != text or '\ufffd' in repaired:
        problems.append('invalid_utf8')
        repaired = repaired.replace('\ufffd', ' ')
    text = unicodedata.normalize('NFC', repaired).translate(_ZERO_WIDTH)
    # Bound the work before the regexes run on something absurdly large.
    if len(text) > max_chars * 4:
        text = text[:max_chars * 4]
    stripped = _TEMPLATE_MARKERS.sub(' ', text)
    if stripped != text:
        problems.append('markers')
        text = stripped
    text = ''.join(' ' if unicodedata.category(c)[0] == 'C' else c for c in text)
    text = ' '.join(text.split())
    if len(text) > max_chars:
        cut = text.rfind(' ', 0, max_chars + 1)
        text = text[:cut if cut > max_chars // 2 else max_chars].rstrip()
        problems.append('truncated')
    if not any(c.isalnum() for c in text):
        if text:
            problems.append('no_words')
        text = ''
    if not text:
        problems.append('empty')
    injection = bool(_INJECTION.search(text))
    if injection:
        problems.append('injection_like')
    return CleanInput(text=text, problems=problems, injection_like=injection)


def same_utterance(a: str, b: str) -> bool:
    """True if two transcripts are the same words (case, punctuation, spacing ignored)."""
    def norm(s: str) -> str:
        return ' '.join(re.sub(r"[^\w']+", ' ', s.lower()).split())
    return norm(a) == norm(b)


# -------------------------------------------------------------------------- output

def _decimal_to_words(text: str) -> str:
    whole, _, frac = text.partition('.')
    head = number_to_words(int(whole)) if whole else 'zero'
    return head + ' point ' + ' '.join(ONES[int(d)] for d in frac)


_CURRENCY = {'$': ('dollar', 'dollars'), '€': ('euro', 'euros'), '£': ('pound', 'pounds'),
             '¥': ('yen', 'yen')}
_UNITS_PER = {'km/h': 'kilometers per hour', 'mph': 'miles per hour',
              'm/s': 'meters per second'}
_SYMBOLS = [
    ('&', ' and '), ('@', ' at '), ('+', ' plus '), ('=', ' equals '), ('×', ' times '),
    ('÷', ' divided by '), ('≈', ' about '), ('~', ' about '), ('→', ' to '),
    ('<=', ' at most '), ('>=', ' at least '), ('≤', ' at most '), ('≥', ' at least '),
    ('<', ' less than '), ('>', ' more than '), ('|', ', '), ('#', ' number '),
    ('^', ' to the power of '), ('\\', ' '), ('_', ' '), ('*', ' '), ('`', ''),
]
_EMOJI = re.compile(
    '[\U0001F000-\U0001FAFF\U00002600-\U000027BF\U0001F1E6-\U0001F1FF'
    '\U00002300-\U000023FF\U00002B00-\U00002BFF\uFE0F\u200d]+')
_NUM = r'(?:\d{1,3}(?:,\d{3})+|\d+)'


def shape_for_speech(text: str) -> str:
    """Rewrite one reply chunk so a TTS reads it naturally. Idempotent on plain prose."""
    t = text
    t = re.sub(r'```[a-zA-Z0-9_+-]*', ' ', t)
    t = re.sub(r'!\[([^\]]*)\]\([^)]*\)', r'\1', t)               # images
    t = re.sub(r'\[([^\]]+)\]\([^)]*\)', r'\1', t)                # links -> their text
    t = re.sub(r'https?://\S+|www\.\S+', 'a link', t)
    t = re.sub(r'<[^>\n]{1,40}>', ' ', t)                         # html-ish tags
    t = re.sub(r'(?m)^\s{0,3}#{1,6}\s*', '', t)                   # headers
    t = re.sub(r'(?m)^\s*[-*+•]\s+', '', t)                       # bullets
    t = re.sub(r'(?m)^\s*(\d{1,3})[.)]\s+', '', t)                # numbered list markers
    t = re.sub(r'(\*\*|__)(.+?)\1', r'\2', t)                     # bold
    t = re.sub(r'(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])', r'\1', t)   # italics
    t = _EMOJI.sub(' ', t)
    t = t.replace('’', "'").replace('‘', "'").replace('“', '"').replace('”', '"')
    for unit, words in _UNITS_PER.items():
        t = re.sub(rf'(?<=\d)\s*{re.escape(unit)}\b', ' ' + words, t)
    t = re.sub(r'(-?\d+(?:\.\d+)?)\s*°\s*C\b', r'\1 degrees Celsius', t)
    t = re.sub(r'(-?\d+(?:\.\d+)?)\s*°\s*F\b', r'\1 degrees Fahrenheit', t)
    t = t.replace('°', ' degrees')
    t = re.sub(r'(\d)\s*%', r'\1 percent', t)
    t = t.replace('%', ' percent')

    def currency(m: re.Match) -> str:
        one, many = _CURRENCY[m.group(1)]
        amount = m.group(2)
        whole, _, cents = amount.replace(',', '').partition('.')
        unit = one if whole == '1' and not cents else many
        if cents and len(cents) == 2 and cents != '00':
            return f'{whole} {unit} {int(cents)} {"cent" if cents == "01" else "cents"}'
        return f'{whole} {unit}'
    t = re.sub(r'([$€£¥])\s?(\d[\d,]*(?:\.\d+)?)', currency, t)
    t = re.sub(r'(?<![\w.])(\d+)\s?[-–]\s?(\d+)(?![\w.])', r'\1 to \2', t)   # ranges 5-10
    t = re.sub(r'(?<![\w\d])-(?=\d)', 'minus ', t)
    t = re.sub(r'(?<=\d)/(?=\d)', ' over ', t)
    t = re.sub(r'(?<=[A-Za-z])/(?=[A-Za-z])', ' or ', t)
    t = re.sub(r'\b(\d+)(st|nd|rd|th)\b', lambda m: ordinal_to_words(int(m.group(1))), t)

    def decimal(m: re.Match) -> str:
        return _decimal_to_words(m.group(0))
    t = re.sub(r'(?<![\d.])\d+\.\d+(?![\d.])', decimal, t)

    def integer(m: re.Match) -> str:
        raw = m.group(0)
        n = int(raw.replace(',', ''))
        if ',' not in raw and len(raw) == 4 and 1100 <= n <= 2099:
            return year_to_words(n)
        if len(raw) > 1 and raw.startswith('0'):
            return ' '.join(ONES[int(d)] for d in raw)             # "007", zip codes
        return number_to_words(n)
    t = re.sub(rf'(?<![\w.]){_NUM}(?![\w]|\.\d)', integer, t)
    for sym, words in _SYMBOLS:
        t = t.replace(sym, words)
    t = re.sub(r'\s+([,.;:!?])', r'\1', t)
    return ' '.join(t.split())


_SENTENCE_CUT = re.compile(r'[.!?…]["\')\]]*(?=\s|$)')


def bound_reply(text: str, max_chars: int) -> tuple[str, bool]:
    """Cut `text` at the last sentence end within `max_chars`; (text, was_cut)."""
    if len(text) <= max_chars:
        return text, False
    head = text[:max_chars + 1]
    ends = [m.end() for m in _SENTENCE_CUT.finditer(head)]
    if ends and ends[-1] > max_chars // 3:
        return head[:ends[-1]].rstrip(), True
    cut = head.rfind(' ')
    return (head[:cut] if cut > 0 else head[:max_chars]).rstrip(' ,;:') + '.', True
