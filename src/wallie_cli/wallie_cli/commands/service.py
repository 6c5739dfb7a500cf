"""`wallie service install|uninstall|print`: run Wallie as a systemd user service."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from wallie_cli.commands import PROFILES

UNIT_NAME = 'wallie.service'


def unit_text(args_for_up: list[str], wallie_exe: str | None = None,
              environment: dict[str, str] | None = None) -> str:
    """The unit file: `wallie up` in the foreground, SIGINT to stop, SIGHUP to reload."""
    exe = wallie_exe or _wallie_exe()
    cmd = ' '.join(shlex.quote(a) for a in [exe, 'up', *args_for_up])
    env_lines = ''.join(f'Environment={shlex.quote(f"{k}={v}")}\n'
                        for k, v in sorted((environment or {}).items()))
    return f"""\
# Wallie voice assistant (systemd user unit, written by `wallie service install`).
# Logs: journalctl --user -u wallie -f      Reload config.toml: systemctl --user reload wallie
[Unit]
Description=Wallie offline voice assistant
After=sound.target pipewire.service pulseaudio.service
Wants=sound.target

[Service]
Type=simple
ExecStart={cmd}
ExecReload=/bin/kill -HUP $MAINPID
# `wallie up` stops its nodes in order (lifecycle shutdown, SIGINT, then SIGKILL after its
# own timeout); systemd signals only it, and kills whatever is left after TimeoutStopSec.
KillSignal=SIGINT
KillMode=mixed
TimeoutStopSec=30
Restart=on-failure
RestartSec=5
Environment=PYTHONUNBUFFERED=1
{env_lines}# Privacy: ROS discovery stays on this machine.
Environment=ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
NoNewPrivileges=true

[Install]
WantedBy=default.target
"""


def _wallie_exe() -> str:
    here = Path(sys.executable).parent / 'wallie'
    if here.exists():
        return str(here)
    return shutil.which('wallie') or 'wallie'


def unit_path(environ: dict[str, str] | None = None) -> Path:
    """The unit file: wallie.service in systemd/user under $XDG_CONFIG_HOME (else ~/.config)."""
    env = os.environ if environ is None else environ
    base = env.get('XDG_CONFIG_HOME') or str(Path(env.get('HOME', '~')).expanduser() / '.config')
    return Path(base) / 'systemd' / 'user' / UNIT_NAME


def _systemctl(*args: str) -> tuple[bool, str]:
    exe = shutil.which('systemctl')
    if exe is None:
        return False, 'systemctl not found'
    proc = subprocess.run([exe, '--user', *args], capture_output=True, text=True)
    return proc.returncode == 0, (proc.stdout + proc.stderr).strip()


def register(subparsers) -> None:
    """Add the `wallie service` sub-command to `subparsers`."""
    p = subparsers.add_parser('service', help='install Wallie as a systemd user service',
                              description='Install, remove or print the systemd user unit '
                                          'that runs `wallie up` (foreground otherwise).')
    sub = p.add_subparsers(dest='service_cmd', metavar='ACTION', required=True)
    for name, helptext in (('install', 'write the unit and reload systemd'),
                           ('print', 'print the unit file'),
                           ('uninstall', 'stop, disable and remove the unit')):
        sp = sub.add_parser(name, help=helptext)
        if name != 'uninstall':
            sp.add_argument('--profile', choices=PROFILES, default=None)
            sp.add_argument('--params', metavar='FILE', default=None)
        if name == 'install':
            sp.add_argument('--enable', action='store_true',
                            help='also enable and start it now')
        sp.set_defaults(func=run)


def _up_args(args) -> list[str]:
    out = []
    if getattr(args, 'profile', None):
        out += ['--profile', args.profile]
    if getattr(args, 'params', None):
        out += ['--params', str(Path(args.params).expanduser().resolve())]
    return out


def run(args) -> int:
    """Print, install (and with --enable start) or uninstall the unit that runs `wallie up`."""
    env = {k: os.environ[k] for k in ('WALLIE_HOME', 'WALLIE_CONFIG', 'WALLIE_MODEL_DIR')
           if os.environ.get(k)}
    text = unit_text(_up_args(args), environment=env)
    if args.service_cmd == 'print':
        print(text, end='')
        return 0
    path = unit_path()
    if args.service_cmd == 'install':
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f'wrote {path}')
        ok, out = _systemctl('daemon-reload')
        if not ok:
            print(f'note: could not reload systemd ({out}); run: '
                  'systemctl --user daemon-reload')
        if args.enable:
            ok, out = _systemctl('enable', '--now', UNIT_NAME)
            print('enabled and started' if ok else f'enable failed: {out}')
            return 0 if ok else 1
        print('start it with: systemctl --user enable --now wallie')
        return 0
    # uninstall
    _systemctl('disable', '--now', UNIT_NAME)
    if path.exists():
        path.unlink()
        print(f'removed {path}')
    else:
        print(f'{path} not installed')
    _systemctl('daemon-reload')
    return 0
