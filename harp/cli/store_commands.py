"""Store commands of the ``harp`` CLI: ``synth``, ``info``, ``migrate``, ``export`` and ``import``.

A thin shell over :mod:`harp.synth` and :mod:`harp.store`: parse, call, present.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from harp.cli.common import Context, handles_errors

__all__ = ["export_command", "import_command", "info", "migrate", "synth"]


@click.command("synth")
@click.option(
    "--leaves", type=click.IntRange(min=1), default=2000, show_default=True, help="Number of leaves."
)
@click.option(
    "--domains", type=click.IntRange(min=1), default=16, show_default=True, help="Number of domains."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (same seed, same store).")
@click.option(
    "--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Store to write."
)
@click.option(
    "--leaf-size",
    type=click.FloatRange(min=1),
    default=64.0,
    show_default=True,
    help="Mean number of points of a leaf (log-normal sizes).",
)
@click.option("--force", is_flag=True, help="Replace an existing store at --out.")
@click.pass_obj
@handles_errors()
def synth(
    obj: Context, leaves: int, domains: int, seed: int, out: Path, leaf_size: float, force: bool
) -> None:
    """Write a synthetic store: a realistic hierarchical pool with effects, texts and a layout.

    \b
    Example:
      harp synth --leaves 10000 --domains 64 --seed 1 --out big.duckdb
      harp synth --leaves 1000000 --domains 64 --leaf-size 10 --out 10m-points.duckdb
    """
    from harp.synth import synth_store

    start = time.perf_counter()
    obj.log(f"generating {leaves} leaves x {domains} domains (seed {seed}) ...")
    store = synth_store(
        out, leaves=leaves, domains=domains, seed=seed, overwrite=force, mean_leaf_size=leaf_size
    )
    summary = store.summary()
    obj.log(f"wrote {out} in {time.perf_counter() - start:.1f} s")
    click.echo(
        json.dumps({"store": str(out), "counts": summary.get("counts"), "hash": summary.get("content_hash")})
    )


@click.command("info")
@click.argument("store", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@handles_errors()
def info(store: Path, as_json: bool) -> None:
    """Summarise a store: counts, schema version, content hash, domains and runs.

    \b
    Example:
      harp info demo.duckdb
    """
    from harp.store import Store

    opened = Store.open(store, read_only=True)
    summary = opened.summary()
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
        return
    click.echo(f"store           {store}")
    for key, value in summary.items():
        if key in ("n_held_out_leaves", "n_fit_leaves"):
            continue  # said on the n_measured_leaves line
        if key == "n_measured_leaves":
            click.echo(f"{key:<15} {_measured_words(summary)}")
        elif key == "has_point_positions":
            click.echo(
                f"{key:<15} {value}"
                + ("" if value else " (`harp layout --store S --features X_feat.npy` computes them)")
            )
        elif key == "counts" and isinstance(value, dict):
            click.echo("counts          " + ", ".join(f"{name} {count}" for name, count in value.items()))
        elif key == "runs" and isinstance(value, list):
            click.echo(f"runs            {len(value)}")
            for run in value[-5:]:
                click.echo(
                    f"  {run.get('run_id')}  {run.get('kind')}  {run.get('status')}  {run.get('started_at')}"
                )
        else:
            click.echo(f"{key:<15} {value}")


def _measured_words(summary: dict[str, Any]) -> str:
    """``142 measured, of which 24 held out of the fit`` (the fit used the other 118)."""
    measured, held_out = int(summary["n_measured_leaves"]), int(summary.get("n_held_out_leaves") or 0)
    if not held_out:
        return f"{measured} measured, none held out of the fit"
    return (
        f"{measured} measured, of which {held_out} held out of the fit (the fit used {measured - held_out})"
    )


@click.command("migrate")
@click.argument("store", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
@handles_errors()
def migrate(obj: Context, store: Path) -> None:
    """Bring an older store up to this version's schema, in place (each migration one transaction).

    \b
    Example:
      harp migrate old.duckdb
    """
    from harp.store import Store

    opened = Store.open(store)
    version = opened.meta().get("schema_version")
    obj.log(f"{store} is at schema version {version}")
    click.echo(json.dumps({"store": str(store), "schema_version": version}))


@click.command("export")
@click.argument("store", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite Parquet files already in FOLDER.")
@click.pass_obj
@handles_errors()
def export_command(obj: Context, store: Path, folder: Path, force: bool) -> None:
    """Export every table of a store as Parquet files in FOLDER (the interchange format).

    \b
    Example:
      harp export demo.duckdb demo-parquet/
    """
    from harp.store import export_parquet

    files = export_parquet(store, folder, overwrite=force)
    obj.log(f"wrote {len(files)} tables to {folder}")
    click.echo(json.dumps([str(path) for path in files]))


@click.command("import")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.argument("store", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace an existing store at STORE.")
@click.pass_obj
@handles_errors()
def import_command(obj: Context, folder: Path, store: Path, force: bool) -> None:
    """Build a store from a folder of Parquet files written by `harp export`.

    \b
    Example:
      harp import data/demo demo.duckdb
    """
    from harp.store import import_parquet

    imported = import_parquet(folder, store, overwrite=force)
    obj.log(f"imported {folder} into {store}")
    click.echo(json.dumps({"store": str(store), "hash": imported.content_hash()}))
