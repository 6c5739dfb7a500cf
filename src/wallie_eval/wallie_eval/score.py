"""Scoring of spoken QA turns: is the expected fact in the reply, what was misheard, summaries.

* A reply is **right** when one of the clip's accepted answers occurs in it as whole words and
  none of its contradicting answers does. Words are compared lowercased, without punctuation;
  a number keeps its decimals ("9.04" is not "9") and drops thousands separators ("1,000" is
  "1000"); hyphens split words ("fifty-six" is "fifty six").
* **WER** is jiwer's word error rate on text as it would be spoken (``wallie_tts.normalize``:
  "56" -> "fifty six"), lowercased, without punctuation; summaries pool the words of all turns.
* A question is **misheard** when its own WER is above ``MISHEARD_WER``. A **confident wrong
  answer** is a misheard question that was answered (not refused as unreliable) and wrongly.
* A **false reject** is a turn refused as unreliable although it was heard right.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Iterable, Sequence

import numpy as np

MISHEARD_WER = 0.2     # more than one word in five wrong
_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|[a-z]+(?:'[a-z]+)?")


def tokens(text: str) -> list[str]:
    """Lowercase words and numbers of `text` (see the module docstring)."""
    out = []
    for t in _TOKEN.findall(text.lower().replace('\u2019', "'")):
        if t[0].isdigit():
            t = re.sub(r'(?<=\d),(?=\d{3}\b)', '', t)
        out.append(t)
    return out


def _contains(hay: Sequence[str], needle: Sequence[str]) -> bool:
    n = len(needle)
    return n > 0 and any(list(hay[i:i + n]) == list(needle) for i in range(len(hay) - n + 1))


def is_correct(reply: str, accept: Iterable[str], reject: Iterable[str] = ()) -> bool:
    """One of `accept` and none of `reject` in `reply`, as whole words. No accepted answers:
    False (such a turn is not scored)."""
    words = tokens(reply)
    if not any(_contains(words, tokens(a)) for a in accept):
        return False
    return not any(_contains(words, tokens(r)) for r in reject)


def spoken_form(text: str) -> str:
    """Text as spoken, for WER: numbers, symbols and units in words, lowercase, no punctuation."""
    from wallie_tts.normalize import normalize
    return ' '.join(tokens(normalize(text).replace('-', ' ')))


def wer(reference: str | Sequence[str], hypothesis: str | Sequence[str]) -> float:
    """jiwer WER of spoken forms; lists are pooled (total errors / total reference words)."""
    import jiwer
    refs = [reference] if isinstance(reference, str) else list(reference)
    hyps = [hypothesis] if isinstance(hypothesis, str) else list(hypothesis)
    refs = [spoken_form(r) for r in refs]
    hyps = [spoken_form(h) for h in hyps]
    keep = [i for i, r in enumerate(refs) if r]
    if not keep:
        return 0.0
    refs, hyps = [refs[i] for i in keep], [hyps[i] for i in keep]
    return float(jiwer.wer(refs, hyps))


def score_turn(row: dict[str, Any]) -> dict[str, Any]:
    """Add correct / wer / misheard / confident_wrong / false_reject to a turn row.

    The row needs text, transcript, reply, accept, reject, rejected ('' or the reason).
    """
    row['wer'] = wer(row['text'], row.get('transcript', ''))
    row['misheard'] = row['wer'] > MISHEARD_WER
    rejected = bool(row.get('rejected'))
    scored = bool(row.get('accept'))
    row['scored'] = scored
    row['correct'] = scored and not rejected and is_correct(row.get('reply', ''),
                                                            row['accept'],
                                                            row.get('reject', ()))
    row['confident_wrong'] = scored and row['misheard'] and not rejected and not row['correct']
    row['false_reject'] = rejected and not row['misheard']
    return row


def percentile(values: Iterable[float | None], q: float) -> float | None:
    """The `q` percentile of the finite values, or None if there are none."""
    v = [x for x in values if x is not None and math.isfinite(x)]
    return float(np.percentile(v, q)) if v else None


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy, WER, rejection and latency figures of a group of scored turns."""
    ok = [r for r in rows if not r.get('error')]
    scored = [r for r in ok if r.get('scored')]
    clean = [r for r in ok if r.get('condition') == 'clean']
    e2e = [r.get('latency_ms', {}).get('e2e_ms') for r in ok if not r.get('rejected')]
    return {
        'turns': len(rows), 'errors': len(rows) - len(ok), 'scored': len(scored),
        'correct': sum(1 for r in scored if r['correct']),
        'accuracy': (sum(1 for r in scored if r['correct']) / len(scored)) if scored else None,
        'wer': wer([r['text'] for r in ok], [r.get('transcript', '') for r in ok]) if ok
        else None,
        'rejected': sum(1 for r in ok if r.get('rejected')),
        'false_reject_rate': (sum(1 for r in ok if r.get('false_reject')) / len(ok)) if ok
        else None,
        'clean_reject_rate': (sum(1 for r in clean if r.get('rejected')) / len(clean))
        if clean else None,
        'misheard': sum(1 for r in ok if r.get('misheard')),
        'confident_wrong_rate': (sum(1 for r in scored if r['confident_wrong']) / len(scored))
        if scored else None,
        'e2e_p50_ms': percentile(e2e, 50), 'e2e_p95_ms': percentile(e2e, 95),
        **{f'{stage}_p50_ms': percentile([r.get('latency_ms', {}).get(f'{stage}_ms')
                                          for r in ok], 50)
           for stage in ('asr', 'llm_first_chunk', 'tts_first_audio')},
    }


def group_by(rows: Sequence[dict[str, Any]], key: str | Callable[[dict], str]
             ) -> dict[str, dict[str, Any]]:
    """Summaries of the rows grouped by `key` (a row field or a function), in key order."""
    fn = key if callable(key) else (lambda r: str(r.get(key)))
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(fn(r), []).append(r)
    return {k: summarize(v) for k, v in sorted(groups.items())}


def report(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Overall, per half, per voice, per condition and per category."""
    return {
        'overall': summarize(rows),
        'split': group_by(rows, 'split'),
        'voice': group_by(rows, lambda r: f'{r["split"]}/{r["voice"]}'),
        'condition': group_by(rows, lambda r: f'{r["split"]}/{r["condition"]}'),
        'category': group_by(rows, lambda r: f'{r["split"]}/{r["category"]}'),
    }
