"""``harp run CONFIG.toml``, ``harp next`` and ``harp measure --next K``: thin shells over :mod:`harp.pipeline`
and :mod:`harp.active`.

Registered by :func:`register` (``harp.cli`` calls it after ``harp.cli_measure``'s, so ``measure`` exists and
gains a ``--next K`` option here). Heavy imports happen inside the commands.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np

from harp.store import StoreError

__all__ = ["read_run_config", "register"]

# Section -> key -> (accepted types, help). Top-level keys live in the section "".
_SCHEMA: dict[str, dict[str, tuple[tuple[type, ...], str]]] = {
    "": {"store": ((str,), "the store file to write (and to resume from)")},
    "data": {
        "pool": ((str,), "training pool, .jsonl or .parquet"),
        "eval": ((str,), "proxy eval set, .jsonl or .parquet"),
        "features": ((str,), "X_feat.npy, one row per pool example"),
        "embedding_model": ((str,), "a local sentence-transformers directory (when no features)"),
        "eval_indices": ((str,), "questions of the eval set to use (.npy, .json or text)"),
        "representatives": ((str,), "leaf ids to measure; written there when the file does not exist"),
    },
    "model": {"path": ((str,), "base model: a local directory or a name in the local HF cache")},
    "hierarchy": {
        "leaf_size": ((int,), ""),
        "leaves_per_parent": ((int,), ""),
        "parents_per_large": ((int,), ""),
        "min_leaf": ((int,), ""),
        "max_leaf": ((int,), ""),
        "seed": ((int,), ""),
        "backend": ((str,), ""),
    },
    "measure": {
        "budget": ((int,), "representative leaves measured first (default one per parent)"),
        "active_rounds": ((int,), ""),
        "active_k": ((int,), ""),
        "executor": ((str,), ""),
        "devices": ((list,), ""),
        "workers_per_device": ((int,), ""),
        "address": ((str,), ""),
        "max_examples_per_leaf": ((int,), ""),
        "config": ((dict,), "MeasureConfig fields"),
    },
    "select": {
        "budget": ((int,), "point budget of each selection (TOP_K_POINTS)"),
        "out": ((str,), "write OUT-c.csv and OUT-e.csv (with manifests)"),
    },
}
_REQUIRED = (("", "store"), ("data", "pool"), ("data", "eval"), ("model", "path"))

EXAMPLE_CONFIG = """\
store = "pool.duckdb"

[data]
pool = "pool.jsonl"
eval = "eval.jsonl"
features = "X_feat.npy"        # or embedding_model = "./my-st-model" (default: the packaged MiniLM)

[model]
path = "./SmolLM2-135M-Instruct"

[hierarchy]
leaf_size = 64

[measure]
budget = 64                    # representative leaves
active_rounds = 1              # then 1 round of active refinement ...
active_k = 8                   # ... measuring 8 more leaves

[measure.config]               # any MeasureConfig field
steps = 20
learning_rate = 2e-4

[select]
budget = 50000                 # points
out = "chosen"                 # writes chosen-c.csv and chosen-e.csv
"""


def _quiet() -> bool:
    return bool(getattr(click.get_current_context().find_root().obj, "quiet", False))


def _log(message: str) -> None:
    if not _quiet():
        click.echo(message, err=True)


def _key(section: str, key: str) -> str:
    return f"{section}.{key}" if section else key


def read_run_config(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Read and check a ``harp run`` TOML file; paths become absolute, relative to the file's folder.

    Returns ``{section: {key: value}}`` with the top-level keys under ``""``.

    Raises
    ------
    ValueError
        Naming the file and the key: unreadable TOML, an unknown section or key, a value of the wrong type, a
        missing required key, or bad ``measure.config`` fields.
    """
    from harp.measure import MeasureConfig

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise ValueError("reading TOML on Python 3.10 needs tomli: pip install tomli") from None
    file = Path(path)
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as error:
        raise ValueError(f"{file}: cannot read the config ({error.strerror or error})") from None
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{file}: not valid TOML ({error})") from None
    config: dict[str, dict[str, Any]] = {section: {} for section in _SCHEMA}
    for name, value in raw.items():
        if name in _SCHEMA[""]:
            config[""][name] = value
        elif name in _SCHEMA and name:
            if not isinstance(value, dict):
                raise ValueError(f"{file}: {name} must be a [{name}] table, got {type(value).__name__}")
            config[name] = dict(value)
        else:
            known = sorted([*_SCHEMA[""], *(f"[{s}]" for s in _SCHEMA if s)])
            raise ValueError(f"{file}: unknown key {name!r}; known: {', '.join(known)}")
    for section, values in config.items():
        for key, value in values.items():
            if key not in _SCHEMA[section]:
                raise ValueError(
                    f"{file}: unknown key {_key(section, key)!r}; [{section}] takes {', '.join(sorted(_SCHEMA[section]))}"
                )
            types, _ = _SCHEMA[section][key]
            if isinstance(value, bool) or not isinstance(value, types):
                wanted = " or ".join({"str": "a string", "int": "an integer", "list": "a list",
                                      "dict": "a table"}[t.__name__] for t in types)  # fmt: skip
                raise ValueError(f"{file}: {_key(section, key)} must be {wanted}, got {value!r}")
    for section, key in _REQUIRED:
        if key not in config[section]:
            raise ValueError(f"{file}: missing required key {_key(section, key)!r}")
    try:
        config["measure"]["config"] = MeasureConfig.from_dict(config["measure"].get("config", {}))
    except (ValueError, TypeError) as error:
        raise ValueError(f"{file}: measure.config: {error}") from None
    root = file.resolve().parent
    for section, key in (("", "store"), ("data", "pool"), ("data", "eval"), ("data", "features"),
                         ("data", "eval_indices"), ("data", "representatives"), ("select", "out")):  # fmt: skip
        if key in config[section]:
            config[section][key] = str(root / config[section][key])
    model = config["model"]["path"]
    if model.startswith(".") or (root / model).exists():
        config["model"]["path"] = str(root / model)
    if "embedding_model" in config["data"] and (root / config["data"]["embedding_model"]).exists():
        config["data"]["embedding_model"] = str(root / config["data"]["embedding_model"])
    return config


def _features(config: dict[str, dict[str, Any]], say: Callable[[str], None]) -> str:
    """The features file: given, or embedded once and cached beside the store."""
    data = config["data"]
    if "features" in data:
        return str(data["features"])
    cached = Path(config[""]["store"]).with_suffix(".X_feat.npy")
    if cached.is_file():
        say(f"using the cached embeddings {cached}")
        return str(cached)
    from harp.data import load_training_pool
    from harp.embed import embed_texts

    pool = load_training_pool(data["pool"])
    say(f"embedding {len(pool)} examples")
    features = embed_texts(pool.texts(), data.get("embedding_model"), show_progress=not _quiet())
    np.save(cached, features)
    return str(cached)


def _write_selections(out: str, result: Any, store_path: str) -> list[str]:
    """Both selections as CSV and manifest; the manifests name the hash of the snapshot the selections were
    computed from (``info["store_hash"]``), not the store's hash now, which a write since may have moved."""
    from harp.export import selection_manifest, write_selection

    info = result.info
    written = []
    for envelope in ("C", "E"):
        selection = info[f"selection_{envelope.lower()}"]
        manifest = selection_manifest(
            selection, envelope=envelope, weights=info["weights"], budget=info["budget"],
            store_hash=info["store_hash"], domain_names=info["domain_names"], store_path=store_path,
        )  # fmt: skip
        csv_path, _ = write_selection(f"{out}-{envelope.lower()}.csv", selection, manifest)
        written.append(str(csv_path))
    return written


@click.command("run")
@click.argument("config_path", metavar="CONFIG.toml", type=click.Path(dir_okay=False, path_type=Path))
def run_command(config_path: Path) -> None:
    """Run the whole pipeline from a TOML config: embed, hierarchy, measure, infer, select.

    Progress goes to stderr, a JSON summary to stdout. Rerunning the same config resumes: the tree is reused
    and leaves already measured are not measured again. Paths in the config are relative to its folder. Keys:
    store; [data] pool, eval, features or embedding_model, eval_indices, representatives; [model] path;
    [hierarchy] leaf_size, leaves_per_parent, parents_per_large, min_leaf, max_leaf, seed, backend; [measure]
    budget, active_rounds, active_k, executor, devices, workers_per_device, address, max_examples_per_leaf;
    [measure.config] any MeasureConfig field; [select] budget, out.

    \b
    Example (pool.toml):
      store = "pool.duckdb"
      [data]
      pool = "pool.jsonl"
      eval = "eval.jsonl"
      features = "X_feat.npy"
      [model]
      path = "./SmolLM2-135M-Instruct"
      [measure]
      budget = 64
      [select]
      budget = 50000
      out = "chosen"
    \b
      harp run pool.toml
    """
    from harp.pipeline import harp

    started = time.perf_counter()
    try:
        config = read_run_config(config_path)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    data, measure, hierarchy = config["data"], config["measure"], config["hierarchy"]
    try:
        features = _features(config, _log)
        result = harp(
            features,
            config["model"]["path"],
            data["pool"],
            data["eval"],
            eval_indices_path=data.get("eval_indices"),
            representative_leaves_path=data.get("representatives"),
            TOP_K_POINTS=config["select"].get("budget"),
            lora_config=measure["config"],
            checkpoint_dir=config[""]["store"],
            n_representatives=measure.get("budget"),
            active_rounds=measure.get("active_rounds", 0),
            active_k=measure.get("active_k", 4),
            executor=measure.get("executor", "inprocess"),
            devices=measure.get("devices"),
            workers_per_device=measure.get("workers_per_device", 1),
            address=measure.get("address"),
            max_examples_per_leaf=measure.get("max_examples_per_leaf"),
            progress=_log,
            **hierarchy,
        )
        written = (
            _write_selections(config["select"]["out"], result, config[""]["store"])
            if "out" in config["select"]
            else []
        )
    except (ValueError, ImportError, OSError, StoreError) as error:
        raise click.ClickException(str(error)) from None
    except TypeError as error:  # a [hierarchy] key the library rejects by type
        raise click.ClickException(f"{config_path}: [hierarchy]: {error}") from None
    info = result.info
    summary = {
        "store": info["store"],
        "points": int(info["leaf_of_point"].size),
        "leaves": int(info["leaf_parent"].size),
        "measured_leaves": int(info["measured_leaves"].size),
        "domains": len(info["domain_names"]),
        "active_tasks": info["active_tasks"],
        "harp_c": {"points": int(result.harp_c.size), "leaves": int(info["leaves_c"].size),
                   "cut": info["cut_c"], "utility": info["utility_c"]},
        "harp_e": {"points": int(result.harp_e.size), "leaves": int(info["leaves_e"].size),
                   "cut": info["cut_e"], "utility": info["utility_e"]},
        "base_utility": info["base_utility"],
        "csv": written,
        "seconds": round(time.perf_counter() - started, 3),
    }  # fmt: skip
    _log(
        f"done in {summary['seconds']:.1f} s: {summary['measured_leaves']} of {summary['leaves']} leaves measured; "
        f"HARP-C keeps {result.harp_c.size} points (utility {info['utility_c']:.4f}), HARP-E {result.harp_e.size} "
        f"(utility {info['utility_e']:.4f}), base {info['base_utility']:.4f}"
    )
    click.echo(json.dumps(summary))


@click.command("next")
@click.option(
    "--store",
    "store_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Store to read.",
)
@click.option("-k", "k", type=click.IntRange(min=0), required=True, help="How many leaves to propose.")
@click.option(
    "--envelope",
    type=click.Choice(["C", "E", "both"], case_sensitive=False),
    default="both",
    show_default=True,
    help="Score the leaves against the HARP-C selection, the HARP-E one, or both (summed).",
)
@click.option("--exclude", "excludes", type=int, multiple=True, help="Leaf never proposed (repeatable).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the Monte Carlo draws.")
def next_command(store_path: Path, k: int, envelope: str, excludes: tuple[int, ...], seed: int) -> None:
    """Propose the K unmeasured leaves whose measurement would most change the selection.

    Each leaf scores the expected value of information of its in/out decision in the current selection
    (posterior sd near the cut scores high; see docs/run.md). Prints JSON: leaves (best first), scores, cuts.
    Measure them with `harp measure ... --leaves L1,L2` or `harp measure ... --next K`, then `harp infer`.

    \b
    Example:
      harp next --store pool.duckdb -k 8
    """
    from harp.active import next_leaves

    try:
        chosen = next_leaves(store_path, k, envelope=envelope, exclude=list(excludes), seed=seed)
    except (ValueError, OSError, StoreError) as error:
        raise click.ClickException(str(error)) from None
    _log(f"{chosen.leaves.size} of {chosen.n_candidates} unmeasured leaves proposed")
    click.echo(
        json.dumps(
            {
                "leaves": chosen.leaves.tolist(),
                "scores": [round(float(s), 8) for s in chosen.scores],
                "candidates": chosen.n_candidates,
                "cuts": chosen.cuts,
            }
        )
    )


def register(group: click.Group) -> None:
    """Add ``run`` and ``next`` to the ``harp`` group."""
    group.add_command(run_command)
    group.add_command(next_command)
