"""The `tts` lifecycle node: reply chunks in, reply audio frames out.

Thin glue around the engines (``engine.py``) and the work queue (``synthesis_queue.py``):
- `reply` (ReplyChunk) -> `SynthesisQueue` (in order, no duplicates, bounded) -> its worker
  thread synthesizes each chunk as soon as it arrives; the node publishes the `audio/out`
  AudioFrames (stream_id = turn id, segment = chunk index, fixed-size frames,
  end_of_segment / end_of_stream marks) and stamps `tts_first_audio` for the turn.
- `interrupt` stops synthesis of that turn at once and drops its queued chunks.
- `speak` action: text in, cancelable, finishes when the player reports the stream FINISHED
  on `playback/events` (stream id ``speak-<hex>``).
- Changing the engine or voice with `ros2 param set` loads the new engine in the background;
  the worker swaps it in between replies, so the current reply is not dropped.
- If the configured engine fails to load at configure, espeak-ng is used instead and the
  node reports WARN on /diagnostics.
"""

from __future__ import annotations

import functools
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.lifecycle import TransitionCallbackReturn

from wallie_common import timeutil
from wallie_common.conversions import audio_to_frame
from wallie_common.node_base import NodeReports, StageNode
from wallie_common.qos import EVENT_QOS, REPLY_AUDIO_QOS, describe
from wallie_common.runtime import main_for
from wallie_interfaces.action import Speak
from wallie_interfaces.msg import AudioFrame, Interrupt, PlaybackEvent, ReplyChunk, StageStamp
from wallie_tts import clauses
from wallie_tts.config import PARAMS, EngineSettings, engine_from_params, stream_from_params
from wallie_tts.engine import EngineError, LoadResult, check_model, load_engine
from wallie_tts.stream import ChunkSynthesizer
from wallie_tts.synthesis_queue import (
    SynthesisEvents,
    SynthesisJob,
    SynthesisQueue,
    SynthesisStream,
)

SPEAK_PREFIX = 'speak-'
MODEL_KEYS = frozenset({'tts.engine', 'tts.piper.voice', 'tts.piper.model_path',
                        'tts.xtts.model_path'})


@dataclass
class SpeakWaiter:
    """State shared between the speak action's execute callback and the worker."""

    stream_id: str
    chunks_total: int
    chunks_done: int = 0
    audio_s: float = 0.0
    synthesized: threading.Event = field(default_factory=threading.Event)
    playback: threading.Event = field(default_factory=threading.Event)
    playback_event: int = 0
    cancelled: str = ''


class _NodeEvents(NodeReports, SynthesisEvents):
    """The queue's events as frames, stamps, diagnostics, log lines and speak feedback."""

    node: 'TtsNode'

    def __init__(self, node: TtsNode) -> None:
        super().__init__(node)
        self._seq = 0

    def frame(self, job: SynthesisJob, stream: SynthesisStream, frame: np.ndarray,
              end_of_segment: bool, end_of_stream: bool, stamp_ns: int) -> None:
        msg = audio_to_frame(frame, stream.settings.output_rate_hz, stamp_ns, seq=self._seq,
                             frame_id='tts', stream_id=job.stream_id, segment=job.index)
        msg.end_of_segment = end_of_segment
        msg.end_of_stream = end_of_stream
        self._seq += 1
        if self.node._audio_pub is not None:
            self.node._audio_pub.publish(msg)

    def first_audio(self, job: SynthesisJob, stream: SynthesisStream) -> None:
        node, now = self.node, stream.first_audio_ns
        latency_ms = (now - job.arrival_ns) / 1e6
        node.diag.value('first_audio_ms', f'{latency_ms:.1f}')
        if job.is_reply:
            node.publish_stamp(job.stream_id, StageStamp.TTS_FIRST_AUDIO, now)
        node.get_logger().debug(f'{job.stream_id}: first audio {latency_ms:.1f} ms after '
                                'its first chunk arrived')

    def chunk_done(self, job: SynthesisJob, stream: SynthesisStream) -> None:
        waiter = self.node._speak.get(job.stream_id)
        if waiter is not None:
            waiter.chunks_done = stream.chunks_done

    def stream_ended(self, stream: SynthesisStream) -> None:
        node = self.node
        audio_s = stream.samples / stream.settings.output_rate_hz
        rtf = stream.synth_s / audio_s if audio_s else 0.0
        node.diag.value('rtf', f'{rtf:.3f}')
        node.diag.count('streams')
        node.get_logger().info(
            f'{stream.stream_id}: {stream.chunks_done} chunk(s), {audio_s:.2f} s of audio, '
            f'first audio {(stream.first_audio_ns - stream.started_ns) / 1e6:.0f} ms, '
            f'RTF {rtf:.3f}')
        waiter = node._speak.get(stream.stream_id)
        if waiter is not None:
            waiter.audio_s = audio_s
            waiter.synthesized.set()

    def engine_swapped(self, result: LoadResult) -> None:
        self.node._show_engine(result)
        self.node.diag.value('reload', 'done')
        self.node.get_logger().info(f'switched to {result.engine.describe()}')

    def failed(self, job: SynthesisJob, exc: Exception) -> None:
        self.node.get_logger().error(f'synthesis of {job.stream_id}#{job.index} failed: '
                                     f'{exc!r}')
        self.node.diag.count('synthesis_errors')
        self.node.diag.warn(f'synthesis failed: {exc}')


class TtsNode(StageNode):
    """Streaming TTS lifecycle node (see the module docstring)."""

    PARAMS = PARAMS

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('tts', **kwargs)
        self._queue = SynthesisQueue(lambda: stream_from_params(self.params), _NodeEvents(self))
        self._speak: dict[str, SpeakWaiter] = {}
        self._active = False
        self._audio_pub: Any = None
        self._interrupt_pub: Any = None
        self._action: Optional[ActionServer] = None
        self._cb_group = MutuallyExclusiveCallbackGroup()

    # -- lifecycle ------------------------------------------------------------------------
    def on_configure(self, state) -> TransitionCallbackReturn:
        log = self.get_logger()
        try:
            result = load_engine(engine_from_params(self.params))
        except EngineError as exc:
            log.error(f'configure failed: no TTS engine could be loaded: {exc}')
            self.diag.error(f'no TTS engine: {exc}')
            return TransitionCallbackReturn.FAILURE
        try:  # the first reply must not pay for first-use costs of the stream path (soxr)
            warm = ChunkSynthesizer(result.engine, stream_from_params(self.params))
            warm.synthesize_all('Hello.')
        except Exception as exc:  # noqa: BLE001 - reported when the first reply fails
            log.warning(f'warm-up of the stream path failed: {exc!r}')
        self._show_engine(result)
        self._queue.start(result)
        self._audio_pub = self.create_lifecycle_publisher(
            AudioFrame, 'audio/out', REPLY_AUDIO_QOS)
        self._interrupt_pub = self.create_publisher(Interrupt, 'interrupt', EVENT_QOS)
        # StageNode records these and destroys them in teardown()
        self.create_subscription(ReplyChunk, 'reply', self._on_reply, EVENT_QOS,
                                 callback_group=self._cb_group)
        self.create_subscription(Interrupt, 'interrupt', self._on_interrupt, EVENT_QOS,
                                 callback_group=self._cb_group)
        self.create_subscription(PlaybackEvent, 'playback/events', self._on_playback,
                                 EVENT_QOS, callback_group=self._cb_group)
        self._action = ActionServer(
            self, Speak, 'speak', execute_callback=self._speak_execute,
            goal_callback=self._speak_goal, cancel_callback=lambda _g: CancelResponse.ACCEPT,
            callback_group=ReentrantCallbackGroup())
        log.info(f'configured: {result.engine.describe()} (load+warm-up {result.load_s:.2f} s)'
                 f'; audio/out {describe(REPLY_AUDIO_QOS)} at '
                 f'{self.params["tts.output_rate_hz"]} Hz, {self.params["tts.frame_ms"]} ms '
                 'frames')
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        self._active = True
        self.get_logger().info('active')
        return super().on_activate(state)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self._active = False
        self._cancel_all('deactivated')
        self.get_logger().info('inactive')
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        result = super().on_cleanup(state)
        self.diag.ok('unconfigured')
        self.get_logger().info('cleaned up')
        return result

    def teardown(self) -> None:
        """Cancel the work, stop the worker, destroy what on_configure created, then close
        the engines."""
        self._cancel_all('shutting down')
        self._queue.stop()     # a reload still running is discarded; the engines are closed
        super().teardown()
        self._action = None
        self._audio_pub = None
        self._interrupt_pub = None

    def _show_engine(self, result: LoadResult) -> None:
        """Report the engine in use on /diagnostics (and warn about a fallback)."""
        self.diag.value('engine', result.engine.name)
        self.diag.value('voice', result.engine.describe())
        self.diag.value('load_s', f'{result.load_s:.2f}')
        if result.fallback_reason:
            msg = (f'using espeak-ng fallback: {result.requested} failed to load: '
                   f'{result.fallback_reason}')
            self.get_logger().warning(msg)
            self.diag.warn(msg, fallback='espeak')
        else:
            self.diag.ok(f'ready: {result.engine.describe()}', fallback='')

    # -- parameters -----------------------------------------------------------------------
    def check_params(self, new: dict[str, Any]) -> str | None:
        """A voice-cloning file is checked before it is accepted, and a voice model change
        must name a model that is there (the model store is checked, nothing loads)."""
        if new.get('tts.speaker_wav'):
            from wallie_tts.xtts_engine import validate_speaker_wav
            try:
                validate_speaker_wav(new['tts.speaker_wav'])
            except EngineError as exc:
                return str(exc)
        if MODEL_KEYS & new.keys():
            return check_model(engine_from_params({**self.params, **new}))
        return None

    def on_params_changed(self, changed: dict[str, Any]) -> None:
        engine = self._queue.engine
        if engine is None or not self.needs_reload(changed):
            return  # live values are read per reply; engine params apply at configure
        self.diag.value('reload', 'in progress')
        if set(changed) == {'tts.speaker_wav'} and engine.name == 'xtts' \
                and changed['tts.speaker_wav']:
            target = self._set_speaker_wav
            args: tuple[Any, ...] = (changed['tts.speaker_wav'], dict(self.previous_params))
        elif set(changed) == {'tts.speaker_wav'} and self.params['tts.engine'] != 'xtts':
            target, args = self._check_speaker_wav, (changed['tts.speaker_wav'],)
        else:   # a new engine: loaded in the background, swapped in between replies
            settings = engine_from_params(self.params)
            self._queue.reload(functools.partial(self._reload_engine, settings),
                               on_loaded=self._on_reloaded,
                               on_failed=functools.partial(self._on_reload_failed,
                                                           dict(self.previous_params),
                                                           dict(changed)))
            return
        threading.Thread(target=target, args=args, name='tts-reload', daemon=True).start()

    def _reload_engine(self, settings: EngineSettings) -> LoadResult:
        """Load the changed engine (on the queue's loader thread)."""
        self.get_logger().info(f'reloading TTS engine {settings.engine} in the background')
        return load_engine(settings, allow_fallback=False)

    def _on_reloaded(self, result: LoadResult) -> None:
        self.get_logger().info(f'new engine ready ({result.engine.describe()}, '
                               f'{result.load_s:.2f} s); switching at the next reply')

    def _on_reload_failed(self, previous: dict[str, Any], changed: dict[str, Any],
                          exc: Exception) -> None:
        engine = self._queue.engine
        keep = engine.describe() if engine else 'none'
        self.diag.value('reload', 'failed')
        self.revert_params(previous, changed, f'TTS reload failed, keeping {keep}: {exc}')

    def _set_speaker_wav(self, path: str, previous: dict[str, Any]) -> None:
        engine = self._queue.engine
        try:
            name = engine.set_speaker_wav(path)  # type: ignore[union-attr]
        except Exception as exc:  # noqa: BLE001 - SpeakerWavError and model errors
            self.diag.value('reload', 'failed')
            self.revert_params(previous, {'tts.speaker_wav': path},
                               f'tts.speaker_wav rejected, keeping the current voice: {exc}')
            return
        self.get_logger().info(f'XTTS now speaks with the voice cloned from {name}')
        self.diag.ok(f'ready: {engine.describe()}', reload='done')  # type: ignore[union-attr]

    def _check_speaker_wav(self, path: str) -> None:
        if not path:
            self.diag.value('reload', 'done')
            return
        from wallie_tts.xtts_engine import validate_speaker_wav
        try:
            audio = validate_speaker_wav(path)
        except EngineError as exc:
            self.get_logger().error(f'tts.speaker_wav rejected: {exc}')
            self.diag.warn(f'speaker_wav rejected: {exc}', reload='failed')
            return
        self.get_logger().info(f'speaker file ok ({audio.duration_s:.1f} s); it is used when '
                               'tts.engine is xtts')
        self.diag.value('reload', 'done')

    # -- inputs ---------------------------------------------------------------------------
    def _on_reply(self, msg: ReplyChunk) -> None:
        now = timeutil.now_ns()
        if not self._active:
            self.warn_throttled('reply_inactive', 'reply chunk ignored: node is not active')
            return
        turn = msg.turn_id
        if not turn:
            self.warn_throttled('reply_no_turn', 'reply chunk without turn_id dropped')
            return
        if turn.startswith(SPEAK_PREFIX):
            self.warn_throttled('reply_reserved', f'reply turn ids starting with '
                                f'{SPEAK_PREFIX!r} are reserved for the speak action')
            return
        text = msg.text
        limit = self.params['tts.max_text_chars']
        if len(text) > limit:
            self.warn_throttled('reply_too_long', f'reply chunk of {len(text)} chars truncated '
                                f'to tts.max_text_chars={limit}')
            text = text[:limit]
        job = SynthesisJob(turn, int(msg.index), text, bool(msg.is_final), now)
        self.get_logger().debug(f'reply {turn}#{msg.index} final={msg.is_final}: {text!r}')
        self._queue.push(job, self.params['tts.queue_max_chunks'])

    def _on_interrupt(self, msg: Interrupt) -> None:
        turn = self._queue.target(msg.turn_id)
        if not turn:
            return
        self._cancel(turn, f'interrupt reason {msg.reason}')

    def _on_playback(self, msg: PlaybackEvent) -> None:
        if msg.event not in (PlaybackEvent.FINISHED, PlaybackEvent.FLUSHED):
            return
        waiter = self._speak.get(msg.turn_id)
        if waiter is not None:
            waiter.playback_event = int(msg.event)
            waiter.playback.set()

    # -- cancelling -----------------------------------------------------------------------
    def _cancel(self, stream_id: str, why: str) -> None:
        found = self._queue.cancel(stream_id, why)
        waiter = self._speak.get(stream_id)
        if waiter is not None and not waiter.synthesized.is_set():
            waiter.cancelled = why
            waiter.synthesized.set()
        if found.noticed:
            self.get_logger().info(f'stopped {stream_id} ({why}): synthesis '
                                   f'{"stopped" if found.stopped else "idle"}, '
                                   f'{found.dropped} queued chunk(s) dropped')
            self.diag.count('interrupts')

    def _cancel_all(self, why: str) -> None:
        for sid in self._queue.streams():
            self._cancel(sid, why)

    # -- speak action ---------------------------------------------------------------------
    def _speak_goal(self, goal_request) -> GoalResponse:
        if not self._active:
            self.get_logger().warning('speak goal rejected: node is not active')
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _speak_execute(self, goal_handle) -> Speak.Result:
        result = Speak.Result()
        text = goal_handle.request.text
        limit = self.params['tts.max_text_chars']
        error = ''
        if not text.strip():
            error = 'empty text'
        elif len(text) > limit:
            error = f'text of {len(text)} chars is longer than tts.max_text_chars={limit}'
        if error:
            result.error_code, result.error_message = Speak.Result.FAILED, error
            goal_handle.abort()
            return result
        sid = SPEAK_PREFIX + uuid.uuid4().hex[:12]
        parts = clauses.sentences(' '.join(text.split())) or [text]
        waiter = SpeakWaiter(sid, len(parts))
        self._speak[sid] = waiter
        try:
            now = timeutil.now_ns()
            for i, part in enumerate(parts):
                job = SynthesisJob(sid, i, part, i == len(parts) - 1, now, False)
                if not self._queue.push(job, self.params['tts.queue_max_chunks']):
                    self._cancel(sid, 'queue full')
                    result.error_code = Speak.Result.FAILED
                    result.error_message = 'synthesis queue is full'
                    goal_handle.abort()
                    return result
            return self._speak_wait(goal_handle, waiter, result)
        finally:
            self._speak.pop(sid, None)

    def _speak_wait(self, goal_handle, waiter: SpeakWaiter, result: Speak.Result):
        feedback = Speak.Feedback(chunks_total=waiter.chunks_total)
        reported = -1

        def cancelled() -> bool:
            if not goal_handle.is_cancel_requested:
                return False
            self._cancel(waiter.stream_id, 'speak goal canceled')
            if self._interrupt_pub is not None:  # make the player flush what it holds
                msg = Interrupt(turn_id=waiter.stream_id, reason=Interrupt.CANCEL)
                msg.header.stamp = timeutil.to_msg(timeutil.now_ns())
                self._interrupt_pub.publish(msg)
            goal_handle.canceled()
            result.error_code = Speak.Result.CANCELED
            result.error_message = 'canceled'
            result.audio_s = waiter.audio_s
            return True

        while not waiter.synthesized.wait(0.05):
            if cancelled():
                return result
            if waiter.chunks_done != reported:
                reported = feedback.chunks_done = waiter.chunks_done
                goal_handle.publish_feedback(feedback)
        feedback.chunks_done = waiter.chunks_done
        goal_handle.publish_feedback(feedback)
        result.audio_s = waiter.audio_s
        if waiter.cancelled:
            result.error_code = Speak.Result.CANCELED
            result.error_message = f'stopped: {waiter.cancelled}'
            goal_handle.abort()
            return result
        if self.params['tts.speak.wait_for_playback']:
            deadline = time.monotonic() + waiter.audio_s + \
                self.params['tts.speak.playback_timeout_s']
            while not waiter.playback.wait(0.05):
                if cancelled():
                    return result
                if time.monotonic() > deadline:
                    result.error_code = Speak.Result.FAILED
                    result.error_message = ('no FINISHED event on playback/events for '
                                            f'{waiter.stream_id} (is the player running?)')
                    goal_handle.abort()
                    return result
            if waiter.playback_event == PlaybackEvent.FLUSHED:
                result.error_code = Speak.Result.CANCELED
                result.error_message = 'playback was interrupted'
                goal_handle.abort()
                return result
        result.error_code = Speak.Result.SUCCESS
        goal_handle.succeed()
        return result


main = main_for(TtsNode)


if __name__ == '__main__':
    main()
