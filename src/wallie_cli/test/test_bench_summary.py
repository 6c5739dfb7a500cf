"""wallie bench's summary of speculation and the idle graph (pure functions, no graph)."""

import io

from rich.console import Console

from wallie_cli import bench_report, idle
from wallie_common.cpu import CpuUsage


def _row(answered=True, **timeline):
    return {'answered': answered, 'timeline_ms': timeline, 'latency_ms': {},
            'correct': True, 'split_turns': 0}


def test_speculation_counts_early_finals_before_the_end_of_turn():
    live = [
        _row(asr_early_final_received=200.0, gate_END_OF_TURN_received=330.0),  # 130 ahead
        _row(asr_early_final_received=342.0, gate_END_OF_TURN_received=329.0),  # 13 late
        # the END_OF_TURN stamp is the audio block's time: not what is compared
        _row(asr_early_final_received=342.0, gate_END_OF_TURN=500.0,
             gate_END_OF_TURN_received=300.0),
        _row(gate_END_OF_TURN_received=400.0),           # no early final: not counted
        _row(False, asr_early_final_received=1.0, gate_END_OF_TURN_received=2.0),
    ]
    sp = bench_report.speculation(live)
    assert sp['turns'] == 3
    assert sp['early_before_end_of_turn'] == 1
    assert sp['hit_rate'] == 1 / 3
    assert sp['lead_ms']['max'] == 130.0
    assert bench_report.speculation([])['hit_rate'] is None


def test_idle_summary_and_table():
    usage = CpuUsage(20.0, {'llm': 0.1, 'voice_gate': 1.6})
    data = idle.idle_summary(usage)
    assert data['percent_of_one_core'] == {'llm': 0.5, 'voice_gate': 8.0}
    assert data['total_percent'] == 8.5
    summary = bench_report.summarize([], None, data)
    assert summary['idle'] is data
    out = io.StringIO()
    bench_report.render_idle(data, Console(file=out, width=120))
    text = out.getvalue()
    assert 'voice_gate' in text and '8.5' in text and 'NOT met' in text
