"""player: plays reply audio (device / WAV file / null sink), publishes the playback
reference and PlaybackEvents, flushes on interrupt."""

from __future__ import annotations

from typing import Any

from rclpy.lifecycle import LifecyclePublisher, TransitionCallbackReturn
from rclpy.publisher import Publisher

from wallie_audio import config as C
from wallie_audio.playout import Playout, Report
from wallie_audio.sinks import make_sink
from wallie_common import timeutil
from wallie_common.conversions import BadAudio, audio_to_frame, frame_to_audio
from wallie_common.engine_slot import EngineSlot
from wallie_common.node_base import StageNode
from wallie_common.qos import AUDIO_QOS, EVENT_QOS, REPLY_AUDIO_QOS
from wallie_common.runtime import Intake, main_for
from wallie_interfaces.msg import AudioFrame, Interrupt, PlaybackEvent

EVENTS = {'first_audible': PlaybackEvent.FIRST_AUDIBLE, 'finished': PlaybackEvent.FINISHED,
          'flushed': PlaybackEvent.FLUSHED}


class PlayerNode(StageNode):
    """The player lifecycle node: plays the reply audio of audio/out through a sink, flushes it
    on interrupt, and publishes the playback reference (audio/playback) and PlaybackEvents."""

    PARAMS = C.PLAYER_PARAMS

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('player', **kwargs)
        # the sink's playout, swapped in the background when a sink parameter changes
        self._slot: EngineSlot[Playout] = EngineSlot('sink')
        self._intake: Intake | None = None
        self.pub_ref: LifecyclePublisher | None = None
        self.pub_evt: Publisher | None = None
        self._ref_seq = 0

    def _make_playout(self) -> Playout:
        p = self.params
        sink = make_sink(p['sink'], p['device.name'], p['file_path'], p['rate'],
                         p['latency_ms'] / 1000.0, p['realtime'])
        return Playout(sink, p['block_ms'], p['stream_timeout_s'], self._on_report,
                       self._on_reference)

    def on_configure(self, state) -> TransitionCallbackReturn:
        # publishers first: the playout thread reports through them as soon as it runs
        self.pub_ref = self.create_lifecycle_publisher(AudioFrame, 'audio/playback', AUDIO_QOS)
        # Not a lifecycle publisher: the flush that deactivation causes is reported too (the
        # llm trims its history to what was heard).
        self.pub_evt = self.create_publisher(PlaybackEvent, 'playback/events', EVENT_QOS)
        try:
            self._slot.set(self._make_playout())
        except Exception as exc:
            self.get_logger().error(f'cannot open sink {self.params["sink"]}: {exc}')
            self.diag.error(f'cannot open sink: {exc}')
            self.pub_ref = self.pub_evt = None
            return TransitionCallbackReturn.FAILURE
        # reply audio arrives in bursts faster than real time, and an interrupt must flush
        # within 50 ms: both on their own light executor thread
        self._intake = Intake(self)
        self._intake.subscribe(AudioFrame, 'audio/out', self._on_audio, REPLY_AUDIO_QOS)
        self._intake.subscribe(Interrupt, 'interrupt', self._on_interrupt, EVENT_QOS)
        self.diag.ok('configured', sink=self.params['sink'], rate=self.playout.sink.rate,
                     latency_ms=f'{self.playout.sink.latency_s * 1e3:.1f}')
        self.get_logger().info(f'player: sink={self.params["sink"]} '
                               f'rate={self.playout.sink.rate}')
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        result = super().on_deactivate(state)
        if self.playout is not None:
            self.playout.flush('')
        return result

    def teardown(self) -> None:
        """Stop the intake and playback, then destroy every entity on_configure made."""
        if self._intake is not None:
            self._intake.close()          # no more audio or interrupts
            self._intake = None
        self._slot.close(wait_s=5.0)     # joins the playout thread: no more reports
        super().teardown()
        self.pub_ref = self.pub_evt = None

    @property
    def playout(self) -> Playout | None:
        """The playout in use (None while unconfigured)."""
        return self._slot.current

    def on_params_changed(self, changed: dict[str, Any]) -> None:
        playout = self.playout
        if self.needs_reload(changed) and playout is not None:
            self._slot.reload(self._make_playout, on_loaded=self._sink_switched,
                              on_failed=self._sink_failed)
        elif playout is not None and 'stream_timeout_s' in changed:
            playout.stream_timeout_s = changed['stream_timeout_s']

    def _sink_switched(self, _playout: Playout) -> None:
        self.get_logger().info(f'player: switched to sink={self.params["sink"]}')

    def _sink_failed(self, exc: Exception) -> None:
        self.get_logger().error(f'sink change failed, keeping the old one: {exc}')
        self.diag.warn(f'sink change failed: {exc}')

    # -- callbacks -------------------------------------------------------------------
    def _on_audio(self, msg: AudioFrame) -> None:
        if not self.is_active or self.playout is None:
            return
        try:
            audio = frame_to_audio(msg)
            x = audio.mono
        except BadAudio as exc:
            self.warn_throttled('bad_frame', f'rejected reply audio frame: {exc}')
            self.diag.warn(f'rejected reply audio frame: {exc}')
            return
        ok = self.playout.enqueue(msg.stream_id, msg.segment, x, audio.sample_rate,
                                  msg.end_of_segment, msg.end_of_stream)
        if not ok:
            self.diag.count('dropped_frames')

    def _on_interrupt(self, msg: Interrupt) -> None:
        if self.playout is not None:
            self.playout.flush(msg.turn_id, timeutil.now_ns())

    # -- from the playout thread ---------------------------------------------------------
    def _on_reference(self, stream_id: str, block, audible_ns: int) -> None:
        pub = self.pub_ref
        if pub is None:
            return
        self._ref_seq += 1
        m = audio_to_frame(block, 16000, audible_ns, seq=self._ref_seq, frame_id='player',
                           stream_id=stream_id)
        pub.publish(m)

    def _on_report(self, r: Report) -> None:
        pub = self.pub_evt
        if pub is None:
            return
        m = PlaybackEvent(event=EVENTS[r.event], turn_id=r.stream_id,
                          played_s=float(r.played_s), segments_complete=r.segments_complete,
                          segment_fraction=float(r.segment_fraction),
                          flush_ms=float(r.flush_ms))
        m.header.stamp = timeutil.to_msg(r.stamp_ns)
        m.first_audible = timeutil.to_msg(r.first_audible_ns)
        pub.publish(m)
        if r.event == 'first_audible':
            self.publish_stamp(r.stream_id, 'first_audible', r.first_audible_ns)
        elif r.event == 'flushed':
            self.publish_stamp(r.stream_id, 'flushed', r.stamp_ns)
            self.get_logger().info(f'flushed {r.stream_id!r} in {r.flush_ms:.1f} ms, heard '
                                   f'{r.played_s:.2f} s')
            self.diag.value('last_flush_ms', f'{r.flush_ms:.1f}')


main = main_for(PlayerNode)


if __name__ == '__main__':
    main()
