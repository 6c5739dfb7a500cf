"""EngineSlot without ROS: background load-and-swap, latest request wins, closes."""

from __future__ import annotations

import threading
import time

import pytest

from wallie_common.engine_slot import EngineSlot


class Engine:
    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def __repr__(self) -> str:
        return f'Engine({self.name})'


class Loads:
    """Builds for the slot; `held(name)` is one that waits until `release(name)`."""

    def __init__(self) -> None:
        self.built: list[str] = []
        self.made: dict[str, Engine] = {}
        self.gates: dict[str, threading.Event] = {}
        self.started: dict[str, threading.Event] = {}

    def build(self, name: str, fail: bool = False, held: bool = False):
        if held:
            self.gates[name] = threading.Event()
            self.started[name] = threading.Event()

        def run() -> Engine:
            if held:
                self.started[name].set()
                assert self.gates[name].wait(5)
            self.built.append(name)
            if fail:
                raise RuntimeError(f'{name} does not load')
            self.made[name] = Engine(name)
            return self.made[name]
        return run

    def release(self, name: str) -> None:
        self.gates[name].set()


class Report:
    def __init__(self) -> None:
        self.loaded: list[str] = []
        self.failed: list[str] = []
        self.done = threading.Event()

    def on_loaded(self, engine: Engine) -> None:
        self.loaded.append(engine.name)
        self.done.set()

    def on_failed(self, exc: Exception) -> None:
        self.failed.append(str(exc))
        self.done.set()


def idle(slot: EngineSlot, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while slot.loading and time.monotonic() < deadline:
        time.sleep(0.002)
    return not slot.loading


@pytest.fixture
def rig():
    slot: EngineSlot[Engine] = EngineSlot('test')
    old = Engine('old')
    slot.set(old)
    yield slot, old, Loads(), Report()
    slot.close(wait_s=5)


def test_a_reload_swaps_the_new_engine_in_and_closes_the_old(rig):
    slot, old, loads, report = rig
    assert slot.reload(loads.build('new'), report.on_loaded, report.on_failed)
    assert report.done.wait(5)
    assert slot.current is not None and slot.current.name == 'new'
    assert old.closed and not slot.current.closed
    assert report.loaded == ['new'] and report.failed == []


def test_the_load_runs_off_the_calling_thread(rig):
    slot, old, loads, report = rig
    slot.reload(loads.build('slow', held=True), report.on_loaded)
    assert loads.started['slow'].wait(5)      # reload() returned while the build waits
    assert slot.current is old and slot.loading
    loads.release('slow')
    assert report.done.wait(5) and slot.current.name == 'slow'


def test_the_latest_of_overlapping_reloads_wins(rig):
    slot, old, loads, report = rig
    slot.reload(loads.build('first', held=True), report.on_loaded, report.on_failed)
    assert loads.started['first'].wait(5)
    slot.reload(loads.build('second'), report.on_loaded, report.on_failed)
    slot.reload(loads.build('third'), report.on_loaded, report.on_failed)
    loads.release('first')
    assert report.done.wait(5) and idle(slot)
    assert loads.built == ['first', 'third']  # one load at a time; 'second' was skipped
    assert slot.current.name == 'third' and report.loaded == ['third']
    assert loads.made['first'].closed and old.closed


def test_an_engine_superseded_while_it_loaded_is_closed_not_installed():
    installed: list[str] = []
    slot: EngineSlot[Engine] = EngineSlot('test', install=lambda e: installed.append(e.name))
    slot.set(Engine('old'))
    loads, report = Loads(), Report()
    slot.reload(loads.build('first', held=True), report.on_loaded)
    assert loads.started['first'].wait(5)
    slot.reload(loads.build('second'), report.on_loaded)
    loads.release('first')
    assert report.done.wait(5) and idle(slot)
    assert loads.made['first'].closed and not loads.made['second'].closed
    assert installed == ['second'] and report.loaded == ['second']
    slot.close()


def test_a_failing_load_keeps_the_old_engine_and_reports(rig):
    slot, old, loads, report = rig
    slot.reload(loads.build('broken', fail=True), report.on_loaded, report.on_failed)
    assert report.done.wait(5) and idle(slot)
    assert report.failed == ['broken does not load'] and report.loaded == []
    assert slot.current is old and not old.closed


def test_a_superseded_failure_is_not_reported(rig):
    slot, old, loads, report = rig
    slot.reload(loads.build('broken', fail=True, held=True), report.on_loaded,
                report.on_failed)
    assert loads.started['broken'].wait(5)
    slot.reload(loads.build('good'), report.on_loaded, report.on_failed)
    loads.release('broken')
    assert report.done.wait(5) and idle(slot)
    assert report.failed == [] and report.loaded == ['good']


def test_install_runs_before_the_old_engine_is_retired():
    events: list[str] = []
    slot: EngineSlot[Engine] = EngineSlot(
        'test', install=lambda e: events.append(f'install {e.name}'),
        retire=lambda e: events.append(f'retire {e.name}'))
    old = Engine('old')
    slot.set(old)
    done = threading.Event()
    slot.reload(lambda: Engine('new'), lambda e: (events.append('loaded'), done.set()))
    assert done.wait(5)
    assert events == ['install new', 'retire old', 'loaded']
    assert not old.closed                   # retire took it over instead of closing it
    slot.close()
    assert slot.current is None


def test_close_closes_the_engine_and_refuses_reloads(rig):
    slot, old, loads, report = rig
    slot.close()
    assert old.closed and slot.current is None
    assert not slot.reload(loads.build('late'), report.on_loaded)
    assert loads.built == [] and not slot.loading


def test_no_swap_after_close(rig):
    slot, old, loads, report = rig
    slot.reload(loads.build('late', held=True), report.on_loaded, report.on_failed)
    assert loads.started['late'].wait(5)
    slot.close()
    assert old.closed
    threading.Timer(0.05, loads.release, ('late',)).start()
    slot.close(wait_s=5)                      # waits for the load in flight to end
    assert not slot.loading
    assert loads.made['late'].closed and slot.current is None
    assert report.loaded == [] and report.failed == []


def test_a_load_from_before_a_close_is_not_swapped_into_the_reopened_slot(rig):
    slot, old, loads, report = rig
    slot.reload(loads.build('stale', held=True), report.on_loaded)
    assert loads.started['stale'].wait(5)
    slot.close()
    again = Engine('again')
    slot.set(again)                           # configured again while 'stale' loads
    loads.release('stale')
    assert idle(slot)
    assert loads.made['stale'].closed and slot.current is again and report.loaded == []


def test_deferred_engines_wait_for_swap_and_only_the_latest_is_kept():
    slot: EngineSlot[Engine] = EngineSlot('test', deferred=True)
    old = Engine('old')
    slot.set(old)
    loads, report = Loads(), Report()
    slot.reload(loads.build('first'), report.on_loaded)
    assert report.done.wait(5) and idle(slot)
    first = slot.pending
    assert first is not None and slot.current is old      # loaded, not yet swapped in
    report.done.clear()
    slot.reload(loads.build('second'), report.on_loaded)
    assert report.done.wait(5) and idle(slot)
    assert first.closed and slot.pending.name == 'second'
    new = slot.swap()
    assert new is not None and new.name == 'second' and slot.current is new
    assert old.closed and slot.pending is None and slot.swap() is None
    assert report.loaded == ['first', 'second']
    slot.reload(loads.build('third'), report.on_loaded)
    assert idle(slot)
    third = slot.pending
    slot.close()                              # closes the current and the pending one
    assert new.closed and third.closed


def test_a_raising_callback_does_not_stop_later_reloads(rig):
    slot, old, loads, report = rig

    def bad(engine: Engine) -> None:
        raise RuntimeError('owner bug')
    slot.reload(loads.build('one'), bad)
    assert idle(slot) and slot.current.name == 'one'
    slot.reload(loads.build('two'), report.on_loaded)
    assert report.done.wait(5) and slot.current.name == 'two'
