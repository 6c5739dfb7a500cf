"""Numbers as spoken words (shared by the LLM's reply shaping and the TTS normaliser)."""

import pytest

from wallie_common.spoken_numbers import (
    digits_to_words,
    number_to_words,
    ordinal_to_words,
    year_to_words,
)


@pytest.mark.parametrize('n, words', [
    (0, 'zero'), (13, 'thirteen'), (40, 'forty'), (21, 'twenty-one'),
    (100, 'one hundred'), (1203, 'one thousand two hundred three'),
    (2_000_005, 'two million five'), (-7, 'minus seven'),
    (10 ** 15, 'one zero zero zero zero zero zero zero zero zero zero zero zero zero zero zero'),
])
def test_cardinals(n, words):
    assert number_to_words(n) == words


@pytest.mark.parametrize('n, words', [
    (1, 'first'), (3, 'third'), (12, 'twelfth'), (20, 'twentieth'), (21, 'twenty-first'),
    (100, 'one hundredth'), (1002, 'one thousand second'),
])
def test_ordinals(n, words):
    assert ordinal_to_words(n) == words


@pytest.mark.parametrize('n, words', [
    (1984, 'nineteen eighty-four'), (1905, 'nineteen oh five'), (1900, 'nineteen hundred'),
    (1000, 'one thousand'), (2000, 'two thousand'), (2005, 'two thousand five'),
    (2010, 'twenty ten'), (3005, 'three thousand five'),
])
def test_years(n, words):
    assert year_to_words(n) == words


def test_digits():
    assert digits_to_words('0042') == 'zero zero four two'
