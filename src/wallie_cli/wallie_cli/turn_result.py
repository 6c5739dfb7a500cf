"""One turn as the user experienced it: what was heard and said, and how fast each stage was.

A :class:`TurnResult` joins what the in-process observer recorded about a turn (its
:class:`wallie_cli.observer.TurnRecord`) with the ground truth of the input (the acoustic end
of speech on the graph's clock, from :class:`wallie_cli.feed.Feed`) into per-stage latencies.
Pure Python (no ROS).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wallie_cli.feed import Feed
from wallie_cli.observer import TurnRecord

# Stage stamps in pipeline order (StageStamp constants) and the segments between them that
# add up to the end-to-end latency (speech end -> first audible sample).
CHAIN = ('speech_end', 'endpoint', 'asr_final', 'first_chunk', 'tts_first_audio',
         'first_audible')
SEGMENTS: tuple[tuple[str, str, str, str], ...] = (
    # key, label, from stamp, to stamp
    ('endpoint_ms', 'endpoint wait (VAD silence)', 'speech_end', 'endpoint'),
    ('asr_ms', 'ASR final after endpoint', 'endpoint', 'asr_final'),
    ('llm_first_chunk_ms', 'LLM first speakable chunk', 'asr_final', 'first_chunk'),
    ('tts_first_audio_ms', 'TTS first audio', 'first_chunk', 'tts_first_audio'),
    ('playout_ms', 'player: first audible sample', 'tts_first_audio', 'first_audible'),
)
EXTRA: tuple[tuple[str, str, str, str], ...] = (
    ('llm_first_token_ms', 'LLM first token', 'asr_final', 'llm_first_token'),
    ('llm_total_ms', 'LLM whole reply', 'asr_final', 'llm_done'),
    ('e2e_ms', 'end to end (speech end -> first audible)', 'speech_end', 'first_audible'),
    ('e2e_from_endpoint_ms', 'end to end from the endpoint decision', 'endpoint',
     'first_audible'),
    ('flush_ms', 'flush after interrupt', 'interrupt', 'flushed'),
)


def _finite(x: float) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


@dataclass
class TurnResult:
    """One turn as the user experienced it: what was heard, said, and how fast."""

    record: TurnRecord | None
    feed: Feed | None
    answer: np.ndarray | None = None       # int16 samples the player played (file sink)
    answer_rate: int = 0
    other_turns: list[TurnRecord] = field(default_factory=list)  # e.g. a split question

    @property
    def turn_id(self) -> str:
        return self.record.turn_id if self.record else ''

    @property
    def answered(self) -> bool:
        return bool(self.record and self.record.audible)

    @property
    def transcript(self) -> str:
        return self.record.transcript if self.record else ''

    @property
    def reply_text(self) -> str:
        return self.record.reply_text if self.record else ''

    @property
    def answer_s(self) -> float:
        if self.answer is None or not self.answer_rate:
            return 0.0
        return self.answer.shape[0] / self.answer_rate

    def stamps(self) -> dict[str, int]:
        """Stage stamps of the turn (the first_audible from the playback event if needed)."""
        if self.record is None:
            return {}
        st = dict(self.record.stamps)
        fa = self.record.playback.get('first_audible', {}).get('first_audible_ns', 0)
        if fa and 'first_audible' not in st:
            st['first_audible'] = fa
        return st

    def timeline_ms(self) -> dict[str, float]:
        """Each stage stamp in ms after the input's true speech end ({} if unknown)."""
        truth = self.feed.speech_end_ns if self.feed else 0
        if not truth:
            return {}
        events = dict(self.stamps())
        if self.record is not None:
            for a in self.record.activity:          # the last of each kind
                events[f'gate_{a["event"]}'] = a['stamp_ns']
                events[f'gate_{a["event"]}_received'] = a['recv_ns']
            for t in self.record.transcripts:
                kind = ('final' if t['is_final'] else 'early_final' if t['is_early_final']
                        else 'partial')
                events.setdefault(f'asr_{kind}_received', t['recv_ns'])
                if kind == 'partial':
                    events['asr_last_partial_received'] = t['recv_ns']
        return {k: round((v - truth) / 1e6, 1) for k, v in
                sorted(events.items(), key=lambda kv: kv[1]) if v}

    def latencies(self) -> dict[str, float]:
        """Milliseconds per stage (NaN where unknown).

        ``*_ms`` keys follow TurnMetrics (from the gate's VAD speech end); ``true_*`` keys
        start at the input's real acoustic end of speech (exact for fixtures).
        """
        from wallie_manager.turn_metrics import ms_between
        st = self.stamps()
        out = {key: ms_between(st, a, b) for key, _, a, b in SEGMENTS + EXTRA}
        truth = self.feed.speech_end_ns if self.feed else 0
        nan = float('nan')
        if truth:
            fa, ep, vad = st.get('first_audible', 0), st.get('endpoint', 0), \
                st.get('speech_end', 0)
            out['true_e2e_ms'] = (fa - truth) / 1e6 if fa else nan
            out['true_endpoint_ms'] = (ep - truth) / 1e6 if ep else nan
            out['vad_end_error_ms'] = (vad - truth) / 1e6 if vad else nan
        else:
            out['true_e2e_ms'] = out['true_endpoint_ms'] = out['vad_end_error_ms'] = nan
        return out

    def to_dict(self) -> dict[str, Any]:
        lat = self.latencies()
        rec = self.record
        return {
            'turn_id': self.turn_id,
            'input': self.feed.name if self.feed else '',
            'truth': self.feed.truth if self.feed else '',
            'transcript': self.transcript,
            'reply': self.reply_text,
            'reply_chunks': rec.reply_chunks if rec else [],
            'answered': self.answered,
            'interrupted': bool(rec and rec.interrupted),
            'answer_s': round(self.answer_s, 3),
            'latency_ms': {k: (round(v, 1) if _finite(v) else None) for k, v in lat.items()},
            'metrics': rec.metrics if rec else None,
            'split_turns': len(self.other_turns),
        }
