"""The driver: measure leaves into a store, resuming where a run stopped (:func:`run_measurements`).

A measurement is keyed by ``config_key`` (:meth:`harp.measure.config.MeasureConfig.config_key`).
:func:`run_measurements` skips the leaves the store already holds under that key and writes each finished leaf at
once (all its domains in one transaction), so a killed run loses at most the leaves in flight. The executor
trains and scores (:mod:`harp.measure.executors`); the driver alone computes phi
(:func:`harp.measure.effects.paired_effects`) and writes the store.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from harp.data import EvalSet, TrainExamples, TrainingPool
from harp.measure.config import Device, ExecutorName, MeasureConfig, model_id
from harp.measure.effects import paired_effects
from harp.measure.executors import Executor, check_adapters_per_batch, make_executor
from harp.measure.training import background_fingerprint, background_points
from harp.measure.worker import LeafTask

if TYPE_CHECKING:
    from harp.store import Store

__all__ = ["MeasureReport", "leaf_members", "record_domains", "resolve_config_key", "run_measurements"]


@dataclass
class MeasureReport:
    """What :func:`run_measurements` did."""

    run_id: str
    config_key: str
    measured: list[int]
    skipped: list[int]
    base: np.ndarray
    timings: dict[str, float]


def leaf_members(store: Store, n_pool: int) -> list[np.ndarray]:
    """The point ids of every leaf, most central first, checked to be rows of a pool of ``n_pool`` examples."""
    points = store.read_table("points").select(["point_id", "leaf_id", "rank_in_leaf"]).to_pydict()
    point_id = np.asarray(points["point_id"], dtype=np.int64)
    leaf_id = np.asarray(points["leaf_id"], dtype=np.int64)
    order = np.lexsort((np.asarray(points["rank_in_leaf"]), leaf_id))
    point_id, leaf_id = point_id[order], leaf_id[order]
    if point_id.size and (point_id.max() >= n_pool):
        bad = int(point_id[np.argmax(point_id >= n_pool)])
        raise ValueError(
            f"the store holds point id {bad}, but the training pool has {n_pool} examples: point ids must be "
            "row numbers of the training pool"
        )
    n_leaves = int(leaf_id.max()) + 1 if leaf_id.size else 0
    return np.split(point_id, np.cumsum(np.bincount(leaf_id, minlength=n_leaves))[:-1])


def record_domains(store: Store, eval_set: EvalSet, base: np.ndarray) -> np.ndarray:
    """Write the eval set's domains and base scores b_d to the store; keep the active flags when names match."""
    import pyarrow as pa

    b = np.bincount(eval_set.domain, weights=base, minlength=eval_set.n_domains) / eval_set.eval_size()
    stored: pa.Table = store.read_table("domains").sort_by("domain_id")
    names = [str(name) for name in stored.column("name").to_pylist()]
    if names and names != eval_set.domain_names:
        raise ValueError(
            f"the store's domains {names[:5]}... differ from the eval set's {eval_set.domain_names[:5]}...: "
            "measure with the same eval set, or use a new store"
        )
    stored_base = np.asarray(stored.column("base").to_pylist(), dtype=np.float64)
    if not names or not np.allclose(stored_base, b, rtol=0, atol=1e-12):
        active = stored.column("active").to_pylist() if names else None
        store.write_domains(eval_set.domain_names, np.clip(b, 0, 1), eval_set.eval_size(), active)
    return b


def run_measurements(
    store: Store,
    model_name_or_path: str | os.PathLike[str],
    train: TrainingPool,
    eval_set: EvalSet,
    leaves: Sequence[int] | np.ndarray,
    config: MeasureConfig | None = None,
    *,
    executor: ExecutorName | Executor = "inprocess",
    devices: Sequence[Device] | None = None,
    workers_per_device: int = 1,
    address: str | None = None,
    gpus_per_worker: float | None = None,
    max_examples_per_leaf: int | None = None,
    adapters_per_batch: int = 1,
    log: Callable[[str], None] | None = None,
) -> MeasureReport:
    """Measure ``leaves`` (skipping those the store holds under the same ``config_key``) and store each at once.

    Parameters
    ----------
    store : Store
        Holds the tree (its point ids are rows of ``train``); the domains are written from ``eval_set``.
    model_name_or_path : str or Path
    train : TrainingPool
    eval_set : EvalSet
    leaves : sequence of int
        Leaf ids to measure, in order (for example from
        :func:`harp.measure.representatives.choose_representatives`).
    config : MeasureConfig, optional
    executor : {"inprocess", "process", "ray"} or Executor
        Where to train; see :mod:`harp.measure.executors`. An Executor instance is used as given (and not closed).
    devices : sequence of str or int, optional
        Devices of the workers (``[0, 1]``, ``["cpu", "cpu"]``); for Ray, its length is the number of workers.
    workers_per_device : int, default 1
        Adapters trained at once on each device.
    address : str, optional
        The Ray cluster's address.
    max_examples_per_leaf : int, optional
        Train on at most the first this many (most central) examples of a leaf.
    adapters_per_batch : int, default 1
        K: each worker trains K leaves' adapters side by side in one forward/backward pass
        (:mod:`harp.measure.multi_lora`) and writes the K results when the group finishes. An execution detail
        like the executor: the measurements keep the same ``config_key``. Only with an executor given by name (an
        Executor instance carries its own).
    log : callable, optional
        Receives one line of progress per event.

    Returns
    -------
    MeasureReport
    """
    config = MeasureConfig() if config is None else config
    adapters_per_batch = check_adapters_per_batch(adapters_per_batch)
    if not isinstance(executor, str) and adapters_per_batch != 1:
        raise ValueError(
            f"adapters_per_batch={adapters_per_batch} applies to an executor given by name; pass it to the "
            "executor you built instead"
        )
    say = log or (lambda message: None)
    model = str(model_name_or_path)
    key, background_ids, background, background_key = resolve_config_key(
        store, model, train, eval_set, config, say
    )
    members = leaf_members(store, len(train))
    wanted = [int(g) for g in np.asarray(leaves, dtype=np.int64).ravel()]
    for g in wanted:
        if not 0 <= g < len(members):
            raise ValueError(f"leaves must be leaf ids in 0..{len(members) - 1}, got {g}")
    if len(set(wanted)) != len(wanted):
        raise ValueError("leaves lists a leaf more than once")
    done = set(store.measured_leaves(key).tolist())
    todo = [g for g in wanted if g not in done]
    skipped = [g for g in wanted if g in done]
    say(f"config {key}: {len(todo)} leaves to measure, {len(skipped)} already measured")
    run_config = {
        "measure_config": config.to_dict(),
        "config_key": key,
        "model": model,
        "eval_set": eval_set.path,
        "eval_fingerprint": eval_set.fingerprint(),
        "executor": executor if isinstance(executor, str) else type(executor).__name__,
        "devices": [str(device) for device in devices or []],
        "workers_per_device": workers_per_device,
        "adapters_per_batch": adapters_per_batch,
        "leaves": todo,
    }
    if config.uses_background:
        run_config["background"] = {
            "size": int(background_ids.size),
            "seed": config.background_seed,
            "fingerprint": background_key,
        }
    run_id = store.add_run("measure", run_config)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    measured: list[int] = []
    status = "failed"
    owned = isinstance(executor, str)
    engine: Executor | None = None
    try:
        engine = (
            make_executor(
                executor,  # type: ignore[arg-type]
                model,
                eval_set,
                config,
                devices=devices,
                workers_per_device=workers_per_device,
                address=address,
                gpus_per_worker=gpus_per_worker,
                adapters_per_batch=adapters_per_batch,
                background=background,
            )
            if owned
            else executor  # type: ignore[assignment]
        )
        assert engine is not None
        timings["start_s"] = time.perf_counter() - started
        base = engine.base()
        timings["base_s"] = time.perf_counter() - started - timings["start_s"]
        record_domains(store, eval_set, base)
        say(f"base model scored on {len(eval_set)} questions in {timings['base_s']:.1f}s")
        reference = base
        if config.uses_background and todo:
            tick = time.perf_counter()
            reference = engine.reference()
            timings["reference_s"] = time.perf_counter() - tick
            _record_reference(store, run_id, key, reference, base, eval_set)
            say(
                f"reference run ({config.protocol}: {background_ids.size} background examples, no leaf) in "
                f"{timings['reference_s']:.1f}s"
            )
        tasks = (
            LeafTask(
                g, train.examples(members[g][:max_examples_per_leaf] if max_examples_per_leaf else members[g])
            )
            for g in todo
        )
        for result in engine.run(tasks):
            phi, variance, n_eval = paired_effects(
                result.scores, reference, eval_set.domain, eval_set.n_domains
            )
            keep = n_eval > 0
            rows = {
                "leaf_id": np.full(int(keep.sum()), result.leaf_id),
                "domain_id": np.flatnonzero(keep),
                "phi": phi[keep],
                "variance": variance[keep],
                "n_eval": n_eval[keep],
                "run_id": [run_id] * int(keep.sum()),
                "config_key": [key] * int(keep.sum()),
            }
            record = {
                "run_id": f"{run_id}-leaf-{result.leaf_id}",
                "kind": "measure-leaf",
                "config": {
                    "leaf_id": result.leaf_id,
                    "config_key": key,
                    "parent_run": run_id,
                    "worker": result.worker,
                    "hardware": result.hardware,
                },
                "timings": result.timings,
            }
            store.add_measurements(rows, record=record)  # the leaf's values and its record, together
            measured.append(result.leaf_id)
            say(
                f"leaf {result.leaf_id} measured ({len(measured)}/{len(todo)}) in "
                f"{result.timings.get('train_s', 0.0) + result.timings.get('eval_s', 0.0):.1f}s; "
                f"mean phi {phi[keep].mean():+.4f}"
            )
        status = "done"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        if owned and engine is not None:
            engine.close()
        timings["total_s"] = time.perf_counter() - started
        timings["leaves"] = float(len(measured))
        store.finish_run(run_id, status=status, timings=timings)
    return MeasureReport(run_id, key, measured, skipped, base, timings)


def resolve_config_key(
    store: Store,
    model_name_or_path: str | os.PathLike[str],
    train: TrainingPool,
    eval_set: EvalSet,
    config: MeasureConfig,
    say: Callable[[str], None] | None = None,
) -> tuple[str, np.ndarray, TrainExamples, str]:
    """The ``config_key`` measurements of ``config`` are stored under, the background's point ids, its examples
    and their fingerprint (:func:`background_fingerprint`, hashed into the key).

    A store measured before ``eval_batch_size`` left the key keeps its older key (see
    :meth:`MeasureConfig.config_key`), so the store holds one key per configuration.
    """
    model = str(model_name_or_path)
    background_ids = background_points(len(train), config)
    background = train.examples(background_ids)
    background_key = background_fingerprint(background)
    key = config.config_key(model_id(model), eval_set.fingerprint(), background_key)
    legacy = config.legacy_config_key(model_id(model), eval_set.fingerprint(), background_key)
    if legacy != key and store.measured_leaves(legacy).size and not store.measured_leaves(key).size:
        if say is not None:
            say(f"resuming under the older key {legacy} (made when eval_batch_size was part of config_key)")
        key = legacy
    return key, background_ids, background, background_key


def _record_reference(
    store: Store, run_id: str, key: str, reference: np.ndarray, base: np.ndarray, eval_set: EvalSet
) -> None:
    """A run record of the background-only reference: its mean score per domain, next to the base model's."""
    count = np.maximum(np.bincount(eval_set.domain, minlength=eval_set.n_domains), 1)
    means = np.bincount(eval_set.domain, weights=reference, minlength=eval_set.n_domains) / count
    base_means = np.bincount(eval_set.domain, weights=base, minlength=eval_set.n_domains) / count
    record = store.add_run(
        "measure-reference",
        {
            "config_key": key,
            "parent_run": run_id,
            "domains": eval_set.domain_names,
            "reference": [float(x) for x in means],
            "base": [float(x) for x in base_means],
        },
        run_id=f"{run_id}-reference",
    )
    store.finish_run(record, status="done")
