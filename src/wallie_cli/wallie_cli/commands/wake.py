"""`wallie wake`: enroll a wake word (from its text or three recordings), benchmark one."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the `wallie wake` sub-command (`enroll`, `bench`) to `subparsers`."""
    p = subparsers.add_parser(
        'wake', help='wake words: enroll any word (text or 3 recordings), run the benchmark',
        description=__doc__)
    sub = p.add_subparsers(dest='wake_command', metavar='ACTION')
    e = sub.add_parser(
        'enroll', help='build the model of a wake word for wake.engine=embedding',
        description='Build ~/.wallie_voice_bot/wake_words/<word>.npz from the text alone '
                    '(synthesized voices) or from 3 recordings of the word (WAV/FLAC). No GPU, '
                    'no download; about a minute on 2 cores. Then: wallie up --set '
                    "voice_gate:wake.word='<word>'")
    e.add_argument('word', help='the wake word or phrase, e.g. "hey robot"')
    e.add_argument('recordings', nargs='*', type=Path,
                   help='3 recordings of the word alone (none: from the text)')
    e.add_argument('-o', '--out', type=Path, default=None, help='model file (.npz)')
    e.set_defaults(func=_enroll)
    b = sub.add_parser('bench', help='wake word benchmark (python -m wallie_audio.wake_bench)',
                       add_help=False)
    b.add_argument('args', nargs=argparse.REMAINDER)
    b.set_defaults(func=_bench)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _enroll(args: argparse.Namespace) -> int:
    import sys

    from wallie_audio import wake_train
    from wallie_common.model_store import ModelNotFoundError
    try:
        if args.recordings:
            recs = [_read(p) for p in args.recordings]
            path = wake_train.enroll_recordings(args.word, recs, out=args.out)
        else:
            path = wake_train.enroll_text(args.word, out=args.out)
    except (ValueError, OSError, ModelNotFoundError) as exc:
        print(f'wallie wake enroll: {exc}', file=sys.stderr)
        return 1
    print(f"enrolled {args.word!r}: {path}\nuse it: wallie up --set "
          f"\"voice_gate:wake.word={args.word}\" (or wake_word = \"{args.word}\" in "
          "~/.wallie_voice_bot/config.toml)")
    return 0


def _read(path: Path):
    import numpy as np
    import soundfile as sf
    import soxr
    x, rate = sf.read(str(path), dtype='float32', always_2d=True)
    x = x.mean(axis=1)
    return soxr.resample(x, rate, 16000).astype(np.float32) if rate != 16000 else x


def _bench(args: argparse.Namespace) -> int:
    from wallie_audio import wake_bench
    return wake_bench.main(list(args.args))
