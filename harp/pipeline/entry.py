"""``harp.harp(...)``, the whole pipeline in one call, and its result :class:`HarpResult`.

The stages are listed in :mod:`harp.pipeline`.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harp._validation import check_budget, check_integer, check_weights
from harp.objective import default_weights
from harp.original import (
    LazyTokenizer,
    default_eval_indices_path,
    write_base_scores,
)
from harp.select import select

if TYPE_CHECKING:
    from harp.measure import MeasureReport

from harp.pipeline.arguments import (
    STORE_NAME,
    PathLike,
    check_metric,
    check_v0,
    eval_set_argument,
    id_array,
    measure_config,
    proxy_eval,
    proxy_indices,
    read_ids,
    representatives_paths,
    store_path,
    training_pool_argument,
)
from harp.pipeline.stages import measured_representatives, read_tree, stored_tree


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
        check_integer(value, name, minimum=minimum)
    if n_representatives is not None:
        check_integer(n_representatives, "n_representatives", minimum=1)
    config = measure_config(lora_config)
    hierarchy_options = {"leaf_size": leaf_size, "leaves_per_parent": leaves_per_parent,
                         "parents_per_large": parents_per_large, "min_leaf": min_leaf, "max_leaf": max_leaf,
                         "seed": seed, "backend": backend}  # fmt: skip
    scores_path, leaves_path = representatives_paths(representatives_path, representative_leaves_path)
    decoder = tokenizer if tokenizer is not None else LazyTokenizer(base_model_name)

    with tempfile.TemporaryDirectory(prefix="harp-") as scratch_name:
        scratch = Path(scratch_name)
        pool = training_pool_argument(train_examples, decoder)
        full_eval = eval_set_argument(eval_examples, decoder)
        if eval_indices is None and eval_indices_path is None:
            eval_indices_path = default_eval_indices_path(eval_metric, checkpoint_dir)
            if eval_indices_path is not None:
                say(f"proxy eval set: the questions listed in {eval_indices_path}")
        if eval_indices_path is not None:
            proxy = proxy_indices(
                full_eval,
                read_ids(eval_indices_path, "eval_indices_path"),
                f"eval_indices in {eval_indices_path}",
            )
        elif eval_indices is not None:
            proxy = proxy_indices(full_eval, id_array(eval_indices, "eval_indices"), "eval_indices")
        else:
            proxy = np.arange(len(full_eval), dtype=np.int64)
        eval_set, base_scores = proxy_eval(full_eval, proxy, scores_path)
        check_metric(eval_metric, eval_set)
        given_base = check_v0(v0, eval_set.domain_names)
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

        path = store_path(checkpoint_dir) if checkpoint_dir is not None else scratch / STORE_NAME
        store = Store.open(path) if path.exists() else Store.create(path)
        say(f"store {path if checkpoint_dir is not None else '(temporary)'}")
        stored_tree(store, X, pool, hierarchy_options, say)
        lap("hierarchy_s")

        representatives = measured_representatives(store, X, n_representatives, leaves_path, say)
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
            weights = default_weights(active)
        weights = check_weights(weights, inputs.n_domains)
        results = {
            name: select(
                inputs.phi, base, envelope=name, weights=weights, members=inputs.members, budget=budget
            )
            for name in ("C", "E")
        }
        lap("select_s")
        _, leaf_of_point, _ = read_tree(store)
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
