"""The TOML config of ``harp run``: its schema, an example, and the reader that checks it.

:func:`read_run_config` turns the file into ``{section: {key: value}}`` with paths made absolute; every message
names the file and the key. :func:`features_path` finds (or makes, by embedding the pool once) the features file
a run starts from.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["EXAMPLE_CONFIG", "features_path", "read_run_config"]

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


def features_path(
    config: dict[str, dict[str, Any]], say: Callable[[str], None], *, show_progress: bool = True
) -> str:
    """The features file of a run: ``[data] features`` when given, else the pool embedded once and cached
    beside the store (``STORE.X_feat.npy``), which a rerun reuses.

    Parameters
    ----------
    config : dict
        As :func:`read_run_config` returns it.
    say : callable
        Receives one progress line at a time.
    show_progress : bool, default True
        Show the embedding's progress bar.

    Returns
    -------
    str
        The path of the features file.
    """
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
    features = embed_texts(pool.texts(), data.get("embedding_model"), show_progress=show_progress)
    np.save(cached, features)
    return str(cached)
