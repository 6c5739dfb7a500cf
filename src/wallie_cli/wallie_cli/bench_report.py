"""The report of `wallie bench`: statistics, the summary, the tables and the plot.

Pure Python (no ROS): it reads the per-turn rows that ``wallie_cli.bench`` (live graph) and
``wallie_cli.bench_naive`` (naive sequential pipeline) produce.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from wallie_cli import busy

TARGET_P50_MS = 700.0
TARGET_P95_MS = 1000.0

# (key, label) of the live stages, in pipeline order; the first five add up to e2e.
LIVE_STAGES: tuple[tuple[str, str], ...] = (
    ('true_endpoint_ms', 'endpoint wait (true speech end -> endpoint)'),
    ('asr_ms', 'ASR final after endpoint'),
    ('llm_first_chunk_ms', 'LLM first speakable chunk'),
    ('tts_first_audio_ms', 'TTS first audio'),
    ('playout_ms', 'player -> first audible sample'),
)
LIVE_EXTRA: tuple[tuple[str, str], ...] = (
    ('llm_first_token_ms', '  (LLM first token after ASR final)'),
    ('vad_end_error_ms', '  (VAD speech end - true speech end)'),
    ('e2e_from_endpoint_ms', 'end to end from the endpoint decision'),
    ('e2e_ms', 'end to end from the VAD speech end'),
    ('true_e2e_ms', 'END TO END (true speech end -> first audible)'),
)
NAIVE_STAGES: tuple[tuple[str, str], ...] = (
    ('endpoint_ms', 'endpoint wait (same VAD endpointer, silence only)'),
    ('asr_ms', 'ASR on the whole utterance'),
    ('llm_ms', 'LLM whole reply'),
    ('tts_ms', 'TTS whole reply'),
)
NAIVE_E2E = ('e2e_ms', 'END TO END (naive sequential)')


def stats(values: Sequence[float]) -> dict[str, Any]:
    """n, median, p95, max, mean of the finite values (None where there are none)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if v.size == 0:
        return {'n': 0, 'p50': None, 'p95': None, 'max': None, 'mean': None}
    return {'n': int(v.size), 'p50': float(np.percentile(v, 50)),
            'p95': float(np.percentile(v, 95)), 'max': float(v.max()),
            'mean': float(v.mean())}


def speculation(live: list[dict[str, Any]]) -> dict[str, Any]:
    """Did the early final come before the end-of-turn decision? Per answered turn: the
    lead = when the gate's END_OF_TURN was received - when the early final was received,
    both here (this process subscribes as the LLM does, so the order is the order the LLM
    sees); positive = the LLM could start before the turn was over. (The END_OF_TURN
    message's own stamp is the audio block's time, not when the gate decided.)"""
    leads = []
    for r in live:
        tl = r.get('timeline_ms') or {}
        eot = tl.get('gate_END_OF_TURN_received')
        early = tl.get('asr_early_final_received')
        if r['answered'] and eot is not None and early is not None:
            leads.append(eot - early)
    hits = sum(1 for v in leads if v > 0)
    return {'turns': len(leads), 'early_before_end_of_turn': hits,
            'hit_rate': hits / len(leads) if leads else None, 'lead_ms': stats(leads)}


def summarize(live: list[dict[str, Any]], naive: list[dict[str, Any]] | None,
              idle_cpu: dict[str, Any] | None = None,
              busy_loads: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Stages of the quiet-machine turns, the naive pipeline, the ratios and targets; the
    busy-robot turns (``condition: busy``) only in ``busy`` (``wallie_cli.busy``)."""
    out: dict[str, Any] = {'live': {}, 'naive': {}, 'ratio': {}}
    if any(r.get('condition') == 'busy' for r in live):
        out['busy'] = busy.busy_summary(live, busy_loads or [], stats)
        live = [r for r in live if r.get('condition', 'quiet') == 'quiet']
    answered = [r for r in live if r['answered']]
    out['speculation'] = speculation(live)
    if idle_cpu:
        out['idle'] = idle_cpu
    for key, _ in LIVE_STAGES + LIVE_EXTRA:
        out['live'][key] = stats([r['latency_ms'].get(key) for r in answered])
    out['live_turns'] = len(live)
    out['live_answered'] = len(answered)
    out['live_correct'] = sum(1 for r in live if r['correct'])
    out['live_split_turns'] = sum(1 for r in live if r['split_turns'])
    if naive:
        ok = [r for r in naive if r['answered']]
        for key, _ in NAIVE_STAGES + (NAIVE_E2E,):
            out['naive'][key] = stats([r['latency_ms'].get(key) for r in ok])
        out['naive_turns'] = len(naive)
        out['naive_correct'] = sum(1 for r in naive if r['correct'])
        lv, nv = out['live']['true_e2e_ms'], out['naive']['e2e_ms']
        for q in ('p50', 'p95'):
            if lv[q] and nv[q]:
                out['ratio'][q] = nv[q] / lv[q]
    lp = out['live']['true_e2e_ms']
    out['target'] = {'p50_ms': TARGET_P50_MS, 'p95_ms': TARGET_P95_MS,
                     'p50_met': bool(lp['p50'] is not None and lp['p50'] <= TARGET_P50_MS),
                     'p95_met': bool(lp['p95'] is not None and lp['p95'] <= TARGET_P95_MS)}
    return out


def _fmt(v: float | None) -> str:
    return '—' if v is None else f'{v:,.0f}'


def _stage_table(title: str, rows: Sequence[tuple[str, str]], stats_by_key: dict[str, Any],
                 bold: str) -> Any:
    """A rich table of stage timings: stage, n, median, p95, max."""
    from rich.table import Table
    t = Table(title=title, title_justify='left')
    for col in ('stage', 'n', 'median', 'p95', 'max'):
        t.add_column(col, justify='left' if col == 'stage' else 'right')
    for key, label in rows:
        s = stats_by_key[key]
        t.add_row(label, str(s['n']), _fmt(s['p50']), _fmt(s['p95']), _fmt(s['max']),
                  style='bold' if key == bold else None)
    return t


def render(summary: dict[str, Any], console: Any) -> None:
    """The summary as tables and lines on a rich console."""
    console.print(_stage_table('Streaming graph (live processes) — milliseconds',
                               LIVE_STAGES + LIVE_EXTRA, summary['live'], 'true_e2e_ms'))
    console.print(f'answered {summary["live_answered"]}/{summary["live_turns"]} turns, '
                  f'expected fact in the reply {summary["live_correct"]}/'
                  f'{summary["live_turns"]}, inputs that opened an extra (transcribed) turn '
                  f'{summary["live_split_turns"]}')
    if summary.get('naive'):
        console.print(_stage_table(
            'Naive sequential pipeline (same models, in process) — milliseconds',
            NAIVE_STAGES + (NAIVE_E2E,), summary['naive'], 'e2e_ms'))
        console.print(f'naive: expected fact in the reply {summary["naive_correct"]}/'
                      f'{summary["naive_turns"]}')
        r = summary['ratio']
        if r:
            console.print(f'[bold]naive / streaming end to end: median '
                          f'{r.get("p50", float("nan")):.2f}x, p95 '
                          f'{r.get("p95", float("nan")):.2f}x[/bold]')
    sp = summary.get('speculation') or {}
    if sp.get('turns'):
        lead = sp['lead_ms']
        console.print(f'early final before the end-of-turn decision: '
                      f'{sp["early_before_end_of_turn"]}/{sp["turns"]} turns; lead median '
                      f'{_fmt(lead["p50"])} ms, p95 {_fmt(lead["p95"])} ms (negative: after)')
    if summary.get('idle'):
        render_idle(summary['idle'], console)
    if summary.get('busy'):
        render_busy(summary['busy'], console)
    tg = summary['target']
    lp = summary['live']['true_e2e_ms']
    console.print(f'target p50 <= {TARGET_P50_MS:.0f} ms: '
                  f'{"met" if tg["p50_met"] else "NOT met"} (p50 {_fmt(lp["p50"])} ms); '
                  f'p95 < {TARGET_P95_MS:.0f} ms: {"met" if tg["p95_met"] else "NOT met"} '
                  f'(p95 {_fmt(lp["p95"])} ms)')


def render_idle(data: dict[str, Any], console: Any) -> None:
    """The idle graph's CPU per node (``idle.idle_summary``) as a table."""
    from rich.table import Table
    t = Table(title=f'Idle graph: {data["window_s"]:.0f} s of silence, no turns — CPU '
                    f'time as % of one core', title_justify='left')
    t.add_column('node')
    t.add_column('% of one core', justify='right')
    for name, pct in sorted(data['percent_of_one_core'].items(), key=lambda kv: -kv[1]):
        t.add_row(name, f'{pct:.1f}')
    total, target = data['total_percent'], data['target_percent']
    t.add_row('all nodes', f'{total:.1f}', style='bold')
    console.print(t)
    console.print(f'idle target <= {target:.0f} % of one core: '
                  f'{"met" if total <= target else "NOT met"} ({total:.1f} %)')


def plot(summary: dict[str, Any], live: list[dict[str, Any]],
         naive: list[dict[str, Any]] | None, path: str | os.PathLike) -> Path:
    """Waterfall of the median stage times and the CDF of end-to-end latency (PNG)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 9))
    colors = ['#9e9e9e', '#4e79a7', '#f28e2b', '#59a14f', '#b07aa1']
    rows: list[tuple[str, list[tuple[str, float]], float | None]] = []
    live_segments = [(label, summary['live'][key]['p50'] or 0.0) for key, label in LIVE_STAGES]
    rows.append(('streaming graph', live_segments, summary['live']['true_e2e_ms']['p50']))
    if naive and summary.get('naive'):
        naive_segments = [(label, summary['naive'][key]['p50'] or 0.0)
                          for key, label in NAIVE_STAGES]
        rows.append(('naive sequential', naive_segments, summary['naive']['e2e_ms']['p50']))
    for y, (name, segs, e2e_p50) in enumerate(reversed(rows)):
        x = 0.0
        for i, (label, w) in enumerate(segs):
            ax1.barh(y, w, left=x, color=colors[i % len(colors)], edgecolor='white',
                     label=label if name == rows[0][0] or len(rows) == 1 else None)
            if w > 60:
                ax1.text(x + w / 2, y, f'{w:.0f}', ha='center', va='center', fontsize=8,
                         color='white')
            x += w
        if e2e_p50:
            ax1.plot([e2e_p50], [y], marker='|', markersize=28, color='black')
            ax1.text(e2e_p50, y + 0.33, f'p50 e2e {e2e_p50:.0f} ms', fontsize=8, ha='center')
    ax1.set_yticks(range(len(rows)))
    ax1.set_yticklabels([r[0] for r in reversed(rows)])
    ax1.axvline(TARGET_P50_MS, color='red', linestyle='--', linewidth=1)
    ax1.set_xlabel('ms after the true acoustic end of speech (median of each stage)')
    ax1.set_title('Where the time goes (waterfall of median stage times)')
    ax1.legend(loc='upper center', bbox_to_anchor=(0.5, -0.16), ncol=3, fontsize=7)
    ax1.set_xlim(0, max([r[2] or 0.0 for r in rows] + [TARGET_P50_MS]) * 1.15)
    series = [('streaming: true speech end', [r['latency_ms'].get('true_e2e_ms')
                                              for r in live if r['answered']]),
              ('streaming: from endpoint', [r['latency_ms'].get('e2e_from_endpoint_ms')
                                            for r in live if r['answered']])]
    if naive:
        series.append(('naive sequential', [r['latency_ms'].get('e2e_ms')
                                            for r in naive if r['answered']]))
    for label, vals in series:
        v = np.sort(np.asarray([x for x in vals if x is not None and math.isfinite(x)]))
        if v.size:
            ax2.step(np.concatenate([v[:1], v]), np.arange(0, v.size + 1) / v.size,
                     where='post', label=f'{label} (n={v.size})')
    ax2.axvline(TARGET_P50_MS, color='red', linestyle='--', linewidth=1, label='700 ms target')
    ax2.set_xlabel('end-to-end latency, ms (first audible reply sample)')
    ax2.set_ylabel('fraction of turns')
    ax2.set_ylim(0, 1.02)
    ax2.grid(alpha=0.3)
    ax2.legend(loc='lower right', fontsize=8)
    ax2.set_title('CDF of end-to-end latency')
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def render_busy(b: dict[str, Any], console: Any) -> None:
    """The busy-robot condition (``busy.busy_summary``) in one line."""
    q, bz = b['e2e_ms']['quiet'], b['e2e_ms']['busy']
    ratio = '—' if b['p50_ratio'] is None else f'{b["p50_ratio"]:.2f}x'
    load = b['load']
    console.print(f'[bold]busy robot[/bold] ({load["processes"]} processes wanting '
                  f'{load["cores_wanted"]:g} cores, got {load["cores_used"]}): e2e median '
                  f'{_fmt(bz["p50"])} ms (p95 {_fmt(bz["p95"])}) vs quiet {_fmt(q["p50"])} ms '
                  f'(p95 {_fmt(q["p95"])}) = {ratio}; {b["lost_turns"]}/{b["turns"]} turns '
                  f'lost; target <= {b["target_ratio"]:g}x, none lost: '
                  f'{"met" if b["met"] else "NOT met"}')
