"""`wallie eval`: the spoken QA evaluation (accuracy, WER, latency), live graph or engines.

The set, the scorer, the engine mode and the report live in ``wallie_eval``; this module
parses the command line and runs the set through the warm live graph (``--live``).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence


def register(subparsers: Any) -> None:
    """Add the `wallie eval` sub-command to `subparsers`."""
    from wallie_eval import cli
    p = subparsers.add_parser(
        'eval', help='spoken QA evaluation: answers right, WER and latency per voice/noise',
        description=cli.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_arguments(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from wallie_eval import cli
    return cli.run(args, live_runner=run_live)


START_NS = 1_700_000_000_000_000_000


def _clip_bag(clip: Any, samples: Any, root: Path) -> Path:
    """The clip as a fixture bag (AudioFrame on audio/in) with its ground-truth sidecar."""
    import numpy as np

    from wallie_cli import bag_files
    bag = root / clip.id
    pcm = np.round(np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)
    bag_files.write_audio_bag(bag, pcm, 16000, frame_ms=32, start_ns=START_NS, frame_id='eval')
    side = {'name': clip.id, 'speech': True, 'frame_ms': 32, 'topic': bag_files.AUDIO_TOPIC,
            'start_ns': START_NS, 'duration_s': pcm.size / 16000,
            'speech_start_ns': START_NS + int(clip.speech_start_s * 1e9),
            'speech_end_ns': START_NS + int(clip.speech_end_s * 1e9)}
    bag.with_name(bag.name + '.json').write_text(json.dumps(side))
    return bag


def run_live(clips: Sequence[Any], profile: str, args: argparse.Namespace,
             echo: Callable[[str], None]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Every clip replayed as the microphone of one warm graph (real processes)."""
    from wallie_bringup import config as wconfig
    from wallie_cli import e2e
    from wallie_cli.fixture_set import temp_home
    from wallie_eval import dataset as ds
    from wallie_eval import engines, score
    overrides = wconfig.parse_sets(args.set)
    opts = e2e.GraphOptions(profile=profile, sink='null', user_config=False,
                            params=overrides, home=str(temp_home()))
    rows: list[dict[str, Any]] = []
    graph = e2e.LiveGraph(opts, echo=lambda line: echo(f'  {line}'))
    with tempfile.TemporaryDirectory(prefix='wallie-eval-') as tmp:
        try:
            graph.start()
            graph.wait_ready(300)
            obs = graph.observer
            assert obs is not None
            warm = True
            convs: dict[str, list[Any]] = {}
            for clip in clips:
                convs.setdefault(clip.conversation, []).append(clip)
            for turns in convs.values():
                obs.reset_conversation()
                broken = ''
                for clip in turns:
                    row = engines.base_row(clip)
                    row['setup'] = profile
                    try:
                        if broken:
                            raise ds.ClipError(clip.id, None, broken)
                        bag = _clip_bag(clip, ds.load(clip, args.cache), Path(tmp))
                    except ds.ClipError as exc:
                        broken = 'an earlier turn of this conversation could not be used'
                        rows.append({**engines.error_row(clip, str(exc)), 'setup': profile})
                        echo(f'  error: {exc}')
                        continue
                    if warm:        # one turn that is not counted: caches, first-call costs
                        graph.ask_bag(bag, timeout=60)
                        obs.reset_conversation()
                        graph.wait_idle(30)
                        warm = False
                    res = graph.ask_bag(bag, timeout=60)
                    lat = res.latencies()
                    final = res.record.final if res.record is not None else None
                    unreliable = str(final.get('unreliable', '')) if final else ''
                    row.update(transcript=res.transcript, reply=res.reply_text,
                               rejected=unreliable,
                               latency_ms={'e2e_ms': _finite(lat.get('true_e2e_ms')),
                                           'asr_ms': _finite(lat.get('asr_ms')),
                                           'llm_first_chunk_ms':
                                               _finite(lat.get('llm_first_chunk_ms')),
                                           'tts_first_audio_ms':
                                               _finite(lat.get('tts_first_audio_ms')),
                                           'endpoint_ms': _finite(lat.get('true_endpoint_ms'))})
                    row['answered'] = res.answered
                    rows.append(score.score_turn(row))
                    echo(f'  [{len(rows)}/{len(clips)}] {engines.progress_line(row)}')
                    graph.wait_idle(30)
        finally:
            graph.stop()
    setup = {'profile': profile, 'params': overrides, 'mode': 'live',
             'started': time.strftime('%Y-%m-%dT%H:%M:%S')}
    return setup, rows


def _finite(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None
