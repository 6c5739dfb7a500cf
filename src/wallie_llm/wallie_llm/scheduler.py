"""Turn scheduling of the LLM stage: which reply runs, which waits, which is thrown away.

Pure Python (no ROS): `LlmNode` turns its topic callbacks into calls here and publishes what
the `ReplyEvents` hooks hand back; the unit tests drive it with a fake generator.

- One worker thread runs the queued `ReplyJob`s one at a time through the `ReplyGenerator`,
  under `engine_lock` (a model swap takes it too, so it happens between replies).
- Speculation: an early final, or sooner a partial that already reads as a complete
  sentence, starts a reply whose chunks are held back. The final with the same words
  releases them; other words, `drop_speculation()` (speech resumed, turn discarded) or no
  final within `speculative_wait_s` throw the reply away. Memory changes only at commit, so
  a reply thrown away leaves no trace.
- A new voice turn stops every other voice reply; `interrupt()` stops the named turn, or
  without a turn id the reply being generated.
- Heard part: the spoken chunks of the last RECENT_TURNS committed turns are kept, so
  `flushed()` (the player's PlaybackEvent FLUSHED) trims the assistant's side of the history
  to what was heard; a FLUSHED that comes before the commit is kept and applied at commit.
- History: every change goes to `ReplyEvents.history` as JSON, one call at a time, so the
  last one handed out is never older than the memory.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Optional

from wallie_common.text import looks_complete
from wallie_llm.config import SchedulerConfig
from wallie_llm.memory import ConversationMemory
from wallie_llm.reply import ReplyGenerator, ReplyResult, heard_text
from wallie_llm.speech_text import same_utterance, sanitize_input

QUEUE_SIZE = 8
RECENT_TURNS = 16


class ReplyJob:
    """One reply to produce: a voice turn (maybe speculative) or an `ask` goal."""

    def __init__(self, turn_id: str, text: str, source: str, publish: bool,
                 speculative: bool = False, speech_end_ns: int = 0,
                 feedback: Optional[Callable[[int, str], None]] = None) -> None:
        self.turn_id = turn_id
        self.text = text
        self.source = source                  # 'voice' | 'ask'
        self.publish = publish
        self.speculative = speculative
        self.speech_end_ns = speech_end_ns
        self.feedback = feedback
        self.stop = threading.Event()
        self.discarded = threading.Event()    # speculative reply thrown away: no trace
        self.confirmed = threading.Event()
        self.done = threading.Event()
        self.result: ReplyResult | None = None
        self.lock = threading.Lock()
        self.released = not speculative
        self.from_partial = False             # speculative start from a partial transcript
        self.pending: list[tuple[int, str, bool]] = []
        self.first_token_ns = 0
        self.token_stamped = False
        self.first_chunk_sent = False
        self.not_heard = ''                   # unreliable transcript: say so, don't answer

    def discard(self) -> None:
        """Throw the reply away: stop generating, release nothing, commit nothing."""
        self.discarded.set()
        self.stop.set()


class ReplyEvents:
    """What the scheduler hands out (no-op defaults); the node turns it into messages."""

    def chunk(self, job: ReplyJob, index: int, text: str, final: bool, first: bool) -> None:
        """A released chunk to publish; `first`: the job's first non-empty chunk."""

    def first_token(self, job: ReplyJob, stamp_ns: int | None) -> None:
        """The first token of a released job (None: it came earlier, the turn is real now)."""

    def history(self, data: str) -> None:
        """The conversation history changed: its JSON export."""

    def committed(self, job: ReplyJob, result: ReplyResult) -> None:
        """A reply finished and was recorded in memory."""

    def failed(self, job: ReplyJob, exc: Exception) -> None:
        """Running a job raised (the worker goes on)."""

    def count(self, key: str) -> None:
        """Count an occurrence (speculation used or discarded, not-heard reasons)."""

    def warn(self, key: str, text: str) -> None:
        """A warning worth rate-limiting, under `key`."""


class ReplyScheduler:
    """Queues, speculates, interrupts and commits replies; one worker runs the generator.

    `generator` is set by the owner (None: no model); swap it under `engine_lock`.
    `config` may be replaced at any time (read once per decision).
    """

    def __init__(self, memory: ConversationMemory, config: SchedulerConfig | None = None,
                 events: ReplyEvents | None = None, log: Any = None,
                 queue_size: int = QUEUE_SIZE) -> None:
        self.memory = memory
        self.config = config or SchedulerConfig()
        self.events = events or ReplyEvents()
        self.log = log or logging.getLogger(__name__)
        self.engine_lock = threading.Lock()  # held while generating
        self.generator: Optional[ReplyGenerator] = None
        self._queue_size = queue_size
        self._lock = threading.RLock()       # the turn maps below, and recent + memory together
        self._jobs: queue.Queue[ReplyJob | None] = queue.Queue(queue_size)
        self._worker: Optional[threading.Thread] = None
        self._current: Optional[ReplyJob] = None
        self._speculative: dict[str, ReplyJob] = {}
        self._answered: OrderedDict[str, None] = OrderedDict()
        self._recent: OrderedDict[str, list[str]] = OrderedDict()       # turn -> spoken chunks
        self._heard_pending: dict[str, tuple[int, float]] = {}
        self._prefix_dirty = True
        self._publish_lock = threading.Lock()
        self._published_revision = -1

    # ================================================================= worker
    def start(self) -> None:
        """Start the worker thread."""
        self._worker = threading.Thread(target=self._worker_loop, name='llm-worker',
                                        daemon=True)
        self._worker.start()

    def stop(self) -> None:
        """Stop every reply and the worker; `start()` may be called again."""
        self.stop_all()
        if self._worker is not None:
            try:
                self._jobs.put(None, timeout=1.0)
            except queue.Full:
                pass
            self._worker.join(10.0)
            self._worker = None
        self._jobs = queue.Queue(self._queue_size)

    @property
    def running(self) -> bool:
        """The worker thread is started."""
        return self._worker is not None

    def idle(self) -> bool:
        """Nothing generating and nothing queued."""
        return self._jobs.unfinished_tasks == 0

    def speculative_job(self, turn: str) -> ReplyJob | None:
        """The speculative reply waiting for the final transcript of `turn`, if any."""
        with self._lock:
            return self._speculative.get(turn)

    def invalidate_prefix(self) -> None:
        """The system prompt or the engine changed: evaluate the prefix before the next reply."""
        self._prefix_dirty = True

    def submit(self, job: ReplyJob) -> bool:
        """Queue a job; False (and the job done) when the queue is full."""
        try:
            self._jobs.put_nowait(job)
            return True
        except queue.Full:
            self.events.warn('queue_full', f'turn {job.turn_id}: request queue full, dropped')
            job.done.set()
            return False

    def note_input(self, problems: list[str], turn: str) -> None:
        """Report what the input sanitiser had to fix."""
        for problem in problems:
            if problem != 'empty':
                self.events.warn(f'input.{problem}', f'turn {turn}: input text: {problem}')

    # ================================================================= turn events
    def on_transcript(self, turn: str, text: str, *, final: bool, early: bool = False,
                      unreliable: str = '', speech_end_ns: int = 0) -> None:
        """A transcript of `turn`: partial, early final or final (see the module docstring).

        `unreliable`: why the ASR does not trust a final; it gets the not-heard reply.
        """
        cfg = self.config
        early = early and not final
        partial = not (early or final)
        if partial and not (cfg.speculative and cfg.speculative_partials
                            and looks_complete(text)):
            return                                    # partials are not answered
        clean = sanitize_input(text, cfg.max_input_chars)
        if not partial:
            self.note_input(clean.problems, turn)
        with self._lock:
            spec = self._speculative.get(turn)
            if early or partial:
                # Speculative start: from the early final, or sooner from a partial that
                # already reads complete. A later early final with other words replaces a
                # partial's job; a partial never replaces an early final's.
                if not cfg.speculative or clean.empty or turn in self._answered or unreliable:
                    return
                if spec is not None and (same_utterance(spec.text, clean.text)
                                         or (partial and not spec.from_partial)):
                    return
                if spec is not None:
                    spec.discard()
                    self.events.count('speculative.discarded')
                job = ReplyJob(turn, clean.text, 'voice', True, speculative=True,
                               speech_end_ns=speech_end_ns)
                job.from_partial = partial
                if partial:
                    self.events.count('speculative.from_partial')
                self._speculative[turn] = job
                self._supersede(turn)
                self.submit(job)
                return
            self._speculative.pop(turn, None)
            if unreliable and not clean.empty and turn not in self._answered:
                if spec is not None:
                    spec.discard()
                    self.events.count('speculative.discarded')
                _remember(self._answered, turn, None)
                self.events.count(f'not_heard.{unreliable}')
                self.log.info(f'turn {turn}: transcript unreliable ({unreliable}); '
                              'not answered')
                self._supersede(turn)
                job = ReplyJob(turn, clean.text, 'voice', True, speech_end_ns=speech_end_ns)
                job.not_heard = unreliable
                self.submit(job)
                return
            if clean.empty:
                if spec is not None:
                    spec.discard()
                self.log.debug(f'turn {turn}: empty final transcript ignored')
                return
            if turn in self._answered:
                self.events.warn('duplicate_final', f'turn {turn}: second final ignored')
                return
            _remember(self._answered, turn, None)
            if (spec is not None and not spec.stop.is_set()
                    and same_utterance(spec.text, clean.text)):
                spec.speech_end_ns = speech_end_ns or spec.speech_end_ns
                self._release(spec)
                self.events.count('speculative.used')
                return
            if spec is not None:
                spec.discard()
                self.events.count('speculative.discarded')
            self._supersede(turn)
            self.submit(ReplyJob(turn, clean.text, 'voice', True, speech_end_ns=speech_end_ns))

    def drop_speculation(self, turn: str) -> None:
        """The user went on (or the turn was discarded): its speculative reply is void."""
        with self._lock:
            spec = self._speculative.pop(turn, None)
        if spec is not None:
            spec.discard()
            self.events.count('speculative.discarded')

    def interrupt(self, turn: str = '') -> None:
        """Stop the replies of `turn` (empty: the reply being generated)."""
        with self._lock:
            if not turn:
                if self._current is not None:
                    self._current.stop.set()
                return
            for job in self._jobs_for(turn):
                job.stop.set()
            spec = self._speculative.pop(turn, None)
            if spec is not None:
                spec.discard()

    def stop_all(self) -> None:
        """Stop every reply, queued or running, and throw away every speculative one."""
        with self._lock:
            if self._current is not None:
                self._current.stop.set()
            for job in list(self._jobs.queue):
                if job is not None:
                    job.stop.set()
            for job in self._speculative.values():
                job.discard()
            self._speculative.clear()

    def flushed(self, turn: str, segments_complete: int, segment_fraction: float) -> None:
        """The player stopped `turn` after this much: keep only that in the history."""
        heard = (int(segments_complete), float(segment_fraction))
        with self._lock:    # _commit records the chunks and the exchange under this lock
            chunks = self._recent.get(turn)
            if chunks is None:
                # Generation of that turn is still finishing: apply when it is committed.
                self._heard_pending[turn] = heard
                while len(self._heard_pending) > RECENT_TURNS:
                    self._heard_pending.pop(next(iter(self._heard_pending)))
                return
            trimmed = self.memory.trim_assistant(turn, heard_text(chunks, *heard))
        if trimmed:
            self.log.debug(f'turn {turn}: history trimmed to the heard part')
            self.publish_history()

    # ================================================================= history
    def reset(self) -> int:
        """Forget the conversation; return how many exchanges it had."""
        n = len(self.memory)
        self.memory.reset()
        with self._lock:
            self._heard_pending.clear()
        self._prefix_dirty = True
        self.publish_history()
        return n

    def tick(self) -> None:
        """Periodic: forget an idle conversation, publish a history not yet published."""
        if self.memory.expire_if_idle():
            self.log.info('conversation forgotten after the idle timeout')
            self._prefix_dirty = True
        self.publish_history()

    def import_history(self, text: str) -> int:
        """Replace the history with an exported one (HistoryFormatError: nothing changed)."""
        n = self.memory.import_json(text)
        self._prefix_dirty = True
        self.publish_history()
        return n

    def publish_history(self, force: bool = False) -> None:
        """Hand out the history if it changed since the last time (or `force`)."""
        if not self.config.publish_history:
            return
        # One publisher at a time, in revision order: a stale export published last would be
        # the history every subscriber keeps (transient local) until the next change.
        with self._publish_lock:
            rev = self.memory.revision
            if rev == self._published_revision and not force:
                return
            data = self.memory.export_json()
            self._published_revision = rev
            self.events.history(data)

    # ================================================================= internals
    def _supersede(self, turn: str) -> None:
        """A new voice turn makes every other voice reply pointless (caller holds the lock)."""
        current = self._current
        if current is not None and current.source == 'voice' and current.turn_id != turn:
            current.stop.set()
        for job in list(self._jobs.queue):
            if job is not None and job.source == 'voice' and job.turn_id != turn:
                job.stop.set()

    def _jobs_for(self, turn: str) -> list[ReplyJob]:
        jobs = [j for j in list(self._jobs.queue) if j is not None and j.turn_id == turn]
        if self._current is not None and self._current.turn_id == turn:
            jobs.append(self._current)
        return jobs

    def _worker_loop(self) -> None:
        jobs = self._jobs
        while True:
            job = jobs.get()
            if job is None:
                jobs.task_done()
                return
            try:
                self._run(job)
            except Exception as exc:  # the worker must survive anything
                self.events.failed(job, exc)
            finally:
                job.done.set()
                with self._lock:
                    if self._current is job:
                        self._current = None
                jobs.task_done()

    def _run(self, job: ReplyJob) -> None:
        with self._lock:
            if job.stop.is_set():
                job.result = ReplyResult(job.turn_id, job.text, finish='cancelled')
                return
            self._current = job
        with self.engine_lock:
            gen = self.generator
            if gen is None:
                job.result = ReplyResult(job.turn_id, job.text, finish='error',
                                         error='no model loaded')
                return
            if self._prefix_dirty:
                self._prefix_dirty = False
                gen.prepare()
            self.log.debug(f'turn {job.turn_id}: user said {job.text!r}')
            res = gen.run(job.turn_id, job.text, job.stop,
                          on_chunk=lambda i, t, f: self._emit(job, i, t, f),
                          on_first_token=lambda ns: self._first_token(job, ns),
                          not_heard=job.not_heard)
        job.result = res
        if job.speculative:
            deadline = time.monotonic() + float(self.config.speculative_wait_s)
            while not (job.confirmed.is_set() or job.discarded.is_set()):
                if time.monotonic() > deadline or job.stop.is_set():
                    # Never confirmed: timed out, interrupted or superseded.
                    with self._lock:
                        if not job.confirmed.is_set():
                            job.discard()
                            if self._speculative.get(job.turn_id) is job:
                                del self._speculative[job.turn_id]
                    break
                job.confirmed.wait(0.02)
            if job.discarded.is_set():
                self.log.debug(f'turn {job.turn_id}: speculative reply dropped')
                job.result = ReplyResult(job.turn_id, job.text, finish='cancelled')
                return
        self._commit(job, res, gen)

    def _commit(self, job: ReplyJob, res: ReplyResult, gen: ReplyGenerator) -> None:
        # The chunks and the exchange land together: a FLUSHED in between would find the
        # chunks but no exchange to trim, and the whole reply would stay in the history.
        with self._lock:
            _remember(self._recent, job.turn_id, list(res.chunks))
            heard = self._heard_pending.pop(job.turn_id, None)
            text = heard_text(res.chunks, *heard) if heard is not None else None
            gen.commit(res, text)
        self.publish_history()
        self.events.committed(job, res)

    def _first_token(self, job: ReplyJob, stamp_ns: int) -> None:
        with job.lock:
            job.first_token_ns = stamp_ns
            if job.released and job.publish and not job.token_stamped:
                job.token_stamped = True
                self.events.first_token(job, stamp_ns)

    def _emit(self, job: ReplyJob, index: int, text: str, final: bool) -> None:
        with job.lock:
            job.pending.append((index, text, final))
            if job.released:
                self._drain(job)

    def _release(self, job: ReplyJob) -> None:
        """The final transcript confirmed a speculative reply: send what it has so far."""
        with job.lock:
            job.released = True
            job.confirmed.set()
            if job.first_token_ns and job.publish and not job.token_stamped:
                job.token_stamped = True
                # The token existed earlier, but the turn only became real now.
                self.events.first_token(job, None)
            self._drain(job)

    def _drain(self, job: ReplyJob) -> None:
        """Hand out held chunks in order (caller holds job.lock)."""
        for index, text, final in job.pending:
            if job.feedback is not None and text:
                job.feedback(index, text)
            if not job.publish:
                continue
            if job.stop.is_set() and text:
                continue                     # interrupted: nothing more for the TTS
            first = bool(text) and not job.first_chunk_sent
            if first:
                job.first_chunk_sent = True
            self.events.chunk(job, index, text, final, first)
        job.pending.clear()


def _remember(store: OrderedDict, key: str, value: Any) -> None:
    store[key] = value
    store.move_to_end(key)
    while len(store) > RECENT_TURNS:
        store.popitem(last=False)
