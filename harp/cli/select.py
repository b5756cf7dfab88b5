"""``harp select``: the greedy selection of leaves, written as CSV plus a manifest (and saved in the store).

A thin shell over :func:`harp.select.select` and :mod:`harp.export`: every check that needs no big table comes
before the store's selection inputs are read, and the outputs are staged, then published together.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import numpy as np

from harp.cli.common import Context, handles_errors
from harp.cli.saving import check_save_name, locked_error, save_in_store, saved_name_taken
from harp.domain_weights import read_weights_file, weights_for_domains
from harp.objective import default_weights

__all__ = ["select_command"]

F = TypeVar("F", bound=Callable[..., Any])


def _cycle_collection_paused(function: F) -> F:
    """Run a short command with Python's cyclic garbage collector off (reference counting still frees nearly
    everything): numba's start-up makes objects by the hundred thousand, and the collections they trigger
    walk all of them, 0.3 s of a `harp select`. Long commands (measure, run) keep it on."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        enabled = gc.isenabled()
        gc.disable()
        try:
            return function(*args, **kwargs)
        finally:
            if enabled:
                gc.enable()

    return wrapper  # type: ignore[return-value]


def _check_outputs(csv_path: Path, manifest_path: Path, inputs: dict[str, Path | None]) -> None:
    from harp.export import check_outputs

    check_outputs(csv_path, manifest_path, inputs, option="--out")


def _in_option(option: str, check: Callable[..., Any], *args: Any) -> Any:
    """Run a library check and name the CLI option in its message."""
    try:
        return check(*args)
    except ValueError as error:
        raise ValueError(f"{option}: {error}") from None


@click.command("select")
@click.option(
    "--store", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Store to read."
)
@click.option("--envelope", required=True, help="C or E (also harp-c / harp-e, any case).")
@click.option("--budget", type=int, default=None, help="Maximum number of points (default: no cap).")
@click.option(
    "--weights",
    "weights_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help='JSON {"domain": weight}; unlisted domains weigh 1 if active, else 0.',
)
@click.option("--all-domains", is_flag=True, help="Weigh every domain 1 by default, active or not.")
@click.option("--pin", "pins", type=int, multiple=True, help="Leaf always selected, first (repeatable).")
@click.option("--exclude", "excludes", type=int, multiple=True, help="Leaf never selected (repeatable).")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="CSV to write (never an input of this command or a store; a CSV of ours is replaced).",
)
@click.option("--save-as", default=None, help="Also save the selection in the store under this new name.")
@click.option(
    "--lock-timeout",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds to wait while another process holds the store.",
)
@click.pass_obj
@handles_errors()
@_cycle_collection_paused
def select_command(
    obj: Context,
    store: Path,
    envelope: str,
    budget: int | None,
    weights_file: Path | None,
    all_domains: bool,
    pins: tuple[int, ...],
    excludes: tuple[int, ...],
    out: Path,
    save_as: str | None,
    lock_timeout: float,
) -> None:
    """Select leaves greedily and write the chosen point indices as CSV plus a manifest.

    Writes FILE.csv (rank,point_id,leaf_id) and FILE.manifest.json (envelope, weights, budget, pins, the store's
    content hash, version, time), each under a temporary name renamed into place. Neither may be the store, the
    weights file or another store; a CSV and manifest of an earlier `harp select` are replaced. With --save-as,
    a refused save (name taken, store locked) writes nothing. Prints a JSON summary to stdout.

    \b
    Example:
      harp select --store demo.duckdb --envelope C --budget 50000 --pin 12 --exclude 7 --out chosen.csv
    """
    from harp._validation import check_budget, check_envelope, check_leaf_ids
    from harp.export import manifest_path_for, selection_csv, selection_manifest
    from harp.store import Store, StoreLockedError, discard_staged, publish_staged, stage_text

    # Everything that can be checked without the store's big tables, before reading them.
    _in_option("--envelope", check_envelope, envelope)
    _in_option("--budget", check_budget, budget)
    check_save_name(save_as)
    manifest_out = manifest_path_for(out)
    _check_outputs(out, manifest_out, {"--store": store, "--weights": weights_file})
    weights_data = None if weights_file is None else read_weights_file(weights_file, "--weights")
    try:
        opened = Store.open(store, read_only=True, lock_timeout=lock_timeout)
        domains = opened.read_table("domains")
        n_leaves = opened.count("leaves")
        saved = [record["name"] for record in opened.list_selections()] if save_as is not None else []
    except StoreLockedError:
        raise locked_error(store, lock_timeout, "--store", "it cannot be read") from None
    domain_names = [str(name) for name in domains["name"].to_pylist()]
    active = np.asarray(domains["active"].to_pylist(), dtype=bool)
    base_weights = np.ones(len(domain_names)) if all_domains else default_weights(active)
    weights_for_domains(weights_data, weights_file, domain_names, base_weights, "--weights")
    pinned = check_leaf_ids(list(pins), "--pin", n_leaves)
    excluded = check_leaf_ids(list(excludes), "--exclude", n_leaves)
    both = np.intersect1d(pinned, excluded)
    if both.size:
        raise ValueError(f"--pin and --exclude both name leaf {int(both[0])}")
    if save_as is not None and save_as in saved:
        raise saved_name_taken(store, save_as, saved)

    warming = _warm_up_meanwhile(envelope)
    try:
        inputs = opened.selection_inputs()
    except StoreLockedError:
        raise locked_error(store, lock_timeout, "--store", "it cannot be read") from None
    base_weights = np.ones(inputs.n_domains) if all_domains else default_weights(inputs.active)
    weights = weights_for_domains(weights_data, weights_file, inputs.domain_names, base_weights, "--weights")
    warming.join()
    from harp.select import select

    start = time.perf_counter()
    result = select(
        inputs.phi,
        inputs.base,
        envelope=envelope,
        weights=weights,
        members=inputs.members,
        budget=budget,
        pinned=list(pins),
        excluded=list(excludes),
    )
    obj.log(
        f"selected {result.points.size} points from {result.leaves.size} leaves in {time.perf_counter() - start:.2f} s"
    )
    manifest = selection_manifest(
        result,
        envelope=envelope,
        weights=weights,
        budget=budget,
        pinned=pins,
        excluded=excludes,
        store_hash=inputs.content_hash,  # read in the snapshot of phi and members
        domain_names=inputs.domain_names,
        store_path=store.resolve(),
    )
    # Both files are staged, then the save (which may be refused), then both are published: a refused save
    # leaves no file behind, and an interrupted write leaves the old files.
    staged: list[tuple[Path, Path]] = []
    try:
        staged.append((stage_text(out, selection_csv(result), "select"), out))
        staged.append(
            (stage_text(manifest_out, json.dumps(manifest, indent=2) + "\n", "select"), manifest_out)
        )
        # Again, now that the work is done: a file may have appeared at --out meanwhile.
        _check_outputs(out, manifest_out, {"--store": store, "--weights": weights_file})
        if save_as is not None:
            settings: dict[str, Any] = {
                "envelope": envelope,
                "weights": weights,
                "budget": budget,
                "pinned": list(pins),
                "excluded": list(excludes),
                "selection": result,
                "store_hash": inputs.content_hash,  # what it was computed from, whatever was written since
            }
            save_in_store(
                store, lock_timeout, save_as, lambda opened: opened.save_selection(save_as, **settings)
            )
        for temporary, target in staged:
            publish_staged(temporary, target)
    finally:
        for temporary, _ in staged:
            discard_staged(temporary)
    if save_as is not None:
        obj.log(f"saved as {save_as!r} in {store}")
    click.echo(
        json.dumps(
            {
                "csv": str(out),
                "manifest": str(manifest_out),
                **manifest["counts"],
                "utility": manifest["utility"],
            }
        )
    )


def _warm_up_meanwhile(envelope: str) -> threading.Thread:
    """Import harp.select and load its compiled greedy on a thread (:func:`harp.select.warm_up`), a fixed
    0.4 s of numba's that then overlaps the store read instead of following it."""

    def load() -> None:
        with contextlib.suppress(Exception):  # the real call meets the same error and reports it
            from harp.select import warm_up

            warm_up(envelope)

    thread = threading.Thread(target=load, name="harp-warm-up", daemon=True)
    thread.start()
    return thread
