"""The Stores page's glue: the folder of stores, the store this session has open, and new stores built in it.

The folder comes from ``HARP_STORES`` (``harp app --stores``; by default the folder of ``--store``), never from
the browser: the page lists the ``.duckdb`` files in it, opens one for this session (read-only, checked first)
and builds new ones in it from a Parquet export or from ``harp load``'s arrays, through the same library calls
and checks as ``harp import`` and ``harp load``. Nothing is ever replaced: a taken name is refused, and the
library links a finished store into place only where no file is.

Import sources are paths on the machine that serves the app, read by the server. That is the user's own machine
while the app binds to 127.0.0.1 (the default); served on another address, the page does not offer imports,
since anyone who reaches it could read the server's files into a store.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path

import streamlit as st

from app import data
from app.data import StoreProblem
from harp.store import Store, StoreError
from harp.stores import StoreFile, list_stores, new_store_path

FOLDER_VAR = data.FOLDER_VAR
# Library phrases for the command line or a Python caller, and what the app says instead.
_APP_WORDS = (("pass overwrite=True (--force) to replace it", "choose another name (nothing is replaced)"),)
# Session keys that describe the open store's view: cleared when another store is opened.
_VIEW_KEYS = ("view", "view_signature", "view_warnings", "open_leaves", "region")


def app_words(message: str) -> str:
    """A library message in the app's words (no ``--force``, no ``overwrite=True``)."""
    for library, app in _APP_WORDS:
        message = message.replace(library, app)
    return message


def folder() -> Path | None:
    """The folder of stores: ``HARP_STORES``, else the folder of ``HARP_STORE``; None when neither is set."""
    value = os.environ.get(FOLDER_VAR, "").strip()
    if value:
        return Path(value).expanduser().resolve()
    store = os.environ.get(data.ENV_VAR, "").strip()
    return Path(store).expanduser().resolve().parent if store else None


def stores() -> list[StoreFile]:
    """The stores of the folder; StoreProblem when there is no usable folder."""
    where = folder()
    if where is None:
        raise StoreProblem("unset", "No folder of stores: start the app with `harp app --stores DIR`.")
    try:
        return list_stores(where)
    except (ValueError, OSError) as error:
        raise StoreProblem("broken", f"The folder of stores cannot be read: {error}.") from None


def serves_only_this_machine() -> bool:
    """Whether the server listens on a loopback address only (what ``harp app`` does unless told otherwise)."""
    address = str(st.get_option("server.address") or "").strip()
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:  # unset (every interface) or a host name
        return False


def switch_to(path: str | Path) -> str:
    """Make the store at ``path`` (in the folder of stores) this session's store; StoreProblem when it cannot be
    opened, and then the session keeps the store it had."""
    where = folder()
    target = Path(path).resolve()
    if where is None or target.parent != where:
        raise StoreProblem("broken", f"{target} is not in the folder of stores ({where}).")
    try:
        Store.open(target, read_only=True, lock_timeout=data.LOCK_TIMEOUT_S)
    except StoreError as error:
        raise data.problem_from(error) from error
    st.session_state[data.CHOSEN_KEY] = str(target)
    for key in _VIEW_KEYS:
        st.session_state.pop(key, None)
    st.query_params.clear()  # the link described the old store's view
    return str(target)


def _target(name: str) -> Path:
    where = folder()
    if where is None:
        raise StoreProblem("unset", "No folder of stores: start the app with `harp app --stores DIR`.")
    try:
        return new_store_path(where, name)
    except ValueError as error:
        raise StoreProblem("broken", str(error)[:1].upper() + str(error)[1:]) from None


def import_export(source: str, name: str) -> Path:
    """Build the new store ``name`` from the Parquet export in the folder ``source`` (``harp import``)."""
    from harp.store import import_parquet

    target = _target(name)
    if not str(source).strip():
        raise StoreProblem("broken", "Give the folder that `harp export` wrote.")
    try:
        import_parquet(Path(str(source).strip()).expanduser(), target, overwrite=False)
    except (StoreError, ValueError, OSError) as error:
        raise StoreProblem("broken", app_words(str(error))) from None
    return target


# harp load's inputs: (keyword of harp.load.load_arrays, label, required).
ARRAY_INPUTS = (
    ("phi", "phi (.npy, leaves x domains)", True),
    ("leaf_of_point", "leaf of each point (.npy)", True),
    ("parent_of_leaf", "parent of each leaf (.npy)", True),
    ("base", "base score of each domain (.npy, .json or .txt)", True),
    ("domain_names", "domain names (.txt one a line, or .json)", True),
    ("phi_sd", "posterior sd of phi (.npy)", False),
    ("large_of_parent", "large node of each parent (.npy)", False),
    ("measured", "measured leaves (mask or ids: .npy, .json or .txt)", False),
    ("texts", "texts, one per point (.jsonl or .txt)", False),
    ("X_feat", "features X_feat (.npy), for the in-leaf order and the layout", False),
)


def load_arrays(inputs: Mapping[str, str], name: str) -> Path:
    """Build the new store ``name`` from ``harp load``'s inputs, given as paths (``ARRAY_INPUTS`` keywords)."""
    from harp.load import load_arrays as build

    target = _target(name)
    given = {
        key: Path(str(value).strip()).expanduser() for key, value in inputs.items() if str(value).strip()
    }
    missing = [label for key, label, required in ARRAY_INPUTS if required and key not in given]
    if missing:
        raise StoreProblem("broken", "Give every required input; missing: " + "; ".join(missing) + ".")
    for key, path in given.items():
        if not path.is_file():
            raise StoreProblem("broken", f"{key}: no file at {path}")
    try:
        build(target, overwrite=False, **given)  # type: ignore[arg-type]
    except (StoreError, ValueError, OSError) as error:
        raise StoreProblem("broken", app_words(str(error))) from None
    return target
