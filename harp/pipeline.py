"""``harp.harp(...)``: the whole pipeline in one call, with the original HARP release's signature.

The stages, each a library call documented in its own module:

1. Stage 1a, hierarchy (:func:`harp.hierarchy.build_hierarchy`) of the L2-normalised features ``X_feat``, written
   to the store with text previews (:func:`harp.load.write_hierarchy`).
2. Representatives (:func:`harp.measure.choose_representatives`): per parent the leaf nearest its centroid, then
   farthest-point order, ``n_representatives`` leaves in all (default: one per parent); or the leaves listed in
   ``representatives_path``.
3. Measurements (:func:`harp.measure.run_measurements`): a LoRA adapter per representative, scored against the
   base model on the proxy eval set; every finished leaf is committed to the store at once.
4. Empirical Bayes (:func:`harp.load.infer_effects`): posterior effects of every leaf, active domains.
5. Optionally ``active_rounds`` rounds of active refinement (:func:`harp.active.next_leaves`): measure the
   ``active_k`` leaves whose measurement would most change the selection, then infer again.
6. Selection (:func:`harp.select`) under HARP-C and HARP-E, cut at the best prefix, capped at ``TOP_K_POINTS``.

Everything goes through a store: a temporary one when ``checkpoint_dir`` is None (deleted at the end: the run
is "in memory"), else ``checkpoint_dir/harp.duckdb`` (or ``checkpoint_dir`` itself when it names a ``.duckdb``
file). Calling again with the same ``checkpoint_dir`` resumes: the tree is reused when it was built from the same
features and parameters (a different one is refused rather than silently replaced), and leaves already measured
under the same measurement config, model and eval set are never measured again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harp._validation import check_base, check_budget, check_weights
from harp.select import select

if TYPE_CHECKING:
    from harp.data import EvalSet, TrainingPool
    from harp.measure import MeasureConfig
    from harp.store import Store

__all__ = ["HarpResult", "harp"]

PathLike = str | os.PathLike[str]
STORE_NAME = "harp.duckdb"
_HIERARCHY_RUN = "harp-hierarchy"
_METRICS = {
    "auto": None,
    "accuracy": "choice",
    "multiple_choice": "choice",
    "exact_match": "generate",
}
# Names the original release used for LoRA settings, mapped to MeasureConfig fields.
_LORA_ALIASES = {"r": "lora_r", "alpha": "lora_alpha", "dropout": "lora_dropout"}


@dataclass(frozen=True)
class HarpResult:
    """What :func:`harp` returns.

    Attributes
    ----------
    harp_c, harp_e : ndarray of int64
        Selected train-example indices (rows of ``X_feat`` and of ``train_examples``) under HARP-C and HARP-E,
        in selection order, at most ``TOP_K_POINTS`` each.
    info : dict
        ``phi`` and ``phi_sd`` (n_leaves, n_domains) posterior mean and sd; ``measured`` (n_leaves, n_domains)
        bool; ``base`` (n_domains,); ``domain_names``; ``active_tasks`` (names of the active domains) and
        ``active`` (bool mask); ``weights``; ``order_c``/``order_e`` (full greedy leaf orders), ``cut_c``/``cut_e``
        (best-prefix lengths), ``gains_c``/``gains_e``, ``leaves_c``/``leaves_e`` (leaves that contribute
        points), ``predicted_c``/``predicted_e`` (per-domain predicted scores), ``utility_c``/``utility_e``
        and ``base_utility``, ``selection_c``/``selection_e`` (the :class:`harp.Selection` objects);
        ``budget``; ``bayes`` (the empirical-Bayes summary: per-domain grand mean and spreads, notes); ``leaf_of_point`` (n_points,), ``leaf_parent``;
        ``representatives`` and ``measured_leaves``; ``config_key``; ``store`` (path, or None for a temporary
        store); ``ignored`` (arguments accepted but without effect); ``timings`` (seconds per stage).
    """

    harp_c: np.ndarray
    harp_e: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------------------
# Arguments of the original release


def _write_jsonl(records: Sequence[Any], path: Path, name: str) -> Path:
    lines = []
    for i, record in enumerate(records):
        if isinstance(record, tuple | list) and len(record) == 2 and name == "train_examples":
            record = {"prompt": record[0], "response": record[1]}
        if not isinstance(record, Mapping):
            raise ValueError(f"{name}[{i}] must be a record (a dict), got {type(record).__name__}")
        lines.append(json.dumps(dict(record), ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _training_pool(value: Any, scratch: Path) -> TrainingPool:
    from harp.data import TrainingPool, load_training_pool

    if isinstance(value, TrainingPool):
        return value
    if isinstance(value, str | os.PathLike):
        return load_training_pool(value)
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        if not value:
            raise ValueError("train_examples is empty")
        return load_training_pool(_write_jsonl(value, scratch / "train_examples.jsonl", "train_examples"))
    raise ValueError(
        "train_examples must be a TrainingPool, a .jsonl/.parquet path, or a list of records "
        f"(prompt/response or messages), got {type(value).__name__}"
    )


def _eval_set(value: Any, scratch: Path) -> EvalSet:
    from harp.data import EvalSet, load_eval_set

    if isinstance(value, EvalSet):
        return value
    if isinstance(value, str | os.PathLike):
        return load_eval_set(value)
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        if not value:
            raise ValueError("eval_examples is empty")
        return load_eval_set(_write_jsonl(value, scratch / "eval_examples.jsonl", "eval_examples"))
    raise ValueError(
        "eval_examples must be an EvalSet, a .jsonl/.parquet path, or a list of records, "
        f"got {type(value).__name__}"
    )


def _read_ids(path: PathLike, name: str) -> np.ndarray:
    file = Path(path)
    try:
        if file.suffix == ".npy":
            values = np.load(file, allow_pickle=False)
        elif file.suffix == ".json":
            values = np.asarray(json.loads(file.read_text(encoding="utf-8")))
        else:
            values = np.asarray(file.read_text(encoding="utf-8").replace(",", " ").split(), dtype=np.int64)
    except (OSError, ValueError) as error:
        raise ValueError(f"{name}: cannot read integer ids from {file} ({error})") from None
    return _ids(values, f"{name} ({file})")


def _ids(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{name} must be a 1-D list of integers, got shape {array.shape} of {array.dtype}")
    return array.astype(np.int64)


def _subset_eval(eval_set: EvalSet, indices: np.ndarray) -> EvalSet:
    """The questions at ``indices`` (in that order); domains without a question drop out."""
    from harp.data import EvalSet

    n = len(eval_set)
    bad = indices[(indices < 0) | (indices >= n)]
    if bad.size:
        raise ValueError(f"eval_indices must be question indices in 0..{n - 1}, got {int(bad[0])}")
    if np.unique(indices).size != indices.size:
        raise ValueError("eval_indices lists a question more than once")
    if indices.size == 0:
        raise ValueError("eval_indices is empty")
    names = sorted({eval_set.domain_names[int(eval_set.domain[i])] for i in indices})
    index = {name: d for d, name in enumerate(names)}
    return EvalSet(
        kinds=[eval_set.kinds[i] for i in indices],
        prompts=[eval_set.prompts[i] for i in indices],
        choices=[eval_set.choices[i] for i in indices],
        answers=[eval_set.answers[i] for i in indices],
        domain=np.asarray([index[eval_set.domain_names[int(eval_set.domain[i])]] for i in indices]),
        domain_names=names,
        path=f"{eval_set.path}[{indices.size} of {n} questions]",
    )


def _check_metric(eval_metric: str | None, eval_set: EvalSet) -> None:
    key = "auto" if eval_metric is None else str(eval_metric).strip().lower()
    if key not in _METRICS:
        raise ValueError(
            f"eval_metric must be one of {sorted(_METRICS)} (the score follows the eval records: multiple "
            f"choice by option log-likelihood, short answers by exact match), got {eval_metric!r}"
        )
    kind = _METRICS[key]
    if kind is not None and any(k != kind for k in eval_set.kinds):
        other = "short-answer" if kind == "choice" else "multiple-choice"
        raise ValueError(f"eval_metric {eval_metric!r} does not fit the eval set: it holds {other} questions")


def _measure_config(lora_config: Any) -> MeasureConfig:
    from harp.measure import MeasureConfig

    if lora_config is None:
        return MeasureConfig()
    if isinstance(lora_config, MeasureConfig):
        return lora_config
    if isinstance(lora_config, Mapping):
        values = {_LORA_ALIASES.get(str(key), str(key)): value for key, value in lora_config.items()}
        return MeasureConfig.from_dict(values)
    # A peft LoraConfig (or anything with its attribute names).
    values = {}
    for attribute, name in (("r", "lora_r"), ("lora_alpha", "lora_alpha"), ("lora_dropout", "lora_dropout")):
        if getattr(lora_config, attribute, None) is not None:
            values[name] = getattr(lora_config, attribute)
    modules = getattr(lora_config, "target_modules", None)
    if modules:
        values["target_modules"] = tuple(sorted(modules)) if isinstance(modules, set) else tuple(modules)
    if not values:
        raise ValueError(
            "lora_config must be a MeasureConfig, a dict of its fields, or a peft LoraConfig, "
            f"got {type(lora_config).__name__}"
        )
    return MeasureConfig.from_dict(values)


def _store_path(checkpoint_dir: PathLike) -> Path:
    path = Path(checkpoint_dir)
    if path.suffix == ".duckdb":
        path.parent.mkdir(parents=True, exist_ok=True)
        return path
    path.mkdir(parents=True, exist_ok=True)
    return path / STORE_NAME


# ----------------------------------------------------------------------------------------------------------------
# Stages against a store


def _fingerprint(X: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(X, dtype=np.float32).tobytes()).hexdigest()[:16]


def _tree(
    store: Store,
    X: np.ndarray,
    pool: TrainingPool,
    hierarchy_options: dict[str, Any],
    say: Callable[[str], None],
) -> None:
    """Build and write the tree, or check that the store's tree is the one these inputs would build."""
    from harp.hierarchy import build_hierarchy
    from harp.load import write_hierarchy

    wanted = {"n_points": int(X.shape[0]), "features": _fingerprint(X), **hierarchy_options}
    n_stored = store.read_table("points").num_rows
    if n_stored:
        if n_stored != X.shape[0]:
            raise ValueError(
                f"checkpoint_dir: {store.path} holds a tree of {n_stored} points but X_feat has {X.shape[0]} "
                "rows; use another checkpoint_dir for another pool"
            )
        earlier = [run for run in store.runs() if run["kind"] == _HIERARCHY_RUN and run["status"] == "done"]
        if earlier and earlier[-1]["config"] != json.loads(json.dumps(wanted)):
            changed = sorted(k for k in wanted if earlier[-1]["config"].get(k) != wanted[k])
            raise ValueError(
                f"checkpoint_dir: {store.path} holds a tree built with other {', '.join(changed)}; "
                "use another checkpoint_dir (its measurements describe the old leaves)"
            )
        say(f"resuming: using the tree in {store.path}")
        return
    run_id = store.add_run(_HIERARCHY_RUN, wanted)
    hierarchy = build_hierarchy(X, progress=say, **hierarchy_options)
    write_hierarchy(store, hierarchy, texts=pool.previews(), sources=pool.sources)
    store.finish_run(run_id, status="done", timings=hierarchy.timings)
    say(f"tree: {hierarchy.n_large} large nodes, {hierarchy.n_parents} parents, {hierarchy.n_leaves} leaves")


def _read_tree(store: Store) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """point id, leaf of each point (by point id) and parent of each leaf."""
    points = store.read_table("points").select(["point_id", "leaf_id"]).to_pydict()
    point_id = np.asarray(points["point_id"], dtype=np.int64)
    leaf_of_point = np.empty(point_id.size, dtype=np.int64)
    leaf_of_point[point_id] = np.asarray(points["leaf_id"], dtype=np.int64)
    leaf_parent = np.asarray(store.read_table("leaves").sort_by("leaf_id").column("parent_id").to_pylist())
    return point_id, leaf_of_point, leaf_parent.astype(np.int64)


def _representatives(
    store: Store,
    X: np.ndarray,
    n_representatives: int | None,
    representatives_path: PathLike | None,
    say: Callable[[str], None],
) -> np.ndarray:
    from harp.measure import choose_representatives, leaf_centroids

    _, leaf_of_point, leaf_parent = _read_tree(store)
    n_leaves = leaf_parent.size
    if representatives_path is not None and Path(representatives_path).is_file():
        leaves = _read_ids(representatives_path, "representatives_path")
        bad = leaves[(leaves < 0) | (leaves >= n_leaves)]
        if bad.size:
            raise ValueError(
                f"representatives_path ({representatives_path}) must hold leaf ids in 0..{n_leaves - 1}, "
                f"got {int(bad[0])}"
            )
        say(f"measuring the {leaves.size} representatives listed in {representatives_path}")
        return leaves
    budget = int(leaf_parent.max()) + 1 if n_representatives is None else n_representatives
    leaf_mean, parent_mean = leaf_centroids(X, leaf_of_point, leaf_parent)
    leaves = choose_representatives(leaf_parent, leaf_mean, parent_mean, budget)
    if representatives_path is not None:
        Path(representatives_path).write_text(json.dumps(leaves.tolist()) + "\n", encoding="utf-8")
        say(f"wrote the {leaves.size} representatives to {representatives_path}")
    return leaves


# ----------------------------------------------------------------------------------------------------------------
# The entry point


def harp(
    X_feat: Any,
    base_model_name: PathLike,
    train_examples: Any,
    eval_examples: Any,
    tokenizer: Any = None,
    eval_indices: Any = None,
    eval_indices_path: PathLike | None = None,
    representatives_path: PathLike | None = None,
    v0: Any = None,
    eval_metric: str | None = None,
    TOP_K_POINTS: int | None = None,  # noqa: N803 (the original release's name)
    lora_config: Any = None,
    checkpoint_dir: PathLike | None = None,
    *,
    n_representatives: int | None = None,
    leaf_size: int = 64,
    leaves_per_parent: int = 8,
    parents_per_large: int = 8,
    min_leaf: int | None = None,
    max_leaf: int | None = None,
    seed: int = 0,
    backend: str = "auto",
    active_rounds: int = 0,
    active_k: int = 4,
    weights: Any = None,
    executor: str = "inprocess",
    devices: Sequence[str | int] | None = None,
    workers_per_device: int = 1,
    address: str | None = None,
    max_examples_per_leaf: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> HarpResult:
    """Run HARP end to end: hierarchy, representatives, LoRA measurements, empirical Bayes, selection.

    Parameters
    ----------
    X_feat : array-like of shape (n_points, dim), or path of an ``.npy``
        Features of the training pool, one row per example (row i is ``train_examples[i]``); L2-normalised here.
    base_model_name : str or Path
        The base model: a local directory or a name in the local Hugging Face cache (nothing is downloaded).
    train_examples : TrainingPool, path, or list of records
        The training pool: a :class:`harp.data.TrainingPool`, a ``.jsonl``/``.parquet`` file, or records with
        ``prompt``/``response`` or chat ``messages`` (``(prompt, response)`` pairs are accepted too).
    eval_examples : EvalSet, path, or list of records
        The proxy eval set (``question``/``choices``/``answer``/``domain`` or ``prompt``/``answer``/``domain``).
    tokenizer : any, optional
        Accepted for compatibility and ignored: the tokenizer saved with ``base_model_name`` is used, so that
        workers on other processes or machines load the same one.
    eval_indices : sequence of int, optional
        Use only these questions of ``eval_examples`` as the proxy eval set (in this order).
    eval_indices_path : str or Path, optional
        The same, read from ``.npy``, ``.json`` or a text file of integers. Give at most one of the two.
    representatives_path : str or Path, optional
        Leaf ids to measure (``.npy``, ``.json`` or text). When the file does not exist yet, the representatives
        chosen here are written to it, so a later run measures the same leaves.
    v0 : array-like of shape (n_domains,) or dict, optional
        Base-model score of each domain (``{name: score}`` or in sorted domain-name order), in [0, 1]. Used as
        ``b_d`` for the active flags and the selection instead of the base model's measured mean score; the
        paired effects are still measured against the base model's per-question scores.
    eval_metric : {"auto", "accuracy", "multiple_choice", "exact_match"}, optional
        The metric follows the records (option log-likelihood accuracy for multiple choice, exact match for short
        answers); naming one checks that the eval set fits it. Other metrics are refused.
    TOP_K_POINTS : int, optional
        Point budget of each selection (None: no cap).
    lora_config : MeasureConfig, dict or peft LoraConfig, optional
        The measurement config. A dict may set any :class:`harp.measure.MeasureConfig` field (``steps``,
        ``learning_rate``, ...) and the peft names ``r``, ``lora_alpha``, ``lora_dropout``, ``target_modules``;
        a peft ``LoraConfig`` gives its rank, alpha, dropout and target modules.
    checkpoint_dir : str or Path, optional
        Where the store lives (``checkpoint_dir/harp.duckdb``, or the path itself when it ends in ``.duckdb``);
        calling again resumes. None: a temporary store, deleted at the end.

    Other Parameters
    ----------------
    n_representatives : int, optional
        Leaves measured in the first round (default: one per parent).
    leaf_size, leaves_per_parent, parents_per_large, min_leaf, max_leaf, seed, backend
        Passed to :func:`harp.hierarchy.build_hierarchy`.
    active_rounds, active_k : int
        Rounds of active refinement after the first fit, each measuring up to ``active_k`` leaves chosen by
        :func:`harp.active.next_leaves`. Default: none.
    weights : array-like of shape (n_domains,), optional
        Domain weights of the selection; default active domains 1, inactive 0 (all 1 when none is active).
    executor, devices, workers_per_device, address, max_examples_per_leaf
        Passed to :func:`harp.measure.run_measurements`.
    progress : callable, optional
        Receives one line of progress per event.

    Returns
    -------
    HarpResult
    """
    from harp.embed import load_features
    from harp.load import infer_effects
    from harp.store import Store

    say = progress or (lambda message: None)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = round(now - clock, 3)
        clock = now

    if eval_indices is not None and eval_indices_path is not None:
        raise ValueError("give at most one of eval_indices and eval_indices_path")
    budget = check_budget(TOP_K_POINTS)
    for name, value, minimum in (("active_rounds", active_rounds, 0), ("active_k", active_k, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if n_representatives is not None and (
        isinstance(n_representatives, bool) or not isinstance(n_representatives, int) or n_representatives < 1
    ):
        raise ValueError(f"n_representatives must be an integer >= 1, got {n_representatives!r}")
    config = _measure_config(lora_config)
    hierarchy_options = {"leaf_size": leaf_size, "leaves_per_parent": leaves_per_parent,
                         "parents_per_large": parents_per_large, "min_leaf": min_leaf, "max_leaf": max_leaf,
                         "seed": seed, "backend": backend}  # fmt: skip
    ignored = ["tokenizer"] if tokenizer is not None else []

    with tempfile.TemporaryDirectory(prefix="harp-") as scratch_name:
        scratch = Path(scratch_name)
        pool = _training_pool(train_examples, scratch)
        eval_set = _eval_set(eval_examples, scratch)
        if eval_indices_path is not None:
            eval_set = _subset_eval(eval_set, _read_ids(eval_indices_path, "eval_indices_path"))
        elif eval_indices is not None:
            eval_set = _subset_eval(eval_set, _ids(eval_indices, "eval_indices"))
        _check_metric(eval_metric, eval_set)
        if isinstance(X_feat, str | os.PathLike):
            X = load_features(X_feat, len(pool))
        else:
            X = np.asarray(X_feat, dtype=np.float64)
            if X.ndim != 2 or X.shape[0] != len(pool):
                raise ValueError(
                    f"X_feat has shape {X.shape} but train_examples has {len(pool)} examples: "
                    "expected one row per example"
                )
            norms = np.linalg.norm(X, axis=1, keepdims=True)
            if not np.isfinite(X).all() or (norms == 0).any():
                raise ValueError("X_feat must be finite with no all-zero row")
            X = X / norms
        lap("inputs_s")

        path = _store_path(checkpoint_dir) if checkpoint_dir is not None else scratch / STORE_NAME
        store = Store.open(path) if path.exists() else Store.create(path)
        say(f"store {path if checkpoint_dir is not None else '(temporary)'}")
        _tree(store, X, pool, hierarchy_options, say)
        lap("hierarchy_s")

        representatives = _representatives(store, X, n_representatives, representatives_path, say)
        lap("representatives_s")

        def measure(leaves: Sequence[int] | np.ndarray) -> str:
            from harp.measure import run_measurements

            report = run_measurements(
                store, base_model_name, pool, eval_set, leaves, config, executor=executor,  # type: ignore[arg-type]
                devices=devices, workers_per_device=workers_per_device, address=address,
                max_examples_per_leaf=max_examples_per_leaf, log=say,
            )  # fmt: skip
            return report.config_key

        config_key = measure(representatives)
        lap("measure_s")
        effects, active = infer_effects(store, config_key=config_key, progress=say)
        lap("infer_s")
        for round_number in range(active_rounds):
            from harp.active import next_leaves

            chosen = next_leaves(store, active_k)
            if chosen.leaves.size == 0:
                say("active refinement: every leaf is measured")
                break
            say(f"active round {round_number + 1}: measuring leaves {chosen.leaves.tolist()}")
            measure(chosen.leaves)
            effects, active = infer_effects(store, config_key=config_key, progress=say)
        if active_rounds:
            lap("active_s")

        inputs = store.selection_inputs()
        base = inputs.base
        if v0 is not None:
            from harp.bayes import active_domains

            if isinstance(v0, Mapping):
                missing = sorted(set(inputs.domain_names) - set(v0))
                if missing:
                    raise ValueError(f"v0 has no score for the domains {missing[:5]}")
                v0 = [v0[name] for name in inputs.domain_names]
            base = check_base(v0, inputs.n_domains)
            active = active_domains(inputs.phi, inputs.sd, base)
        if weights is None:
            weights = active.astype(np.float64) if active.any() else np.ones(inputs.n_domains)
        weights = check_weights(weights, inputs.n_domains)
        results = {
            name: select(
                inputs.phi, base, envelope=name, weights=weights, members=inputs.members, budget=budget
            )
            for name in ("C", "E")
        }
        lap("select_s")
        _, leaf_of_point, _ = _read_tree(store)
        info: dict[str, Any] = {
            "phi": inputs.phi,
            "phi_sd": inputs.sd,
            "measured": inputs.measured,
            "base": base,
            "domain_names": inputs.domain_names,
            "active": np.asarray(active, dtype=bool),
            "active_tasks": [n for n, a in zip(inputs.domain_names, active, strict=True) if a],
            "weights": weights,
            "budget": budget,
            "leaf_of_point": leaf_of_point,
            "leaf_parent": inputs.leaf_parent,
            "representatives": np.asarray(representatives, dtype=np.int64),
            "measured_leaves": store.measured_leaves(config_key),
            "bayes": effects.summary(inputs.domain_names),
            "config_key": config_key,
            "measure_config": config.to_dict(),
            "store": str(path) if checkpoint_dir is not None else None,
            "ignored": ignored,
            "timings": timings,
        }
        for name, result in results.items():
            suffix = name.lower()
            info[f"order_{suffix}"] = result.order
            info[f"gains_{suffix}"] = result.gains
            info[f"cut_{suffix}"] = int(result.cut)
            info[f"leaves_{suffix}"] = result.leaves
            info[f"predicted_{suffix}"] = result.predicted
            info[f"utility_{suffix}"] = float(result.utility)
            info[f"selection_{suffix}"] = result
        info["base_utility"] = float(results["C"].base_utility)
        return HarpResult(harp_c=results["C"].points, harp_e=results["E"].points, info=info)
