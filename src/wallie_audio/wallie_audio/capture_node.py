"""capture: microphone / file / topic / rosbag -> audio/in (16 kHz mono AudioFrames)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from rclpy.lifecycle import LifecyclePublisher, TransitionCallbackReturn

from wallie_audio import config as C
from wallie_audio.sources import (
    BadFrame,
    DeviceSource,
    FileSource,
    FrameCleaner,
    Framer,
    audio_common_to_samples,
    frame_samples,
    paced_replay,
)
from wallie_common import timeutil
from wallie_common.conversions import BadAudio, audio_to_frame, frame_to_audio
from wallie_common.node_base import StageNode
from wallie_common.qos import AUDIO_QOS
from wallie_common.runtime import main_for
from wallie_interfaces.msg import AudioFrame


def read_bag_frames(path: str, topic: str = '/audio/in') -> Iterator[tuple[int, bytes]]:
    """(bag timestamp ns, raw CDR) of the AudioFrame messages on `topic` in a rosbag2."""
    from rosbags.highlevel import AnyReader
    with AnyReader([Path(path).expanduser()]) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        if not conns:
            raise ValueError(f'bag {path} has no topic {topic} '
                             f'(has: {sorted({c.topic for c in reader.connections})})')
        for _conn, stamp, raw in reader.messages(connections=conns):
            yield stamp, bytes(raw)


class CaptureNode(StageNode):
    """The capture lifecycle node: reads the configured source (microphone, file, topic or
    rosbag) and publishes 16 kHz mono AudioFrames on audio/in."""

    PARAMS = C.CAPTURE_PARAMS

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('capture', **kwargs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seq = 0
        self._topic_sub = None
        self._cleaner = FrameCleaner()
        self._framer: Framer | None = None
        self.pub: LifecyclePublisher | None = None

    # -- lifecycle -------------------------------------------------------------------
    def on_configure(self, state) -> TransitionCallbackReturn:
        err = self._check_source()
        if err:
            self.get_logger().error(err)
            self.diag.error(err)
            return TransitionCallbackReturn.FAILURE
        self._cleaner = FrameCleaner()
        self.pub = self.create_lifecycle_publisher(AudioFrame, 'audio/in', AUDIO_QOS)
        self.diag.ok('configured', source=self.params['source'])
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        result = super().on_activate(state)
        self._start_source()
        return result

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        result = super().on_deactivate(state)
        self._stop_source()
        return result

    def teardown(self) -> None:
        """Stop the source, then destroy what on_configure created (re-configurable)."""
        self._stop_source()
        super().teardown()
        self.pub = None

    def check_params(self, new: dict[str, Any]) -> str | None:
        """A new source must be one that can start (its file or bag is there)."""
        if not self.needs_reload(new):
            return None
        return self._check_source({**self.params, **new}) or None

    def on_params_changed(self, changed: dict[str, Any]) -> None:
        if self.needs_reload(changed) and self.is_active:
            # restart the source off the executor thread
            threading.Thread(target=self._restart, daemon=True).start()

    def _restart(self) -> None:
        self._stop_source()
        err = self._check_source()
        if err:
            self.get_logger().error(err)
            self.diag.error(err)
            return
        self._start_source()

    def _check_source(self, p: dict[str, Any] | None = None) -> str:
        """Why the source the parameters (default: the current ones) name cannot start."""
        p = self.params if p is None else p
        src = p['source']
        try:
            frame_samples(p['frame_ms'])
        except ValueError as exc:
            return str(exc)
        if src == 'file' and not Path(p['file.path']).expanduser().is_file():
            return f"source=file: file.path {p['file.path']!r} does not exist"
        if src == 'bag' and not Path(p['bag.path']).expanduser().exists():
            return f"source=bag: bag.path {p['bag.path']!r} does not exist"
        if src == 'topic' and p['topic.type'] == 'audio_common':
            try:
                import audio_common_msgs.msg  # noqa: F401
            except ImportError:
                return ('topic.type=audio_common needs the audio_common_msgs package, which '
                        'is not installed')
        return ''

    def _start_source(self) -> None:
        self._stop = threading.Event()
        self._framer = Framer(frame_samples(self.params['frame_ms']))
        src = self.params['source']
        if src == 'topic':
            self._subscribe_topic()
            return
        self._thread = threading.Thread(target=self._run, args=(self._stop,),
                                        name='capture', daemon=True)
        self._thread.start()

    def _stop_source(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(3.0)
            self._thread = None
        if self._topic_sub is not None:
            self.destroy_subscription(self._topic_sub)
            self._topic_sub = None

    # -- sources ---------------------------------------------------------------------
    def _status(self, level: str, msg: str) -> None:
        if level == 'ok':
            self.get_logger().info(msg)
            self.diag.ok(msg)
        else:
            self.warn_throttled('device', msg, period_s=10.0)
            self.diag.error(msg)

    def _run(self, stop: threading.Event) -> None:
        p = self.params
        src = p['source']
        try:
            if src == 'device':
                dev = DeviceSource(p['device.name'], p['frame_ms'], p['device.channels'],
                                   p['device.rate'], on_status=self._status)
                frames: Iterator = dev.frames(stop)
            elif src == 'file':
                self._wait_for_subscriber(stop)
                fs = FileSource(p['file.path'], p['frame_ms'], p['file.realtime'],
                                p['file.loop'], p['file.lead_silence_s'])
                self.diag.ok(f'playing {fs.duration_s:.1f} s file as microphone')
                frames = fs.frames(stop)
            else:
                self._wait_for_subscriber(stop)
                frames = self._bag_frames(stop)
            for block, stamp in frames:
                if stop.is_set():
                    break
                self._publish(block, stamp)
            if src != 'device':
                self.get_logger().info(f'{src} source finished')
                self.diag.ok(f'{src} source finished', frames=self._seq)
        except Exception as exc:
            self.get_logger().error(f'capture source {src} failed: {exc!r}')
            self.diag.error(f'capture source failed: {exc}')

    def _wait_for_subscriber(self, stop: threading.Event) -> None:
        """A file or bag is a recording with a start: hold it until someone listens (DDS
        matching takes a moment after start or respawn), at most `wait_subscriber_s`."""
        limit = float(self.params['wait_subscriber_s'])
        pub = self.pub
        if limit <= 0 or pub is None:
            return
        t0 = time.monotonic()
        while pub.get_subscription_count() == 0:
            if stop.wait(0.02):
                return
            if time.monotonic() - t0 > limit:
                self.get_logger().warning(f'no subscriber on audio/in after {limit:.0f} s: '
                                          'playing anyway')
                return
        waited = time.monotonic() - t0
        if waited > 0.05:
            self.get_logger().info(f'audio/in subscriber matched after {waited:.2f} s')

    def _bag_frames(self, stop: threading.Event) -> Iterator[tuple[np.ndarray, int]]:
        """The bag's AudioFrames, paced by their recorded times, re-stamped onto now."""
        p = self.params
        framer = Framer(frame_samples(p['frame_ms']))
        for chunk, stamp in paced_replay(self._bag_chunks(), p['bag.realtime'], stop):
            yield from framer.push(chunk, stamp)

    def _bag_chunks(self) -> Iterator[tuple[int, int, np.ndarray]]:
        from rclpy.serialization import deserialize_message
        p = self.params
        for log_ns, raw in read_bag_frames(p['bag.path'], p['bag.topic']):
            try:
                msg = deserialize_message(raw, AudioFrame)
                audio = frame_to_audio(msg)
                x, _ = self._cleaner.clean(audio.samples, audio.sample_rate)
            except Exception as exc:    # BadAudio, BadFrame, undecodable CDR
                self.warn_throttled('bag_bad_frame', f'skipping bad bag frame: {exc}')
                self.diag.count('bag_bad_frames')
                continue
            yield log_ns, timeutil.from_msg(msg.header.stamp), x

    def _subscribe_topic(self) -> None:
        p = self.params
        if p['topic.type'] == 'audio_common':
            from audio_common_msgs.msg import AudioDataStamped  # type: ignore
            self._topic_sub = self.create_subscription(
                AudioDataStamped, p['topic.name'], self._on_audio_common, AUDIO_QOS)
        else:
            self._topic_sub = self.create_subscription(
                AudioFrame, p['topic.name'], self._on_topic, AUDIO_QOS)

    def _on_topic(self, msg: AudioFrame) -> None:
        try:
            audio = frame_to_audio(msg)
            x, repairs = self._cleaner.clean(audio.samples, audio.sample_rate)
        except (BadAudio, BadFrame) as exc:
            self.warn_throttled(getattr(exc, 'key', 'bad_frame'), f'rejected frame: {exc}')
            self.diag.warn(f'rejected input frame: {exc}')
            return
        for r in repairs:
            self.diag.count(f'repaired.{r}')
        self._frame_and_publish(x, timeutil.from_msg(msg.header.stamp) or timeutil.now_ns())

    def _on_audio_common(self, msg) -> None:
        p = self.params
        try:
            x = audio_common_to_samples(bytes(msg.audio.data), p['topic.sample_format'],
                                        p['topic.channels'])
            y, _ = self._cleaner.clean(x, p['topic.sample_rate'])
        except BadFrame as exc:
            self.warn_throttled(exc.key, f'rejected audio_common frame: {exc}')
            return
        self._frame_and_publish(y, timeutil.from_msg(msg.header.stamp) or timeutil.now_ns())

    def _frame_and_publish(self, x: np.ndarray, stamp: int) -> None:
        if self._framer is None:
            return
        for block, st in self._framer.push(x, stamp):
            self._publish(block, st)

    def _publish(self, block: np.ndarray, stamp: int) -> None:
        pub = self.pub                  # a lifecycle publisher: silent unless active
        if pub is None:
            return
        self._seq += 1
        pub.publish(audio_to_frame(block, 16000, stamp, seq=self._seq,
                                        frame_id=self.params['source']))


main = main_for(CaptureNode)


if __name__ == '__main__':
    main()
