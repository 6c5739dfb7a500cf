"""The rule that refuses to answer an unreliable transcript."""

import math

import pytest

from wallie_asr.reliability import ReliabilityConfig, unreliable_reason

CFG = ReliabilityConfig(min_avg_logprob=-0.75, max_no_speech_prob=0.5,
                        max_compression_ratio=2.0, min_words_per_s=0.3, max_words_per_s=6.0)


@pytest.mark.parametrize('text, logprob, no_speech, ratio, audio_s, expected', [
    ('What is the capital of France?', -0.2, 0.01, 1.1, 2.0, None),
    ('Stop.', -0.3, 0.05, 1.0, 0.8, None),                      # short but fine
    ('Which planet is normal marine planet?', -0.95, 0.02, 1.2, 2.4, 'low_logprob'),
    ('What is the capital of France?', -0.76, 0.01, 1.1, 2.0, 'low_logprob'),
    ('What is the capital of France?', -0.74, 0.01, 1.1, 2.0, None),   # just inside
    ('What is the capital of France?', float('-inf'), 0.01, 1.1, 2.0, 'low_logprob'),
    ('What is the capital of France?', float('nan'), 0.01, 1.1, 2.0, 'low_logprob'),
    ('Thank you.', -0.3, 0.7, 1.0, 1.0, 'no_speech'),
    ('the the the the the the the the the', -0.3, 0.1, 1.5, 3.0, 'implausible'),
    ('I like it I like it I like it I like it I like it', -0.3, 0.1, 2.6, 4.0, 'repetitive'),
    ('1 2 3 4', -0.3, 0.1, 1.0, 2.0, 'implausible'),            # no letters
    ('...', -0.3, 0.1, 1.0, 2.0, 'implausible'),
    ('one two three four five six seven eight nine ten eleven twelve', -0.3, 0.1, 1.2,
     1.0, 'implausible'),                                      # 12 words in a second
    ('Hi.', -0.3, 0.1, 1.0, 8.0, 'implausible'),               # one word in 8 s of speech
    ('', -5.0, 0.9, 9.0, 1.0, None),                           # nothing to refuse
])
def test_unreliable_reason(text, logprob, no_speech, ratio, audio_s, expected):
    assert unreliable_reason(text, logprob, no_speech, ratio, audio_s, CFG) == expected


def test_disabled_rule_accepts_everything():
    off = ReliabilityConfig(enabled=False)
    assert unreliable_reason('the the the the', -math.inf, 1.0, 9.0, 1.0, off) is None
