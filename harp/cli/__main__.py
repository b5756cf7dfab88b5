"""``python -m harp.cli``: the ``harp`` command."""

from harp.cli.group import main

main()
