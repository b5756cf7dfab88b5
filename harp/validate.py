"""Mixture validation, the training side: finetune on random unions of measured leaves and store what they did.

Both envelopes predict a set of leaves from effects measured one leaf at a time. Whether those effects add up
is a property of the pool and of the measurement protocol, so it is measured: :func:`validate_mixtures` draws
random *mixtures* S of measured leaves (:func:`harp.mixtures.draw_mixtures`), trains on the union of each S's
examples exactly as a leaf is measured under the same :class:`harp.measure.MeasureConfig`, pairs the scores with
the same reference (the base model, or the background-only run of a background protocol), and stores the
measured effect ``x_d(S)`` next to each envelope's prediction ``p_d(S)`` from the leaves' measured effects
(:func:`harp.mixtures.predict_mixture`) in the store's ``mixtures`` table. :func:`harp.mixtures.mixture_report`
then says how well each envelope predicts (correlation and RMSE of the utility gain, sign agreement per domain).

A mixture is measured like one leaf whose examples are the union's, in leaf order and each leaf's members most
central first. Under the one-pass protocols (continuation, in-mixture) the union is simply longer. A
base-anchored leaf trains a fixed ``steps``; a union of many leaves gets ``max(steps, ceil(n / batch_size))``
steps, one pass over its n examples, since a set is what the selection will finetune on.

Mixtures already in the store under the same ``config_key`` with the same leaves are not measured again, so a
killed validation resumes where it stopped.

*Region measurements* use the same machinery on given sets instead of random ones: ``regions="parent"`` (or
``"large"``) measures the union of every parent's (large node's) leaves, measured or not, and
:func:`region_effects` reads them back as each leaf's share of its region's effect. A region holds several leaves'
examples, so its effect inside a mixture is larger than the run-to-run noise where one leaf's is not (the demo's
round-2 reliability check, README "Does it help?").
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from harp._validation import is_integer
from harp.data import EvalSet, TrainExamples, TrainingPool
from harp.measure import (
    Device,
    ExecutorName,
    LeafTask,
    MeasureConfig,
    leaf_members,
    make_executor,
    paired_effects,
    resolve_config_key,
)
from harp.objective import utility

if TYPE_CHECKING:
    from harp.store import Store

__all__ = [
    "MIXTURE_SEED",
    "REGION_LEVELS",
    "ValidationReport",
    "default_sizes",
    "measured_effects",
    "region_effects",
    "region_leaves",
    "validate_mixtures",
]

#: The levels of the tree whose regions :func:`validate_mixtures` can measure whole.
REGION_LEVELS = ("parent", "large")

#: Mixture k trains with data-order seed ``MIXTURE_SEED + k`` (no leaf id reaches it).
MIXTURE_SEED = 2**41


@dataclass
class ValidationReport:
    """What :func:`validate_mixtures` did: the mixtures measured now and skipped, and the report over all the
    store's mixtures of ``config_key`` (:func:`harp.mixtures.mixture_report`)."""

    run_id: str
    config_key: str
    measured: list[list[int]]
    skipped: list[list[int]]
    report: dict[str, Any]
    timings: dict[str, float]


def default_sizes(n_mixtures: int, max_size: int, n_measured: int) -> list[int]:
    """``n_mixtures`` mixture sizes spread evenly on a log scale from 2 to ``max_size`` leaves (capped at the
    measured leaves), smallest first."""
    if not is_integer(n_mixtures) or n_mixtures < 1:
        raise ValueError(f"n_mixtures must be an integer >= 1, got {n_mixtures!r}")
    if not is_integer(max_size) or max_size < 2:
        raise ValueError(f"max_size must be an integer >= 2, got {max_size!r}")
    if n_measured < 2:
        raise ValueError(f"mixtures need at least 2 measured leaves, the store has {n_measured}")
    top = min(max_size, n_measured)
    sizes = np.geomspace(2, top, n_mixtures) if n_mixtures > 1 else np.array([top])
    return [int(round(size)) for size in sizes]


def measured_effects(store: Store, config_key: str, n_leaves: int, n_domains: int) -> np.ndarray:
    """The raw measured effects of ``config_key``, shape (n_leaves, n_domains), NaN where not measured
    (no empirical Bayes: what the measurements say, leaf by leaf)."""
    from harp.bayes import table_matrix

    rows = store.read_table("measurements")
    keep = np.asarray([key == config_key for key in rows["config_key"].to_pylist()], dtype=bool)
    phi, _ = table_matrix(rows.filter(keep), n_leaves, n_domains)
    return phi


def region_leaves(store: Store, level: str) -> list[np.ndarray]:
    """The leaf ids of every region of the tree at ``level`` ("parent" or "large"), by region id, each sorted.

    Regions without leaves are left out.
    """
    if level not in REGION_LEVELS:
        raise ValueError(f"regions must be one of {', '.join(REGION_LEVELS)}, got {level!r}")
    leaves = store.read_table("leaves").select(["leaf_id", "parent_id"]).to_pydict()
    leaf_id = np.asarray(leaves["leaf_id"], dtype=np.int64)
    region = np.asarray(leaves["parent_id"], dtype=np.int64)
    if level == "large":
        parents = store.read_table("parents").select(["parent_id", "large_id"]).to_pydict()
        large_of = dict(zip(parents["parent_id"], parents["large_id"], strict=True))
        region = np.asarray([large_of[int(p)] for p in region], dtype=np.int64)
    return [np.sort(leaf_id[region == r]) for r in np.unique(region)]


def region_effects(store: Store, config_key: str, level: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-leaf effects from region measurements: each leaf gets its share of its region's measured effect.

    A region's measured effect ``x_d(R)`` (its union trained inside the mixture, minus the reference) is spread
    over its leaves by their number of examples: ``phi[g, d] = x_d(R) * n_g / n_R``. So a leaf's utility effect
    per example is its region's, and :func:`harp.prune.prune_select` with the per-example mean as threshold keeps
    whole regions that do better than an average chunk of the pool.

    Returns
    -------
    phi : ndarray of shape (n_leaves, n_domains)
        NaN for the leaves of regions not measured under ``config_key``.
    measured : ndarray of bool, shape (n_leaves,)
        Whether the leaf's region was measured.
    """
    from harp.mixtures import stored_mixtures

    regions = region_leaves(store, level)
    sizes = store.read_table("leaves").select(["leaf_id", "size"]).to_pydict()
    size = np.zeros(max(sizes["leaf_id"], default=-1) + 1, dtype=np.float64)
    size[np.asarray(sizes["leaf_id"], dtype=np.int64)] = np.asarray(sizes["size"], dtype=np.float64)
    n_domains = store.read_table("domains").num_rows
    phi = np.full((size.size, n_domains), np.nan)
    table = store.mixtures(config_key)
    if table.num_rows:
        mixtures = stored_mixtures(table.to_pydict(), n_domains)
        by_leaves = {tuple(int(g) for g in leaves): k for k, leaves in enumerate(mixtures.leaves)}
        for leaves in regions:
            k = by_leaves.get(tuple(int(g) for g in leaves))
            if k is not None:
                total = size[leaves].sum()
                phi[leaves] = mixtures.measured[k][None, :] * (size[leaves] / total)[:, None]
    measured = np.asarray(~np.isnan(phi).all(axis=1), dtype=bool)
    return phi, measured


def _stored_report(store: Store, config_key: str, weights: np.ndarray) -> dict[str, Any]:
    from harp.mixtures import mixture_report, stored_mixtures

    table = store.mixtures(config_key)
    if table.num_rows == 0:
        return {"n_mixtures": 0}
    mixtures = stored_mixtures(table.to_pydict(), weights.size)
    return mixture_report(mixtures.measured, mixtures.predicted, weights)


def validate_mixtures(
    store: Store,
    model_name_or_path: str | os.PathLike[str],
    train: TrainingPool,
    eval_set: EvalSet,
    config: MeasureConfig | None = None,
    *,
    sizes: Sequence[int] | None = None,
    n_mixtures: int = 12,
    max_size: int = 40,
    seed: int = 0,
    weights: np.ndarray | None = None,
    config_key: str | None = None,
    executor: ExecutorName = "inprocess",
    devices: Sequence[Device] | None = None,
    workers_per_device: int = 1,
    address: str | None = None,
    gpus_per_worker: float | None = None,
    adapters_per_batch: int = 1,
    max_examples_per_leaf: int | None = None,
    regions: str | None = None,
    log: Callable[[str], None] | None = None,
) -> ValidationReport:
    """Measure random mixtures of the leaves measured under ``config`` and store them with both predictions.

    Parameters
    ----------
    store : Store
        Holds the tree, the domains and measurements under ``config``'s key (run :func:`harp.measure.run_measurements`
        with the same arguments first).
    model_name_or_path, train, eval_set, config
        As for :func:`harp.measure.run_measurements`; they decide the ``config_key`` whose leaves are mixed.
    sizes : sequence of int, optional
        Leaves per mixture; default :func:`default_sizes` of ``n_mixtures`` and ``max_size``.
    n_mixtures, max_size : int
        Used when ``sizes`` is not given.
    seed : int, default 0
        Seed of the draws (:func:`harp.mixtures.draw_mixtures`).
    weights : ndarray of shape (n_domains,), optional
        Domain weights of the report's utility gain; default: active domains 1, others 0 (all 1 if none is
        active), as ``harp select`` weighs them.
    config_key : str, optional
        Mix the leaves measured under this key instead of the key ``config`` gives (a store measured elsewhere,
        where the model's folder had another name); ``config`` must still say how they were trained.
    executor, devices, workers_per_device, address, gpus_per_worker, adapters_per_batch, max_examples_per_leaf
        As for :func:`harp.measure.run_measurements`.
    regions : {"parent", "large"}, optional
        Measure the union of every region's leaves at this level of the tree (:func:`region_leaves`) instead of
        random mixtures; ``sizes``, ``n_mixtures``, ``max_size`` and ``seed`` are then unused, and the leaves need
        not all have been measured (the predictions count an unmeasured leaf as no effect; the store needs its
        domains, which any ``harp measure`` run under the config writes). Read the results with
        :func:`region_effects`.
    log : callable, optional
        Receives one line of progress per event.

    Returns
    -------
    ValidationReport
    """
    from harp.mixtures import draw_mixtures, predict_mixture
    from harp.objective import default_weights

    config = MeasureConfig() if config is None else config
    say = log or (lambda message: None)
    model = str(model_name_or_path)
    key, background_ids, background, _ = resolve_config_key(store, model, train, eval_set, config, say)
    if config_key is not None:
        if not store.measured_leaves(config_key).size:
            raise ValueError(f"config_key {config_key!r} has no measurements in {store.path}")
        key = config_key
    if regions is not None and regions not in REGION_LEVELS:
        raise ValueError(f"regions must be one of {', '.join(REGION_LEVELS)}, got {regions!r}")
    measured_leaves = store.measured_leaves(key)
    if regions is None and measured_leaves.size < 2:
        raise ValueError(
            f"{store.path} holds {measured_leaves.size} leaves measured under config {key}: measure at least 2 "
            "with the same model, pool, eval set and config first (`harp measure`)"
        )
    domains = store.read_table("domains").sort_by("domain_id")
    names = [str(name) for name in domains["name"].to_pylist()]
    if not names:
        raise ValueError(
            f"{store.path} has no domains yet: measure at least one leaf with the same model, pool, eval set and "
            "config first (`harp measure`; it scores the base model and writes the domains)"
        )
    if names != eval_set.domain_names:
        raise ValueError(
            f"the store's domains {names[:5]}... differ from the eval set's {eval_set.domain_names[:5]}...: "
            "validate with the eval set the leaves were measured on"
        )
    base = np.asarray(domains["base"].to_pylist(), dtype=np.float64)
    if weights is None:
        weights = default_weights(np.asarray(domains["active"].to_pylist(), dtype=bool))
    members = leaf_members(store, len(train))
    # Mixtures hold measured leaves only; a domain a leaf has no eval question of counts as no effect.
    phi = np.nan_to_num(measured_effects(store, key, len(members), len(names)), nan=0.0)
    if regions is not None:
        mixtures = region_leaves(store, regions)
        sizes = [int(leaves.size) for leaves in mixtures]
    else:
        if sizes is None:
            sizes = default_sizes(n_mixtures, max_size, int(measured_leaves.size))
        mixtures = draw_mixtures(measured_leaves, list(sizes), seed=seed)
    stored = store.mixtures(key).to_pydict()
    done = {json.dumps(json.loads(text)) for text in stored["leaves"]}
    todo = [k for k, leaves in enumerate(mixtures) if json.dumps(leaves.tolist()) not in done]
    skipped = [mixtures[k].tolist() for k in range(len(mixtures)) if k not in set(todo)]
    say(f"config {key}: {len(todo)} mixtures to measure, {len(skipped)} already in the store")

    def examples_of(leaves: np.ndarray) -> TrainExamples:
        ids = [members[g][:max_examples_per_leaf] if max_examples_per_leaf else members[g] for g in leaves]
        return train.examples(np.concatenate(ids))  # a tokenised pool's own tokens, else (prompt, response)

    tasks: list[LeafTask] = []
    for k in todo:
        examples = examples_of(mixtures[k])
        steps = None
        if not config.uses_background:
            steps = max(config.steps, math.ceil(len(examples) / config.batch_size))
        tasks.append(LeafTask(MIXTURE_SEED + k, examples, steps))
    run_id = store.add_run(
        "validate",
        {
            "config_key": key,
            "measure_config": config.to_dict(),
            "model": model,
            "eval_fingerprint": eval_set.fingerprint(),
            "seed": seed,
            "regions": regions,
            "sizes": [int(size) for size in sizes],
            "mixtures": [mixtures[k].tolist() for k in todo],
            "executor": executor,
            "adapters_per_batch": adapters_per_batch,
        },
    )
    started = time.perf_counter()
    timings: dict[str, float] = {}
    measured: list[list[int]] = []
    status = "failed"
    engine = None
    try:
        if tasks:
            engine = make_executor(
                executor,
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
            timings["start_s"] = time.perf_counter() - started
            reference = engine.reference()
            timings["reference_s"] = time.perf_counter() - started - timings["start_s"]
            say(f"reference scored ({config.protocol}) in {timings['reference_s']:.1f}s")
            by_seed = {task.leaf_id: (k, len(task.examples)) for k, task in zip(todo, tasks, strict=True)}
            for result in engine.run(tasks):
                k, n_points = by_seed[result.leaf_id]
                leaves = mixtures[k]
                effect, variance, _ = paired_effects(
                    result.scores, reference, eval_set.domain, eval_set.n_domains
                )
                predicted_c = predict_mixture(phi, base, leaves, envelope="C")
                predicted_e = predict_mixture(phi, base, leaves, envelope="E")
                store.add_mixture(run_id, key, leaves, n_points, effect, variance, predicted_c, predicted_e)
                measured.append(leaves.tolist())
                say(
                    f"mixture of {leaves.size} leaves ({n_points} examples) measured ({len(measured)}/"
                    f"{len(tasks)}): gain {utility(effect, weights):+.4f}, predicted C "
                    f"{utility(predicted_c, weights):+.4f}, E {utility(predicted_e, weights):+.4f}"
                )
        status = "done"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        if engine is not None:
            engine.close()
        timings["total_s"] = time.perf_counter() - started
        timings["mixtures"] = float(len(measured))
        store.finish_run(run_id, status=status, timings=timings)
    report = _stored_report(store, key, np.asarray(weights, dtype=np.float64))
    if background_ids.size:
        report["background_size"] = int(background_ids.size)
    return ValidationReport(run_id, key, measured, skipped, report, timings)
