"""`wallie bench`: end-to-end latency of the live graph on the fixture set, vs a naive pipeline.

Live: the real graph (``wallie_cli.e2e.LiveGraph``: every node a process, real models, CPU
profile by default, wake word off, player on its real-time null sink) hears each fixture bag
replayed into audio/in with microphone timing. Per turn:

* end to end = first audible sample (player) - the fixture's TRUE acoustic speech end (the
  sidecar's ``speech_end_s`` mapped onto the re-stamped replay clock), so the endpoint
  silence wait is inside the number; also reported from the gate's endpoint decision and
  from the gate's own (VAD) speech end;
* the stages between: endpoint wait, ASR final after the endpoint, LLM first speakable
  chunk (and first token), TTS first audio, player.

Naive: the same fixtures, models and parameters in this process, strictly one after the
other — record the whole utterance (until the gate's own Silero VAD endpointer, run here on
the fixture with the same parameters, confirms the end by silence: a sequential pipeline has
no transcript before its endpoint, so no early end on a complete sentence), transcribe it,
generate the whole reply, synthesise the whole reply, play (first sample = as soon as synthesis is
done) — using the stage engines directly (wallie_asr.engine, wallie_llm engines, wallie_tts
engines). Same conversation handling (history for follow-ups).

Output: a rich table (median / p95 / max per stage and end to end, the naive/streaming
ratio), ``bench.json`` (every turn and the summary) and ``bench.png`` (waterfall of the
median stage times + CDF of end-to-end latency). Run it with ``wallie bench`` or
``python -m wallie_cli.bench``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Sequence

import numpy as np

from wallie_cli import e2e, fixture_set, idle, wavs

DEFAULT_SETS = ('questions', 'followup')
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


# ---------------------------------------------------------------------------- statistics
def stats(values: Sequence[float]) -> dict[str, Any]:
    """n, median, p95, max, mean of the finite values (None where there are none)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if v.size == 0:
        return {'n': 0, 'p50': None, 'p95': None, 'max': None, 'mean': None}
    return {'n': int(v.size), 'p50': float(np.percentile(v, 50)),
            'p95': float(np.percentile(v, 95)), 'max': float(v.max()),
            'mean': float(v.mean())}


def select_fixtures(fixtures_dir: str | os.PathLike, sets: Sequence[str] = DEFAULT_SETS,
                    only: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Fixtures that should be answered (speech, a turn expected, no wake word needed).

    Follow-up groups stay in their recorded order (turn 1 before turn 2).
    """
    out = []
    for f in fixture_set.load_manifest(fixtures_dir):
        if only and f['name'] not in only:
            continue
        if not only and f.get('set') not in sets:
            continue
        if not f.get('speech') or not f.get('expect_turn') or f.get('wake_word'):
            continue
        out.append(f)
    return out


def _starts_conversation(f: dict[str, Any]) -> bool:
    return not f.get('group') or int(f.get('turn') or 1) <= 1


# ---------------------------------------------------------------------------- live graph
def run_live(fixtures: list[dict[str, Any]], repeats: int, options: e2e.GraphOptions,
             echo: Callable[[str], None], warmup: bool = True,
             turn_timeout: float = 60.0, idle_s: float = 0.0,
             ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Replay every fixture `repeats` times through the live graph; one dict per turn.

    With `idle_s` > 0 the graph's idle CPU is measured first (after the warm-up): silence
    streams into audio/in for that long and nobody speaks (``wallie_cli.idle``)."""
    turns: list[dict[str, Any]] = []
    info: dict[str, Any] = {}
    graph = e2e.LiveGraph(options, echo=lambda line: echo(f'  {line}'))
    try:
        graph.start()
        info['ready_s'] = graph.wait_ready(300)
        info['run_dir'] = str(graph.run_dir)
        info['params'] = graph.prep.resolved.params
        obs = graph.observer
        assert obs is not None
        if warmup and fixtures:
            echo('  warm-up turn (not counted)')
            obs.reset_conversation()
            graph.ask_bag(fixtures[0]['bag_path'], timeout=turn_timeout)
            time.sleep(0.5)
        if idle_s > 0:
            echo(f'  idle graph: {idle_s:.0f} s of silence, CPU time of every node')
            graph.wait_idle(timeout=30.0)
            info['idle'] = idle.idle_summary(idle.measure_idle(graph, idle_s))
            echo('  idle graph: ' + ', '.join(
                f'{k} {v:.1f}' for k, v in info['idle']['percent_of_one_core'].items())
                + f'; all nodes {info["idle"]["total_percent"]:.1f} % of one core')
        total = repeats * len(fixtures)
        k = 0
        for rep in range(repeats):
            for f in fixtures:
                k += 1
                if _starts_conversation(f):
                    obs.reset_conversation()
                res = graph.ask_bag(f['bag_path'], timeout=turn_timeout)
                row = live_row(f, rep, res)
                turns.append(row)
                echo(f'  [{k:>3}/{total}] {progress_line(row)}')
                time.sleep(0.5)        # let the echo tail / follow-up bookkeeping settle
    finally:
        codes = graph.stop()
        info['exit_codes'] = codes
    return turns, info


def live_row(f: dict[str, Any], rep: int, res: e2e.TurnResult) -> dict[str, Any]:
    lat = res.latencies()
    return {
        'fixture': f['name'], 'repeat': rep, 'turn_id': res.turn_id,
        'answered': res.answered, 'transcript': res.transcript, 'reply': res.reply_text,
        'expected': f.get('expected_fact', []),
        'correct': fixture_set.contains_fact(res.reply_text, f.get('expected_fact', [])),
        # other turns the input opened that were transcribed or answered (a split question,
        # noise taken for speech)
        'split_turns': sum(1 for t in res.other_turns if t.transcript.strip() or t.chunks),
        'latency_ms': {k: (v if math.isfinite(v) else None) for k, v in lat.items()},
        # every stage stamp of the turn, ms after the true speech end (for timelines)
        'timeline_ms': res.timeline_ms(),
        'partials': [t['text'] for t in (res.record.transcripts if res.record else [])
                     if not t['is_final'] and not t['is_early_final']],
        'stamps_ns': res.stamps(),
    }


def progress_line(row: dict[str, Any]) -> str:
    lat = row['latency_ms']

    def ms(key: str) -> str:
        v = lat.get(key)
        return '-' if v is None else f'{v:.0f}'
    if not row['answered']:
        return f'{row["fixture"]:<40} NOT ANSWERED (heard {row["transcript"]!r})'
    mark = 'ok ' if row['correct'] else 'WRONG'
    return (f'{row["fixture"]:<40} e2e {ms("true_e2e_ms"):>5} ms  (endpoint '
            f'{ms("true_endpoint_ms")}, asr {ms("asr_ms")}, llm {ms("llm_first_chunk_ms")}, '
            f'tts {ms("tts_first_audio_ms")}, play {ms("playout_ms")})  {mark} '
            f'{row["reply"][:60]!r}')


# ---------------------------------------------------------------------------- naive pipeline
def full_params(params: dict[str, dict[str, Any]], node: str, package: str,
                executable: str) -> dict[str, Any]:
    """A node's parameter values: its declared defaults, then the merged configuration."""
    from wallie_bringup import config as wconfig
    table = wconfig.node_param_table(package, executable) or {}
    values = {name: p.default for name, p in table.items()}
    values.update(wconfig.for_node(params, node))
    return values


class NaivePipeline:
    """Record -> transcribe -> whole reply -> synthesise whole reply -> play, in sequence."""

    def __init__(self, params: dict[str, dict[str, Any]],
                 echo: Callable[[str], None] = lambda line: None) -> None:
        from wallie_asr.config import engine_from_params as asr_engine_from_params
        from wallie_asr.engine import WhisperEngine
        from wallie_llm.config import (
            chunker_from_params,
            engine_from_params,
            generation_from_params,
            memory_from_params,
        )
        from wallie_llm.engine import create_engine
        from wallie_llm.memory import ConversationMemory
        from wallie_llm.reply import ReplyGenerator
        from wallie_tts.engine import load_engine
        from wallie_tts.stream import ChunkSynthesizer
        from wallie_tts.tts_node import TtsNode
        asr_p = full_params(params, 'asr', 'wallie_asr', 'asr_node')
        llm_p = full_params(params, 'llm', 'wallie_llm', 'llm_node')
        tts_p = full_params(params, 'tts', 'wallie_tts', 'tts_node')
        gate_p = full_params(params, 'voice_gate', 'wallie_audio', 'voice_gate_node')
        self.silence_ms = float(gate_p.get('endpoint.min_silence_ms', 400))
        self.gate_params = gate_p
        self._vad: Any = None
        t0 = time.perf_counter()
        self.asr = WhisperEngine(asr_engine_from_params(asr_p))
        self.asr.load()
        echo(f'  naive: ASR loaded ({time.perf_counter() - t0:.1f} s)')
        t0 = time.perf_counter()
        self.llm = create_engine(engine_from_params(llm_p))
        self.llm.load()
        mcfg = memory_from_params(llm_p)
        self.memory = ConversationMemory(
            mcfg.system_prompt, self.llm.count_tokens,
            history_max_tokens=mcfg.history_max_tokens,
            prompt_budget_tokens=max(64, self.llm.context_tokens - 16),
            idle_timeout_s=0.0, summarize_dropped=mcfg.summarize_dropped)
        self.gen = ReplyGenerator(self.llm, self.memory, generation_from_params(llm_p),
                                  chunker_from_params(llm_p), mcfg.voice_commands)
        self.gen.prepare()          # the same prefix cache the node uses
        echo(f'  naive: LLM loaded ({time.perf_counter() - t0:.1f} s)')
        t0 = time.perf_counter()
        ns = SimpleNamespace(params=tts_p)
        self.tts = load_engine(TtsNode.engine_settings(ns)).engine
        self.synth = ChunkSynthesizer(self.tts, TtsNode.stream_settings(ns))
        self.synth.synthesize_all('Hello.')
        echo(f'  naive: TTS loaded ({time.perf_counter() - t0:.1f} s)')
        self._n = 0

    def reset(self) -> None:
        self.memory.reset()

    def vad_endpoint_ms(self, audio: np.ndarray, rate: int, speech_end_s: float) -> float:
        """Endpoint wait of the gate's own VAD endpointer on this audio, run in process
        with the same parameters but without the transcript shortcut (a sequential
        pipeline has no transcript before its endpoint): true speech end -> END."""
        from wallie_audio.config import endpoint_config
        from wallie_audio.endpoint import Endpointer, Kind
        from wallie_audio.vad import SileroVad
        from wallie_audio.voice_gate import BLOCK, BLOCK_NS
        if self._vad is None:
            self._vad = SileroVad(self.gate_params.get('vad.model_path') or None)
        if rate != wavs.RATE:
            import soxr
            audio = soxr.resample(audio, rate, wavs.RATE).astype(np.float32)
        cfg = dataclasses.replace(endpoint_config(self.gate_params), complete_silence_ms=0)
        ep = Endpointer(cfg)
        self._vad.reset()
        tail = np.zeros(int(cfg.min_silence_ms * wavs.RATE / 1000) + 4 * BLOCK, np.float32)
        x = np.concatenate([audio.astype(np.float32), tail])
        for i in range(len(x) // BLOCK):
            block = x[i * BLOCK:(i + 1) * BLOCK]
            for ev in ep.step(self._vad.prob(block), i * BLOCK_NS, BLOCK_NS):
                if ev.kind is Kind.END and ev.stamp_ns / 1e9 > speech_end_s:
                    return ev.stamp_ns / 1e6 - speech_end_s * 1e3
        return self.silence_ms

    def turn(self, f: dict[str, Any], endpoint_ms: float | None = None) -> dict[str, Any]:
        """One turn; `endpoint_ms`: the endpoint wait to charge (default: the gate's VAD
        endpointer run on the fixture without the transcript shortcut)."""
        from wallie_cli import bag_files
        from wallie_tts.normalize import normalize
        audio = bag_files.read_audio_bag(f['bag_path']).samples.astype(np.float32) / 32768.0
        if audio.ndim > 1:
            audio = audio.mean(axis=1)
        rate = int(f.get('sample_rate', wavs.RATE))
        wait_ms = (self.vad_endpoint_ms(audio, rate, float(f['speech_end_s']))
                   if endpoint_ms is None else float(endpoint_ms))
        # the whole utterance as a recorder with the same endpointing hands it over
        end = int((float(f['speech_end_s']) + wait_ms / 1000) * rate)
        utterance = audio[:end]
        t0 = time.perf_counter()
        text = self.asr.transcribe(utterance, vad_speech=True).text
        t1 = time.perf_counter()
        self._n += 1
        res = self.gen.run(f'naive-{self._n}', text, threading.Event()) if text else None
        reply = res.text if res is not None else ''
        if res is not None:
            self.gen.commit(res)
        t2 = time.perf_counter()
        wave = self.synth.synthesize_all(normalize(reply), first=False) if reply else None
        t3 = time.perf_counter()
        lat = {'endpoint_ms': wait_ms, 'asr_ms': (t1 - t0) * 1e3,
               'llm_ms': (t2 - t1) * 1e3, 'tts_ms': (t3 - t2) * 1e3}
        lat['e2e_ms'] = sum(lat.values())
        return {'fixture': f['name'], 'transcript': text, 'reply': reply,
                'answered': bool(reply and wave is not None and wave.size),
                'correct': fixture_set.contains_fact(reply, f.get('expected_fact', [])),
                'reply_audio_s': (wave.size / self.synth.settings.output_rate_hz
                                  if wave is not None else 0.0),
                'latency_ms': lat}

    def close(self) -> None:
        for engine in (self.asr, self.llm, self.tts):
            try:
                engine.close()
            except Exception:
                pass


def run_naive(fixtures: list[dict[str, Any]], repeats: int, params: dict[str, dict[str, Any]],
              echo: Callable[[str], None], warmup: bool = True,
              endpoint_ms: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """The naive pipeline over the fixtures; `endpoint_ms`: fixture -> endpoint wait."""
    endpoint_ms = endpoint_ms or {}
    pipe = NaivePipeline(params, echo)
    rows: list[dict[str, Any]] = []
    try:
        if warmup and fixtures:
            pipe.reset()
            pipe.turn(fixtures[0])
        total = repeats * len(fixtures)
        k = 0
        for rep in range(repeats):
            for f in fixtures:
                k += 1
                if _starts_conversation(f):
                    pipe.reset()
                row = pipe.turn(f, endpoint_ms.get(f['name']))
                row['repeat'] = rep
                rows.append(row)
                lat = row['latency_ms']
                echo(f'  [{k:>3}/{total}] {f["name"]:<40} e2e {lat["e2e_ms"]:>5.0f} ms  '
                     f'(endpoint {lat["endpoint_ms"]:.0f}, asr {lat["asr_ms"]:.0f}, llm '
                     f'{lat["llm_ms"]:.0f}, tts {lat["tts_ms"]:.0f})  '
                     f'{"ok " if row["correct"] else "WRONG"} {row["reply"][:60]!r}')
    finally:
        pipe.close()
    return rows


# ---------------------------------------------------------------------------- report
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
              idle_cpu: dict[str, Any] | None = None) -> dict[str, Any]:
    answered = [r for r in live if r['answered']]
    out: dict[str, Any] = {'live': {}, 'naive': {}, 'ratio': {}}
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


def render(summary: dict[str, Any], console: Any) -> None:
    from rich.table import Table
    t = Table(title='Streaming graph (live processes) — milliseconds', title_justify='left')
    for col in ('stage', 'n', 'median', 'p95', 'max'):
        t.add_column(col, justify='left' if col == 'stage' else 'right')
    for key, label in LIVE_STAGES + LIVE_EXTRA:
        s = summary['live'][key]
        t.add_row(label, str(s['n']), _fmt(s['p50']), _fmt(s['p95']), _fmt(s['max']),
                  style='bold' if key == 'true_e2e_ms' else None)
    console.print(t)
    console.print(f'answered {summary["live_answered"]}/{summary["live_turns"]} turns, '
                  f'expected fact in the reply {summary["live_correct"]}/'
                  f'{summary["live_turns"]}, inputs that opened an extra (transcribed) turn '
                  f'{summary["live_split_turns"]}')
    if summary.get('naive'):
        n = Table(title='Naive sequential pipeline (same models, in process) — milliseconds',
                  title_justify='left')
        for col in ('stage', 'n', 'median', 'p95', 'max'):
            n.add_column(col, justify='left' if col == 'stage' else 'right')
        for key, label in NAIVE_STAGES + (NAIVE_E2E,):
            s = summary['naive'][key]
            n.add_row(label, str(s['n']), _fmt(s['p50']), _fmt(s['p95']), _fmt(s['max']),
                      style='bold' if key == 'e2e_ms' else None)
        console.print(n)
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


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


# ---------------------------------------------------------------------------- main
def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog='wallie bench', description=__doc__,
                                          formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--fixtures', metavar='DIR', default=None,
                   help='fixture directory with manifest.json (default: the committed set '
                        'installed with wallie_cli)')
    p.add_argument('--repeats', type=int, default=3, metavar='N',
                   help='passes over the fixture set (default 3)')
    p.add_argument('--out', metavar='DIR', default='bench-out',
                   help='where bench.json and bench.png go (default ./bench-out)')
    p.add_argument('--sets', default=','.join(DEFAULT_SETS), metavar='A,B',
                   help=f'fixture sets to replay (default {",".join(DEFAULT_SETS)})')
    p.add_argument('--only', default='', metavar='NAME,...', help='only these fixtures')
    p.add_argument('--profile', choices=('cpu', 'cpu-accurate', 'gpu'), default='cpu',
                   help='parameter profile (default cpu)')
    p.add_argument('--set', action='append', default=[], metavar='NODE:PARAM=VALUE',
                   help='override one ROS parameter (repeatable)')
    p.add_argument('--user-config', action='store_true',
                   help='also apply config.toml and WALLIE_* (default: profile defaults only)')
    p.add_argument('--no-naive', action='store_true', help='skip the naive pipeline')
    p.add_argument('--no-warmup', action='store_true',
                   help='count the first turn too (default: one unmeasured warm-up turn)')
    p.add_argument('--turn-timeout', type=float, default=60.0, metavar='S')
    p.add_argument('--idle-s', type=float, default=20.0, metavar='S',
                   help='measure the idle graph (silence in, no turns) for this long '
                        'before the turns (0 = skip)')
    return p


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from wallie_bringup import config as wconfig
    console = Console()
    fixtures_dir = Path(args.fixtures) if args.fixtures else fixture_set.default_fixtures_dir()
    if not (fixtures_dir / 'manifest.json').is_file():
        console.print('[red]wallie bench: no fixtures (pass --fixtures DIR with a '
                      'manifest.json; python -m wallie_cli.fixtures.generate makes '
                      'them)[/red]')
        return 2
    if args.repeats < 1:
        console.print('[red]wallie bench: --repeats must be >= 1[/red]')
        return 2
    only = [n.strip() for n in args.only.split(',') if n.strip()]
    sets = [s.strip() for s in args.sets.split(',') if s.strip()]
    try:
        fixtures = select_fixtures(fixtures_dir, sets, only)
        params: dict[str, dict[str, Any]] = {}
        for item in args.set:
            node, param, value = wconfig.parse_set(item)
            params.setdefault(node, {})[param] = value
    except (wavs.GraphError, wconfig.ConfigError) as exc:
        console.print(f'[red]wallie bench: {exc}[/red]')
        return 2
    if not fixtures:
        console.print(f'[red]wallie bench: no fixtures selected from {fixtures_dir}[/red]')
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    home = fixture_set.temp_home()
    options = e2e.GraphOptions(profile=args.profile, capture='skip', sink='null',
                               wake_engine='none', user_config=args.user_config,
                               params=params, run_dir=str(out / 'run'),
                               home=None if args.user_config else str(home))
    meta: dict[str, Any] = {
        'command': 'wallie bench ' + ' '.join(sys.argv[2:] if sys.argv[1:2] == ['bench']
                                              else sys.argv[1:]),
        'date': time.strftime('%Y-%m-%d %H:%M:%S %z'), 'host': platform.node(),
        'cpus': os.cpu_count(), 'python': platform.python_version(),
        'fixtures_dir': str(fixtures_dir), 'fixtures': [f['name'] for f in fixtures],
        'repeats': args.repeats, 'profile': args.profile, 'overrides': params,
        'load_avg_start': _load()}
    console.print(f'[bold]wallie bench[/bold]: {len(fixtures)} fixtures x {args.repeats} '
                  f'repeats, profile {args.profile}; load average {meta["load_avg_start"]}')
    console.print('Live graph (every node a process; real models):')
    t0 = time.monotonic()
    try:
        live, info = run_live(fixtures, args.repeats, options, console.print,
                              warmup=not args.no_warmup, turn_timeout=args.turn_timeout,
                              idle_s=args.idle_s)
    except wavs.GraphError as exc:
        console.print(f'[red]wallie bench: {exc}[/red]')
        return 1
    finally:
        fixture_set.remove_tree(home)
    meta['live_wall_s'] = round(time.monotonic() - t0, 1)
    meta['ready_s'] = round(info.get('ready_s', 0.0), 1)
    meta['load_avg_after_live'] = _load()
    naive = None
    if not args.no_naive:
        console.print('Naive sequential pipeline (same fixtures, models and parameters, '
                      'in process):')
        t0 = time.monotonic()
        naive = run_naive(fixtures, args.repeats, info['params'], console.print,
                          warmup=not args.no_warmup)
        meta['naive_wall_s'] = round(time.monotonic() - t0, 1)
    meta['load_avg_end'] = _load()
    summary = summarize(live, naive, info.get('idle'))
    render(summary, console)
    data = {'meta': meta, 'summary': summary, 'live_turns': live, 'naive_turns': naive or [],
            'params': info.get('params', {})}
    (out / 'bench.json').write_text(json.dumps(data, indent=1, default=str))
    png = plot(summary, live, naive, out / 'bench.png')
    console.print(f'wrote {out / "bench.json"} and {png}')
    return 0 if summary['live_answered'] else 1


def main(argv: list[str] | None = None) -> int:
    from wallie_common.runtime import apply_privacy_env
    apply_privacy_env()
    return run(build_parser().parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
