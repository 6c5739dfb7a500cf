"""voice_gate: VAD + wake word + endpointing + barge-in as a lifecycle node.

Thin glue: callbacks decode and enqueue; one worker thread runs the VoiceGate engine and
publishes what it returns.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, Callable

import numpy as np
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.lifecycle import TransitionCallbackReturn
from std_srvs.srv import SetBool

from wallie_audio import config as C
from wallie_audio import voice_gate as G
from wallie_audio.echo import EchoCanceller
from wallie_audio.gate_inbox import (
    Inbox,
    Item,
    ListenRequest,
    MicBlock,
    ParamsChanged,
    PlaybackEnded,
    PlaybackStarted,
    PushToTalk,
    ReferenceFrame,
    TranscriptIn,
)
from wallie_audio.sources import BadFrame, FrameCleaner, Framer
from wallie_audio.vad import GatedVad, SileroVad, WebRtcPrefilter, silero_model_path
from wallie_audio.wake import check_wake, make_engine
from wallie_common import timeutil
from wallie_common.conversions import BadAudio, frame_to_audio, to_int16_array
from wallie_common.model_store import ModelStoreError
from wallie_common.node_base import StageNode
from wallie_common.qos import AUDIO_QOS, EVENT_QOS, UTTERANCE_QOS
from wallie_common.runtime import Intake, main_for
from wallie_interfaces.action import Listen
from wallie_interfaces.msg import (
    AudioFrame,
    Interrupt,
    PlaybackEvent,
    Transcript,
    UtteranceAudio,
    VoiceActivity,
    WakeWord,
)

ACTIVITY = {
    G.SPEECH_START: VoiceActivity.SPEECH_START,
    G.SPEECH_PROBABLY_ENDED: VoiceActivity.SPEECH_PROBABLY_ENDED,
    G.SPEECH_RESUMED: VoiceActivity.SPEECH_RESUMED,
    G.END_OF_TURN: VoiceActivity.END_OF_TURN,
    G.TURN_DISCARDED: VoiceActivity.TURN_DISCARDED,
    G.BARGE_IN: VoiceActivity.BARGE_IN,
}
QUEUE_BLOCKS = 200          # ~6 s of 32 ms blocks; older input is dropped (and counted)
VAD_KEYS = ('vad.webrtc_prefilter', 'vad.webrtc_aggressiveness', 'vad.model_path')
WAKE_KEYS = ('wake.engine', 'wake.word', 'wake.access_key')
MAX_LISTEN_TIMEOUT_S = 600.0   # a listen goal waits at most this long
REQUEST_WAIT_S = 2.0           # a push-to-talk / listen request waits this long for the worker


class VoiceGateNode(StageNode):
    """The voice_gate lifecycle node: one worker thread feeds microphone audio, the playback
    reference and transcripts to the VoiceGate engine and publishes its voice activity, wake
    words, utterance audio and interrupts."""

    PARAMS = C.GATE_PARAMS

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('voice_gate', **kwargs)
        self._inbox = Inbox(QUEUE_BLOCKS)
        self._handlers: dict[type, Callable[[G.VoiceGate, Any], list[G.Output]]] = {
            MicBlock: self._handle_mic,
            ReferenceFrame: self._handle_reference,
            PlaybackStarted: lambda gate, it: gate.playback_started(it.stream_id, it.stamp_ns),
            PlaybackEnded: lambda gate, it: gate.playback_done(it.stream_id, it.end_ns),
            TranscriptIn: self._handle_transcript,
            PushToTalk: self._handle_push_to_talk,
            ListenRequest: self._handle_listen,
            ParamsChanged: self._handle_params,
        }
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self.gate: G.VoiceGate | None = None
        self._mic_cleaner = FrameCleaner()
        self._ref_cleaner = FrameCleaner()
        self._framer = Framer(G.BLOCK)
        self._listen_waiters: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._cpu_ns = 0
        self._blocks = 0

    # -- lifecycle -------------------------------------------------------------------
    def on_configure(self, state) -> TransitionCallbackReturn:
        try:
            vad = self._make_vad()
            wake = self._make_wake()
            self.gate = G.VoiceGate(C.gate_config(self.params), vad, wake,
                                    EchoCanceller(C.echo_config(self.params)))
        except Exception as exc:
            self.get_logger().error(f'configure failed: {exc}')
            self.diag.error(f'configure failed: {exc}')
            return TransitionCallbackReturn.FAILURE
        self._mic_cleaner = FrameCleaner()
        self._ref_cleaner = FrameCleaner()
        self._framer = Framer(G.BLOCK)
        self._inbox.clear()
        self.pub_activity = self.create_lifecycle_publisher(VoiceActivity, 'voice/activity',
                                                            EVENT_QOS)
        self.pub_wake = self.create_lifecycle_publisher(WakeWord, 'voice/wake', EVENT_QOS)
        self.pub_utt = self.create_lifecycle_publisher(UtteranceAudio, 'voice/utterance',
                                                       UTTERANCE_QOS)
        self.pub_int = self.create_lifecycle_publisher(Interrupt, 'interrupt', EVENT_QOS)
        group = ReentrantCallbackGroup()
        # microphone and reference frames (~80/s) on their own light executor thread
        intake = Intake(self)
        self.destroy_with(intake.close)
        intake.subscribe(AudioFrame, 'audio/in', self._on_mic, AUDIO_QOS)
        intake.subscribe(AudioFrame, 'audio/playback', self._on_ref, AUDIO_QOS)
        self.create_subscription(Transcript, 'transcript', self._on_transcript, EVENT_QOS)
        self.create_subscription(PlaybackEvent, 'playback/events', self._on_playback_event,
                                 EVENT_QOS)
        self.create_service(SetBool, 'push_to_talk', self._on_ptt, callback_group=group)
        ActionServer(self, Listen, 'listen', self._execute_listen,
                     goal_callback=self._on_listen_goal,
                     cancel_callback=lambda g: CancelResponse.ACCEPT, callback_group=group)
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._run, args=(self._stop,),
                                        name='voice_gate', daemon=True)
        self._worker.start()
        self.diag.ok('configured', wake=self.params['wake.engine'],
                     echo=self.params['echo.mode'])
        self.get_logger().info(f"voice gate configured: wake={self.params['wake.engine']}"
                               f"({self.params['wake.word']}) echo={self.params['echo.mode']}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        result = super().on_activate(state)
        self.diag.ok('listening')
        return result

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        result = super().on_deactivate(state)
        self.diag.ok('inactive')
        return result

    def teardown(self) -> None:
        """Stop the worker, destroy every entity on_configure made and drop the engines."""
        self._stop.set()
        if self._worker is not None:
            self._worker.join(2.0)
            self._worker = None
        super().teardown()
        self._inbox.clear()
        self.gate = None

    def _make_vad(self) -> GatedVad:
        silero = SileroVad(self.params['vad.model_path'] or None)
        pre = (WebRtcPrefilter(self.params['vad.webrtc_aggressiveness'])
               if self.params['vad.webrtc_prefilter'] else None)
        return GatedVad(silero, pre)

    def _make_wake(self):
        return make_engine(self.params['wake.engine'], self.params['wake.word'],
                           self.params['wake.sensitivity'], self.params['wake.access_key'])

    def check_params(self, new: dict[str, Any]) -> str | None:
        """A VAD or wake model change must name a model file that is there."""
        if 'vad.model_path' in new:
            try:
                silero_model_path(new['vad.model_path'])
            except ModelStoreError as exc:
                return str(exc)
        if 'wake.engine' in new or 'wake.word' in new:
            return check_wake(new.get('wake.engine', self.params['wake.engine']),
                              new.get('wake.word', self.params['wake.word']))
        return None

    def on_params_changed(self, changed: dict[str, Any]) -> None:
        self._put(ParamsChanged(dict(changed), dict(self.previous_params)))

    # -- callbacks: decode + enqueue only ----------------------------------------------
    def _put(self, item: Item) -> None:
        dropped = self._inbox.put(item)
        if dropped is not None:
            self.diag.count('dropped_input')
            self.warn_throttled('queue_full', 'voice gate is behind; dropping the oldest '
                                f'input ({type(dropped).__name__})')

    def _decode(self, msg: AudioFrame, cleaner: FrameCleaner, key: str) -> np.ndarray | None:
        try:
            audio = frame_to_audio(msg)
            x, repairs = cleaner.clean(audio.samples, audio.sample_rate)
        except (BadAudio, BadFrame) as exc:
            k = getattr(exc, 'key', 'bad_frame')
            self.warn_throttled(f'{key}.{k}', f'rejected {key} frame: {exc}')
            self.diag.warn(f'rejected {key} frame: {exc}')
            return None
        for r in repairs:
            self.diag.count(f'{key}.repaired.{r}')
        return x

    def _on_mic(self, msg: AudioFrame) -> None:
        if not self.is_active:
            return
        x = self._decode(msg, self._mic_cleaner, 'mic')
        if x is None:
            return
        for block, stamp in self._framer.push(x, timeutil.from_msg(msg.header.stamp)):
            self._put(MicBlock(block, stamp))

    def _on_ref(self, msg: AudioFrame) -> None:
        if not self.is_active:
            return
        x = self._decode(msg, self._ref_cleaner, 'playback')
        if x is not None:
            self._put(ReferenceFrame(x, timeutil.from_msg(msg.header.stamp), msg.stream_id,
                                     int(msg.seq)))

    def _on_playback_event(self, msg: PlaybackEvent) -> None:
        if msg.event == PlaybackEvent.FIRST_AUDIBLE:
            self._put(PlaybackStarted(msg.turn_id, timeutil.from_msg(msg.header.stamp)))
        elif msg.event in (PlaybackEvent.FINISHED, PlaybackEvent.FLUSHED):
            # the reply was audible until first_audible + played_s at least (later if it
            # had gaps, and then its reference stamps say so)
            first = timeutil.from_msg(msg.first_audible)
            end = first + int(msg.played_s * 1e9) if first > 0 else 0
            self._put(PlaybackEnded(msg.turn_id, end))

    def _on_transcript(self, msg: Transcript) -> None:
        if msg.is_final or msg.is_early_final:
            self._put(TranscriptIn(msg.turn_id, msg.text, msg.is_final, msg.is_early_final,
                                   timeutil.from_msg(msg.speech_end)))
        with self._lock:
            w = self._listen_waiters.get(msg.turn_id)
            if w is not None:
                if msg.is_final:
                    w['text'] = msg.text
                    w['done'].set()
                else:
                    w['partial'] = msg.text

    def _on_ptt(self, request, response):
        if not self.is_active:
            response.success = False
            response.message = 'voice gate is not active'
            return response
        item = PushToTalk(bool(request.data))
        self._put(item)
        tid = item.reply.wait(REQUEST_WAIT_S)
        response.success = tid is not None
        response.message = 'voice gate busy' if tid is None else tid
        return response

    def _on_listen_goal(self, goal) -> GoalResponse:
        t = goal.timeout_s
        if not math.isfinite(t) or t < 0.0 or t > MAX_LISTEN_TIMEOUT_S:
            self.warn_throttled('bad_listen_goal', f'listen goal rejected: timeout_s={t} is not '
                                f'in [0, {MAX_LISTEN_TIMEOUT_S:.0f}] s')
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _execute_listen(self, goal_handle):
        result = Listen.Result()
        if not self.is_active:
            goal_handle.abort()
            result.error_code = Listen.Result.FAILED
            result.error_message = 'voice gate is not active'
            return result
        req = goal_handle.request
        item = ListenRequest(bool(req.require_wake))
        self._put(item)
        tid = item.reply.wait(REQUEST_WAIT_S) or ''
        waiter = {'done': threading.Event(), 'text': '', 'partial': ''}
        with self._lock:
            self._listen_waiters[tid] = waiter
        deadline = time.monotonic() + (req.timeout_s if req.timeout_s > 0 else 10.0)
        last_partial = ''
        try:
            while time.monotonic() < deadline:
                if not self.is_active:          # deactivated or shutting down
                    goal_handle.abort()
                    result.error_code = Listen.Result.FAILED
                    result.error_message = 'voice gate stopped'
                    result.turn_id = tid
                    return result
                if goal_handle.is_cancel_requested:
                    goal_handle.canceled()
                    result.error_code = Listen.Result.CANCELED
                    result.turn_id = tid
                    return result
                if waiter['done'].wait(0.05):
                    goal_handle.succeed()
                    result.error_code = Listen.Result.SUCCESS
                    result.text = waiter['text']
                    result.turn_id = tid
                    return result
                if waiter['partial'] != last_partial:
                    last_partial = waiter['partial']
                    goal_handle.publish_feedback(Listen.Feedback(partial=last_partial))
            goal_handle.abort()
            result.error_code = Listen.Result.TIMEOUT
            result.error_message = f'no final transcript within {req.timeout_s:.1f} s'
            result.turn_id = tid
            return result
        finally:
            with self._lock:
                self._listen_waiters.pop(tid, None)

    # -- the worker ------------------------------------------------------------------
    def _run(self, stop: threading.Event) -> None:
        last_diag = time.monotonic()
        while not stop.is_set():
            item = self._inbox.get(timeout=0.1)
            gate = self.gate
            if item is None or gate is None:
                continue
            try:
                for out in self._handlers[type(item)](gate, item):
                    self._publish(out)
            except Exception as exc:  # never let one bad item kill the worker
                self.get_logger().error(f'voice gate error on {type(item).__name__}: {exc!r}')
                self.diag.error(f'processing error: {exc}')
            now = time.monotonic()
            if now - last_diag > 1.0:
                last_diag = now
                self._report(gate)

    def _report(self, gate: G.VoiceGate) -> None:
        s = gate.stats
        cpu = self._cpu_ns / max(1, self._blocks) / 1e6
        self.diag.value('cpu_ms_per_block', f'{cpu:.3f}')
        self.diag.value('turns', s.turns)
        self.diag.value('wakes', s.wakes)
        self.diag.value('barge_ins', s.barge_ins)
        self.diag.value('complete_endpoints', s.complete_endpoints)
        self.diag.value('echo_locked', s.echo_locked)
        self.diag.value('echo_delay_ms', f'{s.echo_delay_ms:.0f}')
        self.diag.value('echo_erle_db', f'{s.echo_erle_db:.1f}')
        self.diag.value('barge_held_late_reference', s.barge_held)
        self.diag.value('ring_s', f'{len(gate.ring) * G.BLOCK / G.RATE:.0f}')

    # -- one handler per item kind (worker thread) --------------------------------------
    def _handle_mic(self, gate: G.VoiceGate, item: MicBlock) -> list[G.Output]:
        t0 = time.thread_time_ns()
        held = gate.stats.barge_held
        outs = gate.process(item.samples, item.stamp_ns)
        self._cpu_ns += time.thread_time_ns() - t0
        self._blocks += 1
        if gate.stats.barge_held > held:
            self.warn_throttled('late_reference', 'playback reference arrives after the '
                                'microphone audio it echoes in; barge-in is judged only on '
                                f'blocks with their reference ({gate.stats.barge_held} '
                                'held so far)')
        return outs

    def _handle_reference(self, gate: G.VoiceGate, item: ReferenceFrame) -> list[G.Output]:
        lost = gate.stats.ref_lost_frames
        outs = gate.playback(item.samples, item.stamp_ns, item.stream_id, item.seq)
        if gate.stats.ref_lost_frames > lost:
            n = gate.stats.ref_lost_frames - lost
            self.diag.count('playback.lost_frames', n)
            self.warn_throttled('ref_lost', f'{n} playback reference frame(s) missing; '
                                'barge-in is not judged on their echo')
        return outs

    def _handle_transcript(self, gate: G.VoiceGate, item: TranscriptIn) -> list[G.Output]:
        return gate.on_transcript(item.turn_id, item.text, item.is_final, timeutil.now_ns(),
                                  early=item.is_early_final, speech_end_ns=item.speech_end_ns)

    def _handle_push_to_talk(self, gate: G.VoiceGate, item: PushToTalk) -> list[G.Output]:
        tid, outs = gate.push_to_talk(item.on, timeutil.now_ns())
        item.reply.set(tid)
        return outs

    def _handle_listen(self, gate: G.VoiceGate, item: ListenRequest) -> list[G.Output]:
        outs: list[G.Output] = []
        if item.require_wake and gate.needs_wake:
            tid = G.new_turn_id()    # the next wake word opens the turn
        else:
            tid, outs = gate.open_turn('listen', timeutil.now_ns())
        item.reply.set(tid)
        return outs

    def _handle_params(self, gate: G.VoiceGate, item: ParamsChanged) -> list[G.Output]:
        self._apply(gate, item.changed, item.previous)
        return []

    def _apply(self, gate: G.VoiceGate, changed: dict, previous: dict) -> None:
        gate.reconfigure(C.gate_config(self.params))
        gate.echo.config = C.echo_config(self.params)
        if any(k in changed for k in VAD_KEYS):
            vad = self._load_model(changed, previous, VAD_KEYS, self._make_vad)
            if vad is not None:
                gate.vad = vad
        if any(k in changed for k in WAKE_KEYS):
            wake = self._load_model(changed, previous, WAKE_KEYS, self._make_wake)
            if wake is not None:
                gate.set_wake(wake)
        elif 'wake.sensitivity' in changed and hasattr(gate.wake, 'set_sensitivity'):
            gate.wake.set_sensitivity(self.params['wake.sensitivity'])
        elif 'wake.sensitivity' in changed and gate.wake.name == 'porcupine':
            gate.set_wake(self._make_wake())
        self.get_logger().info(f'applied {sorted(changed)}')

    def _load_model(self, changed: dict, previous: dict, keys, make):
        """Build the VAD or wake engine the new parameters name; if it does not load, put
        its parameters back (the running one stays) and return None."""
        try:
            return make()
        except Exception as exc:
            mine = {k: v for k, v in changed.items() if k in keys}
            self.revert_params(previous, mine, f'voice gate: {", ".join(sorted(mine))} not '
                               f'applied, keeping the running model: {exc}')
            return None

    def _publish(self, o) -> None:
        if isinstance(o, G.PieceOut):
            m = UtteranceAudio(turn_id=o.turn_id, seq=o.seq, sample_rate=G.RATE,
                               is_final=o.is_final, discarded=o.discarded,
                               wake_phrase=o.wake_phrase)
            m.header.stamp = timeutil.to_msg(o.stamp_ns)
            m.samples = to_int16_array(o.samples)
            m.speech_start = timeutil.to_msg(o.speech_start_ns)
            m.speech_end = timeutil.to_msg(o.speech_end_ns)
            self.pub_utt.publish(m)
        elif isinstance(o, G.ActivityOut):
            m = VoiceActivity(event=ACTIVITY[o.kind], turn_id=o.turn_id,
                              probability=float(o.probability))
            m.header.stamp = timeutil.to_msg(o.stamp_ns)
            m.speech_start = timeutil.to_msg(o.speech_start_ns)
            m.speech_end = timeutil.to_msg(o.speech_end_ns)
            self.pub_activity.publish(m)
            if o.kind == G.BARGE_IN:
                self.get_logger().info(f'barge-in detected: {o.reason}')
            else:
                self.get_logger().debug(f'{o.kind} turn={o.turn_id} {o.reason}')
        elif isinstance(o, G.WakeOut):
            m = WakeWord(keyword=o.keyword, engine=o.engine, score=float(o.score),
                         turn_id=o.turn_id)
            m.header.stamp = timeutil.to_msg(o.stamp_ns)
            self.pub_wake.publish(m)
            self.get_logger().info(f'wake: {o.keyword} ({o.engine}, {o.score:.2f}) '
                                   f'turn={o.turn_id}')
        elif isinstance(o, G.InterruptOut):
            m = Interrupt(turn_id=o.turn_id, reason=Interrupt.BARGE_IN)
            m.header.stamp = timeutil.to_msg(timeutil.now_ns())
            self.pub_int.publish(m)
            self.get_logger().info(f'barge-in: interrupting reply {o.turn_id!r}')
        elif isinstance(o, G.StampOut):
            self.publish_stamp(o.turn_id, o.stage, o.stamp_ns)


main = main_for(VoiceGateNode)


if __name__ == '__main__':
    main()
