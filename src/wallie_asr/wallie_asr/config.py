"""Configuration of the ASR engine and of the streaming logic (frozen dataclasses, no ROS)."""

from __future__ import annotations

from dataclasses import dataclass, field

SAMPLE_RATE = 16000

# What Whisper tends to write when it hears no speech (normalised: lowercase, no punctuation).
# Dropped only when the audio also looks like non-speech (see EngineConfig.filler_*): a user
# may really say "thank you".
DEFAULT_FILLER_PHRASES: tuple[str, ...] = (
    'you',
    'thank you',
    'thanks',
    'thank you very much',
    'thank you so much',
    'thanks for watching',
    'thank you for watching',
    'thanks for watching and see you next time',
    'please subscribe',
    'like and subscribe',
    'subscribe to my channel',
    'bye',
    'bye bye',
    'goodbye',
    'oh',
    'uh',
    'um',
    'hmm',
    'the end',
    'subtitles by the amara org community',
    'transcription by castingwords',
    'i m sorry',
    'music',
    'applause',
    'silence',
)


@dataclass(frozen=True)
class EngineConfig:
    """How the Whisper engine loads and decodes.

    compute_type/device 'auto': CUDA float16 when a GPU is present, else CPU int8.
    """

    model: str = 'whisper-tiny.en'        # model store id or a path (the brief's asr_model)
    device: str = 'auto'                  # auto | cpu | cuda
    compute_type: str = 'auto'            # the brief's asr_compute_type
    cpu_threads: int = 0                  # 0 = all cores (at most 8)
    beam_size: int = 1
    language: str = 'en'                  # 'auto' = detect (multilingual models only)
    initial_prompt: str = ''              # domain vocabulary / style given as previous text
    hotwords: str = ''                    # words to bias towards (faster-whisper hotwords)
    window_s: float = 10.0                # encoder window (Whisper's own is 30 s; see engine)
    max_tokens_per_s: float = 8.0         # decoding cap, stops repetition loops
    no_speech_threshold: float = 0.6      # Whisper's rule: no_speech_prob above this AND ...
    log_prob_threshold: float = -1.0      # ... avg_logprob below this -> no speech
    min_avg_logprob: float = -1.5         # below this the text is rejected outright
    compression_ratio_threshold: float = 2.4  # above this the text is a repetition loop
    min_rms_dbfs: float = -60.0           # quieter audio is silence: not even decoded
    min_audio_ms: int = 150               # shorter audio is not decoded
    filler_phrases: tuple[str, ...] = DEFAULT_FILLER_PHRASES
    filler_no_speech_prob: float = 0.4    # a filler phrase is dropped if no_speech_prob >= this
    filler_min_logprob: float = -0.9      # ... or avg_logprob < this, or the VAD said no speech
    vad_no_speech_threshold: float = 0.3  # no_speech threshold when the VAD said 'no speech'
    warmup: bool = True


@dataclass(frozen=True)
class StreamConfig:
    """Turn handling: partial cadence, early final, limits."""

    partials: bool = True
    partial_interval_ms: int = 500        # at most one partial per interval (skipped when busy)
    min_partial_audio_ms: int = 600       # no partial before this much audio
    early_final: bool = True              # transcribe at SPEECH_PROBABLY_ENDED
    publish_empty_finals: bool = True     # a turn with no speech still ends with an empty final
    max_utterance_s: float = 30.0         # audio beyond this in one turn is dropped (counted)
    reuse_tolerance_ms: int = 60          # early result reused if speech_end is within this
    final_wait_ms: int = 800              # END_OF_TURN without the final piece: go after this
    turn_timeout_s: float = 60.0          # a turn with no news for this long is forgotten
    wake_aliases: tuple[str, ...] = field(default=('wally', 'wali', 'walle', 'wallee', 'walley',
                                                   'wallie', 'wolly', 'wollie'))
