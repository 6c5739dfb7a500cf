"""`wallie status`: what the manager of the latest `wallie up` run reports (no ROS needed)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def register(subparsers) -> None:
    """Add the `wallie status` sub-command to `subparsers`."""
    p = subparsers.add_parser('status', help='show the state of the running assistant',
                              description='Print the manager\'s view (state.json) of the '
                                          'latest `wallie up` run: readiness, every stage\'s '
                                          'lifecycle state, pid, restarts, recovery time.')
    p.add_argument('--run-dir', metavar='DIR', help='run directory (default: the latest)')
    p.add_argument('--json', action='store_true', help='print the raw JSON')
    p.set_defaults(func=run)


def run(args) -> int:
    """Print the manager's state.json of the run (default: the latest); return 1 if there is
    none."""
    from wallie_bringup.bringup import runs_root
    run_dir = Path(args.run_dir) if args.run_dir else runs_root() / 'latest'
    try:
        data = json.loads((run_dir / 'state.json').read_text())
    except (OSError, ValueError):
        print(f'no state in {run_dir} (is `wallie up` running?)', file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(data, indent=1))
        return 0
    age = time.time() - data.get('time', 0)
    print(f'{data["state"]}, ready={data["ready"]}'
          + (f' ({data["detail"]})' if data.get('detail') else '')
          + (f'; governor step {data["governor_step"]}' if data.get('governor_step') else '')
          + (f'  [state {age:.0f} s old]' if age > 10 else ''))
    print(f'{"stage":<12}{"state":<14}{"phase":<12}{"pid":>8}{"restarts":>10}'
          f'{"last recovery":>15}')
    for name, st in data.get('stages', {}).items():
        rec = st.get('last_recovery_s')
        print(f'{name:<12}{st.get("state", ""):<14}{st.get("phase", ""):<12}'
              f'{st.get("pid") or "-":>8}{st.get("restarts", 0):>10}'
              f'{"-" if rec is None else f"{rec:.2f} s":>15}')
    return 0
