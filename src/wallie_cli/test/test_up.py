"""`wallie up` end to end with real processes (small dummy stages stand in for the models).

Checks what a user notices: it becomes ready; a stage killed with SIGKILL comes back to
active with growing backoff; a restart loop is capped and reported; config.toml, WALLIE_*
and flags land in the right parameters; SIGHUP applies a config change live; the
governor steps down and up; the conversation survives an LLM restart; stopping leaves no
process behind.
"""

import json
import os
import signal
import textwrap
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus

from wallie_common import timeutil
from wallie_common.qos import STATE_QOS
from wallie_interfaces.msg import AssistantState, StageStamp
from wallie_testing.up import STAGES, alive, params_of, state_of


def test_up_ready_kill9_recovery_and_clean_shutdown(up, probe):
    states = probe.subscribe('assistant/state', AssistantState, qos=STATE_QOS)
    u = up('--set', 'asr:dummy.configure_s=0.5')
    u.wait_ready(60)
    probe.wait_for(lambda: states and states[-1].ready, 10, 'ready on assistant/state')
    assert states[-1].state == AssistantState.IDLE
    # `wallie up` echoes READY when its own poll of state.json sees it, which can be a
    # moment after this test read the same file: wait for the line, don't race it.
    u.wait(lambda: 'READY' in u.output(), 10, 'READY in the output of wallie up')
    for name, _ in STAGES:
        assert state_of(probe, name) == 'active'

    recovery = {}
    for name, _ in STAGES:                         # kill -9 each stage in turn
        old = u.pid(name)
        t_kill = time.monotonic()
        os.kill(old, signal.SIGKILL)
        u.wait(lambda n=name, o=old: u.pid(n) not in (None, o) and
               u.stage(n).get('phase') == 'active' and u.stage(n).get('recoveries', 0) >= 1,
               30, f'{name} back to active')
        recovery[name] = time.monotonic() - t_kill
        assert state_of(probe, name) == 'active'
        u.wait(lambda: u.state().get('ready'), 10, 'ready again')
    print('recovery after kill -9 (s):', {k: round(v, 2) for k, v in recovery.items()})

    # A second crash soon after: the backoff grows (0.5 s, then 1.0 s).
    for _ in range(2):
        pid = u.pid('tts')
        os.kill(pid, signal.SIGKILL)
        u.wait(lambda p=pid: u.pid('tts') not in (None, p) and
               u.stage('tts').get('phase') == 'active', 30, 'tts back')
    assert 'tts: killed by SIGKILL' in u.output()
    assert 'respawning in 1.0 s' in u.output()
    assert 'restart 2 in 1.0 s' in u.log('manager') or 'restart 3 in 2.0 s' in u.log('manager')

    pids = {n: u.pid(n) for n, _ in STAGES + [('manager', ())]}
    assert u.stop() == 0
    assert 'stopped cleanly' in u.output()
    for name, pid in pids.items():
        assert not alive(pid), f'{name} ({pid}) left behind'
    for pid in u.seen_pids:
        assert not alive(pid)
    assert not list((u.run_dir / 'pids').iterdir())


def test_config_layers_land_and_sighup_applies_live(up, probe, tmp_path):
    home = tmp_path / 'home'
    home.mkdir()
    cfg = home / 'config.toml'
    cfg.write_text(textwrap.dedent('''
        asr_model = "from-toml"
        llm_max_tokens = 55
        [params.llm]
        "dummy.level" = 0.25
    '''))
    u = up('--set', 'asr:dummy.mode=b', env={'WALLIE_LLM_MAX_TOKENS': '77'})
    u.wait_ready(60)
    assert params_of(probe, 'asr', 'asr.model', 'dummy.mode') == ['from-toml', 'b']
    assert params_of(probe, 'llm', 'llm.max_tokens', 'dummy.level') == [77, 0.25]

    # Edit the file: one good change, one the node must refuse (out of its range).
    cfg.write_text(cfg.read_text().replace('0.25', '0.5') +
                   '[params.asr]\n"dummy.level" = 7.0\n')
    asr_pid = u.pid('asr')
    u.proc.send_signal(signal.SIGHUP)
    probe.wait_for(lambda: params_of(probe, 'llm', 'dummy.level') == [0.5], 15,
                   'SIGHUP change applied')
    u.wait(lambda: 'reload: applied' in u.log('manager'), 10, 'reload report')
    assert 'rejected 1' in u.log('manager') and 'asr/dummy.level' in u.log('manager')
    assert params_of(probe, 'asr', 'dummy.level') == [0.5]          # unchanged default
    assert u.pid('asr') == asr_pid and state_of(probe, 'asr') == 'active'
    # The change survives a crash: the respawned node reads the updated parameter file.
    old = u.pid('llm')
    os.kill(old, signal.SIGKILL)
    u.wait(lambda: u.pid('llm') not in (None, old) and u.stage('llm').get('phase') == 'active',
           30, 'llm back')
    assert params_of(probe, 'llm', 'dummy.level', 'llm.max_tokens') == [0.5, 77]


def test_restart_loop_is_capped_and_reported(up, probe):
    states = probe.subscribe('assistant/state', AssistantState, qos=STATE_QOS)
    u = up('--set', 'tts:dummy.crash_on_configure=true',
           '--set', 'manager:restart.max_restarts=2',
           '--set', 'manager:restart.backoff_initial_s=0.2',
           stages=[('player', ()), ('tts', ('player',))])
    u.wait(lambda: u.stage('tts').get('phase') == 'failed', 60, 'tts given up')
    probe.wait_for(lambda: states and states[-1].state == AssistantState.ERROR, 10,
                   'ERROR state')
    assert not states[-1].ready and 'restart loop' in states[-1].detail
    assert u.stage('player').get('phase') == 'active'
    u.wait(lambda: 'restart loop, giving up' in u.output(), 30, 'supervisor gives up')
    assert u.stop() == 0


def test_governor_steps_and_memory_survives_llm_restart(up, probe):
    ladder = '["llm:dummy.level=0.1", "llm:dummy.level=0.0"]'
    u = up('--set', f'manager:governor.ladder={ladder}',
           '--set', 'manager:governor.window_turns=1',
           '--set', 'manager:governor.latency_budget_ms=100.0',
           '--set', 'manager:governor.step_up_turns=2',
           '--set', 'manager:governor.cooldown_s=0.0',
           stages=[('llm', ())])
    u.wait_ready(60)
    stamps = probe.publisher('metrics/stamps', StageStamp)
    diags = probe.publisher('/diagnostics', DiagnosticArray)
    probe.wait_for_subscribers(stamps)

    def turn(turn_id, ms):
        now = timeutil.now_ns()
        for stage, t in (('speech_end', now - int(ms * 1e6)), ('first_audible', now)):
            msg = StageStamp(turn_id=turn_id, stage=stage, node='test')
            msg.stamp = timeutil.to_msg(t)
            stamps.publish(msg)

    turn('slow1', 900)                                  # over budget -> step 1
    probe.wait_for(lambda: params_of(probe, 'llm', 'dummy.level') == [0.1], 10, 'step 1')
    u.wait(lambda: u.state().get('governor_step') == 1, 5, 'governor step in state.json')
    assert u.state()['state'] == 'degraded' and 'governor step 1/2' in u.state()['detail']
    # a stage reporting GPU OOM on /diagnostics -> step 2 at once
    arr = DiagnosticArray()
    arr.status = [DiagnosticStatus(name='/llm', message='CUDA out of memory',
                                   level=DiagnosticStatus.ERROR)]
    diags.publish(arr)
    probe.wait_for(lambda: params_of(probe, 'llm', 'dummy.level') == [0.0], 10, 'OOM step')
    # conversation memory: the llm has a history; it survives a kill -9 of the llm
    assert probe.set_params('llm', **{'dummy.say': 'the capital of France is Paris'})[0] \
        .successful
    time.sleep(0.5)
    restored = []
    probe.subscribe('/diagnostics', DiagnosticArray)
    old = u.pid('llm')
    os.kill(old, signal.SIGKILL)
    u.wait(lambda: u.pid('llm') not in (None, old) and u.stage('llm').get('phase') == 'active',
           30, 'llm back')
    # the stepped-down value is re-applied to the new process
    assert params_of(probe, 'llm', 'dummy.level') == [0.0]

    def history_restored():
        for arr in probe.messages['/diagnostics']:
            for st in arr.status:
                if st.name == '/llm':
                    for kv in st.values:
                        if kv.key == 'history':
                            restored.append(kv.value)
        return bool(restored)
    probe.wait_for(history_restored, 10, 'history restored into the new llm')
    assert json.loads(restored[-1]) == ['the capital of France is Paris']
    # healthy turns -> back up the ladder to the baseline value
    for i in range(6):
        turn(f'fast{i}', 10)
        time.sleep(0.1)
    probe.wait_for(lambda: params_of(probe, 'llm', 'dummy.level') == [0.5], 10,
                   'stepped back up to the baseline')


def test_no_orphans_when_wallie_up_is_killed(up):
    u = up(stages=[('player', ())])
    u.wait_ready(60)
    pids = [u.pid('player'), u.pid('manager')]
    u.proc.kill()                      # SIGKILL: no chance to clean up
    u.proc.wait(5)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    assert not any(alive(p) for p in pids)


def test_finalized_stage_is_restarted(up, probe):
    """A node shut down to `finalized` cannot come back by transitions: the manager kills
    its process and the respawned one is brought back to active."""
    from lifecycle_msgs.srv import ChangeState
    u = up(stages=[('player', ())])
    u.wait_ready(60)
    old = u.pid('player')
    req = ChangeState.Request()
    req.transition.id = 7                      # active -> shutdown -> finalized
    assert probe.call(ChangeState, 'player/change_state', req, timeout=10).success
    u.wait(lambda: u.pid('player') not in (None, old) and
           u.stage('player').get('phase') == 'active', 30, 'player restarted')
    assert 'found finalized' in u.log('manager') and 'killing pid' in u.log('manager')
    assert state_of(probe, 'player') == 'active'
