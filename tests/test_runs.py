"""harp.runs: a run's progress (leaves done, rate, time left) and the measurements the effects have not seen."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from harp.runs import pending_measurements, rerun_infer, run_progress
from harp.store import Store

T0 = dt.datetime(2026, 1, 2, 3, 4, 5)


def _measure(store: Store, leaf: int, at: dt.datetime, run_id: str, key: str = "k") -> None:
    store.add_measurements(
        [
            {"leaf_id": leaf, "domain_id": d, "phi": 0.01 * (d + 1), "variance": 1e-4, "run_id": run_id,
             "config_key": key, "created_at": at}
            for d in range(3)
        ]
    )  # fmt: skip


def _start(store: Store, kind: str, config: dict, at: dt.datetime, run_id: str) -> str:
    store.add_run(kind, config, run_id=run_id)
    with store.write(rehash=()) as con:
        con.execute("UPDATE runs SET started_at = ? WHERE run_id = ?", [at, run_id])
    return run_id


def test_progress_of_a_running_measure_run_is_hand_computed(tiny_store: Path) -> None:
    store = Store.open(tiny_store)
    _start(store, "hierarchy", {}, T0 - dt.timedelta(hours=1), "tree")
    store.finish_run("tree")
    _start(store, "measure", {"leaves": [0, 1, 2, 3], "config_key": "k"}, T0, "m1")
    for leaf, seconds in ((0, 60), (1, 90), (2, 120)):
        _measure(store, leaf, T0 + dt.timedelta(seconds=seconds), "m1")
        store.add_run("measure-leaf", {"parent_run": "m1"}, run_id=f"m1-leaf-{leaf}")  # a detail, not a run
    [measure, tree] = run_progress(store)
    now = T0 + dt.timedelta(seconds=130)
    assert (measure.run_id, measure.kind, measure.status, measure.running) == (
        "m1",
        "measure",
        "running",
        True,
    )
    assert (measure.planned, measure.done, measure.config_key) == (4, 3, "k")
    # Two leaves landed in the 60 s after the first: 1/30 leaf a second. One left: 30 s, 10 s of them gone.
    assert measure.rate == pytest.approx(1 / 30)
    assert measure.seconds_left(now) == pytest.approx(20.0)
    assert measure.elapsed(now) == pytest.approx(130.0)
    assert (tree.kind, tree.planned, tree.done, tree.rate, tree.seconds_left(now)) == (
        "hierarchy",
        None,
        0,
        None,
        None,
    )
    assert not tree.running and tree.finished_at is not None


@pytest.mark.parametrize(
    ("landed", "now_s", "rate", "left"),
    [
        pytest.param((), 30, None, None, id="nothing-landed"),
        pytest.param((40,), 50, 1 / 40, 3 * 40 - 10, id="one-landed"),
        pytest.param((40, 80, 120, 160), 500, 3 / 120, None, id="all-landed-but-running"),
    ],
)
def test_rate_and_time_left(tiny_store: Path, landed: tuple[int, ...], now_s: int, rate, left) -> None:
    store = Store.open(tiny_store)
    _start(store, "measure", {"leaves": [0, 1, 2, 3]}, T0, "m")
    for leaf, seconds in enumerate(landed):
        _measure(store, leaf, T0 + dt.timedelta(seconds=seconds), "m")
    [run] = run_progress(store)
    now = T0 + dt.timedelta(seconds=now_s)
    assert run.done == len(landed)
    assert run.rate == (None if rate is None else pytest.approx(rate))
    if len(landed) == 4:
        assert run.seconds_left(now) == 0.0  # nothing left, however late
    else:
        assert run.seconds_left(now) == (None if left is None else pytest.approx(left))


def test_a_finished_run_has_no_time_left(tiny_store: Path) -> None:
    store = Store.open(tiny_store)
    _start(store, "measure", {"leaves": [0, 1, 2]}, T0, "m")
    _measure(store, 0, T0 + dt.timedelta(seconds=10), "m")
    store.finish_run("m", status="interrupted")
    [run] = run_progress(store)
    assert (run.status, run.running, run.done, run.planned, run.seconds_left(T0)) == (
        "interrupted",
        False,
        1,
        3,
        None,
    )


@pytest.mark.filterwarnings(
    "ignore::harp.bayes.BayesWarning"
)  # four leaves, two parents: degenerate on purpose
def test_pending_measurements_follow_the_last_fit(tiny_store: Path) -> None:
    store = Store.open(tiny_store)
    # The tiny store's effects were written directly (no fit recorded): leaves 0 and 2 are marked measured.
    _measure(store, 0, T0, "m")
    _measure(store, 1, T0, "m")
    pending = pending_measurements(store)
    assert (pending.leaves, pending.config_key, pending.config_keys) == (1, None, ("k",))

    rerun_infer(store, config_key="k", training_noise=False)
    [infer] = [r for r in store.runs() if r["kind"] == "infer"]
    assert infer["status"] == "done" and infer["config"]["config_key"] == "k"
    source = store.summary(with_hash=False)["effects_source"]
    assert source["measurements_through"] == T0.isoformat(sep=" ")
    assert pending_measurements(store).leaves == 0

    _measure(store, 3, T0 + dt.timedelta(microseconds=1), "m2")
    _measure(store, 2, T0 + dt.timedelta(minutes=5), "m2")
    _measure(store, 2, T0 + dt.timedelta(minutes=6), "m3", key="other")  # another configuration: not pending
    assert pending_measurements(store).leaves == 2
    assert pending_measurements(store).config_keys == ("k", "other")


def test_a_failed_rerun_is_recorded_and_changes_nothing(tiny_store: Path) -> None:
    store = Store.open(tiny_store)
    _measure(store, 0, T0, "m")
    before = store.content_hash()
    with pytest.raises(ValueError, match="config_key 'nope' has no measurements"):
        rerun_infer(store, config_key="nope")
    [infer] = [r for r in store.runs() if r["kind"] == "infer"]
    assert infer["status"] == "failed" and infer["finished_at"] is not None
    assert store.content_hash() == before


@pytest.mark.parametrize(
    ("landed", "silent_s", "quiet"),
    [
        pytest.param((), 15 * 60 - 1, False, id="starting"),
        pytest.param((), 15 * 60 + 1, True, id="never-landed"),
        pytest.param((0, 600), 10 * 600 - 1, False, id="slow-leaves-within-ten-intervals"),
        pytest.param((0, 600), 10 * 600 + 1, True, id="slow-leaves-past-ten-intervals"),
        pytest.param((0, 10), 15 * 60 + 1, True, id="fast-leaves-past-the-minimum"),
    ],
)
def test_a_running_run_silent_too_long_is_quiet(tiny_store: Path, landed, silent_s, quiet) -> None:
    store = Store.open(tiny_store)
    _start(store, "measure", {"leaves": [0, 1, 2, 3]}, T0, "m")
    for leaf, seconds in enumerate(landed):
        _measure(store, leaf, T0 + dt.timedelta(seconds=seconds), "m")
    [run] = run_progress(store)
    last = T0 + dt.timedelta(seconds=landed[-1] if landed else 0)
    assert run.quiet(last + dt.timedelta(seconds=silent_s)) is quiet
    store.finish_run("m")
    assert run_progress(store)[0].quiet(last + dt.timedelta(days=9)) is False  # finished: never quiet
