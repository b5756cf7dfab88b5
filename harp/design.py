"""Designed mixtures: every region's effect from a regression over many finetunes, then prune and draw.

Notation: region r at one level of the tree (a large node or a parent), domain d, weights ``w_d``. A *design
mixture* keeps a random half of the regions and draws ``budget`` points uniformly from the kept regions' points;
its finetune (one pass from the base model, as :mod:`harp.validate` trains a mixture) is measured like a leaf's,
as an effect ``x_d`` on each domain. The halves come in foldover pairs, a half and its complement, so every region
is in exactly half of the mixtures of each budget.

The fit (:func:`fit_design`) regresses each mixture's utility gain ``y = sum_d w_d x_d / sum_d w_d`` on its
share of each region's points, ``s_r`` (the shares sum to 1), with one intercept per budget:

    y = a_budget + sum_r beta_r s_r + noise

by ridge regression (the intercepts unpenalised, the penalty chosen by exact leave-one-out error over a grid).
A share shift of one region's worth of points into region r changes y by about ``beta_r - mean``, so an effect is
reported *centred*: ``beta_r - sum_r' p_r' beta_r'``, with ``p`` the pool's share of each region. A centred
effect above 0 says the region does better than an average chunk of the pool. Standard errors come from a
bootstrap over the mixtures.

Why this and not one finetune per region: a region's effect measured as the difference of two finetunes carries
the noise of both, which on the demo is as large as the effects. Here every finetune informs every coefficient,
so the training noise averages out (README "Does it help?", round 4).

The selection (:func:`design_select`) prunes regions and draws the budget uniformly from the rest, with
:func:`harp.prune.prune_select` over the leaves: rule ``"C"`` (conservative) keeps the regions whose centred
effect is above 0 by more than one standard error, rule ``"E"`` (expansive) every region whose centred effect
is above 0.
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

from harp._validation import DESIGN_LEVELS, DESIGN_RULES, is_integer
from harp.select import Selection

if TYPE_CHECKING:
    from harp.data import EvalSet, TrainingPool
    from harp.measure import Device, ExecutorName, MeasureConfig
    from harp.store import Store

__all__ = [
    "DESIGN_LEVELS",
    "DESIGN_RULES",
    "DESIGN_SEED",
    "DesignFit",
    "DesignMixture",
    "DesignReport",
    "design_select",
    "draw_design",
    "fit_design",
    "fit_stored_design",
    "kept_regions",
    "loo_mse",
    "region_of_leaves",
    "region_of_points",
    "region_shares",
    "region_sources",
    "ridge_coefficients",
    "run_design",
]

# DESIGN_LEVELS (the levels of the tree a design can be drawn over) and DESIGN_RULES (``"C"``: keep regions
# credibly better than an average chunk of the pool; ``"E"``: every region estimated so) live with the input checks.
#: Design mixture k trains with data-order seed ``DESIGN_SEED + k`` (no leaf id or mixture seed reaches it).
DESIGN_SEED = 2**42
PENALTIES = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
MAX_REDRAWS = 1000


@dataclass(frozen=True)
class DesignMixture:
    """One design mixture: the kept regions, its budget, its draw seed and the points drawn."""

    regions: np.ndarray
    budget: int
    seed: int
    points: np.ndarray


@dataclass(frozen=True)
class DesignFit:
    """Region effects on the utility gain from a design's finetunes (see the module docstring).

    ``effects`` are the raw coefficients ``beta_r``; ``centred`` the same less the pool-weighted mean, with their
    bootstrap standard errors ``se``; ``intercepts`` per budget of ``budgets``; ``penalty`` the ridge penalty
    chosen by leave-one-out error (``loo_mse`` for each of ``PENALTIES``); ``loo_r2`` is 1 - that error over the
    variance of the gains: how much of the spread between finetunes the regions explain out of sample.
    """

    level: str
    budgets: tuple[int, ...]
    intercepts: np.ndarray
    effects: np.ndarray
    centred: np.ndarray
    se: np.ndarray
    penalty: float
    loo_mse: dict[float, float]
    loo_r2: float
    n_mixtures: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "budgets": list(self.budgets),
            "intercepts": self.intercepts.tolist(),
            "effects": self.effects.tolist(),
            "centred": self.centred.tolist(),
            "se": self.se.tolist(),
            "penalty": self.penalty,
            "loo_mse": {str(p): e for p, e in self.loo_mse.items()},
            "loo_r2": self.loo_r2,
            "n_mixtures": self.n_mixtures,
            "kept": {rule: kept_regions(self, rule).tolist() for rule in DESIGN_RULES},
        }


@dataclass
class DesignReport:
    """What :func:`run_design` did: the mixtures measured now and those already in the store."""

    run_id: str
    config_key: str
    measured: int
    skipped: int
    timings: dict[str, float]


def _check_level(level: str) -> str:
    if level not in DESIGN_LEVELS:
        raise ValueError(f"level must be one of {', '.join(DESIGN_LEVELS)}, got {level!r}")
    return level


def region_of_leaves(store: Store, level: str) -> np.ndarray:
    """Each leaf's region id at ``level`` (index: leaf id), from the store's tree."""
    _check_level(level)
    leaves = store.read_table("leaves").select(["leaf_id", "parent_id"]).to_pydict()
    region = np.zeros(max(leaves["leaf_id"], default=-1) + 1, dtype=np.int64)
    region[np.asarray(leaves["leaf_id"], dtype=np.int64)] = np.asarray(leaves["parent_id"], dtype=np.int64)
    if level == "large":
        parents = store.read_table("parents").select(["parent_id", "large_id"]).to_pydict()
        large_of = np.zeros(max(parents["parent_id"], default=-1) + 1, dtype=np.int64)
        large_of[np.asarray(parents["parent_id"], dtype=np.int64)] = np.asarray(parents["large_id"], np.int64)
        region = large_of[region]
    return region


def region_of_points(store: Store, level: str) -> np.ndarray:
    """Each point's region id at ``level`` (index: point id), from the store's tree."""
    region_of_leaf = region_of_leaves(store, level)
    points = store.read_table("points").select(["point_id", "leaf_id"]).to_pydict()
    point_id = np.asarray(points["point_id"], dtype=np.int64)
    region = np.full(point_id.size, -1, dtype=np.int64)
    region[point_id] = region_of_leaf[np.asarray(points["leaf_id"], dtype=np.int64)]
    return region


def region_sources(store: Store, level: str) -> list[str]:
    """Each region's one or two most common sources (those of 10 % or more) with their shares, e.g.
    ``mmlu/stem 53%, harmful/wrong-option 38%`` (empty without sources)."""
    region = region_of_points(store, level)
    sources = store.read_table("points").select(["point_id", "source"]).to_pydict()
    source = np.empty(region.size, dtype=object)
    source[np.asarray(sources["point_id"], dtype=np.int64)] = [str(s or "") for s in sources["source"]]
    out = []
    for r in range(int(region.max()) + 1):
        names, counts = np.unique(source[region == r].astype(str), return_counts=True)
        order = np.argsort(-counts, kind="stable")[:2]
        shares = counts / max(1, int(counts.sum()))
        out.append(
            ", ".join(f"{names[i]} {100 * shares[i]:.0f}%" for i in order if names[i] and shares[i] >= 0.1)
        )
    return out


def region_shares(points: np.ndarray, region_of_point: np.ndarray, n_regions: int) -> np.ndarray:
    """The share of ``points`` in each of ``n_regions`` regions (sums to 1)."""
    counts = np.bincount(region_of_point[np.asarray(points, dtype=np.int64)], minlength=n_regions)
    return counts / max(1, int(counts.sum()))


def draw_design(
    region_of_point: np.ndarray, budgets: Sequence[int], per_budget: int, seed: int = 0
) -> list[DesignMixture]:
    """``per_budget`` design mixtures at every budget, in foldover pairs of random halves of the regions.

    A half (or its complement) whose points are fewer than the budget is drawn again. Mixture k of the list has
    draw seed k; its points are ``budget`` drawn uniformly without replacement from its regions' points
    (``numpy.random.default_rng([seed, k])``), sorted.

    Raises
    ------
    ValueError
        ``per_budget`` not a positive even number, a budget below 1, fewer than 2 regions, or a budget that no
        half of the regions can hold.
    """
    if not is_integer(per_budget) or per_budget < 2 or per_budget % 2:
        raise ValueError(f"per_budget must be a positive even number (foldover pairs), got {per_budget!r}")
    if not is_integer(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    regions = np.unique(region_of_point)
    if regions.size < 2:
        raise ValueError(f"a design needs at least 2 regions, the tree has {regions.size}")
    sizes = np.bincount(region_of_point, minlength=int(regions.max()) + 1)
    rng = np.random.default_rng([seed, 2**32])
    mixtures: list[DesignMixture] = []
    for budget in budgets:
        if not is_integer(budget) or budget < 1:
            raise ValueError(f"budgets must be positive integers, got {budget!r}")
        for _ in range(per_budget // 2):
            for _attempt in range(MAX_REDRAWS):
                half = np.sort(rng.permutation(regions)[: regions.size // 2])
                other = np.setdiff1d(regions, half)
                if min(sizes[half].sum(), sizes[other].sum()) >= budget:
                    break
            else:
                raise ValueError(
                    f"budget {budget} is more than half the regions hold in {MAX_REDRAWS} draws "
                    f"(the pool has {int(sizes.sum())} points): use smaller budgets"
                )
            for kept in (half, other):
                k = len(mixtures)
                candidates = np.flatnonzero(np.isin(region_of_point, kept))
                drawn = np.random.default_rng([seed, k]).choice(candidates, size=int(budget), replace=False)
                mixtures.append(DesignMixture(kept, int(budget), k, np.sort(drawn).astype(np.int64)))
    return mixtures


def ridge_coefficients(x_budget: np.ndarray, shares: np.ndarray, y: np.ndarray, penalty: float) -> np.ndarray:
    """The ridge fit of ``y`` on the budget columns (unpenalised) and the region shares (penalty ``penalty``).

    Parameters
    ----------
    x_budget : ndarray of shape (n_mixtures, n_budget_columns)
    shares : ndarray of shape (n_mixtures, n_regions)
    y : ndarray of shape (n_mixtures,)
    penalty : float

    Returns
    -------
    ndarray of shape (n_budget_columns + n_regions,)
    """
    x = np.hstack([x_budget, shares])
    diagonal = np.r_[np.zeros(x_budget.shape[1]), np.full(shares.shape[1], penalty)]
    return np.linalg.solve(x.T @ x + np.diag(diagonal), x.T @ y)


def loo_mse(x_budget: np.ndarray, shares: np.ndarray, y: np.ndarray, penalty: float) -> float:
    """Exact leave-one-out mean squared error of :func:`ridge_coefficients` (from the hat matrix's diagonal)."""
    x = np.hstack([x_budget, shares])
    diagonal = np.r_[np.zeros(x_budget.shape[1]), np.full(shares.shape[1], penalty)]
    hat = x @ np.linalg.solve(x.T @ x + np.diag(diagonal), x.T)
    leverage = np.diag(hat)
    if np.any(leverage >= 1.0 - 1e-12):
        return math.inf  # a mixture the fit passes through exactly: no out-of-sample error to speak of
    return float(np.mean(((y - hat @ y) / (1.0 - leverage)) ** 2))


def fit_design(
    shares: Any,
    budgets: Any,
    gains: Any,
    pool_share: Any,
    *,
    level: str = "large",
    penalties: Sequence[float] = PENALTIES,
    bootstraps: int = 400,
    seed: int = 0,
) -> DesignFit:
    """Fit the region effects (module docstring) to ``n`` finetunes.

    Parameters
    ----------
    shares : array-like of shape (n, n_regions)
        Each finetune's share of its points in each region (rows sum to 1).
    budgets : array-like of int, shape (n,)
        Each finetune's budget (one intercept per distinct budget).
    gains : array-like of shape (n,)
        Each finetune's utility gain (or score: a constant offset goes into the intercepts).
    pool_share : array-like of shape (n_regions,)
        The pool's share of each region, the weights of the mean that ``centred`` subtracts.
    """
    shares = np.asarray(shares, dtype=np.float64)
    budgets = np.asarray(budgets, dtype=np.int64)
    y = np.asarray(gains, dtype=np.float64)
    pool_share = np.asarray(pool_share, dtype=np.float64)
    if shares.ndim != 2 or budgets.shape != (shares.shape[0],) or y.shape != (shares.shape[0],):
        raise ValueError(
            f"shares must be (n, n_regions) with budgets and gains of length n; got shapes {shares.shape}, "
            f"{budgets.shape}, {y.shape}"
        )
    if pool_share.shape != (shares.shape[1],):
        raise ValueError(
            f"pool_share must have one entry per region ({shares.shape[1]}), got {pool_share.shape}"
        )
    if not (np.isfinite(shares).all() and np.isfinite(y).all() and np.isfinite(pool_share).all()):
        raise ValueError("shares, gains and pool_share must be finite")
    levels = tuple(int(b) for b in np.unique(budgets))
    x_budget = (budgets[:, None] == np.asarray(levels)[None, :]).astype(np.float64)
    if y.size < len(levels) + 2:
        raise ValueError(f"{y.size} finetunes are too few to fit a design with {len(levels)} budgets")
    errors = {float(p): loo_mse(x_budget, shares, y, float(p)) for p in penalties}
    penalty = min(errors, key=lambda p: errors[p])
    coef = ridge_coefficients(x_budget, shares, y, penalty)
    effects = coef[len(levels) :]
    rng = np.random.default_rng([seed, 1])
    draws = []
    for _ in range(bootstraps):
        pick = rng.integers(0, y.size, size=y.size)
        if np.linalg.matrix_rank(x_budget[pick]) < len(levels):
            continue  # a resample without some budget cannot fit its intercept
        draw = ridge_coefficients(x_budget[pick], shares[pick], y[pick], penalty)[len(levels) :]
        draws.append(draw - pool_share @ draw)
    spread = np.std(draws, axis=0, ddof=1) if len(draws) > 1 else np.full(effects.size, np.inf)
    variance = float(np.var(y))
    return DesignFit(
        level=level,
        budgets=levels,
        intercepts=coef[: len(levels)],
        effects=effects,
        centred=effects - pool_share @ effects,
        se=spread,
        penalty=penalty,
        loo_mse=errors,
        loo_r2=1.0 - errors[penalty] / variance if variance > 0 else float("nan"),
        n_mixtures=int(y.size),
    )


def kept_regions(fit: DesignFit, rule: str) -> np.ndarray:
    """The regions ``rule`` keeps: ``"C"`` centred effect > its standard error, ``"E"`` centred effect > 0."""
    if rule not in DESIGN_RULES:
        raise ValueError(f"rule must be one of {', '.join(DESIGN_RULES)}, got {rule!r}")
    bar = fit.se if rule == "C" else np.zeros_like(fit.centred)
    return np.flatnonzero(fit.centred > bar).astype(np.int64)


def _stored_design(store: Store, config_key: str | None, level: str) -> tuple[str, list[dict[str, Any]]]:
    table = store.design_mixtures(config_key, level).to_pydict()
    if not table["design_id"]:
        where = f" under config {config_key}" if config_key else ""
        raise ValueError(
            f"{store.path} holds no design mixtures at level {level!r}{where}: run `harp design measure` first"
        )
    keys = sorted(set(table["config_key"]))
    if config_key is None and len(keys) > 1:
        raise ValueError(f"{store.path} holds design mixtures under {len(keys)} configs ({', '.join(keys)}): "
                         "pick one with config_key")  # fmt: skip
    rows: dict[int, dict[str, Any]] = {}
    for i, design_id in enumerate(table["design_id"]):
        row = rows.setdefault(int(design_id), {"budget": int(table["budget"][i]),
                                               "shares": json.loads(table["shares"][i]), "phi": {}})  # fmt: skip
        row["phi"][int(table["domain_id"][i])] = float(table["phi"][i])
    return keys[0], [rows[k] for k in sorted(rows)]


def fit_stored_design(
    store: Store,
    *,
    level: str = "large",
    config_key: str | None = None,
    weights: np.ndarray | None = None,
    bootstraps: int = 400,
    seed: int = 0,
) -> DesignFit:
    """:func:`fit_design` on the design mixtures stored at ``level`` (under ``config_key``, or the only config).

    ``weights`` (one per domain) weigh the domains of the utility gain; default: every domain 1, so the gain is
    the mean effect over the domains.
    """
    _check_level(level)
    _, rows = _stored_design(store, config_key, level)
    n_domains = store.read_table("domains").num_rows
    w = np.ones(n_domains) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (n_domains,) or not np.isfinite(w).all() or (w < 0).any() or not w.any():
        raise ValueError(f"weights must be {n_domains} finite non-negative numbers, not all 0")
    phi = np.array([[row["phi"].get(d, 0.0) for d in range(n_domains)] for row in rows])
    region = region_of_points(store, level)
    n_regions = int(region.max()) + 1
    shares = np.array([row["shares"] for row in rows], dtype=np.float64)
    if shares.shape[1] != n_regions:
        raise ValueError(
            f"the stored design has {shares.shape[1]} regions, the tree {n_regions} at {level!r}"
        )
    return fit_design(
        shares,
        [row["budget"] for row in rows],
        phi @ w / w.sum(),
        np.bincount(region, minlength=n_regions) / region.size,
        level=level,
        bootstraps=bootstraps,
        seed=seed,
    )


def design_select(
    fit: DesignFit,
    members: Sequence[np.ndarray],
    region_of_leaf: np.ndarray,
    *,
    rule: str = "C",
    budget: int | None = None,
    seed: int = 0,
    pinned: Any = None,
    excluded: Any = None,
) -> Selection:
    """Keep the regions of ``rule`` (:func:`kept_regions`) and draw ``budget`` points uniformly from their leaves.

    This is :func:`harp.prune.prune_select` on leaves whose one "effect" is 1 for a kept region's leaf and -1 for
    the others, so its ``order``, ``cut`` and ``points`` follow that function's rules (pinned leaves are kept,
    excluded ones never); ``predicted`` and ``utility`` are not scores here and should not be read.
    """
    from harp.prune import prune_select

    kept = np.zeros(fit.centred.size, dtype=bool)
    kept[kept_regions(fit, rule)] = True
    region_of_leaf = np.asarray(region_of_leaf, dtype=np.int64)
    if region_of_leaf.size != len(members) or region_of_leaf.max(initial=-1) >= kept.size:
        raise ValueError(f"region_of_leaf must give each of the {len(members)} leaves a region of the fit")
    marks = np.where(kept[region_of_leaf], 1.0, -1.0)[:, None]
    return prune_select(
        marks, np.full(1, 0.5), members=members, budget=budget, seed=seed, pinned=pinned, excluded=excluded
    )


def run_design(
    store: Store,
    model_name_or_path: str | os.PathLike[str],
    train: TrainingPool,
    eval_set: EvalSet,
    config: MeasureConfig | None = None,
    *,
    level: str = "large",
    budgets: Sequence[int] = (500, 1000, 2000),
    per_budget: int = 16,
    seed: int = 0,
    executor: ExecutorName = "inprocess",
    devices: Sequence[Device] | None = None,
    workers_per_device: int = 1,
    address: str | None = None,
    gpus_per_worker: float | None = None,
    adapters_per_batch: int = 1,
    log: Callable[[str], None] | None = None,
) -> DesignReport:
    """Draw a design (:func:`draw_design`), finetune each mixture and store its effect in ``design_mixtures``.

    A mixture trains one pass over its points from the base model (``max(config.steps, ceil(n / batch_size))``
    steps, as :func:`harp.validate.validate_mixtures` trains a union) and is scored against the base model, so
    ``config`` must use a protocol without a background (base-anchored). Mixtures already stored under the same
    config, level, regions, budget and seed are not trained again: a stopped run resumes.
    """
    from harp.measure import (
        LeafTask,
        MeasureConfig,
        make_executor,
        paired_effects,
        record_domains,
        resolve_config_key,
    )

    config = MeasureConfig() if config is None else config
    _check_level(level)
    if config.uses_background:
        raise ValueError(
            f"protocol {config.protocol!r} trains on a background; a design mixture is its own training set: "
            "use --protocol base-anchored"
        )
    say = log or (lambda message: None)
    model = str(model_name_or_path)
    key, _, _, _ = resolve_config_key(store, model, train, eval_set, config, say)
    region = region_of_points(store, level)
    if region.size != len(train) or (region < 0).any():
        raise ValueError(f"the store's tree covers {region.size} points, the pool has {len(train)} examples")
    n_regions = int(region.max()) + 1
    mixtures = draw_design(region, list(budgets), per_budget, seed)
    stored = store.design_mixtures(key, level).to_pydict()
    done = {
        (json.dumps(json.loads(regions)), int(budget), int(s))
        for regions, budget, s in zip(stored["regions"], stored["budget"], stored["seed"], strict=True)
    }

    def ident(mixture: DesignMixture) -> tuple[str, int, int]:
        return json.dumps(mixture.regions.tolist()), mixture.budget, seed * 1_000_000 + mixture.seed

    todo = [m for m in mixtures if ident(m) not in done]
    say(
        f"config {key}: {len(todo)} design mixtures to measure at level {level}, {len(mixtures) - len(todo)} stored"
    )
    tasks = [
        LeafTask(DESIGN_SEED + ident(m)[2], train.examples(m.points),
                 max(config.steps, math.ceil(m.points.size / config.batch_size)))
        for m in todo
    ]  # fmt: skip
    run_id = store.add_run(
        "design",
        {"config_key": key, "measure_config": config.to_dict(), "model": model, "level": level,
         "budgets": [int(b) for b in budgets], "per_budget": per_budget, "seed": seed,
         "eval_fingerprint": eval_set.fingerprint(), "executor": executor,
         "adapters_per_batch": adapters_per_batch},
    )  # fmt: skip
    started = time.perf_counter()
    timings: dict[str, float] = {}
    measured = 0
    status = "failed"
    engine = None
    try:
        if tasks:
            engine = make_executor(
                executor, model, eval_set, config, devices=devices, workers_per_device=workers_per_device,
                address=address, gpus_per_worker=gpus_per_worker, adapters_per_batch=adapters_per_batch,
            )  # fmt: skip
            reference = engine.base()  # a base-anchored protocol: the reference is the base model
            record_domains(store, eval_set, reference)
            timings["reference_s"] = time.perf_counter() - started
            by_task = {task.leaf_id: m for task, m in zip(tasks, todo, strict=True)}
            for result in engine.run(tasks):
                mixture = by_task[result.leaf_id]
                effect, variance, _ = paired_effects(
                    result.scores, reference, eval_set.domain, eval_set.n_domains
                )
                store.add_design_mixture(
                    run_id, key, level=level, regions=mixture.regions.tolist(), budget=mixture.budget,
                    seed=ident(mixture)[2], shares=region_shares(mixture.points, region, n_regions).tolist(),
                    n_points=int(mixture.points.size), phi=effect, variance=variance,
                )  # fmt: skip
                measured += 1
                say(f"design mixture {measured}/{len(tasks)} ({mixture.regions.size} regions, {mixture.budget} "
                    f"points) measured: mean effect {float(effect.mean()):+.4f}")  # fmt: skip
        status = "done"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        if engine is not None:
            engine.close()
        timings["total_s"] = time.perf_counter() - started
        timings["mixtures"] = float(measured)
        store.finish_run(run_id, status=status, timings=timings)
    return DesignReport(run_id, key, measured, len(mixtures) - len(todo), timings)
