"""Configuration of the ASR engine and of the streaming logic (frozen dataclasses, no ROS),
the `asr` node's parameter table and the functions that turn its values into the configs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from wallie_asr.reliability import ReliabilityConfig
from wallie_common.param_table import Param

SAMPLE_RATE = 16000
COMPUTE_TYPES = ('auto', 'int8', 'int8_float16', 'int8_float32', 'int8_bfloat16', 'float16',
                 'bfloat16', 'float32')
DEVICES = ('auto', 'cpu', 'cuda')

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


PARAMS = (
    Param('asr.model', 'whisper-tiny.en', 'CTranslate2 Whisper model: a model store id '
          '(whisper-tiny.en, whisper-base, ...) or a directory path.', reload=True),
    Param('asr.device', 'auto', 'Inference device; auto = CUDA when available.',
          choices=DEVICES, reload=True),
    Param('asr.compute_type', 'auto', 'CTranslate2 compute type; auto = float16 on CUDA, '
          'int8 on CPU. CUDA failures step down float16 -> int8_float16 -> int8 -> CPU int8.',
          choices=COMPUTE_TYPES, reload=True),
    Param('asr.cpu_threads', 0, 'CPU threads for inference (0 = all cores, at most 8).',
          min=0, max=64, reload=True),
    Param('asr.beam_size', 1, 'Beam size (1 = greedy, fastest).', min=1, max=10),
    Param('asr.language', 'en', "Language code, or 'auto' to detect (multilingual models)."),
    Param('asr.initial_prompt', '', 'Text given to Whisper as preceding context (style, '
          'domain vocabulary).'),
    Param('asr.hotwords', '', 'Words/phrases to bias recognition towards (names, jargon).'),
    Param('asr.window_s', 10.0, 'Encoder window in seconds (Whisper: 30; longer audio gets '
          'audio + 1 s). Shorter is faster; below ~10 s the decoder starts repeating '
          'itself.', min=5.0, max=30.0),
    Param('asr.no_speech_threshold', 0.6, 'No-speech probability above which (with a low '
          'log-prob) the audio counts as non-speech.', min=0.0, max=1.0),
    Param('asr.log_prob_threshold', -1.0, 'Average log-prob below which a no-speech guess is '
          'trusted.', min=-10.0, max=0.0),
    Param('asr.min_avg_logprob', -1.5, 'Transcripts with a lower average log-prob are '
          'dropped.', min=-10.0, max=0.0),
    Param('asr.reject.enabled', True, 'Mark finals Whisper was unsure of as unreliable: the '
          'LLM then says llm.not_heard_reply instead of answering.'),
    Param('asr.reject.min_avg_logprob', ReliabilityConfig.min_avg_logprob,
          'Unreliable below this average token log-prob.', min=-10.0, max=0.0),
    Param('asr.reject.max_no_speech_prob', ReliabilityConfig.max_no_speech_prob,
          'Unreliable above this no-speech probability.', min=0.0, max=1.0),
    Param('asr.reject.max_compression_ratio', ReliabilityConfig.max_compression_ratio,
          'Unreliable above this zlib compression ratio of the text.', min=1.0, max=10.0),
    Param('asr.compression_ratio_threshold', 2.4, 'Transcripts more repetitive than this '
          '(zlib ratio) are dropped.', min=1.0, max=10.0),
    Param('asr.min_rms_dbfs', -60.0, 'Audio quieter than this RMS level is silence and not '
          'decoded.', min=-120.0, max=0.0),
    Param('asr.filler_phrases', list(DEFAULT_FILLER_PHRASES), 'Phrases Whisper makes up on '
          'non-speech; dropped when the audio also looks like non-speech.'),
    Param('asr.partials', True, 'Publish partial transcripts while the user speaks.'),
    Param('asr.partial_interval_ms', 500, 'Minimum time between partials (a partial is '
          'skipped while the worker is busy).', min=100, max=10000),
    Param('asr.min_partial_audio_ms', 600, 'No partial before this much audio.',
          min=100, max=30000),
    Param('asr.early_final', True, 'Transcribe at SPEECH_PROBABLY_ENDED and reuse the result '
          'as the final when no speech follows.'),
    Param('asr.publish_empty_finals', True, 'End a turn without speech with an empty final '
          'transcript (the LLM ignores it).'),
    Param('asr.max_utterance_s', 30.0, 'Audio of one turn beyond this is dropped.',
          min=1.0, max=120.0),
    Param('asr.final_wait_ms', 800, 'After END_OF_TURN, wait this long for the final audio '
          'piece before transcribing what has arrived.', min=50, max=10000),
)


def engine_from_params(p: Mapping[str, Any]) -> EngineConfig:
    """The EngineConfig the parameter values describe."""
    return EngineConfig(
        model=p['asr.model'], device=p['asr.device'], compute_type=p['asr.compute_type'],
        cpu_threads=p['asr.cpu_threads'], beam_size=p['asr.beam_size'],
        language=p['asr.language'] or 'en', initial_prompt=p['asr.initial_prompt'],
        hotwords=p['asr.hotwords'], window_s=p['asr.window_s'],
        no_speech_threshold=p['asr.no_speech_threshold'],
        log_prob_threshold=p['asr.log_prob_threshold'],
        min_avg_logprob=p['asr.min_avg_logprob'],
        compression_ratio_threshold=p['asr.compression_ratio_threshold'],
        min_rms_dbfs=p['asr.min_rms_dbfs'],
        filler_phrases=tuple(p['asr.filler_phrases'] or ()))


def reliability_from_params(p: Mapping[str, Any]) -> ReliabilityConfig:
    """The ReliabilityConfig the parameter values describe."""
    return ReliabilityConfig(enabled=p['asr.reject.enabled'],
                             min_avg_logprob=p['asr.reject.min_avg_logprob'],
                             max_no_speech_prob=p['asr.reject.max_no_speech_prob'],
                             max_compression_ratio=p['asr.reject.max_compression_ratio'])


def stream_from_params(p: Mapping[str, Any]) -> StreamConfig:
    """The StreamConfig the parameter values describe."""
    return StreamConfig(
        partials=p['asr.partials'], partial_interval_ms=p['asr.partial_interval_ms'],
        min_partial_audio_ms=p['asr.min_partial_audio_ms'],
        early_final=p['asr.early_final'], publish_empty_finals=p['asr.publish_empty_finals'],
        max_utterance_s=p['asr.max_utterance_s'], final_wait_ms=p['asr.final_wait_ms'])
