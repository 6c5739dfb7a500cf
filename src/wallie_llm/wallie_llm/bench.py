"""LLM benchmark: `python -m wallie_llm.bench [--repeats N] [--mode engine|graph|both]`.

Times are measured from the moment the final transcript is available:

- engine mode (in-process, `ReplyGenerator` on the real model, no DDS):
  * warm prefix: the system prompt was evaluated at configure (the node's normal case);
  * cold prefix: the KV cache is cleared first, so the system prompt is prefilled too;
  * speculative start: generation begins at the early final, `lead` ms before the final
    (the endpoint silence left after ASR's early transcription); the chunks are held and
    released when the final arrives, so the latency after the final is
    max(0, first_chunk - lead). Computed per run from the warm runs' own timings.
- graph mode (the real `llm_node` process over DDS, as the TTS sees it): Transcript
  published -> first ReplyChunk received, without and with an early final `lead` ms before.

Reports median / p95 / max of time to first token, time to first speakable chunk,
decode tokens/s, and prompt tokens prefilled vs cached. Writes JSON (--out).
Fixture: the committed QUESTIONS below, each in a fresh conversation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from typing import Any

import numpy as np

from wallie_llm.config import ChunkerConfig, EngineConfig, GenerationConfig, MemoryConfig
from wallie_llm.engine import create_engine
from wallie_llm.memory import ConversationMemory
from wallie_llm.reply import ReplyGenerator

QUESTIONS = [
    'What is the capital of France?',
    'Who wrote Romeo and Juliet?',
    'What is the largest planet in our solar system?',
    'How many days are in a week?',
    'What is two plus two?',
    'Can you tell me a fun fact about octopuses?',
    'How do I boil an egg?',
    'What should I cook for dinner tonight?',
    'Why is the sky blue?',
    'Set a timer for ten minutes.',
]
TARGET_FIRST_CHUNK_MS = 250.0


def stats(values: list[float]) -> dict[str, Any]:
    """n, median, p95 and max of `values`, NaNs left out, rounded to 0.1 ({'n': 0} when none)."""
    vals = [v for v in values if v == v]
    if not vals:
        return {'n': 0}
    arr = np.asarray(vals, dtype=float)
    return {'n': int(arr.size), 'median': round(float(np.median(arr)), 1),
            'p95': round(float(np.percentile(arr, 95)), 1), 'max': round(float(arr.max()), 1)}


def ms(a_ns: int, b_ns: int) -> float:
    """Milliseconds from `a_ns` to `b_ns`; NaN if either stamp is unset (0)."""
    return (b_ns - a_ns) / 1e6 if a_ns and b_ns else float('nan')


# ------------------------------------------------------------------------- engine mode
def bench_engine(args: argparse.Namespace) -> dict[str, Any]:
    """Engine mode: latencies and token counts of ReplyGenerator on the real model, warm and
    cold prefix, and the speculative start they imply."""
    cfg = EngineConfig(model=args.model, threads=args.threads,
                       context_tokens=args.context_tokens)
    t0 = time.perf_counter()
    engine = create_engine(cfg)
    engine.load()
    load_s = time.perf_counter() - t0
    gen_cfg = GenerationConfig(max_tokens=args.max_tokens, temperature=0.0)
    chunk_cfg = ChunkerConfig(first_max_words=args.first_max_words)
    system = MemoryConfig().system_prompt
    rows: dict[str, list[float]] = {k: [] for k in (
        'warm.first_token_ms', 'warm.first_chunk_ms', 'warm.tokens_per_s',
        'warm.prompt_tokens', 'warm.prefilled_tokens', 'warm.reply_tokens',
        'cold.first_token_ms', 'cold.first_chunk_ms', 'cold.prefilled_tokens')}
    for lead in args.lead_ms:
        rows[f'speculative.lead{lead:g}ms.first_chunk_ms'] = []
    samples = []
    try:
        for rep in range(args.repeats):
            for q in QUESTIONS:
                for kind in ('cold', 'warm'):
                    mem = ConversationMemory(system, engine.count_tokens)
                    gen = ReplyGenerator(engine, mem, gen_cfg, chunk_cfg)
                    engine.reset_cache()
                    if kind == 'warm':
                        gen.prepare()         # what on_configure does: system prompt only
                    res = gen.run(f'{kind}{rep}', q, threading.Event())
                    st = res.stats
                    ft = ms(res.start_ns, res.first_token_ns)
                    fc = ms(res.start_ns, res.first_chunk_ns)
                    rows[f'{kind}.first_token_ms'].append(ft)
                    rows[f'{kind}.first_chunk_ms'].append(fc)
                    rows[f'{kind}.prefilled_tokens'].append(st.prompt_tokens - st.cached_tokens)
                    if kind == 'warm':
                        rows['warm.tokens_per_s'].append(st.tokens_per_s)
                        rows['warm.prompt_tokens'].append(st.prompt_tokens)
                        rows['warm.reply_tokens'].append(st.generated_tokens)
                        for lead in args.lead_ms:
                            rows[f'speculative.lead{lead:g}ms.first_chunk_ms'].append(
                                max(0.0, fc - lead))
                    samples.append({'mode': 'engine', 'kind': kind, 'repeat': rep,
                                    'question': q, 'first_token_ms': round(ft, 1),
                                    'first_chunk_ms': round(fc, 1),
                                    'first_chunk': res.chunks[0] if res.chunks else '',
                                    'reply': res.text, 'prompt_tokens': st.prompt_tokens,
                                    'cached_tokens': st.cached_tokens,
                                    'tokens': st.generated_tokens,
                                    'tokens_per_s': round(st.tokens_per_s, 1)})
            print(f'  engine repeat {rep + 1}/{args.repeats} done', file=sys.stderr)
    finally:
        info = engine.info
        engine.close()
    return {'load_s': round(load_s, 2), 'warmup_s': round(info.warmup_s, 2),
            'model': info.model, 'metrics': {k: stats(v) for k, v in rows.items()},
            'samples': samples}


# -------------------------------------------------------------------------- graph mode
def bench_graph(args: argparse.Namespace) -> dict[str, Any]:
    """Graph mode: transcript published to first ReplyChunk received from a real llm_node
    process, with and without an early final."""
    from wallie_interfaces.msg import ReplyChunk, Transcript
    from wallie_interfaces.srv import ResetConversation
    from wallie_testing.harness import NodeProcess, Probe, configure_ros_env
    configure_ros_env()
    params = {'llm.temperature': 0.0, 'llm.threads': args.threads,
              'llm.max_tokens': args.max_tokens, 'llm.model': args.model,
              'llm.context_tokens': args.context_tokens,
              'llm.chunk.first_max_words': args.first_max_words}
    proc = NodeProcess('llm_node', params=params)
    probe = Probe('llm_bench_probe')
    arrivals: dict[str, float] = {}
    finals: dict[str, float] = {}

    def on_chunk(msg: ReplyChunk) -> None:
        now = time.perf_counter()
        if msg.text and msg.turn_id not in arrivals:
            arrivals[msg.turn_id] = now
        if msg.is_final:
            finals[msg.turn_id] = now
    from wallie_common.qos import EVENT_QOS
    probe.node.create_subscription(ReplyChunk, 'reply', on_chunk, EVENT_QOS)
    pub = probe.publisher('transcript', Transcript)
    rows: dict[str, list[float]] = {'graph.final_to_first_chunk_ms': []}
    for lead in args.lead_ms:
        rows[f'graph.speculative.lead{lead:g}ms.final_to_first_chunk_ms'] = []
    samples = []
    try:
        t0 = time.perf_counter()
        probe.wait_for(lambda: any(n == '/llm/change_state' for n, _ in
                                   probe.node.get_service_names_and_types()), 60,
                       'llm services', [proc])
        probe.activate('llm')
        configure_s = time.perf_counter() - t0
        probe.wait_for_subscribers(pub, procs=[proc])
        n = 0
        for rep in range(args.repeats):
            # Leads outside, questions inside: consecutive prompts differ, so a reply never
            # finds its whole prompt still in the KV cache from the run before.
            for lead in [None, *args.lead_ms]:
                for q in QUESTIONS:
                    probe.call(ResetConversation, 'reset_conversation',
                               ResetConversation.Request())
                    n += 1
                    turn = f'b{n}'
                    if lead is not None:
                        pub.publish(Transcript(turn_id=turn, text=q, is_early_final=True))
                        time.sleep(lead / 1000.0)
                    t_final = time.perf_counter()
                    pub.publish(Transcript(turn_id=turn, text=q, is_final=True))
                    probe.wait_for(lambda: turn in finals, 60, f'reply to {turn}', [proc])
                    lat = (arrivals.get(turn, float('nan')) - t_final) * 1000.0
                    key = ('graph.final_to_first_chunk_ms' if lead is None else
                           f'graph.speculative.lead{lead:g}ms.final_to_first_chunk_ms')
                    rows[key].append(lat)
                    samples.append({'mode': 'graph', 'repeat': rep, 'question': q,
                                    'lead_ms': lead, 'final_to_first_chunk_ms': round(lat, 1)})
            print(f'  graph repeat {rep + 1}/{args.repeats} done', file=sys.stderr)
    finally:
        probe.close()
        code = proc.stop()
    return {'configure_s': round(configure_s, 2), 'exit_code': code,
            'metrics': {k: stats(v) for k, v in rows.items()}, 'samples': samples}


# -------------------------------------------------------------------------------- main
def print_table(title: str, metrics: dict[str, dict[str, Any]]) -> None:
    """Print n, median, p95 and max of each metric under `title`."""
    print(f'\n{title}')
    print(f'{"metric":58s} {"n":>4s} {"median":>9s} {"p95":>9s} {"max":>9s}')
    for name, s in metrics.items():
        if s.get('n'):
            print(f'{name:58s} {s["n"]:4d} {s["median"]:9.1f} {s["p95"]:9.1f} {s["max"]:9.1f}')


def main(argv: list[str] | None = None) -> int:
    """Run the LLM benchmark in the chosen mode(s), print the tables and write the JSON results."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--mode', choices=('engine', 'graph', 'both'), default='both')
    ap.add_argument('--model', default=EngineConfig.model)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--context-tokens', type=int, default=2048)
    ap.add_argument('--max-tokens', type=int, default=96)
    ap.add_argument('--first-max-words', type=int, default=ChunkerConfig.first_max_words)
    ap.add_argument('--lead-ms', type=float, nargs='*', default=[150.0, 300.0],
                    help='early final -> final gaps to simulate for speculative start')
    ap.add_argument('--out', default='wallie_llm_bench.json')
    args = ap.parse_args(argv)
    out: dict[str, Any] = {
        'host': {'platform': platform.platform(), 'cpus': os.cpu_count(),
                 'loadavg_at_start': os.getloadavg()},
        'config': {k: v for k, v in vars(args).items() if k != 'out'},
        'questions': QUESTIONS, 'target_first_chunk_ms': TARGET_FIRST_CHUNK_MS,
    }
    if args.mode in ('engine', 'both'):
        out['engine'] = bench_engine(args)
        e = out['engine']
        print_table(f'engine ({e["model"]}; load {e["load_s"]} s, warm-up {e["warmup_s"]} s; '
                    f'ms unless named)', e['metrics'])
    if args.mode in ('graph', 'both'):
        out['graph'] = bench_graph(args)
        print_table(f'graph (llm_node process; configure {out["graph"]["configure_s"]} s)',
                    out['graph']['metrics'])
    out['host']['loadavg_at_end'] = os.getloadavg()
    with open(args.out, 'w') as fh:
        json.dump(out, fh, indent=2)
    print(f'\nwrote {args.out} (load average {out["host"]["loadavg_at_start"][0]:.1f} -> '
          f'{out["host"]["loadavg_at_end"][0]:.1f} on {os.cpu_count()} CPUs)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
