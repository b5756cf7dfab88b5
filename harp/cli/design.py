"""``harp design``: measure region effects by designed mixtures, fit them, and select by pruning regions.

A thin shell over :mod:`harp.design`. Torch and the model load inside ``harp design measure`` only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import numpy as np

from harp.cli.common import LIBRARY_ERRORS, LIBRARY_OR_IMPORT_ERRORS, errors, progress_logger
from harp.cli.options import (
    RUN_LOCK_TIMEOUT_S,
    finetune_inputs,
    measure_config_from,
    parse_devices,
    positive_ints,
    set_executor_options,
)

__all__ = ["design_group"]


_store_option = click.option(
    "--store", "store_path", type=click.Path(dir_okay=False, path_type=Path), required=True, help="The store."
)
_level_option = click.option(
    "--level", type=click.Choice(["large", "parent"]), default="large", show_default=True,
    help="The level of the tree whose regions the design keeps or drops.",
)  # fmt: skip
_bootstrap_option = click.option(
    "--bootstrap-seed", type=click.IntRange(min=0), default=0, show_default=True,
    help="Seed of the bootstrap behind the standard errors (rule C reads them).",
)  # fmt: skip
_key_option = click.option(
    "--config-key",
    default=None,
    help="The config the design was measured under (when the store holds several).",
)


@click.group("design")
def design_group() -> None:
    """Region effects from designed mixtures (docs/measure.md, "Designed mixtures").

    `measure` finetunes on mixtures that each keep a random half of the regions (GPU); `fit` estimates every
    region's effect from them by ridge regression; `select` keeps the regions that do better than an average
    chunk of the pool and draws the budget uniformly from their points.

    \b
    Example:
      harp design measure --store pool.duckdb --model ./SmolLM2-135M-Instruct --pool pool.jsonl \\
          --eval eval.jsonl --config finetune.json --adapters-per-batch 16
      harp design fit --store pool.duckdb
      harp design select --store pool.duckdb --rule C --budget 1000 --out chosen.csv
    """


@design_group.command("measure")
@_store_option
@finetune_inputs(
    pool_help="Training pool (the store's points, in order).",
    eval_help="Proxy eval set.",
    config_help="MeasureConfig JSON (learning rate, batch size, LoRA rank, ...); base-anchored protocol.",
)
@click.option("--lora-dropout", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="Dropout on the LoRA input (overrides --config). 0 keeps adapters batched together independent.")  # fmt: skip
@_level_option
@click.option("--budgets", default="500,1000,2000", show_default=True,
              help="Point budgets of the mixtures (the budgets you will select at).")  # fmt: skip
@click.option("--per-budget", type=click.IntRange(min=2), default=16, show_default=True,
              help="Mixtures per budget, an even number (foldover pairs).")  # fmt: skip
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the design. Another seed adds a second design that `fit` pools with the first.")  # fmt: skip
@set_executor_options
def measure_command(
    store_path: Path,
    model: str,
    pool_path: Path,
    eval_path: Path,
    config_path: Path | None,
    lora_dropout: float,
    level: str,
    budgets: str,
    per_budget: int,
    seed: int,
    executor: str,
    devices: str | None,
    workers_per_device: int,
    adapters_per_batch: int,
    address: str | None,
) -> None:
    """Finetune on designed mixtures and store their effects (table `design_mixtures`).

    Each mixture keeps a random half of the regions at --level (with its complement as the next mixture) and
    draws its budget uniformly from their points; it trains one pass from the base model and is scored on the
    eval set against the base model. Rerunning resumes: mixtures already stored are skipped. 16 mixtures at
    each of 3 budgets took about 4 GPU-minutes for SmolLM2-135M on one H200 with 16 adapters per batch.

    \b
    Example:
      harp design measure --store pool.duckdb --model ./SmolLM2-135M-Instruct --pool pool.jsonl \\
          --eval eval.jsonl --config finetune.json --budgets 500,1000,2000 --adapters-per-batch 16
    """
    from harp.data import load_eval_set, load_training_pool
    from harp.design import run_design
    from harp.store import Store

    budget_list = positive_ints(budgets, "--budgets", "point budgets", "500,1000,2000")
    if per_budget % 2:
        raise click.BadParameter(
            f"{per_budget} is odd: mixtures come in foldover pairs", param_hint="--per-budget"
        )
    with errors(LIBRARY_OR_IMPORT_ERRORS, record_warnings=False, words=False):
        config = measure_config_from(config_path, {"lora_dropout": lora_dropout})
        store = Store.open(store_path, lock_timeout=RUN_LOCK_TIMEOUT_S)
        pool = load_training_pool(pool_path)
        eval_set = load_eval_set(eval_path)
        report = run_design(
            store, model, pool, eval_set, config, level=level, budgets=budget_list, per_budget=per_budget,
            seed=seed, executor=executor, devices=parse_devices(devices),  # type: ignore[arg-type]
            workers_per_device=workers_per_device, address=address, adapters_per_batch=adapters_per_batch,
            log=progress_logger(),
        )  # fmt: skip
    click.echo(json.dumps({"run_id": report.run_id, "config_key": report.config_key, "measured": report.measured,
                           "skipped": report.skipped}))  # fmt: skip


def _fit(store_path: Path, level: str, config_key: str | None, bootstrap_seed: int) -> tuple[Any, Any]:
    from harp.design import fit_stored_design
    from harp.store import Store

    store = Store.open(store_path, read_only=True)
    return store, fit_stored_design(store, level=level, config_key=config_key, seed=bootstrap_seed)


@design_group.command("fit")
@_store_option
@_level_option
@_key_option
@_bootstrap_option
@click.option("--json", "as_json", is_flag=True, help="Print the fit as JSON instead of a table.")
def fit_command(
    store_path: Path, level: str, config_key: str | None, bootstrap_seed: int, as_json: bool
) -> None:
    """Estimate every region's effect from the stored design mixtures and print them.

    The effect is on the mean effect over all domains, centred on the pool (above 0: better than an average
    chunk of the pool), with a bootstrap standard error; `kept` says which regions each rule keeps (C: above 0
    by more than one standard error; E: above 0). Leave-one-out R2 says how much of the spread between the
    finetunes the regions explain out of sample: near 0 means the fit has found nothing to select on.

    \b
    Example:
      harp design fit --store pool.duckdb --level large
    """
    from harp.design import kept_regions, region_sources

    with errors(LIBRARY_ERRORS, record_warnings=False, words=False):
        store, fit = _fit(store_path, level, config_key, bootstrap_seed)
        sources = region_sources(store, level)
    if as_json:
        click.echo(json.dumps(fit.to_dict()))
        return
    keeps = {rule: set(kept_regions(fit, rule).tolist()) for rule in ("C", "E")}
    click.echo(f"{fit.n_mixtures} design mixtures at level {level}; ridge penalty {fit.penalty:g}; "
               f"leave-one-out R2 {fit.loo_r2:.3f}")  # fmt: skip
    click.echo(f"{'region':>6}  {'effect':>8}  {'se':>6}  kept  top source")
    for r in np.argsort(-fit.centred):
        kept = "".join(rule if r in keeps[rule] else "." for rule in ("C", "E"))
        click.echo(f"{r:>6}  {fit.centred[r]:+8.4f}  {fit.se[r]:6.4f}  {kept:>4}  {sources[r]}")


@design_group.command("select")
@_store_option
@_level_option
@_key_option
@_bootstrap_option
@click.option("--rule", type=click.Choice(["C", "E"], case_sensitive=False), default="C", show_default=True,
              help="C: keep regions credibly better than an average chunk of the pool; E: every one estimated so.")  # fmt: skip
@click.option(
    "--budget", type=click.IntRange(min=1), default=None, help="Points to draw (default: every kept point)."
)
@click.option(
    "--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the uniform draw."
)
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="CSV to write (rank,point_id,leaf_id) with FILE.manifest.json beside it.")  # fmt: skip
@click.option("--save-as", default=None, help="Also save the selection in the store under this new name.")
@click.option("--lock-timeout", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Seconds to wait while another process holds the store.")  # fmt: skip
def select_command(
    store_path: Path,
    level: str,
    config_key: str | None,
    bootstrap_seed: int,
    rule: str,
    budget: int | None,
    seed: int,
    out: Path,
    save_as: str | None,
    lock_timeout: float,
) -> None:
    """Keep the regions the design fit says help, and draw the budget uniformly from their points.

    Writes the CSV as `harp select` does and a manifest with the rule, the fit and the store's content hash.
    With --save-as, the selection is also saved in the store (method design-C or design-E, with its settings
    and this manifest; `harp select`'s name rules); a refused save (name taken, store locked) writes nothing.

    \b
    Example:
      harp design select --store pool.duckdb --rule C --budget 1000 --seed 0 --out chosen.csv --save-as design-c
    """
    from harp.cli.saving import check_save_name, locked_error, save_in_store, saved_name_taken
    from harp.design_selection import select_by_design
    from harp.export import check_outputs, manifest_path_for, manifest_text, selection_csv
    from harp.store import Store, StoreLockedError, discard_staged, publish_staged, stage_text

    rule = rule.upper()
    with errors(LIBRARY_ERRORS, record_warnings=False, words=False):
        check_save_name(save_as)
        manifest_out = manifest_path_for(out)
        check_outputs(out, manifest_out, {"--store": store_path}, option="out")
        try:
            store = Store.open(store_path, read_only=True, lock_timeout=lock_timeout)
        except StoreLockedError:
            raise locked_error(store_path, lock_timeout, "--store", "it cannot be read") from None
        if save_as is not None:
            saved = [record["name"] for record in store.list_selections()]
            if save_as in saved:
                raise saved_name_taken(store_path, save_as, saved)
        made = select_by_design(
            store, rule=rule, level=level, config_key=config_key, bootstrap_seed=bootstrap_seed, budget=budget,
            seed=seed, store_path=store_path.resolve(),
        )  # fmt: skip
        manifest = made.manifest
        staged: list[tuple[Path, Path]] = []
        try:
            staged.append((stage_text(out, selection_csv(made.selection), "export"), out))
            staged.append((stage_text(manifest_out, manifest_text(manifest), "export"), manifest_out))
            if save_as is not None:
                name = save_as
                save_in_store(store_path, lock_timeout, name, lambda opened: opened.save_design_selection(
                    name, settings=made.settings.to_dict(), selection=made.selection, manifest=manifest,
                    store_hash=manifest["store_hash"],
                ))  # fmt: skip
            for temporary, target in staged:
                publish_staged(temporary, target)
        finally:
            for temporary, _ in staged:
                discard_staged(temporary)
    if save_as is not None:
        progress_logger()(f"saved as {save_as!r} in {store_path}")
    click.echo(json.dumps({"csv": str(out), "manifest": str(manifest_out), **manifest["counts"]}))
