"""Wake word benchmark (engines only, no ROS): `python -m wallie_audio.wake_bench`.

Positives: "Wallie" and "Hey Wallie", then a question (in one breath or after a pause), in
the HELD-OUT voices of `wake_data` (flite voices and espeak-ng accents/variants no model was
trained on; `--voices train` uses the training voices instead), 1 m and 3 m from the
microphone in simulated rooms (pyroomacoustics), with noise at 5-20 dB SNR.
Negatives: `--minutes` (default 60) of speech-like audio without the word, played as one
continuous stream: sentences in many voices, names that sound close ("Walter", "volley",
"Molly", "wall", ...), music-like audio and babble, through rooms and noise.
Homophones ("Wally") are reported on their own: they are the wake word to the ear.

Reports detection rate, false wakes per hour, detection latency (from the acoustic end of
the word to the detection; the engine runs on 32 ms blocks like the voice gate), and CPU:
CPU-seconds of this process in the engine per audio-second (always on, on speech), and the
voice gate's wake CPU while idle (room noise; the gate runs the engine only around voice).
Writes JSON (default: bench-results/wake_bench.json).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from wallie_audio import synthetic as S
from wallie_audio import wake_data as D

BLOCK = 512


def _stats(xs) -> dict:
    a = np.asarray(xs, dtype=float)
    if a.size == 0:
        return {'n': 0}
    return {'n': int(a.size), 'median': round(float(np.median(a)), 1),
            'p95': round(float(np.percentile(a, 95)), 1), 'max': round(float(a.max()), 1)}


def positives(voices: tuple[str, ...], seed: int) -> list[D.Clip]:
    """Wake clips of each voice: each wake phrase then a question (in one breath or after a
    pause), 1 m and 3 m away, with noise at 5-20 dB SNR."""
    out = []
    snrs = (5.0, 10.0, 15.0, 20.0)
    kinds = ('pink', 'babble', 'music', 'white', 'hum')
    k = 0
    for vi, voice in enumerate(voices):
        for phrase in D.WAKE_PHRASES:
            for distance in (1.0, 3.0):
                for breath in (True, False):
                    rng = S.rng_for('bench-pos', seed, voice, phrase, distance, breath)
                    q = D.BENCH_QUESTIONS[k % len(D.BENCH_QUESTIONS)]
                    c = D.wake_clip(phrase, voice, q, 0.0 if breath else
                                    float(rng.uniform(0.5, 1.2)), float(rng.uniform(0.9, 1.1)),
                                    seed=k, lead_s=float(rng.uniform(0.5, 1.5)), tail_s=1.0)
                    c = D.degrade(c, distance, kinds[k % len(kinds)], snrs[k % len(snrs)],
                                  seed * 1000 + k, heldout=True)
                    c.kind = 'one_breath' if breath else 'pause'
                    c.voice = f'{voice}@{distance:g}m'
                    out.append(c)
                    k += 1
    return out


def negatives(minutes: float, voices: tuple[str, ...], seed: int,
              log=print) -> list[D.Clip]:
    """Clips adding up to `minutes`: 55 % sentences, 20 % close names, 25 % music/babble."""
    out: list[D.Clip] = []
    total = 0.0
    i = 0
    t0 = time.monotonic()
    while total < minutes * 60:
        rng = S.rng_for('bench-neg', seed, i)
        r = rng.random()
        voice = voices[int(rng.integers(len(voices)))]
        speed = float(rng.uniform(0.85, 1.15))
        if r < 0.55:
            text = ' '.join(D.sentences(int(rng.integers(1, 4)), seed * 7 + i,
                                        D.BENCH_QUESTIONS))
            c = D.speech_clip(text, voice, speed, i, 'speech', 0.2, 0.4)
        elif r < 0.75:
            c = D.speech_clip(D.near_texts(seed * 13 + i, 1, D.BENCH_QUESTIONS)[0], voice,
                              speed, i, 'near', 0.2, 0.4)
        else:
            kind = ('music', 'babble')[i % 2]
            c = D.noise_clip(kind, float(rng.uniform(5, 20)), seed * 17 + i, heldout=True)
        distance = (None, 1.0, 3.0)[i % 3]
        noise = (None, 'pink', 'babble', 'music', 'white', 'hum')[i % 6]
        c2 = D.degrade(c, distance, noise, float(rng.uniform(5, 20)), seed * 1000 + i,
                       heldout=True)
        c2.kind = c.kind
        out.append(c2)
        total += c2.seconds
        i += 1
        if i % 200 == 0:
            log(f'  negatives: {total / 60:.1f} of {minutes:g} min '
                f'({time.monotonic() - t0:.0f} s)')
    return out


def homophones(voices: tuple[str, ...], seed: int) -> list[D.Clip]:
    """One clip per voice of the homophone "Wally" followed by a question, 1 m away in pink
    noise."""
    out = []
    for i, voice in enumerate(voices):
        w = D.HOMOPHONES[0]
        c = D.wake_clip(w, voice, D.BENCH_QUESTIONS[i % len(D.BENCH_QUESTIONS)], 0.3, 1.0, i)
        out.append(D.degrade(c, 1.0, 'pink', 15.0, seed + i, heldout=True))
    return out


class Runner:
    """Feeds an engine 32 ms blocks and records hits (sample positions) and CPU time."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.cpu_s = 0.0
        self.audio_s = 0.0

    def run(self, audio: np.ndarray, reset: bool) -> list[int]:
        if reset:
            self.engine.reset()
        hits = []
        n = audio.shape[0] // BLOCK
        for k in range(n):
            b = audio[k * BLOCK:(k + 1) * BLOCK]
            t = time.process_time()
            h = self.engine.process(b)
            self.cpu_s += time.process_time() - t
            if h is not None:
                hits.append((k + 1) * BLOCK - int(getattr(h, 'samples_after', 0)))
        self.audio_s += n * BLOCK / D.RATE
        return hits


def gate_idle_cpu(engine, seconds: float, seed: int) -> dict:
    """Wake CPU inside the voice gate over quiet room noise (VAD-gated, the default)."""
    from wallie_audio.vad import GatedVad, SileroVad
    from wallie_audio.voice_gate import GateConfig, VoiceGate
    rng = np.random.default_rng(seed)
    n = int(seconds * D.RATE)
    audio = (0.003 * S.pink(n, rng) + 0.002 * D.hum(n, rng)).astype(np.float32)
    gate = VoiceGate(GateConfig(), GatedVad(SileroVad(None), None), engine)
    timed = {'cpu': 0.0}
    inner = engine.process

    def timed_process(b):
        t = time.process_time()
        try:
            return inner(b)
        finally:
            timed['cpu'] += time.process_time() - t
    engine.process = timed_process
    t0 = time.process_time()
    try:
        for k in range(n // BLOCK):
            gate.process(audio[k * BLOCK:(k + 1) * BLOCK], 10**18 + k * 32_000_000)
    finally:
        engine.process = inner
    total = time.process_time() - t0
    return {'seconds': seconds, 'wake_cpu_pct_of_core': round(100 * timed['cpu'] / seconds, 3),
            'gate_total_cpu_pct_of_core': round(100 * total / seconds, 2),
            'wake_blocks_run': gate.stats.wake_blocks, 'blocks': gate.stats.blocks}


def _cached(path: Path | None, build):
    """Clips from `path` (int16 audio + labels) or built and written there."""
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z['meta']))
            return [D.Clip(z[f'a{i}'].astype(np.float32) / 32767.0, m['ends'], m['starts'],
                           m['text'], m['voice'], m['kind']) for i, m in enumerate(meta)]
    clips = build()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = [{'ends': c.wake_ends, 'starts': c.wake_starts, 'text': c.text,
                 'voice': c.voice, 'kind': c.kind} for c in clips]
        arrays = {f'a{i}': (np.clip(c.audio, -1, 1) * 32767).astype(np.int16)
                  for i, c in enumerate(clips)}
        with open(path, 'wb') as f:
            np.savez(f, meta=np.array(json.dumps(meta)), **arrays)  # type: ignore[arg-type]
    return clips


def make_engine(args):
    """The wake engine named by the command-line arguments."""
    from wallie_audio.wake import make_engine as mk
    return mk(args.engine, args.word, args.sensitivity)


def main(argv: list[str] | None = None) -> int:
    """Run the wake word benchmark, print a summary and write the JSON results; return the exit
    status (2 if a synthesizer is missing)."""
    ap = argparse.ArgumentParser(prog='python -m wallie_audio.wake_bench', description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--engine', default='embedding')
    ap.add_argument('--word', default='wallie', help='wake word (or an .npz model path)')
    ap.add_argument('--sensitivity', type=float, default=0.5)
    ap.add_argument('--voices', choices=('heldout', 'train'), default='heldout')
    ap.add_argument('--minutes', type=float, default=60.0, help='negative audio, minutes')
    ap.add_argument('--idle-seconds', type=float, default=120.0)
    ap.add_argument('--seed', type=int, default=5)
    ap.add_argument('--out', type=Path, default=Path('bench-results/wake_bench.json'))
    ap.add_argument('--cache', type=Path, default=None, metavar='DIR',
                    help='keep the generated audio here (a rerun skips the synthesis)')
    a = ap.parse_args(argv)
    voices = D.HELDOUT_VOICES if a.voices == 'heldout' else D.train_voices()[::7]
    missing = D.have_tools(voices)
    if missing:
        print(f'missing: {missing} (apt-get install -y {" ".join(missing)})', file=sys.stderr)
        return 2
    load0 = os.getloadavg()
    t0 = time.monotonic()
    engine = make_engine(a)
    runner = Runner(engine)
    print(f'wake bench: engine={a.engine} word={a.word} voices={a.voices} ({len(voices)}) '
          f'negatives={a.minutes:g} min; load average {load0[0]:.2f}', flush=True)

    tag = f'{a.voices}-s{a.seed}'
    cdir = a.cache
    pos = _cached(cdir / f'pos-{tag}.npz' if cdir else None, lambda: positives(voices, a.seed))
    det, lat, missed = [], [], []
    per_kind: dict[str, list[int]] = {}
    for c in pos:
        hits = runner.run(c.audio, reset=True)
        w0, w1 = c.wake_starts[0], c.wake_ends[0]
        ok = [h for h in hits if w0 <= h <= w1 + D.RATE]
        det.append(bool(ok))
        per_kind.setdefault(c.kind, []).append(int(bool(ok)))
        if ok:
            lat.append(1000.0 * (ok[0] - w1) / D.RATE)
        else:
            missed.append(f'{c.voice}: {c.text}')
    pos_cpu = (runner.cpu_s, runner.audio_s)
    print(f'positives: {sum(det)}/{len(det)} detected', flush=True)

    homo = _cached(cdir / f'homo-{tag}.npz' if cdir else None,
                   lambda: homophones(voices, a.seed))
    homo_hits = sum(bool(runner.run(c.audio, reset=True)) for c in homo)

    neg_voices = voices + D.train_voices()[3::9]
    negs = _cached(cdir / f'neg-{tag}-{a.minutes:g}min.npz' if cdir else None,
                   lambda: negatives(a.minutes, neg_voices, a.seed,
                                     log=lambda m: print(m, flush=True)))
    runner.cpu_s = runner.audio_s = 0.0
    engine.reset()
    false_wakes = []
    for c in negs:
        for h in runner.run(c.audio, reset=False):
            false_wakes.append({'kind': c.kind, 'voice': c.voice, 'text': c.text,
                                'at_s': round(h / D.RATE, 2)})
    neg_hours = runner.audio_s / 3600
    always_on = 100 * runner.cpu_s / runner.audio_s
    idle = gate_idle_cpu(make_engine(a), a.idle_seconds, a.seed)
    load1 = os.getloadavg()
    result = {
        'engine': a.engine, 'word': a.word, 'sensitivity': a.sensitivity,
        'voices': a.voices, 'voice_names': list(voices),
        'positives': len(det), 'detected': int(sum(det)),
        'detection_rate': round(float(np.mean(det)), 4),
        'detection_by_kind': {k: round(float(np.mean(v)), 4) for k, v in per_kind.items()},
        'latency_ms_after_word_end': _stats(lat),
        'missed': missed,
        'homophones_detected': f'{homo_hits}/{len(homo)} ("{D.HOMOPHONES[0]}")',
        'negative_hours': round(neg_hours, 3),
        'negative_mix': {k: sum(1 for c in negs if c.kind == k) for k in
                         ('speech', 'near', 'music', 'babble')},
        'false_wakes': len(false_wakes),
        'false_wakes_per_hour': round(len(false_wakes) / neg_hours, 3),
        'false_wake_list': false_wakes[:50],
        'cpu_pct_of_core_always_on': round(always_on, 3),
        'cpu_pct_of_core_positives': round(100 * pos_cpu[0] / pos_cpu[1], 3),
        'idle_in_gate': idle,
        'load_average_start': [round(x, 2) for x in load0],
        'load_average_end': [round(x, 2) for x in load1],
        'wall_s': round(time.monotonic() - t0),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2))
    print(f"detection {result['detected']}/{result['positives']} = "
          f"{100 * result['detection_rate']:.1f} % ({result['detection_by_kind']}); "
          f"latency after the word {result['latency_ms_after_word_end']} ms")
    print(f"false wakes {len(false_wakes)} in {neg_hours:.2f} h = "
          f"{result['false_wakes_per_hour']:.2f}/h; homophones {result['homophones_detected']}")
    print(f"CPU (% of one core): always on {always_on:.2f}; idle in the gate "
          f"{idle['wake_cpu_pct_of_core']:.3f} (gate total {idle['gate_total_cpu_pct_of_core']})")
    print(f'load average {load0[0]:.2f} -> {load1[0]:.2f}; wrote {a.out}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
