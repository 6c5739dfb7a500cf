"""`wallie up`: run the whole assistant without a ROS distro (same nodes as the launch file)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from wallie_cli.commands import add_params_args

HELP = """\
Start every Wallie node as its own process (plus the manager, which brings the stages up in
order and restarts crashed ones), and run until Ctrl-C / SIGTERM.

Configuration, lowest to highest precedence: config/defaults.yaml < config/<profile>.yaml <
~/.wallie_voice_bot/config.toml < WALLIE_<KEY> environment variables < --params FILE <
flags (--input, --output, --no-wake, --set). SIGHUP re-reads config.toml and applies the
changes live (`kill -HUP <pid>`, or `systemctl --user reload wallie`).

Headless: --input replaces the microphone (a WAV/FLAC file, or a rosbag2 directory/.mcap),
--output replaces the speaker (a .wav file, or `null` for a real-time null sink).
"""


def register(subparsers) -> None:
    """Add the `wallie up` sub-command to `subparsers`."""
    p = subparsers.add_parser('up', help='run the assistant (all nodes + manager)',
                              description=HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--params', action='append', default=[], metavar='FILE',
                   help='extra ROS parameter file (repeatable; later wins)')
    p.add_argument('--input', metavar='FILE|BAG',
                   help='audio source instead of the microphone: WAV/FLAC file or rosbag2')
    p.add_argument('--output', metavar='FILE.wav|null',
                   help='write the spoken replies to a WAV file (or `null`) instead of playing')
    p.add_argument('--no-wake', action='store_true',
                   help='no wake word: every utterance is a turn')
    add_params_args(p, example='asr:asr.beam_size=2')
    p.add_argument('--config', metavar='FILE', help='config.toml to use '
                   '(default: $WALLIE_CONFIG or ~/.wallie_voice_bot/config.toml)')
    p.add_argument('--namespace', default='', help='ROS namespace for every node')
    p.add_argument('--log-level', choices=('debug', 'info', 'warn', 'error'), default=None)
    p.add_argument('--only', default='', metavar='N1,N2',
                   help='run only these nodes (the manager always runs)')
    p.add_argument('--skip', default='', metavar='N1,N2', help='do not run these nodes')
    p.add_argument('--graph', metavar='FILE', help='YAML node list replacing the built-in '
                   'graph (advanced; see wallie/graph.py)')
    p.add_argument('--run-dir', metavar='DIR', help='run directory (default: '
                   '~/.wallie_voice_bot/run/<time>-<pid>)')
    p.add_argument('--stop-timeout', type=float, default=10.0, metavar='S',
                   help='seconds to wait for nodes to stop before SIGKILL (default 10)')
    p.add_argument('-v', '--verbose', action='store_true', help='echo every node\'s log')
    p.add_argument('--print-params', action='store_true',
                   help='print the merged parameters (and where each came from) and exit')
    p.set_defaults(func=run)


def cli_params(args) -> dict:
    """The flag layer of the configuration (the highest precedence)."""
    from wallie_bringup import config as wconfig
    out: dict[str, dict] = {}
    if args.input:
        out.setdefault('capture', {}).update(wconfig.input_params(args.input))
    if args.output:
        out.setdefault('player', {}).update(wconfig.output_params(args.output))
    if args.no_wake:
        out.setdefault('voice_gate', {}).update(wconfig.NO_WAKE_PARAMS)
    for node, values in wconfig.parse_sets(args.set).items():
        out.setdefault(node, {}).update(values)
    return out


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(',') if n.strip()]


def run(args) -> int:
    """Prepare and run the graph until stopped (or print the merged parameters); return the exit
    code, 2 for a configuration error."""
    from wallie_bringup import bringup
    from wallie_bringup import config as wconfig
    try:
        run_cfg = wconfig.RunConfig(
            profile=args.profile, params_files=tuple(str(Path(p).resolve()) for p in args.params),
            config_file=args.config, cli_params=cli_params(args))
        if args.print_params:
            resolved = wconfig.resolve(run_cfg)
            for w in resolved.warnings:
                print(f'warning: {w}', file=sys.stderr)
            print(f'# profile: {resolved.profile}; config file: {resolved.config_file}')
            for (node, param), src in sorted(resolved.sources.items()):
                print(f'# {node}/{param}: {src}')
            print(yaml.safe_dump(wconfig.to_ros_yaml(resolved.params), sort_keys=False))
            return 0
        prep = bringup.prepare(run_cfg, graph_file=args.graph, only=_names(args.only),
                               skip=_names(args.skip), run_dir=args.run_dir,
                               namespace=args.namespace, log_level=args.log_level)
    except (wconfig.ConfigError, bringup.BringupError, ValueError) as exc:
        print(f'wallie up: {exc}', file=sys.stderr)
        return 2
    return bringup.run(prep, verbose=args.verbose, stop_timeout_s=args.stop_timeout)
