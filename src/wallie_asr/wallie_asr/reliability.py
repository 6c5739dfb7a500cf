"""Is a transcript reliable enough to answer? (pure Python, no ROS)

The engine's guards (``WhisperEngine.judge``) already drop what is surely not speech (empty,
no-speech, repetition loops, filler). This rule sits above them: a transcript that has text
but that Whisper itself was unsure of is not answered; Wallie says a short "Sorry, I didn't
catch that." instead (the LLM node's ``llm.not_heard_reply``), so that a misheard question
("Which planet is normal marine planet?") does not get a confident wrong answer.

Unreliable means one of (checked in this order; the first one found is the reason):

* ``low_logprob``: average token log-probability below ``min_avg_logprob``;
* ``no_speech``: Whisper's no-speech probability above ``max_no_speech_prob``;
* ``repetitive``: zlib compression ratio of the text above ``max_compression_ratio``;
* ``implausible``: not a plausible utterance: no letters, a word said three times in a row,
  or a speaking rate outside ``[min_words_per_s, max_words_per_s]`` for the audio's length.

The thresholds were chosen on the tuning half of the spoken QA set (``wallie_eval``) so that
false rejects of clean speech stay at or below 2 %.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

REASONS = ('low_logprob', 'no_speech', 'repetitive', 'implausible')
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?|\d+")


@dataclass(frozen=True)
class ReliabilityConfig:
    """Thresholds of the reliability rule (see the module docstring); enabled=False answers
    every transcript with text."""

    enabled: bool = True
    min_avg_logprob: float = -0.75
    max_no_speech_prob: float = 0.5
    max_compression_ratio: float = 2.0
    min_words_per_s: float = 0.3
    max_words_per_s: float = 6.0


def unreliable_reason(text: str, avg_logprob: float, no_speech_prob: float,
                      compression_ratio: float, audio_s: float,
                      config: ReliabilityConfig = ReliabilityConfig()) -> str | None:
    """The reason `text` should not be answered, or None when it may be."""
    if not config.enabled or not text.strip():
        return None
    if not math.isfinite(avg_logprob) or avg_logprob < config.min_avg_logprob:
        return 'low_logprob'
    if no_speech_prob > config.max_no_speech_prob:
        return 'no_speech'
    if compression_ratio > config.max_compression_ratio:
        return 'repetitive'
    words = [w.lower() for w in _WORD.findall(text)]
    if not any(ch.isalpha() for ch in text):
        return 'implausible'
    if any(words[i] == words[i + 1] == words[i + 2] for i in range(len(words) - 2)):
        return 'implausible'
    if audio_s > 0:
        rate = len(words) / audio_s
        if rate > config.max_words_per_s or (audio_s > 2.0 and rate < config.min_words_per_s):
            return 'implausible'
    return None
