"""What every ``harp`` command shares: the ``-q`` setting, progress on stderr, and library errors as one line.

A library error becomes ``Error: ...`` with exit status 1 (:func:`errors`, :func:`handles_errors`), its message
in the command line's words (:func:`cli_words`); library warnings become one ``warning: ...`` line each on
stderr, silenced by ``harp -q`` like every progress line (:func:`log`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from harp.store import StoreError

__all__ = [
    "LIBRARY_ERRORS",
    "LIBRARY_OR_IMPORT_ERRORS",
    "Context",
    "cli_words",
    "echo_json",
    "errors",
    "handles_errors",
    "is_quiet",
    "log",
    "progress_logger",
    "show_warnings",
]

F = TypeVar("F", bound=Callable[..., Any])

# What a library call raises for bad input or a bad file; anything else is a bug and keeps its traceback.
LIBRARY_ERRORS: tuple[type[Exception], ...] = (StoreError, ValueError, OSError)
# ... and of a command that needs an optional extra (torch, umap-learn, ...), whose absence is an error line too.
LIBRARY_OR_IMPORT_ERRORS: tuple[type[Exception], ...] = (*LIBRARY_ERRORS, ImportError)


class Context:
    """Options shared by every command."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def log(self, message: str) -> None:
        if not self.quiet:
            click.echo(message, err=True)


def is_quiet() -> bool:
    """Whether ``harp -q`` silenced stderr; False outside a command or without the main group's context."""
    context = click.get_current_context(silent=True)
    return context is not None and bool(getattr(context.find_root().obj, "quiet", False))


def log(message: str) -> None:
    """One line of progress on stderr, unless ``harp -q``."""
    if not is_quiet():
        click.echo(message, err=True)


def progress_logger() -> Callable[[str], None]:
    """A progress callback for the library, bound to this command's ``-q``: a library may call it from a thread
    of its own, where the command's click context is not current."""
    if is_quiet():
        return lambda message: None
    return lambda message: click.echo(message, err=True)


def echo_json(data: Any) -> None:
    """A command's result as one line of JSON on stdout."""
    click.echo(json.dumps(data, default=str))


# Library phrases that name a Python argument, and what the command line calls the same thing.
_CLI_WORDS = (
    ("pass overwrite=True (--force)", "pass --force"),
    ("pass overwrite=True", "pass --force"),
    (", or raise lock_timeout", ""),
)


def cli_words(message: str) -> str:
    """A library message in the command line's words (``--force`` for ``overwrite=True``); the error handler of
    every command that has these options (:func:`errors`) passes its messages through this one."""
    for library, cli in _CLI_WORDS:
        message = message.replace(library, cli)
    return message


def show_warnings(caught: list[warnings.WarningMessage]) -> None:
    """Each library warning (a UserWarning) as one ``warning: ...`` line on stderr, unless ``harp -q``."""
    if is_quiet():
        return
    for warning in caught:
        if issubclass(warning.category, UserWarning):
            click.echo(f"warning: {warning.message}", err=True)


@contextmanager
def errors(
    kinds: tuple[type[Exception], ...] = LIBRARY_ERRORS, *, record_warnings: bool = True, words: bool = True
) -> Iterator[None]:
    """Library errors of ``kinds`` become ``Error: ...`` and exit status 1.

    Parameters
    ----------
    kinds : tuple of exception types, default :data:`LIBRARY_ERRORS`
        What becomes an error line.
    record_warnings : bool, default True
        Collect the library's warnings and show them one line each when the block ends (short commands). A long
        run leaves them to Python, which shows each when it happens.
    words : bool, default True
        Put the message in the command line's words (:func:`cli_words`). The training commands have no
        ``--force`` or ``--lock-timeout`` and show the library's message as it is.
    """

    none_recorded: list[warnings.WarningMessage] = []
    recorder: contextlib.AbstractContextManager[list[warnings.WarningMessage]] = (
        warnings.catch_warnings(record=True) if record_warnings else contextlib.nullcontext(none_recorded)
    )
    with recorder as caught:
        if record_warnings:
            warnings.simplefilter("always")
        try:
            yield
        except kinds as error:
            raise click.ClickException(cli_words(str(error)) if words else str(error)) from None
        finally:
            show_warnings(caught)


def handles_errors(
    kinds: tuple[type[Exception], ...] = LIBRARY_ERRORS, *, record_warnings: bool = True, words: bool = True
) -> Callable[[F], F]:
    """A command decorator: the whole command runs inside :func:`errors` with these settings."""

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with errors(kinds, record_warnings=record_warnings, words=words):
                return function(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
