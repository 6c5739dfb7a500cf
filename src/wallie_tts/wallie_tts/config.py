"""Configuration of the TTS engines and of the streaming pipeline (frozen dataclasses).

The `tts` node's parameter table (`PARAMS`) is here too, with the ``*_from_params``
functions that build these from its values; engines and the streamer take them and never
look at ROS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from wallie_common.param_table import Param

ENGINES = ('piper', 'xtts', 'espeak')


@dataclass(frozen=True)
class PiperSettings:
    """Piper (VITS, ONNX) voice."""

    voice: str = 'piper-en_US-joe-medium'   # model-store id of the voice
    model_path: str = ''                    # explicit .onnx file or voice directory
    threads: int = 1                        # onnxruntime intra-op threads; 0 = all cores
    speaker_id: int = 0                     # multi-speaker voices only
    gain: float = 1.5                       # raw Piper output peaks ~0.6: bring it to ~0.9


@dataclass(frozen=True)
class EspeakSettings:
    """espeak-ng command-line synthesizer (the always-available fallback)."""

    voice: str = 'en-us'
    words_per_minute: int = 175
    executable: str = 'espeak-ng'


@dataclass(frozen=True)
class XttsSettings:
    """Coqui XTTS v2 (GPU) with voice cloning."""

    model_id: str = 'xtts-v2'               # model-store directory with config.json + model.pth
    model_path: str = ''                    # explicit checkpoint directory
    speaker_wav: str = ''                   # 10-30 s of mono speech to clone; '' = speaker
    speaker: str = 'Ana Florence'           # built-in studio speaker used without speaker_wav
    language: str = 'en'
    device: str = 'cuda'
    stream_chunk_size: int = 20             # GPT tokens per streamed audio chunk


@dataclass(frozen=True)
class EngineSettings:
    """Which engine to run and the settings of each."""

    engine: str = 'piper'
    fallback_to_espeak: bool = True
    piper: PiperSettings = field(default_factory=PiperSettings)
    espeak: EspeakSettings = field(default_factory=EspeakSettings)
    xtts: XttsSettings = field(default_factory=XttsSettings)


@dataclass(frozen=True)
class StreamSettings:
    """How engine audio becomes a continuous reply stream of fixed-size frames."""

    output_rate_hz: int = 22050
    frame_ms: int = 40
    volume: float = 1.0                     # linear gain applied to every engine
    speaking_rate: float = 1.0              # > 1 faster, < 1 slower
    silence_threshold: float = 0.01         # |sample| below this counts as silence at edges
    lead_ms: float = 5.0                    # silence kept before the first voiced sample
    tail_ms: float = 40.0                   # silence kept after the last voiced sample
    fade_ms: float = 4.0                    # raised-cosine fade at every trimmed edge
    sentence_pause_ms: float = 220.0        # pause after . ! ?
    clause_pause_ms: float = 100.0          # pause after , ; :
    word_pause_ms: float = 15.0             # pause where a long first clause was cut
    split_first_clause: bool = True         # synthesize the first clause alone (latency)
    first_piece_max_words: int = 5          # cut a long first clause after this many words
    max_text_chars: int = 2000              # longer chunks are truncated (with a warning)

    @property
    def frame_samples(self) -> int:
        """Samples per published frame at the output rate."""
        return max(1, int(round(self.output_rate_hz * self.frame_ms / 1000.0)))


PARAMS = (
    Param('tts.engine', 'piper', 'Speech engine: piper (CPU), xtts (GPU, voice cloning) or '
          'espeak (espeak-ng).', choices=ENGINES, reload=True),
    Param('tts.fallback_to_espeak', True, 'At configure, use espeak-ng when the configured '
          'engine fails to load (reported as WARN on /diagnostics).'),
    Param('tts.piper.voice', 'piper-en_US-joe-medium', 'Model-store id of the Piper voice.',
          reload=True),
    Param('tts.piper.model_path', '', 'Explicit Piper .onnx file or voice directory '
          '(empty: the model store).', reload=True),
    Param('tts.piper.threads', 1, 'onnxruntime intra-op threads for Piper (0: one per '
          'core). On 2 cores a second thread made the first audio only ~20 ms sooner in '
          'the live graph and takes the core the voice gate and ASR need.', min=0, max=64,
          reload=True),
    Param('tts.piper.speaker_id', 0, 'Speaker of a multi-speaker Piper voice.', min=0,
          max=10000, reload=True),
    Param('tts.espeak.voice', 'en-us', 'espeak-ng voice name.', reload=True),
    Param('tts.espeak.words_per_minute', 175, 'espeak-ng speed at speaking_rate 1.0.',
          min=80, max=450, reload=True),
    Param('tts.xtts.model_path', '', 'XTTS v2 checkpoint directory (empty: model store id '
          'xtts-v2).', reload=True),
    Param('tts.xtts.speaker', 'Ana Florence', 'XTTS studio speaker used when '
          'tts.speaker_wav is empty.', reload=True),
    Param('tts.xtts.language', 'en', 'XTTS language code.', reload=True),
    Param('tts.xtts.device', 'cuda', 'Torch device for XTTS (cuda, cuda:1, cpu).',
          reload=True),
    Param('tts.speaker_wav', '', 'XTTS voice cloning: 10-30 s of mono speech (WAV/FLAC, '
          '>= 16 kHz). A bad file is rejected with a reason and the current voice is kept.',
          reload=True),
    Param('tts.output_rate_hz', 22050, 'Sample rate of audio/out frames (engine audio is '
          'resampled with soxr); applies from the next reply.', min=8000, max=48000),
    Param('tts.frame_ms', 40, 'Duration of one audio/out frame; applies from the next '
          'reply.', min=10, max=200),
    Param('tts.volume', 1.0, 'Output gain (linear).', min=0.0, max=2.0),
    Param('tts.speaking_rate', 1.0, 'Speaking rate (> 1 faster).', min=0.5, max=2.0),
    Param('tts.sentence_pause_ms', 220.0, 'Pause after a sentence.', min=0.0, max=2000.0),
    Param('tts.clause_pause_ms', 100.0, 'Pause after a comma, semicolon or colon.',
          min=0.0, max=2000.0),
    Param('tts.split_first_clause', True, 'Synthesize the first clause of a reply on its '
          'own so audio starts sooner.'),
    Param('tts.first_piece_max_words', 5, 'Cut a long first clause after this many words '
          '(0: never cut).', min=0, max=100),
    Param('tts.max_text_chars', 2000, 'Longest chunk / speak text accepted (longer reply '
          'chunks are truncated, longer speak goals rejected).', min=1, max=100000),
    Param('tts.queue_max_chunks', 64, 'Reply chunks that may wait for synthesis; more are '
          'dropped with a warning.', min=1, max=10000),
    Param('tts.speak.wait_for_playback', True, 'The speak action finishes when the player '
          'reports FINISHED (else as soon as the audio is synthesized).'),
    Param('tts.speak.playback_timeout_s', 10.0, 'Extra time, beyond the audio length, to '
          'wait for the player before the speak action fails.', min=0.0, max=600.0),
)


def engine_from_params(p: Mapping[str, Any]) -> EngineSettings:
    """The engine settings from the node's parameter values."""
    return EngineSettings(
        engine=p['tts.engine'],
        fallback_to_espeak=p['tts.fallback_to_espeak'],
        piper=PiperSettings(voice=p['tts.piper.voice'], model_path=p['tts.piper.model_path'],
                            threads=p['tts.piper.threads'],
                            speaker_id=p['tts.piper.speaker_id']),
        espeak=EspeakSettings(voice=p['tts.espeak.voice'],
                              words_per_minute=p['tts.espeak.words_per_minute']),
        xtts=XttsSettings(model_path=p['tts.xtts.model_path'],
                          speaker_wav=p['tts.speaker_wav'], speaker=p['tts.xtts.speaker'],
                          language=p['tts.xtts.language'], device=p['tts.xtts.device']),
    )


def stream_from_params(p: Mapping[str, Any]) -> StreamSettings:
    """The streaming settings from the node's parameter values."""
    return StreamSettings(
        output_rate_hz=p['tts.output_rate_hz'], frame_ms=p['tts.frame_ms'],
        volume=p['tts.volume'], speaking_rate=p['tts.speaking_rate'],
        sentence_pause_ms=p['tts.sentence_pause_ms'],
        clause_pause_ms=p['tts.clause_pause_ms'],
        split_first_clause=p['tts.split_first_clause'],
        first_piece_max_words=p['tts.first_piece_max_words'],
        max_text_chars=p['tts.max_text_chars'])
