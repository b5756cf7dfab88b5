"""``--save-as``: saving a command's selection in the store, with one set of name rules and messages.

Both ``harp select`` and ``harp design select`` check the name before any work (empty, taken), then save after
the files are staged and before they are published, so a refused save (name taken meanwhile, store locked)
leaves no file behind.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harp.store import Store

__all__ = ["check_save_name", "locked_error", "save_in_store", "saved_name_taken"]


def check_save_name(name: str | None) -> str | None:
    """``name`` itself, or a ValueError naming ``--save-as`` when it is blank."""
    if name is not None and not name.strip():
        raise ValueError(f"--save-as: the name must not be empty, got {name!r}")
    return name


def saved_name_taken(store: Path, name: str, saved: list[str]) -> ValueError:
    listed = ", ".join(repr(n) for n in saved[-5:])
    return ValueError(
        f"--save-as: a selection named {name!r} already exists in {store} (saved: {listed}); "
        "choose another name; nothing was written"
    )


def locked_error(store: Path, lock_timeout: float, option: str, doing: str) -> ValueError:
    return ValueError(
        f"{option}: {store} is locked by another process (waited {lock_timeout:g} s), so {doing}: wait for it to "
        "finish, or raise --lock-timeout; nothing was written"
    )


def save_in_store(store: Path, lock_timeout: float, name: str, save: Callable[[Store], Any]) -> None:
    """Call ``save`` on the store opened for writing, under ``--save-as``'s refusals worded for the command line
    (``save`` calls ``Store.save_selection`` or ``Store.save_design_selection`` with ``name``)."""
    from harp.store import Store, StoreLockedError

    try:
        opened = Store.open(store, lock_timeout=lock_timeout)
        saved = [record["name"] for record in opened.list_selections()]
        if name in saved:
            raise saved_name_taken(store, name, saved)
        save(opened)
    except StoreLockedError:
        raise locked_error(store, lock_timeout, "--save-as", "the selection cannot be saved") from None
    except ValueError as error:
        if str(error).startswith("name: "):  # a name taken between our check and the save
            raise saved_name_taken(store, name, [name]) from None
        raise
