"""TTS benchmark: chunk arrival -> first audio frame, and real-time factor.

Run: ``.venv/bin/python -m wallie_tts.bench [--engine piper] [--repeats 10] [--graph]``

Two modes, both on the same committed texts (``SHORT`` and ``LONG`` below):
- in-process (default): the exact pipeline the node runs (normalise -> split -> engine ->
  trim/fade -> soxr -> frames), timed from the moment a chunk is handed over to the moment
  its first frame is ready;
- ``--graph``: a real ``tts_node`` process over DDS; timed from publishing a ReplyChunk to
  receiving the first AudioFrame of that turn in this process (DDS hops included).
Prints median/p95/max tables and writes JSON (``--json``, default ``tts_bench.json``).
The CPU is shared: compare medians over several repeats, not single runs.
``first_audio_cpu_ms`` (in-process, Piper with 1 thread runs in the calling thread) is the
CPU time to the first frame: what the wall time would be on an otherwise idle core.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time
from typing import Any

import numpy as np

SHORT = [
    'Sure.',
    'The capital of France is Paris.',
    'It is twenty degrees outside.',
    'Okay, timer set.',
    'Hello, how can I help you today?',
]
LONG = [
    'Okay, I have set a timer for 10 minutes and I will let you know when it is done, so '
    'you can relax in the meantime.',
    'The Eiffel Tower was built in 1889 for the World Fair, and at 330 m it was the '
    'tallest structure in the world for about forty years.',
    'Photosynthesis is the process by which green plants use sunlight, water and carbon '
    'dioxide to make sugar and oxygen, which almost all life on Earth depends on.',
    'To reset the robot, hold the power button for five seconds until the light blinks '
    'twice, then release it and wait for the chime before you speak again.',
]


def _stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {'n': len(values), 'median': statistics.median(ordered), 'p95': p95,
            'max': ordered[-1], 'min': ordered[0]}


def run_inprocess(engine_name: str, repeats: int, split: bool, out_rate: int,
                  threads: int) -> dict[str, Any]:
    from wallie_tts.config import EngineSettings, PiperSettings, StreamSettings
    from wallie_tts.engine import load_engine
    from wallie_tts.normalize import normalize
    from wallie_tts.stream import ChunkSynthesizer

    t0 = time.perf_counter()
    loaded = load_engine(EngineSettings(engine=engine_name,
                                        piper=PiperSettings(threads=threads)),
                         allow_fallback=False)
    load_s = time.perf_counter() - t0
    settings = StreamSettings(output_rate_hz=out_rate, split_first_clause=split)
    synth = ChunkSynthesizer(loaded.engine, settings)
    results: dict[str, Any] = {'engine': loaded.engine.describe(), 'load_warmup_s': load_s}
    for label, texts in (('short', SHORT), ('long', LONG)):
        first_ms: list[float] = []
        first_cpu_ms: list[float] = []
        rtf: list[float] = []
        audio_s: list[float] = []
        for _ in range(repeats):
            for text in texts:
                c_arrive = time.thread_time()
                t_arrive = time.perf_counter()
                frames = synth.frames(normalize(text), True, threading.Event())
                first, _last = next(frames)
                t_first = time.perf_counter()
                first_cpu_ms.append((time.thread_time() - c_arrive) * 1000)
                n = len(first) + sum(len(f) for f, _ in frames)
                t_end = time.perf_counter()
                first_ms.append((t_first - t_arrive) * 1000)
                seconds = n / out_rate
                audio_s.append(seconds)
                rtf.append((t_end - t_arrive) / seconds)
        results[label] = {'first_audio_ms': _stats(first_ms), 'rtf': _stats(rtf),
                          'first_audio_cpu_ms': _stats(first_cpu_ms),
                          'audio_s': _stats(audio_s)}
    loaded.engine.close()
    return results


def run_graph(repeats: int, out_rate: int) -> dict[str, Any]:
    from wallie_common.qos import REPLY_AUDIO_QOS
    from wallie_interfaces.msg import AudioFrame, ReplyChunk
    from wallie_testing.harness import NodeProcess, Probe, configure_ros_env

    configure_ros_env()
    probe = Probe('tts_bench_probe')
    first_rx: dict[str, float] = {}
    done: dict[str, float] = {}
    samples: dict[str, int] = {}

    def on_frame(msg: AudioFrame) -> None:
        now = time.perf_counter()
        first_rx.setdefault(msg.stream_id, now)
        samples[msg.stream_id] = samples.get(msg.stream_id, 0) + len(msg.data) // 2
        if msg.end_of_stream:
            done[msg.stream_id] = now

    probe.node.create_subscription(AudioFrame, 'audio/out', on_frame, REPLY_AUDIO_QOS)
    pub = probe.publisher('reply', ReplyChunk)
    proc = NodeProcess('tts_node', params={'autostart': True, 'tts.output_rate_hz': out_rate})
    results: dict[str, Any] = {'engine': 'tts_node process'}
    try:
        probe.wait_for_subscribers(pub, timeout=60, procs=[proc])
        time.sleep(0.5)
        turn = 0
        for label, texts in (('short', SHORT), ('long', LONG)):
            first_ms: list[float] = []
            rtf: list[float] = []
            for _ in range(repeats):
                for text in texts:
                    turn += 1
                    tid = f'bench-{turn}'
                    t_pub = time.perf_counter()
                    pub.publish(ReplyChunk(turn_id=tid, index=0, text=text, is_final=True))
                    probe.wait_for(lambda: tid in done, 30, f'audio of {tid}', [proc])
                    first_ms.append((first_rx[tid] - t_pub) * 1000)
                    rtf.append((done[tid] - t_pub) / (samples[tid] / out_rate))
                    time.sleep(0.05)
            results[label] = {'first_audio_ms': _stats(first_ms), 'rtf': _stats(rtf)}
    finally:
        proc.stop()
        probe.close()
    return results


def _print(title: str, res: dict[str, Any]) -> None:
    print(f'\n{title}: {res.get("engine")}')
    print(f'{"chunks":8s} {"metric":16s} {"median":>9s} {"p95":>9s} {"max":>9s} {"n":>4s}')
    for label in ('short', 'long'):
        for metric in ('first_audio_ms', 'first_audio_cpu_ms', 'rtf'):
            if metric not in res[label]:
                continue
            s = res[label][metric]
            print(f'{label:8s} {metric:16s} {s["median"]:9.3f} {s["p95"]:9.3f} '
                  f'{s["max"]:9.3f} {s["n"]:4d}')


def main(argv: list[str] | None = None) -> int:
    """Run the TTS benchmark (in-process, optionally through a tts_node process), print the
    tables and write the JSON results."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--engine', default='piper', choices=['piper', 'espeak', 'xtts'])
    ap.add_argument('--repeats', type=int, default=5)
    ap.add_argument('--out-rate', type=int, default=22050)
    ap.add_argument('--threads', type=int, default=1, help='Piper onnxruntime threads '
                    '(the node default, tts.piper.threads)')
    ap.add_argument('--graph', action='store_true', help='also run through a tts_node process')
    ap.add_argument('--json', default='tts_bench.json')
    args = ap.parse_args(argv)
    report: dict[str, Any] = {
        'host': {'cpus': os.cpu_count(), 'machine': platform.machine(),
                 'python': platform.python_version()},
        'repeats': args.repeats, 'out_rate_hz': args.out_rate,
    }
    report['first_clause_split'] = run_inprocess(args.engine, args.repeats, True,
                                                 args.out_rate, args.threads)
    _print('in-process, first clause split (node default)', report['first_clause_split'])
    report['no_split'] = run_inprocess(args.engine, args.repeats, False, args.out_rate,
                                       args.threads)
    _print('in-process, whole chunk at once', report['no_split'])
    if args.graph:
        report['graph'] = run_graph(args.repeats, args.out_rate)
        _print('graph (reply published -> first AudioFrame received)', report['graph'])
    with open(args.json, 'w') as f:
        json.dump(report, f, indent=2)
    print(f'\nwrote {args.json}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

__all__ = ['main', 'np']
