"""No network: a turn through the graph makes no outbound call beyond loopback.

The node processes run inside a network namespace with only loopback (``unshare -n``), each
under ``strace`` recording connect/sendto/sendmsg/sendmmsg. The test asserts that the turn
completes there (nothing needs the network) and that every destination address any node
used is a loopback address (no DNS, no hub, no telemetry, no multicast discovery). The
opt-in Prometheus endpoint is enabled and must listen on 127.0.0.1 only.
Skips with a reason when neither unshare nor strace can be used here.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ADDR = re.compile(r'(?:sin6?_port=htons\((\d+)\), )?(?:sin_addr=inet_addr\("([^"]+)"\)|'
                  r'sin6_flowinfo=[^,]*, inet_pton\(AF_INET6, "([^"]+)"|'
                  r'inet_pton\(AF_INET6, "([^"]+)")')
CALL = re.compile(r'^\d+\s+(connect|sendto|sendmsg|sendmmsg)\(')


def _can_unshare() -> str | None:
    exe = shutil.which('unshare')
    if exe is None:
        return 'unshare not installed'
    try:
        res = subprocess.run([exe, '-n', 'sh', '-c', 'ip link set lo up'],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f'unshare failed: {exc}'
    return None if res.returncode == 0 else f'unshare -n not permitted: {res.stderr.strip()}'


def _can_strace() -> str | None:
    exe = shutil.which('strace')
    if exe is None:
        return 'strace not installed (apt-get install strace)'
    res = subprocess.run([exe, '-f', '-qq', '-e', 'trace=connect', '-o', '/dev/null', 'true'],
                         capture_output=True, text=True, timeout=10)
    return None if res.returncode == 0 else f'strace cannot trace here: {res.stderr.strip()}'


def outbound_destinations(trace_file: Path) -> list[tuple[str, str, str]]:
    """(syscall, address, port) for every IP destination in an strace log."""
    found = []
    for line in trace_file.read_text(errors='replace').splitlines():
        m = CALL.match(line)
        if not m:
            continue
        for port, v4, v6a, v6b in ADDR.findall(line):
            found.append((m.group(1), v4 or v6a or v6b, port))
    return found


def is_local(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified


def test_outbound_parser(tmp_path):
    trace = tmp_path / 't.strace'
    trace.write_text(
        '12 connect(5, {sa_family=AF_INET, sin_port=htons(53), '
        'sin_addr=inet_addr("10.0.0.53")}, 16) = 0\n'
        '13 sendto(7, "x", 1, 0, {sa_family=AF_INET6, sin6_port=htons(7400), '
        'sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "::1", &sin6_addr), '
        'sin6_scope_id=0}, 28) = 1\n'
        '14 bind(3, {sa_family=AF_INET, sin_port=htons(9), sin_addr=inet_addr("0.0.0.0")}, 16)\n')
    assert outbound_destinations(trace) == [('connect', '10.0.0.53', '53'),
                                            ('sendto', '::1', '7400')]
    assert is_local('127.0.0.1') and is_local('::1') and is_local('::ffff:127.0.0.1')
    assert not is_local('239.255.0.1') and not is_local('192.0.2.2')


def test_turn_without_network_stays_on_loopback(ros_env, tmp_path):
    no_netns = _can_unshare()
    no_strace = _can_strace()
    if no_netns and no_strace:
        pytest.skip(f'{no_netns}; {no_strace}')
    out = tmp_path / 'netns'
    cmd = [sys.executable, str(HERE / 'netns_driver.py'), '--out', str(out),
           '--timeout', '150']
    if not no_strace:
        cmd.append('--strace')
    if not no_netns:
        cmd = ['unshare', '-n', 'sh', '-c', 'ip link set lo up && exec "$@"', 'sh'] + cmd
    env = dict(os.environ)
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=280, env=env)
    result_file = out / 'result.json'
    assert result_file.exists(), f'driver failed ({res.returncode}):\n{res.stderr[-4000:]}'
    result = json.loads(result_file.read_text())
    detail = json.dumps(result, indent=1)[-6000:]
    assert 'error' not in result, detail
    assert result['netns'] == (no_netns is None)
    for name, node in result['nodes'].items():
        assert node.get('state') == 'active', f'{name} not active:\n{detail}'
        assert node.get('exit_code') == 0, f'{name} exit code {node.get("exit_code")}\n{detail}'
    assert result['turn']['turn_id'], detail
    # The opt-in metrics endpoint: TCP on loopback only; no other node listens on TCP.
    for name, socks in result['sockets'].items():
        tcp = [s for s in socks if s['proto'].startswith('tcp')]
        if name == 'metrics':
            assert tcp and all(s['ip'] == '127.0.0.1' for s in tcp), tcp
        else:
            assert tcp == [], f'{name} listens on TCP: {tcp}'
    if no_strace is None:
        leaks = {}
        calls = 0
        for name in result['nodes']:
            dests = outbound_destinations(out / f'{name}.strace')
            calls += len(dests)
            bad = sorted({f'{call} {addr}:{port}' + (' (DNS lookup)' if port == '53' else '')
                          for call, addr, port in dests if not is_local(addr)})
            if bad:
                leaks[name] = bad
        assert calls > 0, 'strace saw no socket traffic at all: the trace is not working'
        assert not leaks, f'outbound traffic beyond loopback: {leaks}'
    print(f"turn: {result['turn']}; nodes: {sorted(result['nodes'])}; "
          f"not run: {result['missing']}")
