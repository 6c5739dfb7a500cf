"""ASR lifecycle node `asr`: utterance audio in, partial / early-final / final transcripts out.

Thin glue: parameters -> EngineConfig/StreamConfig, topics/QoS/lifecycle, and delegation to
the engine (engine.py) and the turn logic (streaming.py). Callbacks only enqueue; the
streamer's worker thread runs Whisper.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any, Optional

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.lifecycle import LifecyclePublisher, State, TransitionCallbackReturn

from wallie_asr.config import (
    PARAMS,
    SAMPLE_RATE,
    EngineConfig,
    engine_from_params,
    reliability_from_params,
    stream_from_params,
)
from wallie_asr.engine import EngineError, WhisperEngine, resample_to_16k, resolve_model_path
from wallie_asr.reliability import unreliable_reason
from wallie_asr.streaming import EARLY, FINAL, PARTIAL, TranscriptEvent, TurnStreamer
from wallie_common import timeutil
from wallie_common.conversions import from_int16_field
from wallie_common.engine_slot import EngineSlot
from wallie_common.model_store import ModelStoreError
from wallie_common.node_base import StageNode
from wallie_common.qos import EVENT_QOS, UTTERANCE_QOS, describe
from wallie_common.runtime import main_for
from wallie_interfaces.msg import Interrupt, StageStamp, Transcript, UtteranceAudio, VoiceActivity
from wallie_interfaces.srv import Transcribe

MAX_SERVICE_AUDIO_S = 60.0
SERVICE_TIMEOUT_S = 30.0


class AsrNode(StageNode):
    """The `asr` lifecycle node."""

    PARAMS = PARAMS

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('asr', **kwargs)
        # A new model goes to the streamer, which closes the old one when the turns in
        # flight on it are done.
        self._slot: EngineSlot[WhisperEngine] = EngineSlot(
            'asr', install=self._install_engine, retire=lambda old: None)
        self._streamer: Optional[TurnStreamer] = None
        self._pub: Optional[LifecyclePublisher] = None
        self._events_seen = 0
        self._service_group = ReentrantCallbackGroup()
        self._topic_group = MutuallyExclusiveCallbackGroup()

    # -- configuration --------------------------------------------------------------------
    def _load_engine(self, config: EngineConfig) -> WhisperEngine:
        engine = WhisperEngine(config)
        report = engine.load()
        msg = (f'ASR model {config.model} loaded on {report.rung} in {report.load_s:.2f} s '
               f'(warm-up {report.warmup_s:.2f} s)')
        if report.degraded:
            self.get_logger().warning(f'{msg}; stepped down: {"; ".join(report.failures)}')
        else:
            self.get_logger().info(msg)
        return engine

    def _report_engine(self, engine: WhisperEngine) -> None:
        assert engine.report is not None
        values = dict(model=engine.config.model, model_path=engine.model_path,
                      device=engine.report.rung.device,
                      compute_type=engine.report.rung.compute_type,
                      load_s=f'{engine.report.load_s:.3f}',
                      warmup_s=f'{engine.report.warmup_s:.3f}')
        if engine.report.degraded:
            self.diag.warn('running degraded: ' + '; '.join(engine.report.failures), **values)
        else:
            self.diag.ok('ready', **values)

    # -- lifecycle ------------------------------------------------------------------------
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            engine = self._load_engine(engine_from_params(self.params))
        except (ModelStoreError, EngineError, ValueError, OSError) as exc:
            self.get_logger().error(f'cannot load the ASR model: {exc}')
            self.diag.error(f'model load failed: {exc}')
            return TransitionCallbackReturn.FAILURE
        self._slot.set(engine)
        self._events_seen = 0
        self._streamer = TurnStreamer(engine, stream_from_params(self.params), self._emit,
                                      warn=self.warn_throttled,
                                      language=self.params['asr.language'] or None)
        self._streamer.start()
        self._pub = self.create_lifecycle_publisher(Transcript, 'transcript', EVENT_QOS)
        group = self._topic_group
        self.create_subscription(UtteranceAudio, 'voice/utterance', self._on_utterance,
                                 UTTERANCE_QOS, callback_group=group)
        self.create_subscription(VoiceActivity, 'voice/activity', self._on_activity,
                                 EVENT_QOS, callback_group=group)
        self.create_subscription(Interrupt, 'interrupt', self._on_interrupt, EVENT_QOS,
                                 callback_group=group)
        self.create_service(Transcribe, 'transcribe', self._on_transcribe,
                            callback_group=self._service_group)
        self.create_timer(1.0, self._update_diagnostics)
        self._report_engine(engine)
        self.get_logger().info(
            f'QoS: voice/utterance {describe(UTTERANCE_QOS)}, voice/activity, interrupt, '
            f'transcript {describe(EVENT_QOS)}')
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        result = super().on_activate(state)
        self.get_logger().info('active')
        return result

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        result = super().on_deactivate(state)
        if self._streamer is not None:
            self._streamer.interrupt('')
        self.get_logger().info('inactive')
        return result

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        result = super().on_cleanup(state)
        self.get_logger().info('cleaned up (model released)')
        return result

    def teardown(self) -> None:
        """Stop the streamer's worker, release the model (a reload still loading is waited
        for and discarded), then destroy what on_configure created."""
        if self._streamer is not None:
            self._streamer.stop()
        self._slot.close(wait_s=30)
        if self._streamer is not None:
            self._streamer.close_all()
            self._streamer = None
        super().teardown()
        self._pub = None
        self.diag.ok('unconfigured')

    # -- parameters -----------------------------------------------------------------------
    def check_params(self, new: dict[str, Any]) -> str | None:
        """A model change must name a model that is there (model store or directory)."""
        if 'asr.model' in new:
            try:
                resolve_model_path(new['asr.model'])
            except ModelStoreError as exc:
                return str(exc)
        return None

    def on_params_changed(self, changed: dict[str, Any]) -> None:
        engine = self._slot.current
        if engine is None or self._streamer is None:
            return  # applied at the next configure
        if self.needs_reload(changed):
            config = engine_from_params(self.params)
            self._slot.reload(functools.partial(self._reload_engine, config),
                              on_loaded=self._on_reloaded,
                              on_failed=functools.partial(self._on_reload_failed, config))
        else:
            running = engine.config
            engine.reconfigure(replace(engine_from_params(self.params), model=running.model,
                                       device=running.device,
                                       compute_type=running.compute_type,
                                       cpu_threads=running.cpu_threads))
        self._streamer.set_config(stream_from_params(self.params))
        self._streamer.language = self.params['asr.language'] or None

    def _reload_engine(self, config: EngineConfig) -> WhisperEngine:
        """Load the changed model (on the slot's loader thread)."""
        self.diag.warn(f'reloading ASR model {config.model}', reloading=True)
        self.get_logger().info(f'reloading the ASR model ({config.model}, '
                               f'{config.device}/{config.compute_type}) in the background')
        return self._load_engine(config)

    def _install_engine(self, engine: WhisperEngine) -> None:
        """Swap in a reloaded model: new turns use it, turns in flight finish on the old."""
        self._events_seen = 0
        if self._streamer is not None:
            self._streamer.set_engine(engine)

    def _on_reloaded(self, engine: WhisperEngine) -> None:
        self._report_engine(engine)
        self.diag.value('reloading', False)

    def _on_reload_failed(self, config: EngineConfig, exc: Exception) -> None:
        running = self._slot.current
        self.diag.value('reloading', False)
        if running is None:
            self.diag.error(f'reload failed: {exc}')
            return
        self.revert_params(_reload_values(running.config), _reload_values(config),
                           f'ASR reload failed: {exc}; still using {running.config.model}')

    # -- inputs ---------------------------------------------------------------------------
    def _on_utterance(self, msg: UtteranceAudio) -> None:
        streamer = self._streamer
        if not self.is_active or streamer is None:
            return
        try:
            samples = from_int16_field(msg.samples)
            if msg.sample_rate != SAMPLE_RATE and samples.size:
                if not 1000 <= msg.sample_rate <= 384000:
                    self.warn_throttled('bad_input', f'turn {msg.turn_id}: sample_rate '
                                        f'{msg.sample_rate} is out of range; piece dropped')
                    return
                self.warn_throttled('resampled', f'turn {msg.turn_id}: utterance audio at '
                                    f'{msg.sample_rate} Hz resampled to 16 kHz')
                audio = resample_to_16k(samples.astype(np.float32) / 32768.0, msg.sample_rate)
            else:
                audio = samples.astype(np.float32) * (1.0 / 32768.0)
            if audio.size > self.params['asr.max_utterance_s'] * SAMPLE_RATE:
                self.warn_throttled('bad_input', f'turn {msg.turn_id}: a piece of '
                                    f'{audio.size / SAMPLE_RATE:.1f} s is larger than a whole '
                                    'turn may be; dropped')
                audio = audio[:0]
            streamer.add_audio(msg.turn_id, int(msg.seq), audio,
                               start_ns=timeutil.from_msg(msg.header.stamp),
                               is_final=msg.is_final, discarded=msg.discarded,
                               speech_end_ns=timeutil.from_msg(msg.speech_end),
                               wake_phrase=msg.wake_phrase)
        except Exception as exc:  # a bad message must not kill the node
            self.warn_throttled('bad_input', f'utterance piece rejected: {exc!r}')

    def _on_activity(self, msg: VoiceActivity) -> None:
        streamer = self._streamer
        if not self.is_active or streamer is None:
            return
        end_ns = timeutil.from_msg(msg.speech_end)
        if msg.event == VoiceActivity.SPEECH_PROBABLY_ENDED:
            streamer.speech_probably_ended(msg.turn_id, end_ns)
        elif msg.event == VoiceActivity.SPEECH_RESUMED:
            streamer.speech_resumed(msg.turn_id)
        elif msg.event == VoiceActivity.END_OF_TURN:
            streamer.end_of_turn(msg.turn_id, end_ns)
        elif msg.event == VoiceActivity.TURN_DISCARDED:
            streamer.discard(msg.turn_id)

    def _on_interrupt(self, msg: Interrupt) -> None:
        if self._streamer is not None and msg.turn_id in self._streamer.active_turns() or \
                (self._streamer is not None and not msg.turn_id):
            self._streamer.interrupt(msg.turn_id)

    def _on_transcribe(self, request: Transcribe.Request, response: Transcribe.Response):
        streamer = self._streamer
        response.success = False
        if not self.is_active or streamer is None:
            response.message = 'the asr node is not active'
            return response
        samples = from_int16_field(request.samples)
        rate = int(request.sample_rate) or SAMPLE_RATE
        if samples.size == 0:
            response.message = 'empty audio'
        elif not 1000 <= rate <= 384000:
            response.message = f'sample_rate {rate} is out of range 1000..384000'
        elif samples.size / rate > MAX_SERVICE_AUDIO_S:
            response.message = (f'audio of {samples.size / rate:.1f} s is longer than '
                                f'{MAX_SERVICE_AUDIO_S:.0f} s')
        if response.message:
            self.warn_throttled('bad_request', f'transcribe request rejected: {response.message}')
            return response
        audio = resample_to_16k(samples.astype(np.float32) / 32768.0, rate)
        future = streamer.submit(audio, request.language or None)
        try:
            result = future.result(SERVICE_TIMEOUT_S)
        except Exception as exc:
            response.message = f'transcription failed: {exc}'
            self.warn_throttled('service_error', response.message)
            return response
        response.success = True
        response.text = result.text
        response.language = result.language
        response.confidence = float(result.confidence)
        response.processing_ms = float(result.processing_ms)
        response.message = result.rejected or ''
        self.get_logger().debug(f'transcribe service: {result.text!r}')
        return response

    # -- outputs --------------------------------------------------------------------------
    def _emit(self, ev: TranscriptEvent) -> None:
        pub = self._pub
        if pub is None or not self.is_active:
            return
        msg = Transcript()
        now = timeutil.now_ns()
        msg.header.stamp = timeutil.to_msg(now)
        msg.turn_id = ev.turn_id
        msg.text = ev.text
        msg.is_final = ev.kind == FINAL
        msg.is_early_final = ev.kind == EARLY
        msg.confidence = float(ev.result.confidence)
        msg.language = ev.result.language
        msg.audio_duration_s = float(ev.result.audio_s)
        msg.processing_ms = float(ev.result.processing_ms)
        if ev.kind != PARTIAL and ev.speech_end_ns:
            msg.speech_end = timeutil.to_msg(ev.speech_end_ns)
        if ev.kind != PARTIAL and ev.text:
            r = ev.result
            msg.unreliable = unreliable_reason(ev.text, r.avg_logprob, r.no_speech_prob,
                                               r.compression_ratio, r.audio_s,
                                               reliability_from_params(self.params)) or ''
            if msg.unreliable and ev.kind == FINAL:
                self.diag.count(f'unreliable.{msg.unreliable}')
        pub.publish(msg)
        if ev.first_partial:
            self.publish_stamp(ev.turn_id, StageStamp.ASR_FIRST_PARTIAL, now)
        if ev.kind == FINAL:
            self.publish_stamp(ev.turn_id, StageStamp.ASR_FINAL, now)
            if ev.wake_missing:
                self.get_logger().info(f'turn {ev.turn_id}: wake phrase not heard; empty final')
        self.get_logger().debug(f'{ev.kind} {ev.turn_id}: {ev.text!r} '
                                f'({ev.result.processing_ms:.0f} ms, reused={ev.reused_early})')

    def _update_diagnostics(self) -> None:
        streamer, engine = self._streamer, self._slot.current
        if streamer is None or engine is None:
            return
        for key, value in streamer.stats.items():
            self.diag.value(f'turns.{key}', value)
        new = engine.events[self._events_seen:]
        self._events_seen += len(new)
        for event in new:
            self.get_logger().warning(f'compute ladder: {event}')
            self.diag.warn(f'compute ladder: {event}', device=engine.rung.device
                           if engine.rung else '', compute_type=engine.rung.compute_type
                           if engine.rung else '')


def _reload_values(config: EngineConfig) -> dict[str, Any]:
    """The reload parameters as `config` holds them."""
    return {'asr.model': config.model, 'asr.device': config.device,
            'asr.compute_type': config.compute_type, 'asr.cpu_threads': config.cpu_threads}


main = main_for(AsrNode)


if __name__ == '__main__':
    main()
