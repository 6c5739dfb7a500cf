"""End to end: run the real Wallie graph headless, feed it speech, watch one turn at a time.

This is the library behind ``wallie demo``, ``wallie ask``, ``wallie bench`` and the
conversation test suite. Nothing here is a test double: the graph is the one ``wallie up``
runs (``wallie_bringup.bringup.prepare`` -> node executables as separate processes under the
``Supervisor``, the manager bringing the stages to active), with headless parameters:

* the microphone is either the capture node reading a WAV file (``capture='file'``) or left
  out (``capture='skip'``) so that this process feeds ``audio/in`` itself
  (:mod:`wallie_cli.feed`: fixture bags replayed in real time; the conversation tests use
  ``wallie_testing.echo_mic.EchoMic``, a simulated room microphone);
* the speaker is the player's WAV sink (``sink='file'``; :class:`wallie_cli.wavs.WavTail`
  reads each reply out of the growing file) or its real-time null sink.

An in-process :class:`wallie_cli.observer.Observer` records what the graph says about every
turn; a :class:`wallie_cli.turn_result.TurnResult` joins it with the ground truth of the input
(the acoustic end of speech on the graph's clock) into per-stage latencies.

Typical use::

    with LiveGraph(GraphOptions(capture='skip', sink='file')) as g:
        g.wait_ready()
        turn = g.ask_bag('src/wallie_cli/wallie_cli/fixtures/bags/q_capital_france_enus')
        print(turn.transcript, turn.reply_text, turn.latencies())
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from wallie_cli.feed import Feed, replay_bag
from wallie_cli.observer import Observer, free_domain_id
from wallie_cli.turn_result import TurnResult
from wallie_cli.wavs import (
    FRAME_MS,
    NS,
    GraphError,
    PreparedInput,
    WavTail,
    prepare_input,
    write_wav,
)


# ---------------------------------------------------------------------------- the graph
@dataclass
class GraphOptions:
    """How to run the graph headless."""

    profile: str | None = 'cpu'           # parameter profile (None: config.toml / cpu)
    wake_engine: str = 'none'             # voice_gate wake.engine ('none': every utterance)
    wake_word: str | None = None          # voice_gate wake.word (None: the configured one)
    capture: str = 'skip'                 # 'skip' (this process feeds audio/in) or 'file'
    input_path: str = ''                  # capture='file': the WAV the capture node plays
    sink: str = 'file'                    # player sink: 'file' or 'null'
    sink_path: str = ''                   # sink='file': '' = <run dir>/playback.wav
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # node -> overrides
    user_config: bool = True              # apply config.toml and WALLIE_* variables
    run_dir: str | None = None            # None: a fresh ~/.wallie_voice_bot/run/<time>-<pid>
    domain_id: int | None = None          # None: a random private domain
    log_level: str | None = None
    metrics: bool = True                  # run the metrics node (TurnMetrics, JSONL log)
    home: str | None = None               # WALLIE_HOME for the nodes (None: inherited)
    env: dict[str, str] = field(default_factory=dict)
    stop_timeout_s: float = 10.0


class LiveGraph:
    """The real graph as processes (same bring-up as ``wallie up``) plus an Observer."""

    def __init__(self, options: GraphOptions | None = None,
                 echo: Callable[[str], None] | None = None) -> None:
        self.options = options or GraphOptions()
        self.echo = echo or (lambda line: None)
        self.prep: Any = None
        self.observer: Observer | None = None
        self.events: list[tuple[str, str, dict]] = []
        self.wav: WavTail | None = None
        self.domain_id = 0
        self.t_start = 0.0
        self.ready_after_s: float | None = None
        self._sup: Any = None
        self._sup_thread: threading.Thread | None = None
        self._sup_stop = threading.Event()
        self._sup_started = threading.Event()
        self._sup_error: BaseException | None = None
        self.exit_codes: dict[str, int | None] = {}

    # -- configuration -------------------------------------------------------------------------
    def cli_params(self, run_dir: Path) -> dict[str, dict[str, Any]]:
        o = self.options
        out: dict[str, dict[str, Any]] = {}
        gate = out.setdefault('voice_gate', {})
        gate['wake.engine'] = o.wake_engine
        if o.wake_word is not None:
            gate['wake.word'] = o.wake_word
        if o.sink == 'file':
            path = Path(o.sink_path or run_dir / 'playback.wav').expanduser().resolve()
            out['player'] = {'sink': 'file', 'file_path': str(path)}
        elif o.sink == 'null':
            out['player'] = {'sink': 'null'}
        else:
            raise GraphError(f'sink {o.sink!r}: use file or null')
        if o.capture == 'file':
            if not o.input_path:
                raise GraphError("capture='file' needs input_path")
            out['capture'] = {'source': 'file', 'file.path': str(Path(o.input_path).resolve()),
                              'file.realtime': True, 'file.loop': False,
                              'file.lead_silence_s': 0.0}
        elif o.capture != 'skip':
            raise GraphError(f'capture {o.capture!r}: use skip or file')
        for node, values in o.params.items():
            out.setdefault(node, {}).update(values)
        return out

    def _env(self) -> dict[str, str]:
        from wallie_common.runtime import apply_privacy_env
        env = dict(os.environ)
        env.update(self.options.env)
        env['ROS_DOMAIN_ID'] = str(self.domain_id)
        env.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
        if self.options.home:
            env['WALLIE_HOME'] = str(Path(self.options.home).expanduser())
        env['PYTHONUNBUFFERED'] = '1'
        apply_privacy_env(env)
        return env

    # -- start / stop -------------------------------------------------------------------------
    def start(self) -> 'LiveGraph':
        from wallie_bringup import bringup
        from wallie_bringup import config as wconfig
        o = self.options
        self.t_start = time.monotonic()
        self.domain_id = o.domain_id if o.domain_id is not None else free_domain_id()
        env = self._env()
        run_dir = bringup.make_run_dir(o.run_dir)
        for stale in ('state.json', 'playback.wav'):      # a reused run directory
            try:
                (run_dir / stale).unlink()
            except FileNotFoundError:
                pass
        if o.user_config:
            run_cfg = wconfig.RunConfig(profile=o.profile, cli_params=self.cli_params(run_dir),
                                        environ=env)
        else:
            clean = {k: v for k, v in env.items()
                     if not k.startswith(wconfig.ENV_PREFIX) or k in wconfig.NON_CONFIG_ENV}
            run_cfg = wconfig.RunConfig(profile=o.profile or 'cpu',
                                        cli_params=self.cli_params(run_dir), environ=clean,
                                        config_file=str(run_dir / 'no-config.toml'),
                                        create_config=False)
        skip = []
        if o.capture == 'skip':
            skip.append('capture')
        if not o.metrics:
            skip.append('metrics')
        try:
            self.prep = bringup.prepare(run_cfg, skip=skip, run_dir=run_dir,
                                        log_level=o.log_level)
        except (wconfig.ConfigError, bringup.BringupError, ValueError) as exc:
            raise GraphError(str(exc)) from None
        errors, warnings = check_models(self.prep.resolved.params)
        for w in self.prep.resolved.warnings + warnings:
            self.echo(f'warning: {w}')
        if errors:
            raise GraphError('\n'.join(errors))
        procs = [dataclasses.replace(p, env=env) for p in self.prep.procs]
        player = wconfig.for_node(self.prep.resolved.params, 'player')
        if player.get('sink') == 'file':
            self.wav = WavTail(player['file_path'])
        self.observer = Observer(self.domain_id, watch_audio_in=o.capture == 'file')
        if o.capture == 'skip':
            self.observer.audio_publisher()
        self._sup_thread = threading.Thread(target=self._supervise, args=(procs,),
                                            name='e2e-supervisor', daemon=True)
        self._sup_thread.start()
        self._sup_started.wait(30.0)
        if self._sup_error is not None:
            raise GraphError(f'cannot start the graph: {self._sup_error}')
        self.echo(f'graph starting: {len(procs)} processes, ROS domain {self.domain_id}, '
                  f'run directory {self.run_dir}')
        return self

    def _on_event(self, kind: str, name: str, details: dict) -> None:
        self.events.append((kind, name, details))
        if kind in ('exited', 'gave_up', 'failed', 'kill'):
            self.echo(f'{name}: {kind} {details}')

    def _supervise(self, procs: list[Any]) -> None:
        """Start, watch and stop the processes from ONE thread: children get
        PR_SET_PDEATHSIG, which fires when the thread that forked them ends."""
        from wallie_bringup import graph as wgraph
        from wallie_bringup.supervisor import Supervisor
        try:
            mp = self.prep.resolved.params.get(wgraph.MANAGER, {})
            self._sup = Supervisor(procs, self.run_dir, self._on_event,
                                   max_restarts=int(mp.get('restart.max_restarts', 5)),
                                   window_s=float(mp.get('restart.window_s', 120.0)),
                                   backoff_max_s=float(mp.get('restart.backoff_max_s', 30.0)))
            self._sup.start()
        except BaseException as exc:  # reported by start()
            self._sup_error = exc
            self._sup_started.set()
            return
        self._sup_started.set()
        try:
            while not self._sup_stop.wait(0.1):
                self._sup.poll()
        finally:
            self.exit_codes = self._sup.stop(first=[wgraph.MANAGER], first_timeout_s=5.0,
                                             timeout_s=self.options.stop_timeout_s)

    @property
    def run_dir(self) -> Path:
        return Path(self.prep.run_dir)

    def alive(self) -> list[str]:
        return self._sup.alive() if self._sup is not None else []

    def pids(self) -> dict[str, int]:
        """The process id of every node that is running now, by node name."""
        if self._sup is None:
            return {}
        return {name: pid for name in self._sup.alive()
                if (pid := self._sup.pid(name)) is not None}

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.run_dir / 'logs' / f'{name}.log'
        try:
            return path.read_text(errors='replace')[-chars:]
        except OSError:
            return ''

    def logs_report(self, names: Iterable[str] | None = None, chars: int = 2500) -> str:
        names = list(names) if names is not None else sorted(
            p.stem for p in (self.run_dir / 'logs').glob('*.log'))
        return '\n'.join(f'--- {n} ---\n{self.log_tail(n, chars)}' for n in names)

    def state_file(self) -> dict[str, Any]:
        try:
            return json.loads((self.run_dir / 'state.json').read_text())
        except (OSError, ValueError, TypeError):
            return {}

    def wait_ready(self, timeout: float = 300.0) -> float:
        """Block until the manager reports every stage active; return seconds since start."""
        assert self.observer is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.observer.state.get('ready') or self.state_file().get('ready'):
                self.ready_after_s = time.monotonic() - self.t_start
                self.echo(f'graph ready after {self.ready_after_s:.1f} s')
                return self.ready_after_s
            dead = [(k, n, d) for k, n, d in self.events if k in ('gave_up', 'failed')]
            if dead:
                raise GraphError(f'{dead[0][1]} could not run ({dead[0][0]}: {dead[0][2]})\n'
                                 + self.logs_report([dead[0][1], 'manager']))
            failed = {name: st for name, st in self.state_file().get('stages', {}).items()
                      if isinstance(st, dict) and st.get('phase') == 'failed'}
            if failed:
                name, st = next(iter(failed.items()))
                raise GraphError(f'stage {name} failed to come up: {st.get("detail")}\n'
                                 + self.logs_report([name, 'manager']))
            if self._sup_thread is not None and not self._sup_thread.is_alive():
                raise GraphError('the supervisor stopped')
            time.sleep(0.1)
        state = self.state_file()
        raise GraphError(f'the graph was not ready within {timeout:.0f} s '
                         f'(manager state: {state.get("state")}: {state.get("detail")})\n'
                         + self.logs_report())

    def stop(self) -> dict[str, int | None]:
        """Stop every process (manager first: it deactivates the stages in order)."""
        if self._sup_thread is not None:
            self._sup_stop.set()
            self._sup_thread.join(self.options.stop_timeout_s + 30.0)
            self._sup_thread = None
        if self.observer is not None:
            self.observer.close()
            self.observer = None
        return self.exit_codes

    def __enter__(self) -> 'LiveGraph':
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- turns -------------------------------------------------------------------------------
    def wait_idle(self, timeout: float = 60.0, quiet_s: float = 1.0) -> bool:
        """Wait until no reply is being generated or played and nothing happened for
        `quiet_s` (so one turn cannot leak into the next)."""
        assert self.observer is not None
        obs = self.observer

        def idle() -> bool:
            turns = list(obs.turns.values())
            if any((t.audible and not t.playback_over) or (t.chunks and not t.reply_done)
                   for t in turns):
                return False
            last = max([t.last_event_ns for t in turns] + [0])
            return time.time_ns() - last > quiet_s * NS
        return bool(obs.wait(idle, timeout))

    def wav_mark(self) -> int:
        return self.wav.samples() if self.wav is not None else 0

    def wait_turn(self, since_ns: int, feed: Feed | None = None, *, expect_reply: bool = True,
                  timeout: float = 60.0, quiet_s: float = 4.0, metrics_wait_s: float = 3.0,
                  wav_start: int = 0) -> TurnResult:
        """Collect the turn(s) the graph opened after `since_ns` until the reply is over.

        With a reply expected: returns once the answered turn's playback finished (or was
        flushed) and its TurnMetrics arrived (or `metrics_wait_s` passed), or when every turn
        opened turned out unanswerable (empty/discarded) and nothing happened for `quiet_s`,
        or at `timeout`. Without: waits until `quiet_s` passed with no new event after the
        input ended (and no reply in progress).
        """
        assert self.observer is not None
        obs = self.observer
        t_end = time.monotonic() + timeout
        feed_end = feed.end_wall_ns if feed and feed.end_wall_ns else time.time_ns()

        def status() -> str:
            turns = obs.turns_since(since_ns)
            now = time.time_ns()
            last = max([t.last_event_ns for t in turns] + [feed_end])
            if any(t.playback_over for t in turns if t.audible):
                return 'answered'
            busy = any(t.chunks or (t.final and t.final['text'].strip()) for t in turns
                       if not t.playback_over)
            if not busy and now - last > quiet_s * NS and now > feed_end:
                if not expect_reply or not turns or all(t.unanswered for t in turns):
                    return 'quiet'
            return ''

        outcome = ''
        while time.monotonic() < t_end:
            outcome = obs.wait(status, min(0.5, max(0.0, t_end - time.monotonic())))
            if outcome:
                break
        turns = obs.turns_since(since_ns)
        answered = [t for t in turns if t.audible]
        main = answered[0] if answered else None
        if main is None:
            with_final = [t for t in turns if t.final is not None]
            candidates = with_final or [t for t in turns if t.ended] or turns
            main = candidates[0] if candidates else None
        if main is not None and main.audible:
            obs.wait(lambda: main.metrics is not None, metrics_wait_s)
        result = TurnResult(main, feed, other_turns=[t for t in turns if t is not main])
        if self.wav is not None and main is not None and main.audible:
            # the player writes in real time: everything up to FINISHED is in the file
            result.answer = self.wav.read(wav_start)
            result.answer_rate = self.wav.rate
        return result

    def ask_bag(self, bag: str | os.PathLike, *, expect_reply: bool = True,
                timeout: float = 60.0, quiet_s: float = 4.0) -> TurnResult:
        """Replay a fixture bag as the microphone and return the turn it caused."""
        assert self.observer is not None
        wav_start = self.wav_mark()
        since = time.time_ns()
        feed = replay_bag(self.observer, bag)
        return self.wait_turn(since, feed, expect_reply=expect_reply, timeout=timeout,
                              quiet_s=quiet_s, wav_start=wav_start)

    def ask_mic(self, mic: Any, fixture: Mapping[str, Any], *,
                expect_reply: bool = True, timeout: float = 60.0,
                quiet_s: float = 4.0) -> TurnResult:
        """Say a fixture into a running simulated mic (wallie_testing's EchoMic)."""
        wav_start = self.wav_mark()
        since = time.time_ns()
        feed = mic.say_fixture(fixture)
        return self.wait_turn(since, feed, expect_reply=expect_reply, timeout=timeout,
                              quiet_s=quiet_s, wav_start=wav_start)

    def capture_feed(self, prepared: PreparedInput, timeout: float = 20.0) -> Feed:
        """capture='file': the file's timeline on the graph clock (from the first frame)."""
        assert self.observer is not None
        obs = self.observer
        first = obs.wait(lambda: obs.audio_in_first, timeout)
        if not first:
            raise GraphError('the capture node published no audio/in frame\n'
                             + self.log_tail('capture'))
        seq, stamp = first
        t0 = stamp - (seq - 1) * FRAME_MS * 1_000_000      # the capture node counts from 1
        return Feed(name=prepared.path.name, start_ns=t0, duration_s=prepared.duration_s,
                    speech_start_ns=t0 + int(prepared.speech_start_s * NS),
                    speech_end_ns=t0 + int(prepared.speech_end_s * NS), truth='estimate',
                    end_wall_ns=t0 + int(prepared.duration_s * NS))


# ---------------------------------------------------------------------------- preflight
def check_models(params: dict[str, dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(errors, warnings) for models of the merged parameters missing from the model store.

    Only model-store ids of the manifest are checked (paths and Hugging Face ids are the
    engines' business); a missing Piper voice is a warning (the TTS falls back to espeak-ng).
    """
    from wallie_bringup import config as wconfig
    try:
        from wallie_common import model_store
        manifest = model_store.load_manifest()
    except Exception:  # no manifest: nothing to check against
        return [], []
    asr = wconfig.for_node(params, 'asr')
    llm = wconfig.for_node(params, 'llm')
    tts = wconfig.for_node(params, 'tts')
    gate = wconfig.for_node(params, 'voice_gate')
    wanted: list[tuple[str, str, bool]] = [   # (model id, explicit path, fatal)
        ('silero-vad-v6', str(gate.get('vad.model_path', '')), True),
        (str(asr.get('asr.model', 'whisper-tiny.en')), '', True),
    ]
    if llm.get('llm.engine', 'llama_cpp') == 'llama_cpp':
        wanted.append((str(llm.get('llm.model', 'qwen2.5-0.5b-instruct')),
                       str(llm.get('llm.model_path', '')), True))
    if tts.get('tts.engine', 'piper') == 'piper':
        wanted.append((str(tts.get('tts.piper.voice', 'piper-en_US-joe-medium')),
                       str(tts.get('tts.piper.model_path', '')), False))
    errors: list[str] = []
    warnings: list[str] = []
    for model_id, explicit, fatal in wanted:
        if not model_id or explicit or manifest.find(model_id) is None:
            continue
        try:
            model_store.resolve(model_id, manifest=manifest)
        except model_store.ModelNotFoundError as exc:
            (errors if fatal else warnings).append(str(exc))
    return errors, warnings


# ---------------------------------------------------------------------------- one-shot turn
@dataclass
class AskOutcome:
    """What `ask_wav` returns: the turn, the time to ready, the run directory and exits."""

    result: TurnResult
    ready_s: float
    run_dir: Path
    output: Path | None
    exit_codes: dict[str, int | None]


def ask_wav(question: str | os.PathLike, output: str | os.PathLike | None,
            options: GraphOptions | None = None, timeout: float = 90.0,
            ready_timeout: float = 300.0,
            echo: Callable[[str], None] | None = None) -> AskOutcome:
    """One spoken turn through the whole graph: the capture node plays `question` (any
    format soundfile reads, padded with silence), the player writes what it says; the answer
    is copied to `output` (16-bit WAV at the player's rate)."""
    from wallie_bringup import bringup
    options = dataclasses.replace(options or GraphOptions(), capture='file', sink='file')
    run_dir = bringup.make_run_dir(options.run_dir)
    options.run_dir = str(run_dir)
    prepared = prepare_input(question, run_dir / 'question_16k.wav')
    options.input_path = str(prepared.path)
    graph = LiveGraph(options, echo=echo)
    out_path: Path | None = None
    try:
        graph.start()
        ready = graph.wait_ready(ready_timeout)
        feed = graph.capture_feed(prepared)
        result = graph.wait_turn(0, feed, timeout=timeout + prepared.duration_s)
        if output is not None and result.answer is not None and result.answer.size:
            out_path = write_wav(output, result.answer, result.answer_rate)
    finally:
        codes = graph.stop()
    return AskOutcome(result, ready, run_dir, out_path, codes)


