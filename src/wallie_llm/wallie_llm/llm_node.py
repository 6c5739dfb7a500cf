"""LLM lifecycle node `llm`: final transcripts in, speakable reply chunks out.

Thin glue around `scheduler.ReplyScheduler` (turns, speculation, interrupts, commit; its
worker thread runs `reply.ReplyGenerator`): parameters -> config dataclasses, topics ->
scheduler calls, scheduler events -> publishers, the `ask` action and the
`reset_conversation` service. Callbacks only update state and enqueue; generation never
runs in a callback.

Turn flow (see scheduler.py): an early final (``is_early_final``) -- or, sooner, a partial
that already reads as a complete sentence -- starts a speculative reply whose chunks are
held back; the final with the same words releases them (a differing early final or final,
SPEECH_RESUMED or TURN_DISCARDED throws it away). An Interrupt for the turn sets its stop
event, which the engine checks between tokens. PlaybackEvent FLUSHED trims the assistant's
side of the history to the part that was heard.

History for the manager: every change is published on `llm/history` (std_msgs/String,
transient local, JSON); setting the parameter `llm.history_json` to such a JSON replaces
the history (e.g. after an LLM restart).
"""

from __future__ import annotations

import functools
import gc
import time
import uuid
from typing import Any, Callable, Optional

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.lifecycle import State, TransitionCallbackReturn
from std_msgs.msg import String

from wallie_common import timeutil
from wallie_common.engine_slot import EngineSlot
from wallie_common.model_store import ModelStoreError
from wallie_common.node_base import NodeReports, StageNode
from wallie_common.qos import EVENT_QOS, STATE_QOS, describe
from wallie_common.runtime import lower_cpu_priority, main_for
from wallie_interfaces.action import Ask
from wallie_interfaces.msg import (
    Interrupt,
    PlaybackEvent,
    ReplyChunk,
    StageStamp,
    Transcript,
    VoiceActivity,
)
from wallie_interfaces.srv import ResetConversation
from wallie_llm.config import (
    PARAMS,
    EngineConfig,
    chunker_from_params,
    engine_from_params,
    generation_from_params,
    load_system_prompt,
    memory_from_params,
    scheduler_from_params,
)
from wallie_llm.engine import LlmEngine, ModelLoadError, check_model, create_engine
from wallie_llm.memory import ConversationMemory, HistoryFormatError, parse_history
from wallie_llm.reply import ReplyGenerator, ReplyResult
from wallie_llm.scheduler import ReplyEvents, ReplyJob, ReplyScheduler
from wallie_llm.speech_text import sanitize_input

ASK_POLL_S = 0.02
PROMPT_MARGIN_TOKENS = 16
MODEL_KEYS = frozenset({'llm.engine', 'llm.model', 'llm.model_path'})


class _NodeEvents(NodeReports, ReplyEvents):
    """The scheduler's events as messages, stamps, diagnostics and log lines."""

    node: 'LlmNode'

    def chunk(self, job: ReplyJob, index: int, text: str, final: bool, first: bool) -> None:
        node = self.node
        msg = ReplyChunk(turn_id=job.turn_id, index=index, text=text, is_final=final)
        now = timeutil.now_ns()
        msg.header.stamp = timeutil.to_msg(now)
        msg.speech_end = timeutil.to_msg(job.speech_end_ns)
        if node._reply_pub is not None:
            node._reply_pub.publish(msg)
        if first:
            node.publish_stamp(job.turn_id, StageStamp.FIRST_CHUNK, now)
        if final:
            node.publish_stamp(job.turn_id, StageStamp.LLM_DONE, now)

    def first_token(self, job: ReplyJob, stamp_ns: int | None) -> None:
        self.node.publish_stamp(job.turn_id, StageStamp.LLM_FIRST_TOKEN, stamp_ns)

    def history(self, data: str) -> None:
        self.node._history_pub.publish(String(data=data))

    def committed(self, job: ReplyJob, res: ReplyResult) -> None:
        self.node._report_turn(job, res)

    def failed(self, job: ReplyJob, exc: Exception) -> None:
        self.node.get_logger().error(f'turn {job.turn_id}: reply failed: {exc!r}')
        self.node.diag.error(f'reply failed: {exc}')


class LlmNode(StageNode):
    """Streaming, interruptible reply generation with conversation memory."""

    PARAMS = PARAMS

    def __init__(self, engine_factory: Callable[[EngineConfig], LlmEngine] | None = None,
                 **kwargs: Any) -> None:
        super().__init__('llm', **kwargs)
        self._engine_factory = engine_factory or create_engine
        self._slot: EngineSlot[LlmEngine] = EngineSlot('llm', install=self._swap_in)
        self._active = False
        self._reply_pub: Any = None
        self._action: Optional[ActionServer] = None
        self._turns_done = 0
        self._topic_group = MutuallyExclusiveCallbackGroup()
        self._action_group = ReentrantCallbackGroup()
        mcfg = memory_from_params(self.params)
        self._memory = ConversationMemory(
            mcfg.system_prompt, history_max_tokens=mcfg.history_max_tokens,
            idle_timeout_s=mcfg.idle_timeout_s, summarize_dropped=mcfg.summarize_dropped)
        self._sched = ReplyScheduler(self._memory, scheduler_from_params(self.params),
                                     _NodeEvents(self), self.get_logger())
        if self.params['llm.nice'] > 0:
            # Before the worker and llama.cpp threads exist: they inherit it.
            nice = lower_cpu_priority(self.params['llm.nice'])
            self.get_logger().info(f'CPU priority: nice {nice}')
        self._history_pub = self.create_publisher(String, 'llm/history', STATE_QOS)
        if self.params['llm.history_json']:
            self._import_history(self.params['llm.history_json'])
        self.diag.warn('unconfigured')

    # ================================================================= lifecycle
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        cfg = engine_from_params(self.params)
        try:
            engine = self._load_engine(cfg)
        except (ModelLoadError, ModelStoreError, ValueError, OSError) as exc:
            self.get_logger().error(f'cannot load the LLM: {exc}')
            self.diag.error(f'model load failed: {exc}')
            return TransitionCallbackReturn.FAILURE
        self._slot.set(engine)
        with self._sched.engine_lock:
            self._install_engine(engine)
        self._reply_pub = self.create_lifecycle_publisher(ReplyChunk, 'reply', EVENT_QOS)
        g = self._topic_group
        # StageNode records these and destroys them in teardown()
        self.create_subscription(Transcript, 'transcript', self._on_transcript, EVENT_QOS,
                                 callback_group=g)
        self.create_subscription(VoiceActivity, 'voice/activity', self._on_activity,
                                 EVENT_QOS, callback_group=g)
        self.create_subscription(Interrupt, 'interrupt', self._on_interrupt, EVENT_QOS,
                                 callback_group=g)
        self.create_subscription(PlaybackEvent, 'playback/events', self._on_playback,
                                 EVENT_QOS, callback_group=g)
        self.create_service(ResetConversation, 'reset_conversation', self._on_reset,
                            callback_group=g)
        self.create_timer(1.0, self._on_tick, callback_group=g)
        self._action = ActionServer(self, Ask, 'ask', self._execute_ask,
                                    goal_callback=self._on_goal,
                                    cancel_callback=lambda _goal: CancelResponse.ACCEPT,
                                    callback_group=self._action_group)
        self._sched.start()
        self.get_logger().info(
            f'QoS: transcript, voice/activity, interrupt, playback/events, reply '
            f'{describe(EVENT_QOS)}; llm/history {describe(STATE_QOS)}')
        self._sched.publish_history(force=True)
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self._active = True
        self.diag.ok('active', **self._engine_values())
        self.get_logger().info('active')
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._active = False
        self._sched.stop_all()
        self.diag.warn('inactive')
        self.get_logger().info('inactive')
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        result = super().on_cleanup(state)
        self.diag.warn('unconfigured')
        self.get_logger().info('cleaned up')
        return result

    def on_error(self, state: State) -> TransitionCallbackReturn:
        result = super().on_error(state)
        self.diag.error('error; cleaned up')
        return result

    def teardown(self) -> None:
        """Stop the jobs and the worker, destroy what on_configure created, then close the
        engine."""
        self._sched.stop()
        super().teardown()
        self._action = None
        self._reply_pub = None
        self._slot.close()
        with self._sched.engine_lock:
            self._sched.generator = None
        gc.collect()

    # ================================================================= engine
    def _load_engine(self, cfg: EngineConfig) -> LlmEngine:
        """Load + warm up + evaluate the system prefix (blocking; not on a callback path)."""
        t0 = time.perf_counter()
        engine = self._engine_factory(cfg)
        engine.load()
        memory_cfg = memory_from_params(self.params)
        engine.prepare([{'role': 'system', 'content': memory_cfg.system_prompt}])
        info = engine.info
        self.get_logger().info(
            f'{info.engine} model {info.model} ready in {time.perf_counter() - t0:.2f} s '
            f'(load {info.load_s:.2f} s, warm-up {info.warmup_s:.2f} s, '
            f'context {info.context_tokens} tokens)')
        return engine

    def _install_engine(self, engine: LlmEngine) -> None:
        """Wire the engine in (caller holds the scheduler's engine_lock)."""
        self._memory.set_token_counter(engine.count_tokens)
        self._sched.generator = ReplyGenerator(engine, self._memory)
        self._sched.invalidate_prefix()
        self._apply_live_params()

    def _apply_live_params(self) -> None:
        p = self.params
        mcfg = memory_from_params(p)
        mem = self._memory
        if mcfg.system_prompt != mem.system_prompt:
            mem.system_prompt = mcfg.system_prompt
            self._sched.invalidate_prefix()
        mem.history_max_tokens = mcfg.history_max_tokens
        mem.idle_timeout_s = mcfg.idle_timeout_s
        mem.summarize_dropped = mcfg.summarize_dropped
        gen = self._sched.generator
        if gen is not None:
            gcfg = generation_from_params(p)
            gen.generation = gcfg
            gen.chunking = chunker_from_params(p)
            gen.voice_commands = mcfg.voice_commands
            ctx = gen.engine.context_tokens
            mem.prompt_budget_tokens = max(64, ctx - PROMPT_MARGIN_TOKENS)

    def _engine_values(self) -> dict[str, Any]:
        engine = self._slot.current
        if engine is None:
            return {}
        info = engine.info
        return {'engine': info.engine, 'model': info.model, 'context_tokens': info.context_tokens,
                'load_s': f'{info.load_s:.2f}'}

    def _reload_engine(self, cfg: EngineConfig) -> LlmEngine:
        """Background model change (on the slot's loader thread): load the new model."""
        self.diag.warn(f'loading {cfg.engine} model {cfg.model_path or cfg.model}')
        return self._load_engine(cfg)

    def _swap_in(self, engine: LlmEngine) -> None:
        """Swap a reloaded model in between replies; the slot then closes the old one."""
        with self._sched.engine_lock:
            self._install_engine(engine)

    def _on_reloaded(self, engine: LlmEngine) -> None:
        gc.collect()                    # the old model is closed: free its memory now
        self.get_logger().info(f'switched to {engine.info.model}')
        self.diag.ok('active' if self._active else 'inactive', **self._engine_values())

    def _on_reload_failed(self, previous: dict[str, Any], changed: dict[str, Any],
                          exc: Exception) -> None:
        """The new model did not load: the parameters go back to the one that runs."""
        self.revert_params(previous, changed, f'model reload failed, keeping '
                           f'{self._engine_values().get("model", "the current model")}: {exc}')

    # ================================================================= parameters
    def check_params(self, new: dict[str, Any]) -> str | None:
        """A history JSON must parse, a prompt file must be readable, and a model change
        must name a model that is there (checked against the model store, not loaded)."""
        try:
            if 'llm.history_json' in new and new['llm.history_json']:
                parse_history(str(new['llm.history_json']))
            if 'llm.system_prompt_file' in new or 'llm.system_prompt' in new:
                load_system_prompt(str(new.get('llm.system_prompt',
                                               self.params['llm.system_prompt'])),
                                   str(new.get('llm.system_prompt_file',
                                               self.params['llm.system_prompt_file'])))
        except (HistoryFormatError, ValueError) as exc:
            return str(exc)
        if MODEL_KEYS & new.keys():
            return check_model(engine_from_params({**self.params, **new}))
        return None

    def on_params_changed(self, changed: dict[str, Any]) -> None:
        self._sched.config = scheduler_from_params(self.params)
        if 'llm.history_json' in changed and changed['llm.history_json']:
            self._import_history(changed['llm.history_json'])
        if self.needs_reload(changed):
            self._slot.reload(functools.partial(self._reload_engine,
                                                engine_from_params(self.params)),
                              on_loaded=self._on_reloaded,
                              on_failed=functools.partial(self._on_reload_failed,
                                                          dict(self.previous_params),
                                                          dict(changed)))
        self._apply_live_params()

    # ================================================================= history
    def _import_history(self, text: str) -> None:
        try:
            n = self._sched.import_history(text)
        except HistoryFormatError as exc:
            self.get_logger().error(f'llm.history_json rejected: {exc}')
            self.diag.count('history.import_errors')
            return
        self.get_logger().info(f'conversation history loaded ({n} turns)')

    # ================================================================= callbacks
    def _on_transcript(self, msg: Transcript) -> None:
        if not self._active:
            return
        self._sched.on_transcript(msg.turn_id, msg.text, final=msg.is_final,
                                  early=msg.is_early_final, unreliable=msg.unreliable,
                                  speech_end_ns=timeutil.from_msg(msg.speech_end))

    def _on_activity(self, msg: VoiceActivity) -> None:
        if msg.event in (VoiceActivity.SPEECH_RESUMED, VoiceActivity.TURN_DISCARDED):
            self._sched.drop_speculation(msg.turn_id)

    def _on_interrupt(self, msg: Interrupt) -> None:
        if msg.reason == Interrupt.SHUTDOWN:
            self._sched.stop_all()
        else:
            self._sched.interrupt(msg.turn_id)

    def _on_playback(self, msg: PlaybackEvent) -> None:
        if msg.event == PlaybackEvent.FLUSHED:
            self._sched.flushed(msg.turn_id, msg.segments_complete, msg.segment_fraction)

    def _on_reset(self, request: Any, response: Any) -> Any:
        n = self._sched.reset()
        response.success = True
        response.message = f'conversation forgotten ({n} turns)'
        self.get_logger().info(response.message)
        return response

    def _on_tick(self) -> None:
        self._sched.tick()

    # ================================================================= ask action
    def _on_goal(self, goal: Any) -> GoalResponse:
        if not self._active or self._sched.generator is None:
            self.get_logger().warning('ask rejected: the node is not active')
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _execute_ask(self, goal_handle: Any) -> Any:
        request = goal_handle.request
        result = Ask.Result()
        result.turn_id = f'ask-{uuid.uuid4().hex[:8]}'
        clean = sanitize_input(request.text, self._sched.config.max_input_chars)
        self._sched.note_input(clean.problems, result.turn_id)
        if clean.empty:
            goal_handle.abort()
            result.error_code = Ask.Result.FAILED
            result.error_message = 'empty question'
            return result

        def feedback(index: int, chunk: str) -> None:
            goal_handle.publish_feedback(Ask.Feedback(index=index, chunk=chunk))

        job = ReplyJob(result.turn_id, clean.text, 'ask', bool(request.speak),
                       feedback=feedback)
        if not self._sched.submit(job):
            goal_handle.abort()
            result.error_code = Ask.Result.FAILED
            result.error_message = 'busy: too many requests queued'
            return result
        while not job.done.wait(ASK_POLL_S):
            if goal_handle.is_cancel_requested:
                job.stop.set()
            if not self._active and not job.stop.is_set():
                job.stop.set()
        res = job.result
        result.reply = res.text if res is not None else ''
        if res is None or res.finish == 'error':
            goal_handle.abort()
            result.error_code = Ask.Result.FAILED
            result.error_message = res.error if res is not None else 'not generated'
        elif res.cancelled:
            if goal_handle.is_cancel_requested:
                goal_handle.canceled()
            else:
                goal_handle.abort()
            result.error_code = Ask.Result.CANCELED
            result.error_message = 'cancelled'
        else:
            goal_handle.succeed()
            result.error_code = Ask.Result.SUCCESS
        return result

    # ================================================================= reporting
    def _report_turn(self, job: ReplyJob, res: ReplyResult) -> None:
        """Diagnostics and the log line of a committed reply."""
        self._turns_done += 1
        stats = res.stats
        first_chunk_ms = (res.first_chunk_ns - res.start_ns) / 1e6 if res.first_chunk_ns else -1
        self.diag.value('turns', self._turns_done)
        self.diag.value('last.first_chunk_ms', f'{first_chunk_ms:.0f}')
        self.diag.value('last.tokens_per_s', f'{stats.tokens_per_s:.1f}')
        self.diag.value('last.prompt_tokens', stats.prompt_tokens)
        self.diag.value('last.cached_tokens', stats.cached_tokens)
        self.diag.value('history.turns', len(self._memory))
        if res.finish == 'error':
            self.get_logger().error(f'turn {job.turn_id}: generation failed: {res.error}')
            self.diag.count('errors')
        self.get_logger().info(
            f'turn {job.turn_id}: {res.finish}, {len(res.chunks)} chunks, '
            f'{stats.generated_tokens} tokens ({stats.cached_tokens}/{stats.prompt_tokens} '
            f'prompt tokens cached), first chunk {first_chunk_ms:.0f} ms, '
            f'{stats.tokens_per_s:.1f} tok/s')


main = main_for(LlmNode)


if __name__ == '__main__':
    main()
