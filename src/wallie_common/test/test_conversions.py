import numpy as np
import pytest

from wallie_common.conversions import (
    BadAudio,
    audio_to_frame,
    frame_to_audio,
    from_int16_field,
    to_int16_array,
)
from wallie_interfaces.msg import AudioFrame


def test_frame_round_trip_keeps_samples_and_stamp():
    x = (np.sin(np.linspace(0, 40, 512)) * 0.5).astype(np.float32)
    msg = audio_to_frame(x, 16000, 1_700_000_000_123_456_789, seq=5)
    audio = frame_to_audio(msg)
    assert audio.sample_rate == 16000 and audio.stamp_ns == 1_700_000_000_123_456_789
    assert np.max(np.abs(audio.mono - x)) < 1e-4


def _frame(**kw):
    msg = AudioFrame()
    msg.sample_rate = kw.get('rate', 16000)
    msg.channels = kw.get('channels', 1)
    msg.encoding = kw.get('encoding', 'S16LE')
    msg.data = kw.get('data', bytes(64))
    return msg


@pytest.mark.parametrize('kw, why', [
    ({'data': b''}, 'empty'),
    ({'data': bytes(3)}, 'whole number'),
    ({'rate': 0}, 'out of range'),
    ({'channels': 0}, 'channels'),
    ({'encoding': 'MP3'}, 'unknown encoding'),
    ({'encoding': 'F32LE', 'data': np.array([0, np.nan], '<f4').tobytes()}, 'NaN'),
    ({'data': bytes(2 * 200_000)}, 'larger than'),
])
def test_bad_frames_are_rejected_with_a_reason(kw, why):
    with pytest.raises(BadAudio, match=why):
        frame_to_audio(_frame(**kw))


def test_stereo_is_mixed_down():
    st = np.stack([np.full(10, 1000, np.int16), np.full(10, -1000, np.int16)], axis=1)
    audio = frame_to_audio(audio_to_frame(st, 48000, 1))
    assert audio.samples.shape == (10, 2) and np.allclose(audio.mono, 0)


def test_int16_field_helpers():
    x = np.arange(-5, 5, dtype=np.int16)
    assert np.array_equal(from_int16_field(to_int16_array(x)), x)
