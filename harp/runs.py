"""Runs as a user watches them: how far each run is, and whether the effects are behind the measurements.

Every figure here comes from SQL aggregates over the store's ``runs`` and ``measurements`` tables, one snapshot
each, so watching a run of 10^5 leaves costs the same as watching one of ten.

- :func:`run_progress` lists the runs, newest first, with their progress: for a ``harp measure`` run the leaves
  it set out to measure (``config.leaves``), those whose measurements have landed, the rate and an estimate of
  the time left.
- :func:`pending_measurements` says how many leaves were measured after the effects were last fitted, so a
  user knows when ``harp infer`` is worth rerunning; :func:`rerun_infer` reruns it and records the run, the way
  the ``harp infer`` command does.

Rate and time left. A run spends its first seconds loading the model and scoring the base model, before any
leaf lands, so the rate is taken between the first and the last leaf that landed: ``(done - 1) / (last -
first)`` leaves a second once two have landed, ``1 / (first - started)`` after the first. The time left is
``(planned - done) / rate`` less the time since the last leaf landed, and never below 0.

Quiet runs. A process killed without the chance to record its end (SIGKILL, power loss) leaves its run
``running`` for good. A running run is *quiet* when nothing of it has landed for ``QUIET_INTERVALS`` times its
usual interval between leaves (``1 / rate``), and at least ``QUIET_MIN_S``, counted from its last leaf (or its
start): most likely it is not running any more, and ``harp measure`` run again resumes it.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from harp.bayes import ActiveRule, Effects
    from harp.store import Store

__all__ = [
    "PendingMeasurements",
    "RunProgress",
    "pending_measurements",
    "rerun_infer",
    "run_progress",
    "utc_now",
]

QUIET_INTERVALS = 10.0
QUIET_MIN_S = 15 * 60.0

# Records that a measure run writes about its parts (one per leaf, one for the background reference): they are
# the run's details, not runs of their own.
CHILD_KINDS = ("measure-leaf", "measure-reference")

_PROGRESS_SQL = """
WITH landed AS (
    SELECT run_id, count(DISTINCT leaf_id) AS done, min(created_at) AS first_write, max(created_at) AS last_write
    FROM measurements WHERE run_id IS NOT NULL GROUP BY run_id
)
SELECT r.run_id, r.kind, r.status, r.started_at, r.finished_at,
       json_array_length(json_extract(r.config, '$.leaves')) AS planned,
       json_extract_string(r.config, '$.config_key') AS config_key,
       coalesce(l.done, 0) AS done, l.first_write, l.last_write
FROM runs r LEFT JOIN landed l USING (run_id)
WHERE r.kind NOT IN (SELECT unnest(?::VARCHAR[]))
ORDER BY r.started_at DESC NULLS LAST, r.run_id
LIMIT ?
"""


def utc_now() -> _dt.datetime:
    """Now, naive UTC: the clock the store's timestamps are written in."""
    return _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class RunProgress:
    """One run's record and progress. Times are naive UTC, as the store keeps them.

    ``planned`` is the number of leaves a measure run set out to measure (None for other runs); ``done`` the
    leaves with measurements written under the run's id; ``rate`` leaves a second (None until one landed).
    """

    run_id: str
    kind: str
    status: str
    started_at: _dt.datetime | None
    finished_at: _dt.datetime | None
    planned: int | None
    done: int
    first_write: _dt.datetime | None
    last_write: _dt.datetime | None
    config_key: str | None
    rate: float | None

    @property
    def running(self) -> bool:
        return self.status == "running" and self.finished_at is None

    def elapsed(self, now: _dt.datetime) -> float | None:
        """Seconds from the start to the end (or to ``now`` while running)."""
        if self.started_at is None:
            return None
        end = self.finished_at or now
        return max((end - self.started_at).total_seconds(), 0.0)

    def quiet(self, now: _dt.datetime) -> bool:
        """Whether a running run has been silent too long to be alive (see the module docstring)."""
        last = self.last_write or self.started_at
        if not self.running or last is None:
            return False
        usual = QUIET_INTERVALS / self.rate if self.rate else 0.0
        return (now - last).total_seconds() > max(usual, QUIET_MIN_S)

    def seconds_left(self, now: _dt.datetime) -> float | None:
        """The estimate of the module docstring at ``now`` (naive UTC); None unless a measure run is running
        and has a rate."""
        if not self.running or self.planned is None or self.rate is None:
            return None
        since = (now - self.last_write).total_seconds() if self.last_write is not None else 0.0
        return max((self.planned - self.done) / self.rate - max(since, 0.0), 0.0)


def _rate(
    done: int, started: _dt.datetime | None, first: _dt.datetime | None, last: _dt.datetime | None
) -> float | None:
    if done >= 2 and first is not None and last is not None:
        span = (last - first).total_seconds()
        return (done - 1) / span if span > 0 else None
    if done == 1 and started is not None and first is not None:
        span = (first - started).total_seconds()
        return 1.0 / span if span > 0 else None
    return None


def run_progress(store: Store, *, limit: int = 200) -> list[RunProgress]:
    """The store's runs, newest first, with their progress (see the module docstring).

    Parameters
    ----------
    store : harp.Store
    limit : int, default 200
        At most this many runs, the newest.

    Returns
    -------
    list of RunProgress
    """
    with store.read() as con:
        rows = con.execute(_PROGRESS_SQL, [list(CHILD_KINDS), int(limit)]).fetchall()
    runs = []
    for run_id, kind, status, started, finished, planned, key, done, first, last in rows:
        done = int(done)
        rate = _rate(done, started, first, last)
        runs.append(
            RunProgress(
                run_id=str(run_id),
                kind=str(kind),
                status=str(status),
                started_at=started,
                finished_at=finished,
                planned=None if planned is None else int(planned),
                done=done,
                first_write=first,
                last_write=last,
                config_key=key,
                rate=rate,
            )
        )
    return runs


@dataclass(frozen=True)
class PendingMeasurements:
    """What the effects have not seen yet.

    ``leaves`` counts the leaves with a measurement (under ``config_key`` when the effects name one) newer than
    the effects; ``config_key`` is the configuration the effects were fitted from (None when they do not say);
    ``config_keys`` every configuration the store holds measurements under.
    """

    leaves: int
    config_key: str | None
    config_keys: tuple[str, ...]


def pending_measurements(store: Store) -> PendingMeasurements:
    """How many leaves were measured after the effects were last fitted (one SQL count).

    ``harp infer`` records in ``meta.effects_source`` the time of the newest measurement it fitted
    (``measurements_through``); newer measurements are pending. Effects that do not record it (written by
    ``harp load``, ``harp synth`` or an older version) have pending the measured leaves they do not mark
    measured.
    """
    with store.read() as con:
        row = con.execute("SELECT value FROM meta WHERE key = 'effects_source'").fetchone()
        keys = tuple(
            str(k)
            for (k,) in con.execute("SELECT DISTINCT config_key FROM measurements ORDER BY 1").fetchall()
        )
        source = json.loads(row[0]) if row and row[0] else {}
        source = source if isinstance(source, dict) else {}
        key = source.get("config_key")
        key_filter = "" if key is None else " AND m.config_key = ?"
        params: list[Any] = [] if key is None else [str(key)]
        through = source.get("measurements_through")
        if through:
            query = (
                "SELECT count(DISTINCT m.leaf_id) FROM measurements m WHERE m.created_at > ?::TIMESTAMP"
                + key_filter
            )
            params = [str(through), *params]
        else:
            query = (
                "SELECT count(DISTINCT m.leaf_id) FROM measurements m WHERE NOT EXISTS "
                "(SELECT 1 FROM effects e WHERE e.leaf_id = m.leaf_id AND e.measured)" + key_filter
            )
        count = con.execute(query, params).fetchone()
    return PendingMeasurements(
        leaves=int(count[0]) if count else 0,
        config_key=None if key is None else str(key),
        config_keys=keys,
    )


def rerun_infer(
    store: Store,
    *,
    config_key: str | None = None,
    threshold: float = 1.645,
    prior_sd: float = 0.1,
    hold_out: Sequence[int] | np.ndarray | None = None,
    active_rule: ActiveRule = "any-leaf",
    training_noise: bool = True,
    progress: Callable[[str], None] | None = None,
) -> tuple[Effects, Any]:
    """:func:`harp.load.infer_effects`, recorded as an ``infer`` run (``failed`` when it raises).

    What ``harp infer`` and the app's Runs page call. Arguments as for :func:`harp.load.infer_effects`.
    """
    from harp.load import infer_effects

    run_id = store.add_run(
        "infer",
        {
            "config_key": config_key,
            "threshold": threshold,
            "prior_sd": prior_sd,
            "hold_out": None if hold_out is None else [int(g) for g in hold_out],
            "active_rule": active_rule,
            "training_noise": training_noise,
        },
    )
    tick = time.perf_counter()
    try:
        result = infer_effects(
            store,
            config_key=config_key,
            threshold=threshold,
            prior_sd=prior_sd,
            hold_out=hold_out,
            progress=progress,
            training_noise=training_noise,
            active_rule=active_rule,
        )
    except BaseException:
        store.finish_run(run_id, status="failed")
        raise
    store.finish_run(run_id, timings={"total": time.perf_counter() - tick})
    return result
