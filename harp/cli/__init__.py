"""The ``harp`` command line: a thin shell over the library.

Data goes to stdout, progress and logs to stderr (``-q`` silences them). A library error becomes one line
``Error: ...`` and exit status 1; bad usage exits 2. :data:`main` is the command group (the ``harp`` console
script); each family of commands has its module here (:mod:`harp.cli.store_commands`, :mod:`harp.cli.select`,
:mod:`harp.cli.app`, :mod:`harp.cli.pipeline`, :mod:`harp.cli.measure`, :mod:`harp.cli.run`,
:mod:`harp.cli.design`), and :mod:`harp.cli.common` holds what they share.
"""

from __future__ import annotations

from harp.cli.common import Context, cli_words
from harp.cli.group import main
from harp.objective import default_weights

__all__ = ["Context", "cli_words", "default_weights", "main"]
