"""The ``harp`` command line: a thin shell over the library.

Data goes to stdout, progress and logs to stderr (``-q`` silences them). A library error becomes one line
``Error: ...`` and exit status 1; bad usage exits 2.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
import numpy as np

from harp import __version__
from harp.store import Store, StoreError

F = TypeVar("F", bound=Callable[..., Any])

APP_ENTRY = Path(__file__).resolve().parent.parent / "app" / "streamlit_app.py"


class Context:
    """Options shared by every command."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def log(self, message: str) -> None:
        if not self.quiet:
            click.echo(message, err=True)


@contextmanager
def _errors() -> Iterator[None]:
    """Turn library errors into ``Error: ...`` and exit status 1."""
    try:
        yield
    except (StoreError, ValueError, OSError) as error:
        raise click.ClickException(str(error)) from None


def _handles_errors(function: F) -> F:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _errors():
            return function(*args, **kwargs)

    wrapper.__name__ = function.__name__
    wrapper.__doc__ = function.__doc__
    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="harp")
@click.option("-q", "--quiet", is_flag=True, help="Silence progress and logs on stderr.")
@click.pass_context
def main(ctx: click.Context, quiet: bool) -> None:
    """HARP explorer: which regions of a finetuning pool help or hurt each domain, and what to keep.

    \b
    Example:
      harp synth --leaves 2000 --domains 16 --out demo.duckdb
      harp select --store demo.duckdb --envelope C --budget 50000 --out chosen.csv
      harp app --store demo.duckdb
    """
    ctx.obj = Context(quiet)


@main.command()
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
@click.option("--force", is_flag=True, help="Replace an existing store at --out.")
@click.pass_obj
@_handles_errors
def synth(obj: Context, leaves: int, domains: int, seed: int, out: Path, force: bool) -> None:
    """Write a synthetic store: a realistic hierarchical pool with effects, texts and a layout.

    \b
    Example:
      harp synth --leaves 10000 --domains 64 --seed 1 --out big.duckdb
    """
    from harp.synth import synth_store

    start = time.perf_counter()
    obj.log(f"generating {leaves} leaves x {domains} domains (seed {seed}) ...")
    store = synth_store(out, leaves=leaves, domains=domains, seed=seed, overwrite=force)
    summary = store.summary()
    obj.log(f"wrote {out} in {time.perf_counter() - start:.1f} s")
    click.echo(
        json.dumps({"store": str(out), "counts": summary.get("counts"), "hash": summary.get("content_hash")})
    )


@main.command()
@click.argument("store", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@_handles_errors
def info(store: Path, as_json: bool) -> None:
    """Summarise a store: counts, schema version, content hash, domains and runs.

    \b
    Example:
      harp info demo.duckdb
    """
    opened = Store.open(store, read_only=True)
    summary = opened.summary()
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
        return
    click.echo(f"store           {store}")
    for key, value in summary.items():
        if key == "counts" and isinstance(value, dict):
            click.echo("counts          " + ", ".join(f"{name} {count}" for name, count in value.items()))
        elif key == "runs" and isinstance(value, list):
            click.echo(f"runs            {len(value)}")
            for run in value[-5:]:
                click.echo(
                    f"  {run.get('run_id')}  {run.get('kind')}  {run.get('status')}  {run.get('started_at')}"
                )
        else:
            click.echo(f"{key:<15} {value}")


def _read_weights(path: Path, domain_names: list[str], default: np.ndarray) -> np.ndarray:
    """Weights from a JSON object ``{domain: weight}``; domains it leaves out keep their default weight."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"--weights: cannot read {path}: {error}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"--weights: {path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f'--weights: {path} must hold a JSON object {{"domain name": weight, ...}}')
    unknown = sorted(set(data) - set(domain_names))
    if unknown:
        raise ValueError(
            f"--weights: {path} names unknown domains {unknown[:5]}; the store has {domain_names[:5]}..."
        )
    weights = default.astype(np.float64).copy()
    for name, value in data.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"--weights: weight of {name!r} in {path} must be a number, got {value!r}")
        weights[domain_names.index(name)] = float(value)
    return weights


def default_weights(active: np.ndarray) -> np.ndarray:
    """Active domains weigh 1, inactive 0; if no domain is active, every domain weighs 1."""
    weights = np.asarray(active, dtype=np.float64)
    return weights if weights.any() else np.ones_like(weights)


@main.command("select")
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
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="CSV to write.")
@click.option("--save-as", default=None, help="Also save the selection in the store under this name.")
@click.pass_obj
@_handles_errors
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
) -> None:
    """Select leaves greedily and write the chosen point indices as CSV plus a manifest.

    Writes FILE.csv (rank,point_id,leaf_id) and FILE.manifest.json (envelope, weights, budget, pins, the store's
    content hash, version, time). Prints a JSON summary to stdout.

    \b
    Example:
      harp select --store demo.duckdb --envelope C --budget 50000 --pin 12 --exclude 7 --out chosen.csv
    """
    from harp.export import selection_manifest, write_selection
    from harp.select import select

    opened = Store.open(store, read_only=True)
    inputs = opened.selection_inputs()
    base_weights = np.ones(inputs.n_domains) if all_domains else default_weights(inputs.active)
    weights = (
        base_weights
        if weights_file is None
        else _read_weights(weights_file, inputs.domain_names, base_weights)
    )
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
        store_hash=opened.content_hash(),
        domain_names=inputs.domain_names,
        store_path=store.resolve(),
    )
    csv_path, manifest_path = write_selection(out, result, manifest)
    if save_as is not None:
        Store.open(store).save_selection(
            save_as,
            envelope=envelope,
            weights=weights,
            budget=budget,
            pinned=list(pins),
            excluded=list(excludes),
            selection=result,
        )
        obj.log(f"saved as {save_as!r} in {store}")
    click.echo(
        json.dumps(
            {
                "csv": str(csv_path),
                "manifest": str(manifest_path),
                **manifest["counts"],
                "utility": manifest["utility"],
            }
        )
    )


@main.command()
@click.argument("store", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
@_handles_errors
def migrate(obj: Context, store: Path) -> None:
    """Bring an older store up to this version's schema, in place (each migration one transaction).

    \b
    Example:
      harp migrate old.duckdb
    """
    opened = Store.open(store)
    version = opened.meta().get("schema_version")
    obj.log(f"{store} is at schema version {version}")
    click.echo(json.dumps({"store": str(store), "schema_version": version}))


@main.command("export")
@click.argument("store", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite Parquet files already in FOLDER.")
@click.pass_obj
@_handles_errors
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


@main.command("import")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.argument("store", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace an existing store at STORE.")
@click.pass_obj
@_handles_errors
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


@main.command()
@click.option(
    "--store", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Store to explore."
)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to bind; 0.0.0.0 exposes the app."
)
@click.option(
    "--port", type=click.IntRange(1, 65535), default=8501, show_default=True, help="Port to serve on."
)
@click.pass_obj
@_handles_errors
def app(obj: Context, store: Path, host: str, port: int) -> None:
    """Open the explorer app on a store (Streamlit; needs the [app] extra).

    \b
    Example:
      harp app --store demo.duckdb --port 8502
    """
    Store.open(store, read_only=True)  # a clear error now rather than in the browser
    if not APP_ENTRY.is_file():
        raise ValueError(
            f"the app is not installed beside this package (looked for {APP_ENTRY}); "
            "run it from a source checkout: pip install -e '.[app]'"
        )
    try:
        import streamlit  # noqa: F401
    except ImportError:
        raise ValueError("the app needs Streamlit: pip install 'harp-explorer[app]'") from None
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP_ENTRY),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        "--client.toolbarMode",
        "minimal",
    ]
    obj.log(f"serving {store} at http://{host}:{port}")
    environment = {**os.environ, "HARP_STORE": str(store.resolve())}
    # Replace this process, so stopping `harp app` (Ctrl-C, kill) stops the server too.
    os.execve(sys.executable, command, environment)


def _register_extensions() -> None:
    """Commands of the pipeline live in their own modules."""
    for module_name in ("harp.cli_pipeline", "harp.cli_measure", "harp.cli_run"):
        try:
            module = __import__(module_name, fromlist=["register"])
        except ModuleNotFoundError as error:
            if error.name == module_name:
                continue
            raise
        module.register(main)


_register_extensions()


if __name__ == "__main__":
    main()
