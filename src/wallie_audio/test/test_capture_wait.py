"""Graph test: a file source holds its recording until audio/in has a subscriber.

A capture that starts (or is respawned) before the voice gate's subscription is matched would
play the start of the question to nobody. Real capture_node process over DDS; the subscriber
(this test's probe) appears only 2 s after the capture is active.
"""

from __future__ import annotations

import time

import numpy as np
import pytest


def _wav(tmp_path):
    import soundfile as sf
    t = np.arange(16000) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)      # 1 s, loud
    path = tmp_path / 'tone.wav'
    sf.write(str(path), tone, 16000, subtype='PCM_16')
    return path


@pytest.mark.parametrize('wait_s', [10.0, 0.0])
def test_file_waits_for_a_subscriber(probe, node_process, tmp_path, wait_s):
    from wallie_common.qos import AUDIO_QOS
    from wallie_interfaces.msg import AudioFrame
    cap = node_process('capture_node', params={
        'autostart': True, 'source': 'file', 'file.path': str(_wav(tmp_path)),
        'file.realtime': True, 'wait_subscriber_s': wait_s})
    probe.wait_for(lambda: probe.lifecycle_state('capture') == 'active', 60,
                   'capture active', [cap])
    time.sleep(2.0)                      # longer than the 1 s file
    frames = probe.subscribe('audio/in', AudioFrame, AUDIO_QOS)
    if wait_s == 0.0:                    # the old behaviour: the file went out to nobody
        time.sleep(2.0)
        assert not frames, [f.seq for f in frames[:5]]
        return
    probe.wait_for(lambda: len(frames) >= 31, 15, 'the whole file on audio/in', [cap])
    time.sleep(0.3)
    seqs = sorted(f.seq for f in frames)
    assert seqs[0] == 1, seqs[:5]        # from its first frame on
    assert 'subscriber matched after' in cap.log(), cap.log()[-2000:]
    assert cap.alive()
