"""The ``harp`` command line: a thin shell over the library.

Data goes to stdout, progress and logs to stderr (``-q`` silences them). A library error becomes one line
``Error: ...`` and exit status 1; bad usage exits 2.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import functools
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
import numpy as np

from harp import __version__
from harp.store import Store, StoreError

F = TypeVar("F", bound=Callable[..., Any])


class Context:
    """Options shared by every command."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def log(self, message: str) -> None:
        if not self.quiet:
            click.echo(message, err=True)


# Library phrases that name a Python argument, and what the command line calls the same thing.
_CLI_WORDS = (
    ("pass overwrite=True (--force)", "pass --force"),
    ("pass overwrite=True", "pass --force"),
    (", or raise lock_timeout", ""),
)


def cli_words(message: str) -> str:
    """A library message in the command line's words (``--force`` for ``overwrite=True``); every command's
    error handler (here and in the command modules) passes its messages through this one."""
    for library, cli in _CLI_WORDS:
        message = message.replace(library, cli)
    return message


def _show_warnings(caught: list[warnings.WarningMessage]) -> None:
    context = click.get_current_context(silent=True)
    settings = context.find_object(Context) if context is not None else None
    if settings is not None and settings.quiet:
        return
    for warning in caught:
        if issubclass(warning.category, UserWarning):
            click.echo(f"warning: {warning.message}", err=True)


@contextmanager
def _errors() -> Iterator[None]:
    """Library errors become ``Error: ...`` and exit status 1; library warnings one line each on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        except (StoreError, ValueError, OSError) as error:
            raise click.ClickException(cli_words(str(error))) from None
        finally:
            _show_warnings(caught)


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
    # At exit, Python's last garbage collections walk every object still alive, numba's type registries above
    # all: 0.4-0.6 s after a `harp select`. Frozen objects are skipped; the OS takes the memory back anyway, and
    # nothing of ours waits on a collection (files and connections are closed where they are used).
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)


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
@click.option(
    "--leaf-size",
    type=click.FloatRange(min=1),
    default=64.0,
    show_default=True,
    help="Mean number of points of a leaf (log-normal sizes).",
)
@click.option("--force", is_flag=True, help="Replace an existing store at --out.")
@click.pass_obj
@_handles_errors
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
        if key in ("n_held_out_leaves", "n_fit_leaves"):
            continue  # said on the n_measured_leaves line
        if key == "n_measured_leaves":
            click.echo(f"{key:<15} {_measured_words(summary)}")
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


def _read_weights_file(path: Path) -> dict[str, float]:
    """The JSON object ``{domain: weight}`` of ``--weights``, checked for shape but not against a store."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"--weights: cannot read {path}: {error}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"--weights: {path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f'--weights: {path} must hold a JSON object {{"domain name": weight, ...}}')
    for name, value in data.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"--weights: weight of {name!r} in {path} must be a number, got {value!r}")
    return {name: float(value) for name, value in data.items()}


def _weights_for(
    data: dict[str, float] | None, path: Path | None, domain_names: list[str], default: np.ndarray
) -> np.ndarray:
    """The default weights with those of ``--weights`` put in; domains it leaves out keep their default."""
    from harp._validation import check_weights

    weights = default.astype(np.float64).copy()
    if data is not None:
        unknown = sorted(set(data) - set(domain_names))
        if unknown:
            raise ValueError(
                f"--weights: {path} names unknown domains {unknown[:5]}; the store has {domain_names[:5]}..."
            )
        for name, value in data.items():
            weights[domain_names.index(name)] = value
    try:
        return check_weights(weights, len(domain_names))
    except ValueError as error:
        raise ValueError(f"--weights: {error}") from None


def default_weights(active: np.ndarray) -> np.ndarray:
    """Active domains weigh 1, inactive 0; if no domain is active, every domain weighs 1."""
    weights = np.asarray(active, dtype=np.float64)
    return weights if weights.any() else np.ones_like(weights)


def _check_outputs(csv_path: Path, manifest_path: Path, inputs: dict[str, Path | None]) -> None:
    from harp.export import check_outputs

    check_outputs(csv_path, manifest_path, inputs, option="--out")


def _check_save_name(name: str | None) -> str | None:
    if name is not None and not name.strip():
        raise ValueError(f"--save-as: the name must not be empty, got {name!r}")
    return name


def _saved_name_taken(store: Path, name: str, saved: list[str]) -> ValueError:
    listed = ", ".join(repr(n) for n in saved[-5:])
    return ValueError(
        f"--save-as: a selection named {name!r} already exists in {store} (saved: {listed}); "
        "choose another name; nothing was written"
    )


def _locked(store: Path, lock_timeout: float, option: str, doing: str) -> ValueError:
    return ValueError(
        f"{option}: {store} is locked by another process (waited {lock_timeout:g} s), so {doing}: wait for it to "
        "finish, or raise --lock-timeout; nothing was written"
    )


def _in_option(option: str, check: Callable[..., Any], *args: Any) -> Any:
    """Run a library check and name the CLI option in its message."""
    try:
        return check(*args)
    except ValueError as error:
        raise ValueError(f"{option}: {error}") from None


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
@_handles_errors
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
    from harp.store import StoreLockedError, discard_staged, publish_staged, stage_text

    # Everything that can be checked without the store's big tables, before reading them.
    _in_option("--envelope", check_envelope, envelope)
    _in_option("--budget", check_budget, budget)
    _check_save_name(save_as)
    manifest_out = manifest_path_for(out)
    _check_outputs(out, manifest_out, {"--store": store, "--weights": weights_file})
    weights_data = None if weights_file is None else _read_weights_file(weights_file)
    try:
        opened = Store.open(store, read_only=True, lock_timeout=lock_timeout)
        domains = opened.read_table("domains")
        n_leaves = opened.count("leaves")
        saved = [record["name"] for record in opened.list_selections()] if save_as is not None else []
    except StoreLockedError:
        raise _locked(store, lock_timeout, "--store", "it cannot be read") from None
    domain_names = [str(name) for name in domains["name"].to_pylist()]
    active = np.asarray(domains["active"].to_pylist(), dtype=bool)
    base_weights = np.ones(len(domain_names)) if all_domains else default_weights(active)
    _weights_for(weights_data, weights_file, domain_names, base_weights)
    pinned = check_leaf_ids(list(pins), "--pin", n_leaves)
    excluded = check_leaf_ids(list(excludes), "--exclude", n_leaves)
    both = np.intersect1d(pinned, excluded)
    if both.size:
        raise ValueError(f"--pin and --exclude both name leaf {int(both[0])}")
    if save_as is not None and save_as in saved:
        raise _saved_name_taken(store, save_as, saved)

    warming = _warm_up_meanwhile(envelope)
    try:
        inputs = opened.selection_inputs()
    except StoreLockedError:
        raise _locked(store, lock_timeout, "--store", "it cannot be read") from None
    base_weights = np.ones(inputs.n_domains) if all_domains else default_weights(inputs.active)
    weights = _weights_for(weights_data, weights_file, inputs.domain_names, base_weights)
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
            _save_selection(
                store,
                lock_timeout,
                save_as,
                envelope=envelope,
                weights=weights,
                budget=budget,
                pinned=list(pins),
                excluded=list(excludes),
                selection=result,
                store_hash=inputs.content_hash,  # what it was computed from, whatever was written since
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


def _save_selection(store: Path, lock_timeout: float, name: str, **settings: Any) -> None:
    """``Store.save_selection`` under ``--save-as``, its refusals worded for the command line."""
    from harp.store import StoreLockedError

    try:
        opened = Store.open(store, lock_timeout=lock_timeout)
        saved = [record["name"] for record in opened.list_selections()]
        if name in saved:
            raise _saved_name_taken(store, name, saved)
        opened.save_selection(name, **settings)
    except StoreLockedError:
        raise _locked(store, lock_timeout, "--save-as", "the selection cannot be saved") from None
    except ValueError as error:
        if str(error).startswith("name: "):  # a name taken between our check and the save
            raise _saved_name_taken(store, name, [name]) from None
        raise


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
    "--store",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Store to explore (without it, the app starts on the Stores page of --stores).",
)
@click.option(
    "--stores",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder of stores the app may open and import into (default: the folder of --store).",
)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to bind; 0.0.0.0 exposes the app."
)
@click.option(
    "--port", type=click.IntRange(1, 65535), default=8501, show_default=True, help="Port to serve on."
)
@click.pass_obj
@_handles_errors
def app(obj: Context, store: Path | None, stores: Path | None, host: str, port: int) -> None:
    """Open the explorer app on a store (Streamlit; needs the [app] extra).

    The app's Stores page opens the other stores of the --stores folder and imports new ones into it; its
    Runs page watches a running `harp measure`. A store that cannot be opened, a missing --stores folder, a
    busy port or a host that cannot be bound is refused before the server starts. The server's output goes to
    stderr; SIGTERM, SIGINT (Ctrl-C) or SIGHUP stops it.

    \b
    Example:
      harp app --store demo.duckdb --port 8502
      harp app --store stores/demo.duckdb --stores stores/
      harp app --stores stores/
    """
    if store is not None:
        Store.open(store, read_only=True)  # a clear error now rather than in the browser
        folder = (stores or store.resolve().parent).resolve()
    elif stores is not None:
        folder = stores.resolve()
    else:
        raise click.UsageError("give --store STORE, --stores DIR, or both")
    if not folder.is_dir():
        raise ValueError(f"--stores: {folder} is not a folder")
    from harp.app_files import app_entry

    entry = app_entry()
    if not entry.is_file():
        raise ValueError(
            f"the app is not installed beside this package (looked for {entry}); "
            "run it from a source checkout: pip install -e '.[app]'"
        )
    try:
        import streamlit  # noqa: F401
    except ImportError:
        raise ValueError("the app needs Streamlit: pip install 'harp-explorer[app]'") from None
    _check_port_free(host, port)
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(entry),
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
    obj.log(f"serving {store if store is not None else folder} at http://{host}:{port}")
    environment = {**os.environ, "HARP_STORES": str(folder)}
    environment.pop("HARP_STORE", None)  # an inherited one would stand in for the missing --store
    if store is not None:
        environment["HARP_STORE"] = str(store.resolve())
    sys.exit(_serve(command, environment, quiet=obj.quiet))


def _check_port_free(host: str, port: int) -> None:
    """Refuse a port another server listens on, or a host this machine cannot bind, before starting anything.

    Binds every address ``host`` resolves to the way the server will (address reuse on, so a port in TIME_WAIT
    counts as free), then lets go. A server that takes the port in between still fails, in Streamlit's words.
    """
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise ValueError(f"--host: cannot resolve {host!r} to an address: {error.strerror}") from None
    failures = []
    for family, kind, protocol, _, address in addresses:
        with socket.socket(family, kind, protocol) as probe:
            if os.name != "nt":
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    raise ValueError(
                        f"--port: port {port} on {host} is already in use (another harp app or server?); "
                        "stop it, or choose another --port"
                    ) from None
                failures.append(error)
    if failures and len(failures) == len(addresses):
        raise ValueError(f"--host: cannot listen on {host} port {port}: {failures[0].strerror}")


def _stop_with_parent() -> None:
    """In the server process (Linux): get SIGTERM when `harp app` dies, even by SIGKILL, so no server is orphaned."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _forward(stream: Any, quiet: bool) -> None:
    """Copy the server's output to our stderr; once that fails (the reader went away), keep draining it.

    The server always writes into this pipe, never into our stdio, so a closed terminal or pipe cannot break
    its shutdown (Streamlit's signal handler prints, and a print that fails there leaves it running).
    """
    target = None if quiet else getattr(sys.stderr, "buffer", None)
    for line in iter(stream.readline, b""):
        if target is None:
            continue
        try:
            target.write(line)
            target.flush()
        except (OSError, ValueError):
            target = None
    stream.close()


def _serve(command: list[str], environment: dict[str, str], *, quiet: bool) -> int:
    """Run the Streamlit server as a child and stop it on SIGTERM, SIGINT or SIGHUP, whatever our stdio.

    The first signal asks the server to stop (SIGTERM) and kills it if it is still running 10 s later; a second
    signal kills it at once. Exit status 0 after a requested stop, else the server's own.
    """
    child = subprocess.Popen(
        command,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=_stop_with_parent if sys.platform.startswith("linux") else None,
    )
    stopping = threading.Event()

    def stop(signum: int, frame: Any) -> None:
        if stopping.is_set():
            child.kill()
            return
        stopping.set()
        child.terminate()
        timer = threading.Timer(10.0, child.kill)
        timer.daemon = True
        timer.start()

    handled = [signal.SIGTERM, signal.SIGINT] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    previous = {signum: signal.signal(signum, stop) for signum in handled}
    forwarder = threading.Thread(target=_forward, args=(child.stdout, quiet), daemon=True)
    forwarder.start()
    try:
        code = child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    forwarder.join(timeout=5.0)
    if stopping.is_set():
        _quiet_broken_stdio()
        return 0
    return code if code >= 0 else 128 - code


def _quiet_broken_stdio() -> None:
    """Point stdout and stderr at /dev/null when their reader has gone, so exiting prints no BrokenPipeError."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            with contextlib.suppress(OSError, ValueError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, stream.fileno())
                os.close(devnull)


def _register_extensions() -> None:
    """Commands of the pipeline live in their own modules."""
    for module_name in ("harp.cli_pipeline", "harp.cli_measure", "harp.cli_run", "harp.cli_design"):
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
