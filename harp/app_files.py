"""Where the explorer app's files are: the Streamlit entry script that ``harp app`` serves.

The app lives in the repository's ``app/`` folder; a wheel (and an editable install) ships that folder as the
package ``harp_app``. So the entry is found the way Streamlit finds its own ``hello`` app, through the installed
package (its ``streamlit_app.py``), and, where no ``harp_app`` is installed (a source checkout run with
``PYTHONPATH``), in the checkout's ``app/`` folder beside this ``harp`` package. Nothing here imports the app or
Streamlit.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

__all__ = ["APP_PACKAGE", "ENTRY_SCRIPT", "app_entry", "checkout_entry", "installed_entry", "server_command"]

APP_PACKAGE = "harp_app"
"""The name the installed app's package goes by (``app/`` in the repository)."""

ENTRY_SCRIPT = "streamlit_app.py"
"""The app's entry script, which ``streamlit run`` runs, in the app's folder."""


def installed_entry(package: str = APP_PACKAGE) -> Path | None:
    """The entry script of the installed app package, or None when no such package (or no such file) is there.

    Parameters
    ----------
    package : str
        The package's import name; found without importing it.

    Returns
    -------
    Path or None
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        entry = Path(folder) / ENTRY_SCRIPT
        if entry.is_file():
            return entry.resolve()
    return None


def checkout_entry() -> Path:
    """Where a source checkout keeps the entry script: ``app/streamlit_app.py`` beside the ``harp`` package
    (the path whether or not the file is there)."""
    return Path(__file__).resolve().parent.parent / "app" / ENTRY_SCRIPT


def app_entry(package: str = APP_PACKAGE) -> Path:
    """The app's entry script: the installed app package's, else the checkout's.

    Parameters
    ----------
    package : str
        The installed app package's import name.

    Returns
    -------
    Path
        An existing file, or (when neither is there) the checkout path looked for, which the caller reports.
    """
    return installed_entry(package) or checkout_entry()


def server_command(entry: Path, host: str, port: int) -> list[str]:
    """The command that serves the app at ``entry`` on ``host``:``port`` (``harp app``'s, and the browser tests').

    Headless, no usage statistics, no file watcher, the minimal toolbar, and no full garbage collection after
    each rerun: Streamlit's ``runner.postScriptGC`` runs ``gc.collect(2)`` when a script run ends, a pass over
    every object the server holds, which took about a quarter of a second of each interaction with a
    50,000-leaf store open on a two-core machine (profiled in the server while ``benchmarks/bench_app.py``
    opened leaves). Python's own collector still runs when its thresholds are reached.
    """
    return [
        sys.executable, "-m", "streamlit", "run", str(entry),
        "--server.address", host,
        "--server.port", str(port),
        "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
        "--client.toolbarMode", "minimal",
        "--runner.postScriptGC", "false",
    ]  # fmt: skip
