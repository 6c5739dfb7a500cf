"""Parameter tables of the audio nodes and their mapping onto the engines' frozen configs.

Pure Python (no rclpy): the nodes declare these tables as ROS parameters through
wallie_common.params; tests check the mapping without ROS.
"""

from __future__ import annotations

from typing import Any, Mapping

from wallie_audio.echo import EchoConfig
from wallie_audio.endpoint import VAD_END_LAG_MS, EndpointConfig
from wallie_audio.voice_gate import ECHO_MODES, GateConfig
from wallie_audio.wake import ENGINES
from wallie_common.param_table import Param

GATE_PARAMS: tuple[Param, ...] = (
    Param('vad.threshold', 0.5, 'Silero speech probability at/above which a 32 ms block is '
          'voiced.', 0.05, 0.99),
    Param('vad.neg_threshold', 0.35, 'Probability below which a block counts as silence '
          '(hysteresis; must be <= vad.threshold).', 0.0, 0.99),
    Param('vad.webrtc_prefilter', False, 'Run webrtcvad first and skip Silero on blocks it '
          'calls silence (saves CPU in quiet rooms).'),
    Param('vad.webrtc_aggressiveness', 2, 'webrtcvad aggressiveness 0 (lenient) .. 3.', 0, 3),
    Param('vad.end_offset_ms', VAD_END_LAG_MS, 'The VAD calls audio speech for a while after '
          'the voice stops: the reported acoustic speech end (speech_end stamps) is this much '
          'before the end of the last voiced block, ms (default tuned on the fixtures).',
          0, 300),
    Param('vad.model_path', '', 'Explicit Silero ONNX file; empty = model store '
          '(silero-vad-v6).', reload=True),
    Param('endpoint.speech_start_ms', 64, 'Voiced time that confirms a speech start '
          '(debounce), ms.', 0, 1000),
    Param('endpoint.min_silence_ms', 400, 'Silence after speech that confirms the end of the '
          'turn, ms.', 100, 5000),
    Param('endpoint.complete_silence_ms', 200, 'Silence that ends the turn when the early '
          'transcript reads as a complete sentence ("What time is it?"), ms; at most '
          'endpoint.min_silence_ms applies. 0 = always wait min_silence_ms.', 0, 5000),
    Param('endpoint.probable_end_ms', 64, 'Silence after which SPEECH_PROBABLY_ENDED is sent '
          '(early ASR), ms.', 0, 2000),
    Param('endpoint.min_speech_ms', 120, 'Utterances with less voiced time are discarded, ms.',
          0, 5000),
    Param('endpoint.max_utterance_ms', 15000, 'Forced endpoint after this much speech, ms.',
          1000, 120000),
    Param('endpoint.pre_roll_ms', 300, 'Audio before the detected speech start that is sent '
          'with the first utterance piece, ms.', 0, 2000),
    Param('endpoint.piece_ms', 160, 'Utterance audio is streamed in pieces of this length, ms.',
          32, 2000),
    Param('wake.engine', 'openwakeword', 'Wake word engine: embedding (speech-embedding '
          'spotter: "wallie" from the model store, any other word enrolled from its text or '
          'recordings), openwakeword, porcupine, transcript (ASR checks the phrase), none.',
          choices=ENGINES),
    Param('wake.word', 'hey_jarvis', 'Wake word(s), comma separated: for embedding any word or '
          'phrase ("wallie", "hey robot") or an .npz model; an openWakeWord model name/path; '
          'a Porcupine keyword or .ppn; or the transcript phrase.'),
    Param('wake.sensitivity', 0.5, 'Wake sensitivity 0 (strict) .. 1 (eager) '
          '(brief: wake_word_sensitivity).', 0.0, 1.0),
    Param('wake.vad_threshold', 0.2, 'CPU saver: the acoustic wake engine runs only around '
          'voice, from a block whose VAD probability reaches this (0 = run it on every '
          'block).', 0.0, 0.99),
    Param('wake.buffer_ms', 1500, 'Audio kept while the wake engine idles and fed to it when '
          'voice starts, so the start of the wake word is not lost, ms.', 500, 5000),
    Param('wake.hangover_ms', 1000, 'The wake engine keeps running this long after the last '
          'voiced block, ms.', 0, 10000),
    Param('wake.backoff_ms', 250, 'The turn after a wake word starts this long before the '
          'point where the word was detected, so a question said in the same breath keeps '
          'its first word, ms.', 0, 1000),
    Param('wake.access_key', '', 'Picovoice AccessKey (only for Porcupine >= 2 / custom .ppn).'),
    Param('wake.listen_timeout_ms', 5000, 'After a wake word / push-to-talk / listen: give up '
          'if no speech starts within this time, ms.', 500, 60000),
    Param('wake.followup_ms', 5000, 'After a reply, the next turn needs no wake word for this '
          'long, ms (0 = off).', 0, 60000),
    Param('echo.mode', 'suppress', 'Own-voice handling during playback: suppress (echo '
          'canceller), half_duplex (mic ignored while speaking), off.', choices=ECHO_MODES),
    Param('echo.max_delay_ms', 250, 'Longest speaker->mic echo delay searched, ms.', 20, 1000),
    Param('echo.holdoff_ms', 400, 'No barge-in before the echo path is locked or this long '
          'after playback starts, ms.', 0, 3000),
    Param('echo.playback_tail_ms', 300, 'Playback counts as speaking this long after the last '
          'reference block, ms.', 0, 3000),
    Param('barge_in.enabled', True, 'User speech during playback interrupts the reply.'),
    Param('barge_in.threshold', 0.6, 'VAD probability on the echo-cancelled signal needed for '
          'barge-in.', 0.05, 0.99),
    Param('barge_in.min_speech_ms', 192, 'Qualifying speech needed to raise the interrupt, ms.',
          32, 3000),
    Param('barge_in.min_excess_db', 10.0, 'Residual above the echo-only expectation needed to '
          'count a block as user speech, dB.', 0.0, 40.0),
    Param('ring.seconds', 60.0, 'Length of the RAM-only microphone ring, s (<= 600).',
          1.0, 600.0),
)

CAPTURE_PARAMS: tuple[Param, ...] = (
    Param('source', 'device', 'Audio source.', choices=('device', 'file', 'topic', 'bag'),
          reload=True),
    Param('frame_ms', 32, 'Published frame length, ms.', 10, 32, reload=True),
    Param('device.name', '', 'Input device index or name substring; empty = default.',
          reload=True),
    Param('device.rate', 0, 'Device sample rate; 0 = the device default (resampled to '
          '16 kHz).', 0, 384000, reload=True),
    Param('device.channels', 1, 'Channels to open (mixed down to mono).', 1, 32, reload=True),
    Param('file.path', '', 'WAV/FLAC file for source=file.', reload=True),
    Param('file.realtime', True, 'Pace the file like a microphone (false: as fast as '
          'possible).', reload=True),
    Param('file.loop', False, 'Loop the file.', reload=True),
    Param('file.lead_silence_s', 0.0, 'Silence played before the file, s.', 0.0, 60.0,
          reload=True),
    Param('topic.name', 'audio/raw', 'Input topic for source=topic.', reload=True),
    Param('topic.type', 'wallie', 'Message type on topic.name: wallie (AudioFrame) or '
          'audio_common (audio_common_msgs/AudioDataStamped, if installed).',
          choices=('wallie', 'audio_common'), reload=True),
    Param('topic.sample_rate', 16000, 'audio_common: sample rate of the data.', 1000, 384000),
    Param('topic.channels', 1, 'audio_common: channels of the data.', 1, 32),
    Param('topic.sample_format', 'S16LE', 'audio_common: sample format.'),
    Param('bag.path', '', 'rosbag2 directory for source=bag.', reload=True),
    Param('bag.topic', '/audio/in', 'AudioFrame topic inside the bag.', reload=True),
    Param('bag.realtime', True, 'Replay with the original pacing.', reload=True),
    Param('wait_subscriber_s', 10.0, 'source=file/bag: wait up to this long for a subscriber '
          'of audio/in to be matched before playing (a respawned or freshly started capture '
          'would otherwise play the start of the question to nobody), s; 0 = play at once.',
          0.0, 600.0),
)

PLAYER_PARAMS: tuple[Param, ...] = (
    Param('sink', 'device', 'Where audio goes.', choices=('device', 'file', 'null'),
          reload=True),
    Param('device.name', '', 'Output device index or name substring; empty = default.',
          reload=True),
    Param('file_path', '', 'WAV file for sink=file.', reload=True),
    Param('rate', 16000, 'Output rate for file/null sinks (device: 0 = device default).',
          0, 192000, reload=True),
    Param('latency_ms', 0.0, 'Null sink: simulated output latency, ms.', 0.0, 1000.0,
          reload=True),
    Param('realtime', True, 'File/null sinks keep real-time pacing.', reload=True),
    Param('block_ms', 20, 'Playback block (flush granularity), ms.', 5, 100, reload=True),
    Param('stream_timeout_s', 3.0, 'A reply without end_of_stream is finished after this '
          'much idle time, s.', 0.5, 60.0),
)


def endpoint_config(p: Mapping[str, Any]) -> EndpointConfig:
    """Build the EndpointConfig from the voice_gate parameter values (neg_threshold capped at
    the threshold)."""
    th = float(p['vad.threshold'])
    return EndpointConfig(
        threshold=th, neg_threshold=min(float(p['vad.neg_threshold']), th),
        speech_start_ms=int(p['endpoint.speech_start_ms']),
        min_silence_ms=int(p['endpoint.min_silence_ms']),
        probable_end_ms=int(p['endpoint.probable_end_ms']),
        complete_silence_ms=int(p['endpoint.complete_silence_ms']),
        min_speech_ms=int(p['endpoint.min_speech_ms']),
        max_utterance_ms=int(p['endpoint.max_utterance_ms']),
        end_offset_ms=int(p['vad.end_offset_ms']))


def gate_config(p: Mapping[str, Any]) -> GateConfig:
    """Build the GateConfig from the voice_gate parameter values."""
    phrase = p['wake.word'] if p['wake.engine'] == 'transcript' else ''
    return GateConfig(
        endpoint=endpoint_config(p),
        pre_roll_ms=int(p['endpoint.pre_roll_ms']),
        piece_ms=int(p['endpoint.piece_ms']),
        listen_timeout_ms=int(p['wake.listen_timeout_ms']),
        followup_ms=int(p['wake.followup_ms']),
        echo_mode=str(p['echo.mode']),
        barge_in=bool(p['barge_in.enabled']),
        barge_threshold=float(p['barge_in.threshold']),
        barge_min_speech_ms=int(p['barge_in.min_speech_ms']),
        barge_min_excess_db=float(p['barge_in.min_excess_db']),
        echo_holdoff_ms=int(p['echo.holdoff_ms']),
        playback_tail_ms=int(p['echo.playback_tail_ms']),
        ring_seconds=float(p['ring.seconds']),
        wake_phrase=str(phrase),
        wake_vad_threshold=float(p['wake.vad_threshold']),
        wake_buffer_ms=int(p['wake.buffer_ms']),
        wake_hangover_ms=int(p['wake.hangover_ms']),
        wake_backoff_ms=int(p['wake.backoff_ms']))


def echo_config(p: Mapping[str, Any]) -> EchoConfig:
    """Build the EchoConfig from the voice_gate parameter values."""
    return EchoConfig(max_delay_ms=int(p['echo.max_delay_ms']))

