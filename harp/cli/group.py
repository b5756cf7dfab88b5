"""The ``harp`` command group: its options (``-q``, ``--version``) and every command, one module a family."""

from __future__ import annotations

import atexit
import gc

import click

from harp import __version__
from harp.cli.app import app
from harp.cli.common import Context
from harp.cli.design import design_group
from harp.cli.measure import embed_command, measure_command, validate_command
from harp.cli.pipeline import hierarchy_command, infer_command, layout_command, load_command
from harp.cli.run import next_command, run_command
from harp.cli.select import select_command
from harp.cli.store_commands import export_command, import_command, info, migrate, synth

__all__ = ["main"]


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


for _command in (
    synth, info, select_command, migrate, export_command, import_command, app,
    hierarchy_command, layout_command, infer_command, load_command,
    embed_command, measure_command, validate_command, run_command, next_command, design_group,
):  # fmt: skip
    main.add_command(_command)
