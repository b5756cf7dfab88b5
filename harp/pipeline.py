"""``harp.harp(...)``: the whole pipeline in one call, with the original HARP release's signature.

The stages, each a library call documented in its own module:

1. Stage 1a, hierarchy (:func:`harp.hierarchy.build_hierarchy`) of the L2-normalised features ``X_feat``, written
   to the store with previews of each prompt and response (:func:`harp.load.write_hierarchy`).
2. Representatives (:func:`harp.measure.choose_representatives`): per parent the leaf nearest its centroid, then
   farthest-point order, ``n_representatives`` leaves in all (default: one per parent); or the leaves listed in
   ``representative_leaves_path``.
3. Measurements (:func:`harp.measure.run_measurements`): a LoRA adapter per representative, scored against the
   base model on the proxy eval set; every finished leaf is committed to the store at once.
4. Empirical Bayes (:func:`harp.load.infer_effects`): posterior effects of every leaf, active domains.
5. Optionally ``active_rounds`` rounds of active refinement (:func:`harp.active.next_leaves`): measure the
   ``active_k`` leaves whose measurement would most change the selection, then infer again.
6. Selection (:func:`harp.select`) under HARP-C and HARP-E, cut at the best prefix, capped at ``TOP_K_POINTS``,
   from the base scores ``b_d`` of ``v0``, else of the base-score JSONL ``representatives_path``
   (:mod:`harp.original`), else of the base model as measured.

Train and eval examples come as text records or tokenised (``input_ids``/``labels``, as the original release
takes them; :mod:`harp.data`): tokenised examples are trained on and scored as given, never re-tokenised.

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
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harp._validation import check_base, check_budget, check_weights
from harp.original import (
    BaseScores,
    LazyTokenizer,
    default_eval_indices_path,
    is_base_scores_path,
    read_base_scores,
    write_base_scores,
)
from harp.select import select

if TYPE_CHECKING:
    from harp.data import EvalSet, TrainingPool
    from harp.measure import MeasureConfig, MeasureReport
    from harp.store import Store

__all__ = ["HarpResult", "harp"]

PathLike = str | os.PathLike[str]
STORE_NAME = "harp.duckdb"
_HIERARCHY_RUN = "harp-hierarchy"
# The eval kinds each metric fits (None: any). "accuracy" on tokenised examples is the original release's:
# every label token the greedy prediction under teacher forcing (harp.token_eval).
_METRICS: dict[str, tuple[str, ...] | None] = {
    "auto": None,
    "accuracy": ("choice", "tokens"),
    "multiple_choice": ("choice",),
    "exact_match": ("generate",),
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
        store); ``store_hash`` (the content hash of the snapshot the selections were computed from); ``ignored`` (arguments accepted but without effect); ``timings`` (seconds per stage).
        Under the original release's names too: ``harp_c``/``harp_e`` (the selections), ``orders`` and ``cuts``
        (``{"harp_c": ..., "harp_e": ...}``), ``v0`` (the ``b_d`` used, as ``base``), with ``base_source``
        ("v0", "representatives_path" or "measured"), ``representatives_path`` (the base-score file or None),
        ``eval_indices`` (positions in ``eval_examples`` of the proxy questions) and ``eval_indices_path``.
    """

    harp_c: np.ndarray
    harp_e: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------------------
# Arguments of the original release


def _training_pool(value: Any, tokenizer: Any) -> TrainingPool:
    from harp.data import TrainingPool, load_training_pool, training_pool_from_records
    from harp.original import is_collection, records

    if isinstance(value, TrainingPool):
        return value
    if isinstance(value, str | os.PathLike):
        return load_training_pool(value, tokenizer=tokenizer)
    if is_collection(value):
        if not len(value):
            raise ValueError("train_examples is empty")
        return training_pool_from_records(records(value, "train_examples"), tokenizer=tokenizer)
    raise ValueError(
        "train_examples must be a TrainingPool, a .jsonl/.parquet path, or a list (or dataset) of records "
        f"(prompt/response, messages, or tokenised input_ids/labels), got {type(value).__name__}"
    )


def _eval_set(value: Any, tokenizer: Any) -> EvalSet:
    from harp.data import EvalSet, eval_set_from_records, read_records
    from harp.original import is_collection, records

    if isinstance(value, EvalSet):
        return value
    if isinstance(value, str | os.PathLike):
        return eval_set_from_records(
            read_records(value), path=str(value), tokenizer=tokenizer, require_domain=False
        )
    if is_collection(value):
        if not len(value):
            raise ValueError("eval_examples is empty")
        return eval_set_from_records(
            records(value, "eval_examples"), path="eval_examples", tokenizer=tokenizer, require_domain=False
        )
    raise ValueError(
        "eval_examples must be an EvalSet, a .jsonl/.parquet path, or a list (or dataset) of records, "
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


def _proxy_indices(eval_set: EvalSet, indices: np.ndarray, name: str) -> np.ndarray:
    n = len(eval_set)
    bad = indices[(indices < 0) | (indices >= n)]
    if bad.size:
        raise ValueError(f"{name} must be question indices in 0..{n - 1}, got {int(bad[0])}")
    if np.unique(indices).size != indices.size:
        raise ValueError(f"{name} lists a question more than once")
    if indices.size == 0:
        raise ValueError(f"{name} is empty")
    return indices


def _check_metric(eval_metric: str | None, eval_set: EvalSet) -> None:
    key = "auto" if eval_metric is None else str(eval_metric).strip().lower()
    if key not in _METRICS:
        raise ValueError(
            f"eval_metric must be one of {sorted(_METRICS)} (the score follows the eval records: multiple "
            f"choice by option log-likelihood, short answers by exact match), got {eval_metric!r}"
        )
    fits = _METRICS[key]
    if fits is not None:
        other = sorted({kind for kind in eval_set.kinds if kind not in fits})
        if other:
            names = {"choice": "multiple-choice", "generate": "short-answer", "tokens": "tokenised"}
            raise ValueError(
                f"eval_metric {eval_metric!r} does not fit the eval set: it holds {names[other[0]]} questions"
            )


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


def _representatives_paths(
    representatives_path: PathLike | None, representative_leaves_path: PathLike | None
) -> tuple[Path | None, Path | None]:
    """(base-score JSONL, leaf-id list): a ``representatives_path`` not ending in ``.jsonl`` is the older
    leaf-id list."""
    if representatives_path is None or is_base_scores_path(representatives_path):
        scores = None if representatives_path is None else Path(representatives_path)
        leaves = None if representative_leaves_path is None else Path(representative_leaves_path)
        return scores, leaves
    if representative_leaves_path is not None:
        raise ValueError(
            f"representatives_path ({representatives_path}) is not a .jsonl file of base scores, and "
            "representative_leaves_path is given too: give the leaf ids once"
        )
    warnings.warn(
        f"representatives_path ({representatives_path}) does not end in .jsonl, so it is read as leaf ids to "
        "measure; pass it as representative_leaves_path (representatives_path is the base-score JSONL of the "
        "original HARP release)",
        DeprecationWarning,
        stacklevel=3,
    )
    return None, Path(representatives_path)


def _proxy_eval(
    full: EvalSet, proxy: np.ndarray, scores_path: Path | None
) -> tuple[EvalSet, BaseScores | None]:
    """The proxy eval set with its domains, and the base-score file's contents when it exists."""
    subset = proxy.size != len(full) or bool((proxy != np.arange(len(full))).any())
    label = f"{full.path}[{proxy.size} of {len(full)} questions]" if subset else full.path
    if scores_path is not None and scores_path.is_file():
        scores = read_base_scores(scores_path, full, proxy)
        return full.take(proxy, label).with_domains(scores.subjects), scores
    for q in proxy.tolist():
        if not full.domain_names[int(full.domain[q])]:
            raise ValueError(
                f"eval_examples[{q}] has no 'domain' (or 'subject'): give every eval example one, or a "
                "representatives_path JSONL that gives each question's subject"
            )
    return full.take(proxy, label), None


def _check_v0(v0: Any, domain_names: list[str]) -> np.ndarray | None:
    if v0 is None:
        return None
    if isinstance(v0, Mapping):
        missing = [name for name in domain_names if name not in v0]
        if missing:
            raise ValueError(f"v0 has no score for the domains {missing[:5]}")
        v0 = [v0[name] for name in domain_names]
    elif np.ndim(v0) == 0:
        raise ValueError(
            f"v0 must give one base score per domain ({len(domain_names)}: a list in sorted name order or "
            f"{{name: score}}), got the single number {v0!r}"
        )
    return check_base(v0, len(domain_names))


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
    texts, responses = pool.store_texts()
    write_hierarchy(store, hierarchy, texts=texts, responses=responses, sources=pool.sources)
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
    leaves_path: PathLike | None,
    say: Callable[[str], None],
) -> np.ndarray:
    from harp.measure import choose_representatives, leaf_centroids

    _, leaf_of_point, leaf_parent = _read_tree(store)
    n_leaves = leaf_parent.size
    if leaves_path is not None and Path(leaves_path).is_file():
        leaves = _read_ids(leaves_path, "representative_leaves_path")
        bad = leaves[(leaves < 0) | (leaves >= n_leaves)]
        if bad.size:
            raise ValueError(
                f"representative_leaves_path ({leaves_path}) must hold leaf ids in 0..{n_leaves - 1}, "
                f"got {int(bad[0])}"
            )
        say(f"measuring the {leaves.size} representatives listed in {leaves_path}")
        return leaves
    budget = int(leaf_parent.max()) + 1 if n_representatives is None else n_representatives
    leaf_mean, parent_mean = leaf_centroids(X, leaf_of_point, leaf_parent)
    leaves = choose_representatives(leaf_parent, leaf_mean, parent_mean, budget)
    if leaves_path is not None:
        Path(leaves_path).write_text(json.dumps(leaves.tolist()) + "\n", encoding="utf-8")
        say(f"wrote the {leaves.size} representatives to {leaves_path}")
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
    representative_leaves_path: PathLike | None = None,
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
    train_examples : TrainingPool, path, or list (or dataset) of records
        The training pool: a :class:`harp.data.TrainingPool`, a ``.jsonl``/``.parquet`` file, or records (a list,
        or anything with ``len`` and ``[i]`` such as a Hugging Face dataset) with
        ``prompt``/``response`` or chat ``messages`` (``(prompt, response)`` pairs are accepted too), or
        tokenised records as the original release takes them: ``input_ids``, ``labels`` (-100 where there is no
        loss, typically the prompt), optional ``attention_mask`` (0: padding, dropped); extra keys are ignored.
        Tokenised examples are trained on as given: never re-tokenised, not cut to ``max_length``.
    eval_examples : EvalSet, path, or list (or dataset) of records
        The proxy eval set: ``question``/``choices``/``answer``, ``prompt``/``answer``, or tokenised
        ``input_ids``/``labels``, each with its ``domain`` (or ``subject``); a record may go without one when
        the base-score file ``representatives_path`` names each question's subject.
    tokenizer : Hugging Face tokenizer, optional
        Decodes tokenised examples into the text previews of the store and app (default: the tokenizer saved
        with ``base_model_name``). Training and scoring use the tokenizer saved with the model, so that workers in
        other processes or machines load the same one; it only pads, and padding carries no loss and no
        attention. Listed in ``info["ignored"]`` when no example is tokenised.
    eval_indices : sequence of int, optional
        Use only these questions of ``eval_examples`` as the proxy eval set (in this order).
    eval_indices_path : str or Path, optional
        The same, read from ``.npy``, ``.json`` or a text file of integers. Give at most one of the two. Default,
        when neither is given and ``eval_metric`` is: ``eval_indices_<eval_metric>.npy`` in ``checkpoint_dir``
        or else in the working directory, when that file exists.
    representatives_path : str or Path, optional
        The base model's scores, as JSONL (see :mod:`harp.original`): one line per eval question
        (``{"subject", "acc01"}``, optionally ``"index"``) or per subject (``{"subject", "acc01", "n"}``). Its
        subjects are the domains and its per-subject mean ``acc01`` is ``b_d``. When the file does not exist,
        the base model's per-question scores are written there. A path not ending in ``.jsonl`` is read as
        ``representative_leaves_path`` (deprecated; a ``DeprecationWarning`` says so).
    v0 : array-like of shape (n_domains,) or dict, optional
        Base-model score of each domain (``{name: score}`` or in sorted domain-name order), in [0, 1]: ``b_d``
        for the active flags and the selection. Default: from ``representatives_path``, else the base model's
        measured mean scores. The paired effects are always measured against the base model's per-question
        scores.
    eval_metric : {"auto", "accuracy", "multiple_choice", "exact_match"}, optional
        The metric follows the records: option log-likelihood accuracy for multiple choice, exact match for short
        answers, and for tokenised examples 1 when every label token is the model's greedy prediction under
        teacher forcing. Naming one checks that the eval set fits it (``accuracy``: multiple choice or
        tokenised). Other metrics are refused.
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
    representative_leaves_path : str or Path, optional
        Leaf ids to measure (``.npy``, ``.json`` or text). When the file does not exist yet, the representatives
        chosen here are written to it, so a later run measures the same leaves.
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
    scores_path, leaves_path = _representatives_paths(representatives_path, representative_leaves_path)
    decoder = tokenizer if tokenizer is not None else LazyTokenizer(base_model_name)

    with tempfile.TemporaryDirectory(prefix="harp-") as scratch_name:
        scratch = Path(scratch_name)
        pool = _training_pool(train_examples, decoder)
        full_eval = _eval_set(eval_examples, decoder)
        if eval_indices is None and eval_indices_path is None:
            eval_indices_path = default_eval_indices_path(eval_metric, checkpoint_dir)
            if eval_indices_path is not None:
                say(f"proxy eval set: the questions listed in {eval_indices_path}")
        if eval_indices_path is not None:
            proxy = _proxy_indices(
                full_eval,
                _read_ids(eval_indices_path, "eval_indices_path"),
                f"eval_indices in {eval_indices_path}",
            )
        elif eval_indices is not None:
            proxy = _proxy_indices(full_eval, _ids(eval_indices, "eval_indices"), "eval_indices")
        else:
            proxy = np.arange(len(full_eval), dtype=np.int64)
        eval_set, base_scores = _proxy_eval(full_eval, proxy, scores_path)
        _check_metric(eval_metric, eval_set)
        given_base = _check_v0(v0, eval_set.domain_names)
        tokenised = pool.tokens is not None or "tokens" in eval_set.kinds
        ignored = ["tokenizer"] if tokenizer is not None and not tokenised else []
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

        representatives = _representatives(store, X, n_representatives, leaves_path, say)
        lap("representatives_s")

        def measure(leaves: Sequence[int] | np.ndarray) -> MeasureReport:
            from harp.measure import run_measurements

            return run_measurements(
                store, base_model_name, pool, eval_set, leaves, config, executor=executor,  # type: ignore[arg-type]
                devices=devices, workers_per_device=workers_per_device, address=address,
                max_examples_per_leaf=max_examples_per_leaf, log=say,
            )  # fmt: skip

        first = measure(representatives)
        config_key = first.config_key
        if scores_path is not None and base_scores is None:
            write_base_scores(scores_path, eval_set, proxy, first.base)
            say(f"wrote the base model's scores of {len(eval_set)} questions to {scores_path}")
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
        base, base_source = inputs.base, "measured"
        if given_base is None and base_scores is not None:
            given_base = np.array([base_scores.base[name] for name in inputs.domain_names])
            base_source = "representatives_path"
        elif given_base is not None:
            base_source = "v0"
        if given_base is not None:
            from harp.bayes import active_domains

            base = given_base
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
            # The hash of the contents the selections were computed from, read in the snapshot of phi and
            # members: a write after it (another `harp infer`) must not be named in their manifests.
            "store_hash": inputs.content_hash,
            "v0": base,
            "base_source": base_source,
            "representatives_path": None if scores_path is None else str(scores_path),
            "eval_indices": proxy,
            "eval_indices_path": None if eval_indices_path is None else str(eval_indices_path),
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
        # The original release's names: the selections, and the orders and cuts by envelope.
        info["harp_c"], info["harp_e"] = results["C"].points, results["E"].points
        info["orders"] = {"harp_c": results["C"].order, "harp_e": results["E"].order}
        info["cuts"] = {"harp_c": int(results["C"].cut), "harp_e": int(results["E"].cut)}
        return HarpResult(harp_c=results["C"].points, harp_e=results["E"].points, info=info)
