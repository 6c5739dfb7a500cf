"""ASR benchmark: `python -m wallie_asr.bench [--repeats N] [--all-voices] [--out FILE]`.

In-process (engine + streaming logic, no DDS): each committed fixture is streamed in real time
in 100 ms pieces like the voice gate does; SPEECH_PROBABLY_ENDED is sent `--probable-end-ms`
after the acoustic speech end and END_OF_TURN `--endpoint-ms` after it (the gate's defaults:
64 and 400 ms). Reports, per utterance length class, median/p95 of:
- endpoint confirmation -> final transcript, early final on and off;
- partial cadence (speech start -> first partial, partial -> partial);
and over all clips: real-time factor of one transcription, model load time, WER.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from wallie_asr.config import SAMPLE_RATE, EngineConfig, StreamConfig
from wallie_asr.engine import WhisperEngine
from wallie_asr.fixtures import Clip, speech_clips, wer
from wallie_asr.streaming import EARLY, FINAL, PARTIAL, TranscriptEvent, TurnStreamer

PIECE_S = 0.1
S = 1_000_000_000


def length_class(clip: Clip) -> str:
    """The clip's length class by its speech end: short (<2 s), medium (2-3 s) or long (>=3 s)."""
    d = clip.speech_end_s
    return 'short(<2s)' if d < 2.0 else 'medium(2-3s)' if d < 3.0 else 'long(>=3s)'


def stats(values: list[float]) -> dict[str, Any]:
    """n, median, p95 and max of `values`, rounded to 0.1 ({'n': 0} when empty)."""
    if not values:
        return {'n': 0}
    arr = np.asarray(values, dtype=float)
    return {'n': int(arr.size), 'median': round(float(np.median(arr)), 1),
            'p95': round(float(np.percentile(arr, 95)), 1), 'max': round(float(arr.max()), 1)}


class Recorder:
    """Transcript event callback that keeps every event with its arrival time, and waits for a
    turn's final."""

    def __init__(self) -> None:
        self.events: list[tuple[float, TranscriptEvent]] = []
        self.cv = threading.Condition()

    def __call__(self, ev: TranscriptEvent) -> None:
        with self.cv:
            self.events.append((time.perf_counter(), ev))
            self.cv.notify_all()

    def wait_final(self, turn: str, timeout: float = 10.0) -> tuple[float, TranscriptEvent]:
        deadline = time.perf_counter() + timeout
        with self.cv:
            while True:
                for t, ev in self.events:
                    if ev.turn_id == turn and ev.kind == FINAL:
                        return t, ev
                left = deadline - time.perf_counter()
                if left <= 0:
                    raise TimeoutError(f'no final for {turn}')
                self.cv.wait(left)


def run_turn(streamer: TurnStreamer, rec: Recorder, clip: Clip, turn: str,
             probable_end_ms: int, endpoint_ms: int) -> dict[str, Any]:
    """Stream one clip in real time; return latencies (ms) of this turn."""
    step = int(PIECE_S * SAMPLE_RATE)
    t0_ns = time.time_ns()
    start = time.perf_counter()
    speech_end_ns = t0_ns + int(clip.speech_end_s * S)
    total = clip.audio.size + int((endpoint_ms / 1000 + 0.2) * SAMPLE_RATE)
    audio = np.pad(clip.audio, (0, total - clip.audio.size))
    probable_at = clip.speech_end_s + probable_end_ms / 1000
    endpoint_at = clip.speech_end_s + endpoint_ms / 1000
    sent_probable = False
    seq = 0
    eot_t = 0.0
    for i in range(0, audio.size, step):
        piece_end_s = (i + step) / SAMPLE_RATE
        # pieces leave the gate when their last sample is captured
        delay = start + piece_end_s - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        if piece_end_s >= endpoint_at:
            eot_t = time.perf_counter()
            streamer.end_of_turn(turn, speech_end_ns)
            streamer.add_audio(turn, seq, np.zeros(0, np.float32), is_final=True,
                               speech_end_ns=speech_end_ns,
                               start_ns=t0_ns + int(i / SAMPLE_RATE * S))
            break
        streamer.add_audio(turn, seq, audio[i:i + step], start_ns=t0_ns + int(i / SAMPLE_RATE * S))
        seq += 1
        if not sent_probable and piece_end_s >= probable_at:
            streamer.speech_probably_ended(turn, speech_end_ns)
            sent_probable = True
    t_final, final = rec.wait_final(turn)
    partial_times = [t for t, ev in rec.events if ev.turn_id == turn and ev.kind == PARTIAL]
    early = [t for t, ev in rec.events if ev.turn_id == turn and ev.kind == EARLY]
    return {
        'final_after_endpoint_ms': (t_final - eot_t) * 1e3,
        'final_text': final.text,
        'reused_early': final.reused_early,
        'first_partial_ms': (partial_times[0] - start) * 1e3 if partial_times else None,
        'partial_gaps_ms': [(b - a) * 1e3 for a, b in zip(partial_times, partial_times[1:])],
        'n_partials': len(partial_times),
        'early_after_speech_end_ms': (early[0] - start - clip.speech_end_s) * 1e3
        if early else None,
    }


def main(argv: Optional[list[str]] = None) -> int:
    """Run the ASR benchmark, print a summary and write the JSON results."""
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--model', default='whisper-tiny.en')
    ap.add_argument('--compute-type', default='auto')
    ap.add_argument('--device', default='auto')
    ap.add_argument('--cpu-threads', type=int, default=0)
    ap.add_argument('--window-s', type=float, default=EngineConfig.window_s)
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--all-voices', action='store_true',
                    help='stream all 24 clips (default: one voice per sentence, 8 clips)')
    ap.add_argument('--probable-end-ms', type=int, default=64)
    ap.add_argument('--endpoint-ms', type=int, default=400)
    ap.add_argument('--partial-interval-ms', type=int, default=500)
    ap.add_argument('--data', type=Path, default=None)
    ap.add_argument('--out', type=Path, default=Path('bench_asr.json'))
    args = ap.parse_args(argv)

    config = EngineConfig(model=args.model, compute_type=args.compute_type, device=args.device,
                          cpu_threads=args.cpu_threads, window_s=args.window_s)
    clips = speech_clips(args.data)
    # model load time
    loads = []
    for _ in range(3):
        engine = WhisperEngine(config)
        report = engine.load()
        loads.append({'load_ms': report.load_s * 1e3, 'warmup_ms': report.warmup_s * 1e3})
        engine.close()
    engine = WhisperEngine(config)
    report = engine.load()
    print(f'model {args.model} on {report.rung}: load {report.load_s * 1e3:.0f} ms, '
          f'warm-up {report.warmup_s * 1e3:.0f} ms')
    # one-shot transcription: RTF, processing time, WER
    proc_ms, rtf = [], []
    hyps = []
    for clip in clips:
        for r in range(args.repeats):
            res = engine.transcribe(clip.audio)
            proc_ms.append(res.processing_ms)
            rtf.append(res.processing_ms / 1e3 / clip.duration_s)
            if r == 0:
                hyps.append(res.text)
    score = wer([c.text for c in clips], hyps)
    # streamed turns, early final on/off
    streamed = clips if args.all_voices else [c for c in clips if c.id.endswith('_us')]
    turns: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for early in (True, False):
        mode = 'early_final_on' if early else 'early_final_off'
        rec = Recorder()
        streamer = TurnStreamer(engine, StreamConfig(
            early_final=early, partial_interval_ms=args.partial_interval_ms), rec)
        streamer.start()
        try:
            for r in range(args.repeats):
                for clip in streamed:
                    turn = f'{mode}-{clip.id}-{r}'
                    out = run_turn(streamer, rec, clip, turn, args.probable_end_ms,
                                   args.endpoint_ms)
                    out['clip'] = clip.id
                    turns.setdefault(mode, {}).setdefault(length_class(clip), []).append(out)
        finally:
            streamer.stop()
    engine.close()

    summary: dict[str, Any] = {'final_after_endpoint_ms': {}, 'partials': {}}
    print(f'\nendpoint confirmed -> final transcript (ms), {args.repeats} repeats, '
          f'probably-ended at +{args.probable_end_ms} ms, endpoint at +{args.endpoint_ms} ms')
    print(f'{"length":<14}{"early final":<18}{"n":>4}{"median":>9}{"p95":>9}{"max":>9}')
    for mode, by_len in turns.items():
        for cls in sorted(by_len):
            s = stats([t['final_after_endpoint_ms'] for t in by_len[cls]])
            summary['final_after_endpoint_ms'].setdefault(mode, {})[cls] = s
            print(f'{cls:<14}{mode:<18}{s["n"]:>4}{s["median"]:>9}{s["p95"]:>9}{s["max"]:>9}')
    all_on = [t for ts in turns.get('early_final_on', {}).values() for t in ts]
    all_off = [t for ts in turns.get('early_final_off', {}).values() for t in ts]
    summary['final_after_endpoint_ms']['early_final_on']['all'] = stats(
        [t['final_after_endpoint_ms'] for t in all_on])
    summary['final_after_endpoint_ms']['early_final_off']['all'] = stats(
        [t['final_after_endpoint_ms'] for t in all_off])
    summary['reused_early_fraction'] = round(
        statistics.mean(1.0 if t['reused_early'] else 0.0 for t in all_on), 3)
    first = [t['first_partial_ms'] for t in all_on + all_off if t['first_partial_ms'] is not None]
    gaps = [g for t in all_on + all_off for g in t['partial_gaps_ms']]
    summary['partials'] = {'speech_start_to_first_partial_ms': stats(first),
                           'partial_interval_ms': stats(gaps),
                           'partials_per_turn': stats([t['n_partials'] for t in all_on])}
    early_lat = [t['early_after_speech_end_ms'] for t in all_on
                 if t['early_after_speech_end_ms'] is not None]
    summary['early_final_after_speech_end_ms'] = stats(early_lat)
    summary['transcription'] = {'processing_ms': stats(proc_ms), 'rtf': {
        'median': round(float(np.median(rtf)), 3), 'p95': round(float(np.percentile(rtf, 95)), 3)}}
    summary['model_load_ms'] = stats([x['load_ms'] for x in loads])
    summary['warmup_ms'] = stats([x['warmup_ms'] for x in loads])
    summary['wer'] = round(score, 4)
    fin = summary['final_after_endpoint_ms']
    part = summary['partials']
    print(f"\nall lengths: early on {fin['early_final_on']['all']}"
          f"\n             early off {fin['early_final_off']['all']}")
    print(f"early result reused as final: {summary['reused_early_fraction'] * 100:.0f}% of turns")
    print('early final after acoustic speech end (ms): '
          f"{summary['early_final_after_speech_end_ms']}")
    print(f"partials: first after speech start {part['speech_start_to_first_partial_ms']}, "
          f"interval {part['partial_interval_ms']}")
    print(f'one transcription: {summary["transcription"]}')
    print(f'model load (ms): {summary["model_load_ms"]}, warm-up (ms): {summary["warmup_ms"]}')
    print(f'WER over {len(clips)} clips: {score:.3f}')
    result = {'config': {**vars(args), 'data': str(args.data), 'out': str(args.out),
                         'rung': str(report.rung)},
              'machine': {'cpus': os.cpu_count(), 'python': platform.python_version(),
                          'platform': platform.platform()},
              'summary': summary, 'turns': turns}
    args.out.write_text(json.dumps(result, indent=1, default=str))
    print(f'\nwrote {args.out}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
