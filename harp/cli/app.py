"""``harp app``: start the explorer app (Streamlit) on a store or a folder of stores, and stop it cleanly.

The server runs as a child process whose output is copied to stderr; a signal to ``harp app`` stops it, and the
server is never left running when ``harp app`` dies.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import click

from harp.cli.common import Context, handles_errors

__all__ = ["app"]


@click.command("app")
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
@handles_errors()
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
    from harp.store import Store

    if store is not None:
        Store.open(store, read_only=True)  # a clear error now rather than in the browser
        folder = (stores or store.resolve().parent).resolve()
    elif stores is not None:
        folder = stores.resolve()
    else:
        raise click.UsageError("give --store STORE, --stores DIR, or both")
    if not folder.is_dir():
        raise ValueError(f"--stores: {folder} is not a folder")
    from harp.app_files import app_entry, server_command

    entry = app_entry()
    if not entry.is_file():
        raise ValueError(
            f"the app is not installed beside this package (looked for {entry}); "
            "run it from a source checkout: pip install -e '.[app]'"
        )
    # Found, not imported: the server runs in its own process.
    if importlib.util.find_spec("streamlit") is None:
        raise ValueError("the app needs Streamlit: pip install 'harp-explorer[app]'")
    _check_port_free(host, port)
    command = server_command(entry, host, port)
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
