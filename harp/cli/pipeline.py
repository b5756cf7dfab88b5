"""Pipeline commands of the ``harp`` CLI: ``hierarchy``, ``layout``, ``infer`` and ``load``.

A thin shell over :mod:`harp.hierarchy`, :mod:`harp.layout`, :mod:`harp.runs` and :mod:`harp.load`: parse,
call, present. A JSON summary goes to stdout, progress and warnings to stderr (``harp -q`` silences them), a
library error (a missing optional extra included) becomes one line ``Error: ...`` with exit status 1.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from harp.cli.common import LIBRARY_OR_IMPORT_ERRORS, echo_json, errors, progress_logger
from harp.id_lists import leaf_id_list

__all__ = ["hierarchy_command", "infer_command", "layout_command", "load_command"]

_EXISTING_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
_STORE = click.Path(dir_okay=False, path_type=Path)
# `harp hierarchy` and `harp load` read the same texts file, through one reader (harp.load.read_point_texts).
_TEXTS = click.option(
    "--texts",
    type=_EXISTING_FILE,
    default=None,
    help="Texts, one per point (.jsonl, .parquet or .txt); a training pool's prompt, response and source are "
    "kept apart.",
)


def _open_store(path: Path, *, create: bool) -> Any:
    from harp.store import Store

    if create and not path.exists():
        return Store.create(path)
    return Store.open(path)


def _load_features(path: Path) -> np.ndarray:
    if path.suffix.lower() != ".npy":
        raise ValueError(f"--features: {path} must be a .npy file (numpy.save of an N x dim array)")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"--features: cannot read {path} as a .npy array: {error}") from None


@click.command("hierarchy")
@click.option(
    "--features", type=_EXISTING_FILE, required=True, help="X_feat.npy: one row of features per point."
)
@click.option("--store", type=_STORE, required=True, help="Store to write (created when missing).")
@_TEXTS
@click.option(
    "--leaf-size", type=click.IntRange(min=1), default=64, show_default=True, help="Target points a leaf."
)
@click.option("--leaves-per-parent", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--parents-per-large", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--min-leaf", type=click.IntRange(min=1), default=None, help="Smallest leaf [leaf-size / 4].")
@click.option("--max-leaf", type=click.IntRange(min=1), default=None, help="Largest leaf [4 x leaf-size].")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same tree.")
@click.option(
    "--backend",
    type=click.Choice(["auto", "faiss", "torch", "sklearn"]),
    default="auto",
    show_default=True,
    help="k-means: faiss, torch on a GPU, or scikit-learn (auto: the first available).",
)
@click.option("--layout/--no-layout", default=True, show_default=True, help="Also compute the 2-D leaf map.")
@click.option(
    "--layout-method", type=click.Choice(["auto", "umap", "pca"]), default="auto", show_default=True
)
@click.option(
    "--discard-measurements", is_flag=True, help="Replace a tree that has measurements (they are deleted)."
)
def hierarchy_command(
    features: Path,
    store: Path,
    texts: Path | None,
    leaf_size: int,
    leaves_per_parent: int,
    parents_per_large: int,
    min_leaf: int | None,
    max_leaf: int | None,
    seed: int,
    backend: str,
    layout: bool,
    layout_method: str,
    discard_measurements: bool,
) -> None:
    """Stage 1a: cluster the pool into large nodes, parents and leaves, and write the tree to the store.

    Point ids are the row numbers of X_feat. Prints a JSON summary.

    \b
    Example:
      harp hierarchy --features X_feat.npy --texts pool.jsonl --store pool.duckdb --leaf-size 64
    """
    from harp.hierarchy import build_hierarchy
    from harp.layout import ensure_layout
    from harp.load import read_point_texts, write_hierarchy

    log = progress_logger()
    started = time.perf_counter()
    with errors(LIBRARY_OR_IMPORT_ERRORS):
        X = _load_features(features)
        text_list = read_point_texts(texts) if texts is not None else None
        if text_list is not None and len(text_list) != X.shape[0]:
            raise ValueError(
                f"--texts: {texts} has {len(text_list)} texts but {features} has {X.shape[0]} rows"
            )
        opened = _open_store(store, create=True)
        tree = build_hierarchy(
            X,
            leaf_size=leaf_size,
            leaves_per_parent=leaves_per_parent,
            parents_per_large=parents_per_large,
            min_leaf=min_leaf,
            max_leaf=max_leaf,
            seed=seed,
            backend=backend,  # type: ignore[arg-type]
            progress=log,
        )
        run_id = opened.add_run("hierarchy", {**tree.config, "features": str(features)})
        write_hierarchy(
            opened,
            tree,
            texts=text_list.texts if text_list is not None else None,
            responses=text_list.responses if text_list is not None else None,
            sources=text_list.sources if text_list is not None else None,
            discard_measurements=discard_measurements,
        )
        timings = dict(tree.timings)
        method = None
        if layout:
            tick = time.perf_counter()
            try:
                result, _ = ensure_layout(
                    opened,
                    tree.leaf_centroids,
                    method=layout_method,  # type: ignore[arg-type]
                    seed=seed,
                    X_feat=X,
                )
            except ImportError as error:  # the tree is written; the map can be made where umap-learn is
                log(f"warning: no layout ({error}); run `harp layout` there")
            else:
                timings["layout"] = time.perf_counter() - tick
                method = result.method
                log(f"layout: {method} of {tree.n_leaves} leaf centroids")
        opened.finish_run(run_id, timings=timings)
        sizes = tree.leaf_size
        echo_json(
            {
                "store": str(store),
                "points": tree.n_points,
                "leaves": tree.n_leaves,
                "parents": tree.n_parents,
                "large_nodes": tree.n_large,
                "leaf_size": {
                    "min": int(sizes.min()),
                    "median": float(np.median(sizes)),
                    "max": int(sizes.max()),
                },
                "backend": tree.config["backend"],
                "layout": method,
                "seconds": round(time.perf_counter() - started, 2),
            }
        )


@click.command("layout")
@click.option("--store", type=_STORE, required=True, help="Store with a tree.")
@click.option("--features", type=_EXISTING_FILE, required=True, help="X_feat.npy the tree was built from.")
@click.option("--method", type=click.Choice(["auto", "umap", "pca"]), default="auto", show_default=True,
              help="auto: UMAP with 16 leaves or more, PCA below.")  # fmt: skip
@click.option("--n-neighbors", type=click.IntRange(min=2), default=15, show_default=True)
@click.option("--min-dist", type=click.FloatRange(0, 1), default=0.1, show_default=True)
@click.option("--metric", default="cosine", show_default=True, help="UMAP input metric.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True, help="Recompute even when the cached layout's key matches.")
def layout_command(
    store: Path,
    features: Path,
    method: str,
    n_neighbors: int,
    min_dist: float,
    metric: str,
    seed: int,
    force: bool,
) -> None:
    """Compute the 2-D map of the leaves (UMAP of the leaf centroids) and cache it in the store, with the
    position of every example around its leaf (the app's "Show the examples of open leaves").

    The layout is recomputed only when its key (version, method, every hyperparameter, a fingerprint of the
    centroids) differs from the stored one. Prints a JSON summary.

    \b
    Example:
      harp layout --store pool.duckdb --features X_feat.npy --n-neighbors 30
    """
    from harp.layout import ensure_layout, leaf_centroids

    log = progress_logger()
    with errors(LIBRARY_OR_IMPORT_ERRORS):
        opened = _open_store(store, create=False)
        points = opened.read_table("points")
        n_leaves = opened.read_table("leaves").num_rows
        if n_leaves == 0:
            raise ValueError(f"{store} has no tree yet: run `harp hierarchy` first")
        X = _load_features(features)
        centroids = leaf_centroids(X, points["point_id"].to_numpy(), points["leaf_id"].to_numpy(), n_leaves)
        tick = time.perf_counter()
        result, computed = ensure_layout(
            opened,
            centroids,
            force=force,
            method=method,  # type: ignore[arg-type]
            n_neighbors=n_neighbors,
            min_dist=min_dist,
            metric=metric,
            seed=seed,
            X_feat=X,
        )
        log(
            f"layout: {result.method} of {n_leaves} leaves and the positions of their {points.num_rows} points "
            + (
                f"computed in {time.perf_counter() - tick:.1f} s"
                if computed
                else "unchanged (cached key matches)"
            )
        )
        echo_json(
            {
                "store": str(store),
                "method": result.method,
                "computed": computed,
                "key": result.key,
                "point_positions": points.num_rows,
            }
        )


@click.command("infer")
@click.option("--store", type=_STORE, required=True, help="Store with a tree, domains and measurements.")
@click.option("--config-key", default=None, help="Use the measurements of this configuration (when several).")
@click.option("--threshold", type=float, default=1.645, show_default=True,
              help="A domain is active when some leaf has posterior mean / sd above this.")  # fmt: skip
@click.option("--prior-sd", type=click.FloatRange(min=0, min_open=True), default=0.1, show_default=True,
              help="Posterior sd of a domain without measurements.")  # fmt: skip
@click.option("--hold-out", "hold_out", default=None,
              help="Leaves whose measurements the fit must not see: comma-separated ids, or a .json/.txt/.npy "
              "file of ids (to check the posterior against them).")  # fmt: skip
@click.option("--active-rule", type=click.Choice(["any-leaf", "family-wise"]), default="any-leaf",
              show_default=True,
              help="any-leaf: a domain is active when one leaf passes --threshold; family-wise: when one passes "
              "the threshold corrected for the number of leaves (Sidak), so chance passes are rare.")  # fmt: skip
@click.option("--training-noise/--no-training-noise", default=True, show_default=True,
              help="Add the spread of leaves measured under several seeds of this config to every "
              "measurement's variance.")  # fmt: skip
def infer_command(
    store: Path,
    config_key: str | None,
    threshold: float,
    prior_sd: float,
    hold_out: str | None,
    active_rule: str,
    training_noise: bool,
) -> None:
    """Empirical Bayes: posterior effects of every leaf on every domain from the measured leaves.

    Estimates the variance components per domain (REML), writes the posterior mean and sd of every leaf and the
    active flags of the domains, and prints a JSON summary (spreads per domain, active domains).

    \b
    Example:
      harp infer --store pool.duckdb --threshold 1.645
      harp infer --store pool.duckdb --hold-out holdout.json    # leaves to check the posterior against
      harp infer --store pool.duckdb --config-key m1-... --active-rule family-wise
    """
    from harp.runs import rerun_infer

    log = progress_logger()
    with errors(LIBRARY_OR_IMPORT_ERRORS):
        held = None if hold_out is None else leaf_id_list(hold_out, "--hold-out")
        opened = _open_store(store, create=False)
        effects, active = rerun_infer(
            opened,
            config_key=config_key,
            threshold=threshold,
            prior_sd=prior_sd,
            hold_out=held,
            progress=log,
            training_noise=training_noise,
            active_rule=active_rule,  # type: ignore[arg-type]
        )
        names = [str(name) for name in opened.read_table("domains")["name"].to_pylist()]
        summary = effects.summary(names)
        summary["store"] = str(store)
        summary["active_domains"] = [name for name, flag in zip(names, active, strict=True) if flag]
        summary["measured_leaves"] = int(effects.measured.any(axis=1).sum())
        echo_json(summary)


@click.command("load")
@click.option("--store", type=_STORE, required=True, help="Store to create.")
@click.option("--phi", type=_EXISTING_FILE, required=True, help="phi.npy: leaves x domains effects.")
@click.option("--leaf-of-point", type=_EXISTING_FILE, required=True, help=".npy: leaf id of each point.")
@click.option("--parent-of-leaf", type=_EXISTING_FILE, required=True, help=".npy: parent id of each leaf.")
@click.option(
    "--base", type=_EXISTING_FILE, required=True, help="Base score of each domain (.npy/.json/.txt)."
)
@click.option(
    "--domains", type=_EXISTING_FILE, required=True, help="Domain names (.txt one a line, or .json)."
)
@click.option("--phi-sd", type=_EXISTING_FILE, default=None, help=".npy: posterior sd of phi (else 0).")
@click.option("--large-of-parent", type=_EXISTING_FILE, default=None,
              help=".npy: large node of each parent (else k-means of parent centroids, or one).")  # fmt: skip
@click.option("--measured", type=_EXISTING_FILE, default=None,
              help="Measured leaves: bool mask .npy, or leaf ids (.npy/.json/.txt).")  # fmt: skip
@_TEXTS
@click.option("--features", type=_EXISTING_FILE, default=None, help="X_feat.npy: in-leaf order and layout.")
@click.option("--threshold", type=float, default=1.645, show_default=True, help="Active-domain threshold.")
@click.option(
    "--layout-method", type=click.Choice(["auto", "umap", "pca"]), default="auto", show_default=True
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True, help="Replace an existing store.")
def load_command(
    store: Path,
    phi: Path,
    leaf_of_point: Path,
    parent_of_leaf: Path,
    base: Path,
    domains: Path,
    phi_sd: Path | None,
    large_of_parent: Path | None,
    measured: Path | None,
    texts: Path | None,
    features: Path | None,
    threshold: float,
    layout_method: str,
    seed: int,
    force: bool,
) -> None:
    """Build a store from the arrays another HARP run produced (phi, tree, base scores, names, ...).

    Shapes are checked against each other first, with errors that name the file. Prints a JSON summary.

    \b
    Example:
      harp load --store old.duckdb --phi phi.npy --phi-sd phi_sd.npy --leaf-of-point leaf.npy \\
          --parent-of-leaf parent.npy --base base.npy --domains domains.txt --texts pool.jsonl \\
          --features X_feat.npy
    """
    from harp.load import load_arrays

    log = progress_logger()
    with errors(LIBRARY_OR_IMPORT_ERRORS):
        opened = load_arrays(
            store,
            phi=phi,
            leaf_of_point=leaf_of_point,
            parent_of_leaf=parent_of_leaf,
            base=base,
            domain_names=domains,
            phi_sd=phi_sd,
            large_of_parent=large_of_parent,
            measured=measured,
            texts=texts,
            X_feat=features,
            threshold=threshold,
            layout_method=layout_method,
            seed=seed,
            overwrite=force,
            progress=log,
        )
        summary = opened.summary(with_hash=True)
        echo_json({key: summary[key] for key in ("path", "content_hash", "counts", "n_active_domains")})
