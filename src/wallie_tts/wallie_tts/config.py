"""Configuration of the TTS engines and of the streaming pipeline (frozen dataclasses).

The node builds these from its ROS parameters (see ``tts_node.PARAMS``); engines and the
streamer take them and never look at ROS.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
