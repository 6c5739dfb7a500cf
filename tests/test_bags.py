"""Rosbag record/replay (wallie_cli.bags, `wallie record`, `wallie replay`), audio fixtures."""

from __future__ import annotations

import hashlib
import json
import threading
import time

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.interfaces import QosReliability
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from std_msgs.msg import String

from wallie_cli import bag_files, bags, fixture_set
from wallie_common import conversions, timeutil
from wallie_common.qos import AUDIO_QOS, EVENT_QOS
from wallie_interfaces.msg import AudioFrame

FIXTURES = fixture_set.default_fixtures_dir()
START = 1_700_000_000_000_000_000


def _noise(seconds: float, seed: int = 0, rate: int = 16000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(seconds * rate)) * 4000).clip(-32768, 32767).astype(np.int16)


# --------------------------------------------------------------------------- write / read


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
@pytest.mark.parametrize('frame_ms,seconds', [(32, 3.3), (10, 1.0), (20, 0.005)])
def test_write_read_round_trip(tmp_path, storage, frame_ms, seconds):
    samples = _noise(seconds)
    bag_files.write_audio_bag(tmp_path / 'bag', samples, frame_ms=frame_ms, start_ns=START,
                         storage=storage)
    back = bag_files.read_audio_bag(tmp_path / 'bag')
    assert back.rate == 16000
    assert back.samples.dtype == np.int16
    np.testing.assert_array_equal(back.samples, samples)
    frame = 16000 * frame_ms // 1000
    n_frames = -(-len(samples) // frame)
    expected = START + np.arange(n_frames) * frame * 1_000_000_000 // 16000
    np.testing.assert_array_equal(back.stamps, expected)
    # log times equal the capture stamps; the span is the audio's
    logs = [m.log_ns for m in bag_files.iter_messages(tmp_path / 'bag')]
    assert logs == expected.tolist()
    info = bag_files.bag_info(tmp_path / 'bag')
    assert info.topics['/audio/in'].count == n_frames
    assert (info.start_ns, info.end_ns) == (expected[0], expected[-1])


def test_float_and_stereo_input(tmp_path):
    t = np.arange(16000) / 16000
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    bag_files.write_audio_bag(tmp_path / 'mono', tone, start_ns=START)
    back = bag_files.read_audio_bag(tmp_path / 'mono')
    np.testing.assert_allclose(back.samples / 32767, tone, atol=1 / 32767)
    stereo = np.stack([_noise(0.5, 1), _noise(0.5, 2)], axis=1)
    bag_files.write_audio_bag(tmp_path / 'stereo', stereo, start_ns=START)
    np.testing.assert_array_equal(bag_files.read_audio_bag(tmp_path / 'stereo').samples, stereo)


@pytest.mark.parametrize('samples,match', [
    (np.zeros(0, np.int16), 'no samples'),
    (np.array([0.1, np.nan, 0.2]), 'NaN'),
    (np.zeros(10, np.int32), 'int16 or float'),
    (np.zeros((2, 2, 2), np.int16), 'shape'),
])
def test_write_rejects_bad_audio(tmp_path, samples, match):
    with pytest.raises(bag_files.BagError, match=match):
        bag_files.write_audio_bag(tmp_path / 'bag', samples, start_ns=START)


def test_read_errors_are_clear(tmp_path):
    with pytest.raises(bag_files.BagError, match='does not exist'):
        bag_files.read_audio_bag(tmp_path / 'missing')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(bag_files.BagError, match='metadata.yaml'):
        bag_files.read_audio_bag(tmp_path / 'empty')
    bag_files.write_audio_bag(tmp_path / 'bag', _noise(0.1), start_ns=START, topic='mic/raw')
    with pytest.raises(bag_files.BagError, match='/nowhere'):
        bag_files.read_audio_bag(tmp_path / 'bag', topic='nowhere')
    # the only AudioFrame topic is found without naming it
    assert len(bag_files.read_audio_bag(tmp_path / 'bag').samples) == 1600
    with pytest.raises(bag_files.BagError, match='exists already'):
        bag_files.write_audio_bag(tmp_path / 'bag', _noise(0.1), start_ns=START)


# --------------------------------------------------------------------------- interop


def test_bag_is_rosbag2_v9_and_rclpy_decodes_it(tmp_path):
    samples = _noise(1.0)
    bag_files.write_audio_bag(tmp_path / 'bag', samples, start_ns=START, frame_id='mic0')
    # plain rosbags Reader, no wallie helpers
    with Reader(tmp_path / 'bag') as reader:
        conn, = reader.connections
        assert (conn.topic, conn.msgtype) == ('/audio/in', 'wallie_interfaces/msg/AudioFrame')
        assert 'uint8[] data' in conn.msgdef.data and 'std_msgs/Header header' in conn.msgdef.data
        assert conn.ext.offered_qos_profiles[0].reliability == QosReliability.BEST_EFFORT
        # the type hash is the one rosidl generated for the installed interface
        desc = bag_files.message_dir('wallie_interfaces') / 'AudioFrame.json'
        hashes = json.loads(desc.read_text())['type_hashes']
        assert conn.digest == next(h['hash_string'] for h in hashes
                                   if h['type_name'] == conn.msgtype)
        frames = [deserialize_message(raw, AudioFrame) for _c, _t, raw in reader.messages()]
    meta = (tmp_path / 'bag' / 'metadata.yaml').read_text()
    assert 'version: 9' in meta and 'storage_identifier: mcap' in meta
    assert [f.seq for f in frames] == list(range(len(frames)))
    assert all(f.header.frame_id == 'mic0' and f.encoding == 'S16LE' and f.channels == 1
               for f in frames)
    decoded = np.concatenate([conversions.float_to_s16(conversions.frame_to_audio(f).mono)
                              for f in frames])
    np.testing.assert_allclose(decoded, samples, atol=1)
    assert timeutil.from_msg(frames[3].header.stamp) == START + 3 * 32_000_000


def test_official_mcap_reader_decodes_it(tmp_path):
    """The MCAP reference reader (what rosbag2's mcap plugin is built on) with the schema
    embedded in the file: profile ros2, ros2msg schema, cdr messages, rosbag2 metadata."""
    mcap_reader = pytest.importorskip('mcap.reader')
    ros2_decoder = pytest.importorskip('mcap_ros2.decoder')
    samples = _noise(0.5)
    bag = bag_files.write_audio_bag(tmp_path / 'bag', samples, start_ns=START)
    with open(next(bag.glob('*.mcap')), 'rb') as f:
        reader = mcap_reader.make_reader(f, decoder_factories=[ros2_decoder.DecoderFactory()])
        assert reader.get_header().profile == 'ros2'
        schema, = reader.get_summary().schemas.values()
        assert (schema.name, schema.encoding) == (bag_files.AUDIO_TYPE, 'ros2msg')
        decoded = list(reader.iter_decoded_messages())
        assert 'rosbag2' in [m.name for m in reader.iter_metadata()]
    pcm = np.concatenate([np.frombuffer(bytes(d.data), '<i2') for _s, _c, _m, d in decoded])
    np.testing.assert_array_equal(pcm, samples)
    assert [m.log_time for _s, _c, m, _d in decoded][:2] == [START, START + 32_000_000]


def test_reads_bag_of_rclpy_serialized_messages(tmp_path):
    """The other direction: CDR bytes from rclpy (what ros2 bag record stores) read back."""
    ts = bag_files.typestore()
    samples = _noise(0.64)
    with Writer(tmp_path / 'bag', version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection('/audio/in', bag_files.AUDIO_TYPE, typestore=ts)
        for i in range(0, len(samples), 320):
            stamp = START + i * 62_500
            msg = conversions.audio_to_frame(samples[i:i + 320], 16000, stamp, seq=i // 320)
            writer.write(conn, stamp + 1_000_000, serialize_message(msg))
    back = bag_files.read_audio_bag(tmp_path / 'bag')
    np.testing.assert_array_equal(back.samples, samples)
    assert back.stamps[1] - back.stamps[0] == 20_000_000


def test_restamp_patches_only_the_header():
    msg = conversions.audio_to_frame(_noise(0.032), 16000, START, seq=7, frame_id='x')
    raw = serialize_message(msg)
    assert bag_files.header_stamp_ns(raw) == START
    new = deserialize_message(bag_files.restamp_cdr(raw, START + 123_456_789_000), AudioFrame)
    assert timeutil.from_msg(new.header.stamp) == START + 123_456_789_000
    assert (new.seq, new.header.frame_id, bytes(new.data)) == (7, 'x', bytes(msg.data))
    assert bag_files.starts_with_header(bag_files.AUDIO_TYPE)
    assert not bag_files.starts_with_header('std_msgs/msg/String')


# --------------------------------------------------------------------------- live graph


def _log(proc) -> str:
    return proc.log_path.read_text(errors='replace')


def _wait_frames(got: list, n: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        time.sleep(0.02)
    seqs = [g[0].seq for g in got]
    missing = sorted(set(range(n)) - set(seqs))
    assert len(got) >= n, f'received {len(got)}/{n} frames; missing seq {missing[:20]}'


def _audio_collector(probe, topic='audio/in'):
    """Subscribe like the voice gate (AUDIO_QOS) and keep (frame, publish ns, receive ns)."""
    got = []
    lock = threading.Lock()

    def cb(msg, info):
        with lock:
            got.append((msg, info['source_timestamp'], info['received_timestamp']))
    probe.node.create_subscription(AudioFrame, topic, cb, AUDIO_QOS)
    return got


def test_replay_keeps_timing(tmp_path, probe, node_process):
    samples = _noise(3.0)
    bag = bag_files.write_audio_bag(tmp_path / 'bag', samples, start_ns=START)
    got = _audio_collector(probe)
    proc = node_process('wallie', args=['replay', str(bag), '--json',
                                        '--wait-subscribers', '20'])
    probe.wait_for(lambda: not proc.alive(), 30, 'wallie replay to finish', [proc])
    assert proc.stop() == 0, _log(proc)
    summary = json.loads(_log(proc).strip().splitlines()[-1])
    n = -(-len(samples) // 512)
    assert summary['messages'] == n
    _wait_frames(got, n)
    frames = [g[0] for g in got]
    np.testing.assert_array_equal(
        np.concatenate([np.frombuffer(bytes(f.data), '<i2') for f in frames]), samples)
    sent = np.array([g[1] for g in got], dtype=np.int64)
    recv = np.array([g[2] for g in got], dtype=np.int64)
    recorded = START + np.arange(n) * 32_000_000
    # deviation from the recorded schedule, against the run's median offset (the CPU is
    # shared: a stalled process may be late for a while, then must be back on schedule)
    pub_dev = np.abs(sent - recorded - np.median(sent - recorded)) / 1e6
    recv_dev = np.abs(recv - recorded - np.median(recv - recorded)) / 1e6
    report = f'publish dev ms {np.round(pub_dev, 1)}; receive dev ms {np.round(recv_dev, 1)}'
    assert np.median(pub_dev) < 1.0 and np.percentile(pub_dev, 90) < 20.0, report
    assert np.median(recv_dev) < 2.0 and np.percentile(recv_dev, 90) < 25.0, report
    assert np.median(pub_dev[-20:]) < 1.0, report  # hiccups never accumulate into drift
    # re-stamped to now: the header says when the frame was "captured" = when it was sent
    stamps = np.array([timeutil.from_msg(f.header.stamp) for f in frames], dtype=np.int64)
    np.testing.assert_array_equal(np.diff(stamps), np.diff(recorded))
    assert np.median(np.abs(stamps - sent)) / 1e6 < 10.0
    assert stamps[0] == recorded[0] + summary['offset_ns']


def test_replay_rate_and_keep_stamps(tmp_path, probe):
    bag = bag_files.write_audio_bag(tmp_path / 'bag', _noise(2.0), start_ns=START)
    got = _audio_collector(probe)
    with bags.RosSession('replay_test') as session:
        stats = bags.replay(bag, session.node, rate=2.0, wait_for_subscribers=20.0)
    n = 63
    assert stats.messages == n and stats.passes == 1
    assert 0.95 < stats.wall_s < 1.6, stats.wall_s  # 2 s of audio at twice the speed
    _wait_frames(got, n)
    assert timeutil.from_msg(got[0][0].header.stamp) == START  # stamps untouched by default
    spacing_ms = np.diff([g[1] for g in got]) / 1e6
    assert abs(np.median(spacing_ms) - 16.0) < 1.0, spacing_ms


def test_replay_loop_and_stop(tmp_path, probe):
    bag = bag_files.write_audio_bag(tmp_path / 'bag', _noise(0.32), start_ns=START)
    got = _audio_collector(probe)
    stop = threading.Event()
    with bags.RosSession('replay_loop') as session:
        timer = threading.Timer(1.5, stop.set)
        timer.start()
        stats = bags.replay(bag, session.node, loop=True, restamp=True, stop=stop,
                            wait_for_subscribers=20.0)
        timer.cancel()
    assert stats.passes >= 3 and stats.messages >= 30
    probe.wait_for(lambda: len(got) >= stats.messages, 5, 'looped frames')
    stamps = [timeutil.from_msg(g[0].header.stamp) for g in got]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)  # no time travel


def test_replay_errors(tmp_path, probe):
    bag = bag_files.write_audio_bag(tmp_path / 'bag', _noise(0.1), start_ns=START)
    with pytest.raises(bag_files.BagError, match='not in the bag'):
        bags.replay(bag, probe.node, topics=['/nope'])
    with pytest.raises(bag_files.BagError, match='rate'):
        bags.replay(bag, probe.node, rate=0.0)


def test_record_live_topics(tmp_path, probe, node_process):
    out = tmp_path / 'rec'
    audio_pub = probe.publisher('audio/in', AudioFrame, AUDIO_QOS)
    text_pub = probe.publisher('chatter', String, EVENT_QOS)
    proc = node_process('wallie',
                        args=['record', '-o', str(out), '--topics', 'audio/in', 'chatter',
                              '--json'])
    probe.wait_for_subscribers(audio_pub, procs=[proc])
    probe.wait_for_subscribers(text_pub, procs=[proc])
    samples = _noise(1.0)
    now = timeutil.now_ns()
    for seq, i in enumerate(range(0, len(samples), 512)):
        audio_pub.publish(conversions.audio_to_frame(samples[i:i + 512], 16000,
                                                     now + i * 62_500, seq=seq))
        time.sleep(0.005)
    for word in ('hello', 'bag'):
        text_pub.publish(String(data=word))
    time.sleep(1.0)
    assert proc.stop() == 0, _log(proc)  # SIGINT: the bag is closed cleanly
    summary = json.loads(_log(proc).strip().splitlines()[-1])
    assert summary['topics'] == {'/audio/in': 32, '/chatter': 2}
    back = bag_files.read_audio_bag(out)
    np.testing.assert_array_equal(back.samples, samples)
    assert back.stamps[0] == now
    info = bag_files.bag_info(out)
    assert info.topics['/chatter'].msgtype == 'std_msgs/msg/String'
    assert info.topics['/audio/in'].qos[0].reliability == QosReliability.BEST_EFFORT
    texts = [deserialize_message(m.data, String).data
             for m in bag_files.iter_messages(out, ['chatter'])]
    assert texts == ['hello', 'bag']
    logs = [m.log_ns for m in bag_files.iter_messages(out, ['audio/in'])]
    assert logs == sorted(logs) and now - 1e9 < logs[0] < now + 5e9  # receive times


def test_record_duration_stops_by_itself(tmp_path, probe, node_process):
    out = tmp_path / 'rec'
    proc = node_process('wallie',
                        args=['record', '-o', str(out), '--duration', '1.5'])
    probe.wait_for(lambda: not proc.alive(), 20, 'wallie record --duration to exit', [proc])
    assert proc.stop() == 0, _log(proc)
    assert bag_files.bag_info(out).message_count == 0  # nothing published: an empty, valid bag
    assert 'nothing was recorded' in _log(proc)


# --------------------------------------------------------------------------- fixtures


MANIFEST = json.loads((FIXTURES / 'manifest.json').read_text())
ENTRIES = {e['name']: e for e in MANIFEST['fixtures']}


def test_committed_fixtures_are_small_and_complete():
    assert MANIFEST['total_bytes'] < 3_000_000
    sets = {e['set'] for e in ENTRIES.values()}
    assert sets == {'questions', 'followup', 'wake', 'nonspeech'}
    on_disk = sum(p.stat().st_size for p in (FIXTURES / 'bags').rglob('*') if p.is_file())
    assert on_disk < 3_000_000
    voices = {e['voice']['engine'] + ':' + e['voice']['name']
              for e in ENTRIES.values() if e['speech']}
    assert len(voices) >= 4 and any(v.startswith('piper') for v in voices)
    assert any(e['wake_word'] for e in ENTRIES.values())
    assert any(e['speech'] and not e['wake_word'] and e['set'] == 'wake'
               for e in ENTRIES.values())
    turns = sorted((e['group'], e['turn']) for e in ENTRIES.values() if e['set'] == 'followup')
    assert turns == [('capital', 1), ('capital', 2)]
    for e in ENTRIES.values():
        if e['set'] in ('questions', 'wake') or e.get('turn') == 2:
            assert e['expected_fact'], e['name']


def _frame_db(samples: np.ndarray, hop: int = 160) -> np.ndarray:
    m = len(samples) // hop
    x = samples[: m * hop].astype(np.float64).reshape(m, hop) / 32768.0
    return 10 * np.log10(np.mean(x * x, axis=1) + 1e-12)


@pytest.mark.parametrize('name', sorted(ENTRIES))
def test_fixture_sidecar_matches_audio(name):
    e = ENTRIES[name]
    bag = FIXTURES / e['bag']
    assert hashlib.sha256(next(bag.glob('*.mcap')).read_bytes()).hexdigest() == e['sha256'], \
        'bag changed without regenerating the manifest (python -m wallie_cli.fixtures.generate)'
    sidecar = bag_files.load_sidecar(bag)
    assert sidecar is not None and (FIXTURES / e['sidecar']).is_file()
    assert {k: v for k, v in e.items() if k in sidecar} == sidecar  # manifest = sidecar + paths
    audio = bag_files.read_audio_bag(bag)
    assert audio.rate == 16000 and audio.stamps[0] == e['start_ns']
    assert len(audio.samples) / 16000 == pytest.approx(e['duration_s'])
    db = _frame_db(audio.samples)  # 10 ms frames
    floor = float(np.median(db[:40]))  # the leading 0.4 s has no speech
    if not e['speech']:
        assert e['speech_end_s'] is None and not e['expect_turn']
        return
    # energy-based speech span: 10 ms frames above the sidecar's stated threshold, or above
    # the noise floor + 10 dB where noise buries it
    threshold = max(e['speech_threshold_dbfs'], floor + 10.0)
    above = np.flatnonzero(db > threshold)
    start, end = above[0] * 0.01, (above[-1] + 1) * 0.01
    assert e['speech_start_ns'] == e['start_ns'] + round(e['speech_start_s'] * 1e9)
    assert e['speech_end_ns'] == e['start_ns'] + round(e['speech_end_s'] * 1e9)
    assert 0.45 <= e['speech_start_s'] < e['speech_end_s'] <= e['duration_s'] - 1.45
    if threshold == e['speech_threshold_dbfs'] and e['reverb'] is None:
        assert abs(end - e['speech_end_s']) <= 0.020, (end, e['speech_end_s'])
        assert abs(start - e['speech_start_s']) <= 0.020, (start, e['speech_start_s'])
    else:
        # a soft word ending hides under noise (the energy end comes early), a reverb tail
        # outlasts it (late); the sidecar keeps the dry acoustic end either way
        tail = e['reverb']['rt60_s'] / 2 if e['reverb'] else 0.0
        assert -0.6 <= end - e['speech_end_s'] <= 0.020 + tail, (end, e['speech_end_s'])
        assert -0.02 <= start - e['speech_start_s'] <= 0.3, (start, e['speech_start_s'])
    if e['wake_word']:
        assert e['speech_start_s'] <= e['wake_end_s'] < e['question_start_s'] < e['speech_end_s']
        assert e['words'][:2] == ['hey', 'jarvis']
