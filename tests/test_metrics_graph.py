"""The metrics node as a real process: turn records, Prometheus, JSONL log, archive, health."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import stat
import subprocess
import time
import urllib.request
from types import SimpleNamespace

import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.qos import QoSProfile, ReliabilityPolicy

from wallie_common import timeutil
from wallie_interfaces.msg import (
    PlaybackEvent,
    ReplyChunk,
    StageStamp,
    Transcript,
    TurnMetrics,
    VoiceActivity,
)
from wallie_manager import privacy
from wallie_testing.harness import NodeProcess, Probe
from wallie_testing.stages import (
    STAMP_ORDER_MS,
    free_port,
    new_turn_id,
    publish_playback,
    publish_stamps,
    sockets_of,
)

# The probe publishes a whole turn's stamps in one burst (real stages publish a few each).
BURST_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
SECRET = 'my secret passphrase is purple elephant'


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


class Graph(SimpleNamespace):
    """One metrics process and the probe's publishers/subscriptions for it."""

    def turns_for(self, turn_id: str) -> list[TurnMetrics]:
        return [m for m in list(self.turns) if m.turn_id == turn_id]

    def wait_turn(self, turn_id: str, timeout: float = 10.0) -> TurnMetrics:
        self.probe.wait_for(lambda: self.turns_for(turn_id), timeout,
                            f'TurnMetrics for {turn_id}', [self.proc])
        return self.turns_for(turn_id)[0]

    def full_turn(self, interrupted: bool = False, text: str = '') -> tuple[str, int]:
        turn = new_turn_id('full')
        base = timeutil.now_ns() - 3 * 10**9
        if text:
            self.transcript.publish(Transcript(turn_id=turn, text=text, is_final=True))
            self.reply.publish(ReplyChunk(turn_id=turn, index=0, text='Noted, purple.',
                                          is_final=True))
            time.sleep(0.1)
        stages = dict(STAMP_ORDER_MS, asr_first_partial=-400)
        if interrupted:
            stages.update(interrupt=1500, flushed=1540)
        publish_stamps(self.stamps, turn, stages, base, node='probe')
        publish_playback(self.events, turn, PlaybackEvent.FLUSHED if interrupted
                         else PlaybackEvent.FINISHED, flush_ms=40.0)
        return turn, base


def stop_ok(proc: NodeProcess) -> None:
    code = proc.stop()
    assert code == 0, f'exit code {code}\n' + proc.log_path.read_text(errors='replace')


def start_metrics(probe: Probe, home, namespace: str = '', **params) -> Graph:
    args = ('--ros-args', '-r', f'__ns:=/{namespace}') if namespace else ()
    proc = NodeProcess('metrics_node', params={'home_dir': str(home), **params}, args=args,
                       workdir=home.parent)
    prefix = f'/{namespace}/' if namespace else ''
    g = Graph(proc=proc, probe=probe, home=home, prefix=prefix)
    g.turns = probe.subscribe(prefix + 'metrics/turn', TurnMetrics)
    g.stamps = probe.publisher(prefix + 'metrics/stamps', StageStamp, BURST_QOS)
    g.events = probe.publisher(prefix + 'playback/events', PlaybackEvent)
    g.activity = probe.publisher(prefix + 'voice/activity', VoiceActivity)
    g.transcript = probe.publisher(prefix + 'transcript', Transcript)
    g.reply = probe.publisher(prefix + 'reply', ReplyChunk)
    probe.wait_for_subscribers(g.stamps, 1, 30, [proc])
    probe.wait_for_subscribers(g.events, 1, 30, [proc])
    # Discovery is not symmetric: the publisher may see the node before the node sees the
    # publisher. Warm up until one whole turn has gone through intact.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        turn, _ = g.full_turn()
        try:
            probe.wait_for(lambda: g.turns_for(turn), 2.0, 'warm-up turn')
        except AssertionError:
            continue
        if math.isfinite(g.turns_for(turn)[0].e2e_ms):
            break
    return g


@pytest.fixture(scope='module')
def mprobe(ros_env):
    p = Probe('metrics_graph_probe')
    p.diags = p.subscribe('/diagnostics', DiagnosticArray)
    p.agg = p.subscribe('/diagnostics_agg', DiagnosticArray)
    yield p
    p.close()


@pytest.fixture(scope='module')
def metrics_on(mprobe, tmp_path_factory):
    """Prometheus and archive enabled; the archive holds an old and a new file at start."""
    home = tmp_path_factory.mktemp('metrics_on') / 'home'
    arc = privacy.archive_dir(home)
    privacy.ensure_private_dir(arc)
    now = time.time()
    old = privacy.write_private_json(arc / '20000101T000000000Z-old.json', {'transcript': 'x'})
    os.utime(old, (now - 25 * 3600, now - 25 * 3600))
    new = privacy.write_private_json(arc / '20991231T000000000Z-new.json', {'transcript': 'y'})
    port = free_port()
    g = start_metrics(mprobe, home, **{
        'prometheus.enabled': True, 'prometheus.port': port, 'archive.enabled': True,
        'metrics.settle_ms': 100, 'metrics.turn_timeout_s': 1.5,
        'diagnostics.stale_s': 1.5, 'log.max_bytes': 1 << 20})
    g.port, g.old_archive, g.new_archive = port, old, new
    yield g
    stop_ok(g.proc)


def test_complete_turn_yields_exactly_one_record(metrics_on):
    g = metrics_on
    turn, base = g.full_turn()
    m = g.wait_turn(turn)
    time.sleep(1.0)                               # nothing else may arrive for this turn
    assert len(g.turns_for(turn)) == 1
    assert not m.interrupted
    assert timeutil.from_msg(m.speech_end) == base
    assert timeutil.from_msg(m.first_audible) == base + 760_000_000
    assert timeutil.from_msg(m.asr_first_partial) == base - 400_000_000
    assert m.endpoint_ms == pytest.approx(320)
    assert m.asr_ms == pytest.approx(130)
    assert m.llm_first_chunk_ms == pytest.approx(190)
    assert m.tts_first_audio_ms == pytest.approx(80)
    assert m.playout_ms == pytest.approx(40)
    assert m.e2e_ms == pytest.approx(760)
    assert m.e2e_from_endpoint_ms == pytest.approx(440)
    assert math.isnan(m.flush_ms)


def test_interrupted_turn(metrics_on):
    g = metrics_on
    turn, base = g.full_turn(interrupted=True)
    m = g.wait_turn(turn)
    time.sleep(0.5)
    assert len(g.turns_for(turn)) == 1
    assert m.interrupted
    assert timeutil.from_msg(m.interrupt) == base + 1_500_000_000
    assert m.flush_ms == pytest.approx(40)
    assert m.e2e_ms == pytest.approx(760)


def test_unanswered_turn_completes_after_timeout(metrics_on):
    g = metrics_on
    turn = new_turn_id('quiet')
    publish_stamps(g.stamps, turn, {'speech_end': 0, 'endpoint': 300, 'asr_final': 420},
                   timeutil.now_ns() - 10**9)
    t0 = time.monotonic()
    m = g.wait_turn(turn, timeout=10)
    assert time.monotonic() - t0 >= 1.0           # metrics.turn_timeout_s = 1.5
    assert m.asr_ms == pytest.approx(120) and math.isnan(m.e2e_ms) and not m.interrupted


def test_discarded_turn_has_no_record(metrics_on):
    g = metrics_on
    turn = new_turn_id('discarded')
    publish_stamps(g.stamps, turn, {'speech_end': 0}, timeutil.now_ns())
    time.sleep(0.2)
    g.activity.publish(VoiceActivity(event=VoiceActivity.TURN_DISCARDED, turn_id=turn))
    time.sleep(2.5)
    assert g.turns_for(turn) == []


def _latest_status(probe, name: str):
    for arr in reversed(list(probe.diags)):
        for st in arr.status:
            if st.name == name:
                return st
    return None


def test_bad_stamps_are_reported_and_dropped(metrics_on):
    g = metrics_on
    now = timeutil.now_ns()
    bad = [StageStamp(turn_id='x', stage='no_such_stage', stamp=timeutil.to_msg(now)),
           StageStamp(turn_id='', stage='endpoint', stamp=timeutil.to_msg(now)),
           StageStamp(turn_id='x' * 10000, stage='endpoint', stamp=timeutil.to_msg(now)),
           StageStamp(turn_id='y', stage='endpoint')]
    for msg in bad:
        g.stamps.publish(msg)

    def reported():
        st = _latest_status(g.probe, '/metrics')
        if st is None:
            return False
        counts = {kv.key: kv.value for kv in st.values}
        return int(counts.get('count.bad_stamp', 0)) >= 4 and st.level == DiagnosticStatus.WARN
    g.probe.wait_for(reported, 10, 'count.bad_stamp >= 4 and WARN on /metrics', [g.proc])
    assert g.proc.alive()
    time.sleep(2.0)
    assert not g.turns_for('y') and not g.turns_for('x')


def test_prometheus_serves_histograms_on_loopback_only(metrics_on):
    g = metrics_on
    turn, _ = g.full_turn()
    g.wait_turn(turn)
    body = urllib.request.urlopen(f'http://127.0.0.1:{g.port}/metrics', timeout=5).read()
    text = body.decode()
    assert 'wallie_e2e_latency_seconds_bucket{from="speech_end",le="0.8"}' in text
    for stage in ('endpoint', 'asr', 'llm_first_token', 'llm_first_chunk', 'tts_first_audio',
                  'playout', 'flush'):
        assert f'wallie_stage_latency_seconds_count{{stage="{stage}"}}' in text
    count = [line for line in text.splitlines()
             if line.startswith('wallie_e2e_latency_seconds_count{from="speech_end"}')]
    assert count and float(count[0].split()[-1]) >= 1
    assert 'wallie_turns_total{outcome="answered"}' in text
    listeners = [s for s in sockets_of(g.proc.pid) if s['proto'].startswith('tcp')]
    assert listeners == [{'proto': 'tcp', 'ip': '127.0.0.1', 'port': g.port}], listeners
    for ip in _external_ips():
        with pytest.raises(OSError):
            socket.create_connection((ip, g.port), timeout=2).close()


def _external_ips() -> list[str]:
    out = subprocess.run(['ip', '-4', '-o', 'addr'], capture_output=True, text=True)
    ips = []
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 4:
            ip = parts[3].split('/')[0]
            if not ip.startswith('127.'):
                ips.append(ip)
    return ips


def test_jsonl_log_has_a_record_for_every_stage(metrics_on):
    g = metrics_on
    full, _ = g.full_turn()
    cut, _ = g.full_turn(interrupted=True)
    g.wait_turn(full)
    g.wait_turn(cut)
    log = privacy.log_file(g.home)
    g.probe.wait_for(lambda: log.exists() and cut in log.read_text() and
                     '"turn_complete"' in log.read_text().split(cut, 1)[-1], 5,
                     'the turn records in the JSONL log', [g.proc])
    assert mode(log) == 0o600 and mode(log.parent) == 0o700 and mode(g.home) == 0o700
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert all('stage' in r and 'ts' in r for r in records)
    mine = [r for r in records if r.get('turn_id') in (full, cut)]
    stages = {r['stage'] for r in mine}
    assert {'vad', 'asr', 'llm', 'tts', 'player', 'interrupt', 'turn'} <= stages, stages
    events = {r['event'] for r in mine}
    assert set(STAMP_ORDER_MS) | {'asr_first_partial', 'interrupt', 'flushed'} <= events
    turn_rec = next(r for r in mine if r['stage'] == 'turn' and r['turn_id'] == full)
    assert turn_rec['e2e_ms'] == pytest.approx(760) and turn_rec['flush_ms'] is None
    jq = shutil.which('jq')
    if jq:   # the README's command works as written
        out = subprocess.run([jq, '-c', 'select(.stage=="asr")', str(log)], check=True,
                             capture_output=True, text=True).stdout.splitlines()
        assert out and all(json.loads(line)['stage'] == 'asr' for line in out)
        assert any(json.loads(line).get('turn_id') == full for line in out)


def test_archive_enabled_writes_private_text_and_purges_old_files(metrics_on):
    g = metrics_on
    assert not g.old_archive.exists(), 'archive files older than 24 h are purged at start'
    assert g.new_archive.exists()
    turn, _ = g.full_turn(text=SECRET)
    g.wait_turn(turn)
    arc = privacy.archive_dir(g.home)
    g.probe.wait_for(lambda: any(SECRET in p.read_text() for p in arc.glob('*.json')), 5,
                     'the archive file of the turn', [g.proc])
    path = next(p for p in arc.glob('*.json') if SECRET in p.read_text())
    data = json.loads(path.read_text())
    assert data['turn_id'] == turn and data['reply'] == 'Noted, purple.'
    assert mode(path) == 0o600 and mode(arc) == 0o700
    # the text is in the archive only: never in the log
    assert SECRET not in privacy.log_file(g.home).read_text()


def test_diagnostics_are_aggregated_and_stale_nodes_flagged(metrics_on):
    g = metrics_on
    pub = g.probe.publisher('/diagnostics', DiagnosticArray, 10)
    status = DiagnosticStatus(level=DiagnosticStatus.WARN, name='/fake_stage',
                              message='model reloading', hardware_id='wallie',
                              values=[KeyValue(key='count.dropped', value='3')])
    arr = DiagnosticArray(status=[status])
    for _ in range(3):
        pub.publish(arr)
        time.sleep(0.1)

    def agg_level():
        for a in reversed(list(g.probe.agg)):
            for st in a.status:
                if st.name == '/fake_stage':
                    return st.level
        return None
    g.probe.wait_for(lambda: agg_level() == DiagnosticStatus.WARN, 5,
                     '/fake_stage WARN in /diagnostics_agg', [g.proc])
    g.probe.wait_for(lambda: agg_level() == DiagnosticStatus.STALE, 6,
                     '/fake_stage STALE after diagnostics.stale_s', [g.proc])
    log = privacy.log_file(g.home).read_text()
    assert '"stage":"diagnostics"' in log and '/fake_stage' in log


def test_defaults_no_endpoint_and_no_text_on_disk(mprobe, tmp_path):
    home = tmp_path / 'home'
    g = start_metrics(mprobe, home, namespace='off', **{'metrics.settle_ms': 50})
    try:
        turn, _ = g.full_turn(text=SECRET)
        g.wait_turn(turn)
        time.sleep(0.5)
        assert [s for s in sockets_of(g.proc.pid) if s['proto'].startswith('tcp')] == []
        assert not any(privacy.archive_dir(home).glob('*')) if privacy.archive_dir(
            home).exists() else True
        for path in home.rglob('*'):
            if path.is_file():
                assert SECRET not in path.read_text(errors='replace'), path
                assert mode(path) == 0o600, path
            else:
                assert mode(path) == 0o700, path
    finally:
        stop_ok(g.proc)



def test_lifecycle_cycle_keeps_recording(mprobe, tmp_path):
    """deactivate -> cleanup -> configure -> activate: the node records turns again."""
    home = tmp_path / 'home'
    g = start_metrics(mprobe, home, namespace='cycle', **{'metrics.settle_ms': 50})
    try:
        node = '/cycle/metrics'
        assert mprobe.lifecycle(node, 'deactivate')
        assert mprobe.lifecycle(node, 'cleanup')
        mprobe.activate(node)
        assert mprobe.lifecycle_state(node) == 'active'
        deadline = time.monotonic() + 15
        turn = ''
        while time.monotonic() < deadline and not (turn and g.turns_for(turn)):
            turn, _ = g.full_turn()
            time.sleep(1.0)
        assert g.turns_for(turn), g.proc.log()
    finally:
        stop_ok(g.proc)
