"""``harp embed``, ``harp measure`` and ``harp validate``: thin shells over :mod:`harp.embed`, :mod:`harp.measure`
and :mod:`harp.validate`.

Heavy imports (torch, transformers, sentence-transformers, ray) happen inside the commands, so ``harp --help``
stays fast and works without them. These runs last minutes to hours: a library warning is shown by Python when
it happens, not collected until the end.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import numpy as np

from harp.cli.common import LIBRARY_OR_IMPORT_ERRORS, errors, is_quiet, log, progress_logger
from harp.cli.options import (
    RUN_LOCK_TIMEOUT_S,
    executor_options,
    finetune_inputs,
    measure_config_from,
    parse_devices,
    positive_ints,
    set_executor_options,
)
from harp.id_lists import leaf_id_list

__all__ = ["embed_command", "measure_command", "validate_command"]


def _leaf_ids(text: str | None, name: str) -> list[int] | None:
    """Leaf ids from ``"3,8,12"`` or a .json/.txt/.npy file of ids, as ``harp infer --hold-out`` takes them."""
    if text is None:
        return None
    try:
        ids = [int(g) for g in leaf_id_list(text, name)]
    except ValueError as error:
        raise click.BadParameter(str(error).removeprefix(f"{name}: "), param_hint=name) from None
    if not ids:
        raise click.BadParameter(f"{text!r} lists no leaf ids", param_hint=name)
    return ids


@click.command("embed")
@click.option(
    "--pool",
    "pool_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Training pool (.jsonl or .parquet): prompt/response or chat messages.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write X_feat.npy (float32, one L2-normalised row per example).",
)
@click.option(
    "--model",
    default=None,
    help="A local sentence-transformers directory [default: the packaged all-MiniLM-L6-v2].",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... [default: the GPU when there is one].")
@click.option(
    "--dtype",
    type=click.Choice(["float32", "bfloat16", "float16"]),
    default=None,
    help="What the model computes in [default: bfloat16 on a GPU, float32 on the CPU]; the rows are float32.",
)
def embed_command(
    pool_path: Path, out: Path, model: str | None, batch_size: int, device: str | None, dtype: str | None
) -> None:
    """Embed the training pool into X_feat.npy for the hierarchy (offline; nothing is downloaded).

    \b
    Example:
      harp embed --pool pool.jsonl --out X_feat.npy
    """
    from harp.data import load_training_pool
    from harp.embed import embed_texts

    timings: dict[str, Any] = {}
    with errors((ValueError, ImportError, OSError), record_warnings=False, words=False):
        pool = load_training_pool(pool_path)
        log(f"embedding {len(pool)} examples")
        features = embed_texts(
            pool.texts(), model, batch_size=batch_size, device=device, dtype=dtype, show_progress=not is_quiet(),
            timings=timings,
        )  # fmt: skip
    log(
        f"embedded {features.shape[0]} examples in {timings['seconds']:.1f} s "
        f"({timings['texts_per_second']:.0f} examples/s on {timings['device']}, {timings['dtype']})"
    )
    from harp.store import publish_staged, stage_file

    try:  # beside OUT first, then renamed over it: a kill or a full disk leaves the old X_feat.npy whole
        out.parent.mkdir(parents=True, exist_ok=True)
        publish_staged(stage_file(out, lambda stream: np.save(stream, features), "embed"), out)
    except OSError as error:
        raise click.ClickException(f"cannot write --out {out}: {error}") from None
    click.echo(json.dumps({"out": str(out), "rows": int(features.shape[0]), "dim": int(features.shape[1]),
                           "device": timings["device"], "dtype": timings["dtype"],
                           "examples_per_second": round(timings["texts_per_second"], 1)}))  # fmt: skip


def _representatives(store: Any, features_path: Path, budget: int) -> np.ndarray:
    from harp.embed import load_features
    from harp.measure import choose_representatives, leaf_centroids

    points = store.read_table("points").select(["point_id", "leaf_id"]).to_pydict()
    leaf_parent = np.asarray(store.read_table("leaves").sort_by("leaf_id").column("parent_id").to_pylist())
    point_id = np.asarray(points["point_id"], dtype=np.int64)
    features = load_features(features_path)
    if point_id.size and point_id.max() >= features.shape[0]:
        raise ValueError(
            f"{features_path} has {features.shape[0]} rows but the store holds point id {point_id.max()}"
        )
    leaves, parents = leaf_centroids(features[point_id], np.asarray(points["leaf_id"]), leaf_parent)
    return choose_representatives(leaf_parent, leaves, parents, budget)


@click.command("measure")
@click.option(
    "--store",
    "store_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The store holding the tree (its point ids are row numbers of --pool).",
)
@finetune_inputs(
    pool_help="Training pool (.jsonl or .parquet).",
    eval_help="Proxy eval set (.jsonl or .parquet).",
    config_help="A JSON file of MeasureConfig fields; the options below override it.",
)
@click.option(
    "--leaves",
    default=None,
    help="Leaf ids to measure, in order: comma-separated, or a .json/.txt/.npy file of ids.",
)
@click.option(
    "--budget",
    type=click.IntRange(min=0),
    default=None,
    help="Measure this many representatives (needs --features): per parent the leaf nearest its "
    "centroid, then farthest-point order.",
)
@click.option(
    "--features",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="X_feat.npy, to choose representatives with --budget.",
)
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Optimizer steps per adapter [20].")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Examples per step [8].")
@click.option(
    "--lr",
    "learning_rate",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Learning rate [2e-4].",
)
@click.option("--lora-r", type=click.IntRange(min=1), default=None, help="LoRA rank [16].")
@click.option("--max-length", type=click.IntRange(min=1), default=None, help="Tokens per sequence [256].")
@click.option(
    "--dtype",
    type=click.Choice(["float32", "bfloat16", "float16"]),
    default=None,
    help="Base model weights [float32].",
)
@click.option("--seed", type=int, default=None, help="Seed [0].")
@click.option(
    "--score",
    type=click.Choice(["accuracy", "probability"]),
    default=None,
    help="Per-question score: 0/1 accuracy, or the probability of the right answer [accuracy].",
)
@click.option(
    "--protocol",
    type=click.Choice(["base-anchored", "continuation", "in-mixture", "in-mixture-rows"]),
    default=None,
    help="How a leaf's effect is measured: alone from the base model, after a background sample, or inside "
    "it (see docs/measure.md) [base-anchored].",
)
@click.option(
    "--background-size",
    type=click.IntRange(min=1),
    default=None,
    help="Examples in the background sample (continuation, in-mixture) [1000].",
)
@click.option("--background-seed", type=int, default=None, help="Seed of the background sample [0].")
@executor_options("Leaves")
@click.option(
    "--max-examples-per-leaf",
    type=click.IntRange(min=1),
    default=None,
    help="Train on at most this many (most central) examples of a leaf.",
)
@click.option(
    "--next",
    "next_k",
    type=click.IntRange(min=0),
    default=None,
    help="Measure the K unmeasured leaves whose measurement would most change the selection "
    "(needs effects: run `harp infer` first, and again after).",
)
def measure_command(
    store_path: Path,
    model: str,
    pool_path: Path,
    eval_path: Path,
    leaves: str | None,
    budget: int | None,
    features: Path | None,
    config_path: Path | None,
    steps: int | None,
    batch_size: int | None,
    learning_rate: float | None,
    lora_r: int | None,
    max_length: int | None,
    dtype: str | None,
    seed: int | None,
    score: str | None,
    protocol: str | None,
    background_size: int | None,
    background_seed: int | None,
    executor: str,
    devices: str | None,
    workers_per_device: int,
    adapters_per_batch: int,
    address: str | None,
    max_examples_per_leaf: int | None,
    next_k: int | None,
) -> None:
    """Train a LoRA adapter per leaf and store its effect phi on every eval domain (resumable).

    Leaves already measured with the same config, model and eval set are skipped, and every finished leaf is
    written at once, so rerunning the same command after an interruption continues where it stopped.

    \b
    Example:
      harp measure --store pool.duckdb --model ./SmolLM2-135M-Instruct --pool pool.jsonl \\
          --eval eval.jsonl --budget 64 --features X_feat.npy --executor process --devices 0,1
      harp measure ... --budget 64 --features X_feat.npy --adapters-per-batch 8
      harp measure ... --leaves 0,5,9 --protocol in-mixture --background-size 1000 --seed 1
    """
    from harp.data import load_eval_set, load_training_pool
    from harp.measure import run_measurements
    from harp.store import Store

    if [leaves, budget, next_k].count(None) != 2:
        raise click.UsageError("give exactly one of --leaves, --budget and --next")
    if budget is not None and features is None:
        raise click.UsageError("--budget needs --features X_feat.npy to choose representatives")
    leaf_ids = _leaf_ids(leaves, "--leaves")
    device_list = parse_devices(devices)
    with errors(LIBRARY_OR_IMPORT_ERRORS, record_warnings=False, words=False):
        overrides = {"steps": steps, "batch_size": batch_size, "learning_rate": learning_rate, "lora_r": lora_r,
                     "max_length": max_length, "dtype": dtype, "seed": seed, "score": score,
                     "protocol": protocol, "background_size": background_size,
                     "background_seed": background_seed}  # fmt: skip
        config = measure_config_from(config_path, overrides)
        store = Store.open(store_path, lock_timeout=RUN_LOCK_TIMEOUT_S)
        pool = load_training_pool(pool_path)
        eval_set = load_eval_set(eval_path)
        if next_k is not None:
            from harp.active import next_leaves

            leaf_ids = [int(g) for g in next_leaves(store, next_k).leaves]
            log(f"--next {next_k}: measuring leaves {leaf_ids}; run `harp infer` afterwards")
        elif leaf_ids is None:
            assert features is not None and budget is not None
            leaf_ids = [int(g) for g in _representatives(store, features, budget)]
        report = run_measurements(
            store, model, pool, eval_set, leaf_ids, config, executor=executor,  # type: ignore[arg-type]
            devices=device_list, workers_per_device=workers_per_device, address=address,
            max_examples_per_leaf=max_examples_per_leaf, adapters_per_batch=adapters_per_batch, log=progress_logger(),
        )  # fmt: skip
    summary = {
        "run_id": report.run_id,
        "config_key": report.config_key,
        "measured": report.measured,
        "skipped": report.skipped,
        "seconds": round(report.timings.get("total_s", 0.0), 3),
    }
    click.echo(json.dumps(summary))


def _sizes(text: str | None) -> list[int] | None:
    return None if text is None else positive_ints(text, "--sizes", "leaf counts", "2,5,10,20,40")


@click.command("validate")
@click.option(
    "--store",
    "store_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The store whose measured leaves are mixed (measured with the same model, pool, eval and config).",
)
@finetune_inputs(
    model_help="Base model, as for `harp measure`.",
    pool_help="Training pool.",
    eval_help="Proxy eval set.",
    config_help="The MeasureConfig JSON the leaves were measured with (the options below override it).",
)
@click.option(
    "--protocol",
    type=click.Choice(["base-anchored", "continuation", "in-mixture", "in-mixture-rows"]),
    default=None,
    help="Override the config's protocol.",
)
@click.option("--config-key", default=None,
              help="Mix the leaves measured under this key (when the model folder's name has changed).")  # fmt: skip
@click.option("--mixtures", "n_mixtures", type=click.IntRange(min=1), default=12, show_default=True,
              help="How many random unions of measured leaves to finetune.")  # fmt: skip
@click.option("--max-size", type=click.IntRange(min=2), default=40, show_default=True,
              help="Largest union, in leaves; sizes are spread on a log scale from 2.")  # fmt: skip
@click.option(
    "--sizes", default=None, help="Leaves of each union, e.g. 2,5,10,20,40 (instead of --mixtures)."
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the draws.")
@click.option("--regions", type=click.Choice(["parent", "large"]), default=None,
              help="Measure every region of this level whole (the union of its leaves) instead of random "
                   "unions; the leaves need not be measured. See docs/measure.md.")  # fmt: skip
@set_executor_options
def validate_command(
    store_path: Path,
    model: str,
    pool_path: Path,
    eval_path: Path,
    config_path: Path | None,
    protocol: str | None,
    config_key: str | None,
    n_mixtures: int,
    max_size: int,
    sizes: str | None,
    seed: int,
    regions: str | None,
    executor: str,
    devices: str | None,
    workers_per_device: int,
    adapters_per_batch: int,
    address: str | None,
) -> None:
    """Check whether the measured effects add up: finetune on random unions of measured leaves and compare.

    Each union is measured like a leaf (same config, same reference); its effect is stored next to what HARP-C
    and HARP-E predict from its leaves' effects, in the store's `mixtures` table (the app's Validation page
    shows it). Prints a JSON report per envelope: correlation and RMSE of the predicted against the measured
    utility gain, and the sign agreement per domain. Rerunning resumes: unions already stored are skipped.
    With --regions, every parent's (or large node's) leaves are measured together instead: a region's effect
    inside a mixture is larger than the run-to-run noise where a single leaf's may not be.

    \b
    Example:
      harp validate --store pool.duckdb --model ./SmolLM2-135M-Instruct --pool pool.jsonl \\
          --eval eval.jsonl --config measure.json --mixtures 24 --max-size 40 --adapters-per-batch 8
      harp validate --store pool.duckdb --model ./SmolLM2-135M-Instruct --pool pool.jsonl \\
          --eval eval.jsonl --config measure.json --regions parent --adapters-per-batch 8
    """
    from harp.data import load_eval_set, load_training_pool
    from harp.store import Store
    from harp.validate import validate_mixtures

    size_list = _sizes(sizes)
    with errors(LIBRARY_OR_IMPORT_ERRORS, record_warnings=False, words=False):
        config = measure_config_from(config_path, {"protocol": protocol})
        store = Store.open(store_path, lock_timeout=RUN_LOCK_TIMEOUT_S)
        pool = load_training_pool(pool_path)
        eval_set = load_eval_set(eval_path)
        report = validate_mixtures(
            store, model, pool, eval_set, config, sizes=size_list, n_mixtures=n_mixtures, max_size=max_size,
            seed=seed, regions=regions, config_key=config_key, executor=executor,  # type: ignore[arg-type]
            devices=parse_devices(devices),
            workers_per_device=workers_per_device, address=address, adapters_per_batch=adapters_per_batch,
            log=progress_logger(),
        )  # fmt: skip
    click.echo(
        json.dumps(
            {
                "run_id": report.run_id,
                "config_key": report.config_key,
                "measured": len(report.measured),
                "skipped": len(report.skipped),
                "report": report.report,
            }
        )
    )
