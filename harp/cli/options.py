"""Options and option values shared by the commands that finetune (``measure``, ``validate``, ``design measure``).

Parsers of comma-separated values, the MeasureConfig of a JSON file plus options, and the option groups: the
finetuning inputs (model, pool, eval set, config) and the executor options.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

__all__ = [
    "MODEL_HELP",
    "RUN_LOCK_TIMEOUT_S",
    "executor_options",
    "finetune_inputs",
    "measure_config_from",
    "parse_devices",
    "positive_ints",
    "set_executor_options",
]

MODEL_HELP = "Base model: a local directory or a name in the local HF cache."

# A measure or validate run writes once a leaf (or mixture), minutes apart, and must outlast another process's whole
# write of the effects: `harp infer`, from the command line or the app's Runs page, holds the file about 5 s at
# 10,000 leaves x 64 domains on a loaded 2-core machine (mostly DuckDB's checkpoint at commit). Waiting 2 minutes
# costs a long run nothing; the 10 s default would stop it.
RUN_LOCK_TIMEOUT_S = 120.0


def measure_config_from(config_path: Path | None, overrides: dict[str, Any]) -> Any:
    """The MeasureConfig of a JSON file of its fields (or the defaults), with the options given on the command
    line (those not None) put over it; a ValueError names the file."""
    from harp.measure import MeasureConfig

    data: dict[str, Any] = {}
    if config_path is not None:
        try:
            data = json.loads(config_path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"{config_path}: cannot read the measure config as JSON ({error})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{config_path}: the measure config must be a JSON object")
    data.update({name: value for name, value in overrides.items() if value is not None})
    return MeasureConfig.from_dict(data)


def parse_devices(devices: str | None) -> list[str | int] | None:
    """``--devices 0,1`` or ``cpu,cpu`` as a list (GPU numbers as ints); None when not given."""
    if not devices:
        return None
    return [int(part) if part.strip().isdigit() else part.strip() for part in devices.split(",")]


def positive_ints(text: str, option: str, what: str, example: str) -> list[int]:
    """A comma-separated list of integers >= 1 given to ``option``, or a usage error naming it."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a comma-separated list of integers", param_hint=option
        ) from None
    if not values or min(values) < 1:
        raise click.BadParameter(f"{text!r}: give {what} >= 1, e.g. {example}", param_hint=option)
    return values


def executor_options(trained: str = "Sets of examples") -> Callable[[Any], Any]:
    """The options of a command that finetunes: where and how many side by side (``--executor``, ``--devices``,
    ``--workers-per-device``, ``--adapters-per-batch``, ``--address``). ``trained`` names what one adapter
    learns from in the help of ``--adapters-per-batch`` (leaves for `harp measure`)."""
    options = [
        click.option("--executor", type=click.Choice(["inprocess", "process", "ray"]), default="inprocess",
                     show_default=True, help="In this process, one worker process per device, or Ray actors."),
        click.option("--devices", default=None, help="Comma-separated devices, e.g. 0,1 or cpu,cpu."),
        click.option("--workers-per-device", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Adapters trained at once on each device."),
        click.option("--adapters-per-batch", type=click.IntRange(min=1), default=1, show_default=True,
                     help=f"{trained} each worker trains side by side in one forward/backward pass (K LoRA "
                     "adapters on one model); results keep the same config key."),
        click.option("--address", default=None,
                     help="Ray cluster address (--executor ray); default: a local instance."),
    ]  # fmt: skip
    return _apply(options)


def finetune_inputs(
    *, pool_help: str, eval_help: str, config_help: str, model_help: str = MODEL_HELP
) -> Callable[[Any], Any]:
    """The inputs of a command that finetunes: ``--model``, ``--pool``, ``--eval`` and ``--config``, each with
    the command's own help."""
    path = click.Path(dir_okay=False, path_type=Path)
    options = [
        click.option("--model", required=True, help=model_help),
        click.option("--pool", "pool_path", type=path, required=True, help=pool_help),
        click.option("--eval", "eval_path", type=path, required=True, help=eval_help),
        click.option("--config", "config_path", type=path, default=None, help=config_help),
    ]
    return _apply(options)


def _apply(options: list[Callable[[Any], Any]]) -> Callable[[Any], Any]:
    """One decorator of several click options, which ``--help`` lists in the order given."""

    def decorate(command: Any) -> Any:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


# `harp validate` and `harp design measure` train sets of examples; `harp measure` says leaves.
set_executor_options = executor_options()
