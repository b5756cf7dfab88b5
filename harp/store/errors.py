"""The store's exceptions, importable without DuckDB (the command line names them before it needs a store)."""

__all__ = ["StoreError", "StoreIncompleteError", "StoreLockedError"]


class StoreError(Exception):
    """A store file that cannot be used as asked: missing, corrupt, foreign, too new, locked, or exists."""


class StoreLockedError(StoreError):
    """Another connection held the store for longer than ``lock_timeout``; retrying later can succeed."""


class StoreIncompleteError(StoreError):
    """The store is valid but lacks what was asked for (no tree, domains or posterior effects yet)."""
