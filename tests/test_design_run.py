"""`harp design` end to end on a tiny random Llama: measure designed mixtures, store, resume, fit, select."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_measure import make_pool, write_pool
from test_protocols import CONFIG

from harp.data import EvalSet
from harp.store import Store, points_from_members

N_POINTS = 48


def _store(path: Path) -> Store:
    """48 points in 8 leaves, 4 parents of 2 leaves, 2 large nodes of 2 parents."""
    store = Store.create(path)
    members = np.array_split(np.arange(N_POINTS), 8)
    store.write_tree(points_from_members(members), [0, 0, 1, 1, 2, 2, 3, 3], [0, 0, 1, 1], 2)
    return store


@pytest.mark.train
def test_design_mixtures_are_measured_one_pass_stored_and_resumed(
    tiny_model: Path, eval_set: EvalSet, tmp_path: Path
) -> None:
    from harp.design import DESIGN_SEED, draw_design, fit_stored_design, region_of_points, run_design
    from harp.measure import build_model, evaluate, train_adapter

    store = _store(tmp_path / "store.duckdb")
    pool = make_pool(N_POINTS)
    report = run_design(
        store, tiny_model, pool, eval_set, CONFIG, level="parent", budgets=[6, 10], per_budget=2,
        adapters_per_batch=2,
    )  # fmt: skip
    assert (report.measured, report.skipped) == (4, 0)
    [run] = [r for r in store.runs() if r["run_id"] == report.run_id]
    assert run["kind"] == "design" and run["status"] == "done"
    table = store.design_mixtures(report.config_key, "parent").to_pydict()
    assert len(table["design_id"]) == 4 * eval_set.n_domains
    # The first mixture, trained by hand: its points from the base model, one pass (here the config's 4 steps).
    region = region_of_points(store, "parent")
    first = draw_design(region, [6, 10], 2, 0)[0]
    model = build_model(tiny_model, CONFIG)
    base = evaluate(model, eval_set, CONFIG)
    train_adapter(model, pool.subset(first.points), CONFIG, seed=DESIGN_SEED + first.seed)
    scores = evaluate(model, eval_set, CONFIG)
    rows = [i for i, regions in enumerate(table["regions"]) if json.loads(regions) == first.regions.tolist()
            and table["budget"][i] == 6]  # fmt: skip
    assert len(rows) == eval_set.n_domains
    for i in rows:
        d = table["domain_id"][i]
        assert table["phi"][i] == pytest.approx(
            float(np.mean((scores - base)[eval_set.domain == d])), abs=1e-4
        )
        assert json.loads(table["shares"][i]) == pytest.approx(
            np.bincount(region[first.points], minlength=4) / 6
        )
    # The base scores became the store's domains.
    stored_base = np.asarray(store.read_table("domains").sort_by("domain_id")["base"].to_pylist())
    want = np.bincount(eval_set.domain, weights=base, minlength=eval_set.n_domains) / eval_set.eval_size()
    np.testing.assert_allclose(stored_base, np.clip(want, 0, 1), atol=1e-12)
    # A rerun measures nothing again; the fit reads every stored mixture.
    again = run_design(
        store, tiny_model, pool, eval_set, CONFIG, level="parent", budgets=[6, 10], per_budget=2
    )
    assert (again.measured, again.skipped) == (0, 4)
    fit = fit_stored_design(store, level="parent", bootstraps=20)
    assert fit.n_mixtures == 4 and fit.centred.shape == (4,) and fit.budgets == (6, 10)
    # A second design (its own seed) adds new mixtures under the same config, and the fit pools both.
    second = run_design(
        store, tiny_model, pool, eval_set, CONFIG, level="parent", budgets=[6, 10], per_budget=2, seed=1,
        adapters_per_batch=2,
    )  # fmt: skip
    assert (second.measured, second.skipped, second.config_key) == (4, 0, report.config_key)
    assert fit_stored_design(store, level="parent", bootstraps=20).n_mixtures == 8


def test_a_background_protocol_is_refused_before_any_training(eval_set: EvalSet, tmp_path: Path) -> None:
    import dataclasses

    from harp.design import run_design

    store = _store(tmp_path / "store.duckdb")
    mixture = dataclasses.replace(CONFIG, protocol="in-mixture", background_size=7)
    with pytest.raises(ValueError, match="base-anchored"):
        run_design(store, "no-model", make_pool(N_POINTS), eval_set, mixture, level="parent", budgets=[6])
    with pytest.raises(ValueError, match="level"):
        run_design(store, "no-model", make_pool(N_POINTS), eval_set, CONFIG, level="leaf", budgets=[6])
    assert store.design_mixtures().num_rows == 0


def _stored_design(store: Store) -> None:
    """Design mixtures written directly: region 2 (of 4 parents) helps, region 0 hurts."""
    from harp.design import draw_design, region_of_points, region_shares

    store.write_domains(["math", "science"], [0.3, 0.4])
    region = region_of_points(store, "parent")
    rng = np.random.default_rng(0)
    for m in draw_design(region, [6, 10], 8, 0):
        shares = region_shares(m.points, region, 4)
        gain = 0.02 * (m.budget == 10) + 0.3 * shares[2] - 0.3 * shares[0] + rng.normal(0, 0.002)
        store.add_design_mixture(
            None, "key-a", level="parent", regions=m.regions.tolist(), budget=m.budget, seed=m.seed,
            shares=shares.tolist(), n_points=m.budget, phi=[gain, gain], variance=[0.0, 0.0],
        )  # fmt: skip


def test_fit_and_select_from_the_command_line(tmp_path: Path) -> None:
    from harp.cli import main

    store = _store(tmp_path / "store.duckdb")
    _stored_design(store)
    runner = CliRunner()
    fitted = runner.invoke(main, ["design", "fit", "--store", str(store.path), "--level", "parent", "--json"])
    assert fitted.exit_code == 0, fitted.output
    fit = json.loads(fitted.stdout)
    assert (
        fit["n_mixtures"] == 16
        and int(np.argmax(fit["centred"])) == 2
        and int(np.argmin(fit["centred"])) == 0
    )
    assert 2 in fit["kept"]["C"] and 0 not in fit["kept"]["E"]
    table = runner.invoke(main, ["design", "fit", "--store", str(store.path), "--level", "parent"])
    assert table.exit_code == 0 and "leave-one-out R2" in table.stdout
    out = tmp_path / "chosen.csv"
    chosen = runner.invoke(main, ["design", "select", "--store", str(store.path), "--level", "parent", "--rule",
                                  "C", "--budget", "5", "--out", str(out)])  # fmt: skip
    assert chosen.exit_code == 0, chosen.output
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 5
    kept_points = {
        p for r in fit["kept"]["C"] for p in range(12 * r, 12 * r + 12)
    }  # parent r: leaves 2r, 2r+1
    assert {int(row["point_id"]) for row in rows} <= kept_points
    manifest = json.loads((tmp_path / "chosen.manifest.json").read_text())
    assert manifest["envelope"] == "design-C" and manifest["store_hash"] == store.content_hash()
    assert manifest["counts"]["points"] == 5


def test_design_commands_explain_bad_input(tmp_path: Path, eval_set: EvalSet) -> None:
    from harp.cli import main

    store = _store(tmp_path / "store.duckdb")
    runner = CliRunner()
    empty = runner.invoke(main, ["design", "fit", "--store", str(store.path)])
    assert empty.exit_code != 0 and "holds no design mixtures" in empty.output
    refused = runner.invoke(main, ["design", "select", "--store", str(store.path), "--out", str(store.path)])
    assert refused.exit_code != 0 and store.path.exists()
    pool = write_pool(tmp_path / "pool.jsonl", N_POINTS)
    common = ["design", "measure", "--store", str(store.path), "--model", "m", "--pool", str(pool), "--eval",
              eval_set.path]  # fmt: skip
    odd = runner.invoke(main, [*common, "--per-budget", "3"])
    assert odd.exit_code != 0 and "--per-budget" in odd.output
    bad = runner.invoke(main, [*common, "--budgets", "500,x"])
    assert bad.exit_code != 0 and "--budgets" in bad.output
    theirs = tmp_path / "notes.csv"
    theirs.write_text("my own notes\n")
    _stored_design(store)
    kept = runner.invoke(main, ["design", "select", "--store", str(store.path), "--level", "parent",
                                "--out", str(theirs)])  # fmt: skip
    assert kept.exit_code != 0 and theirs.read_text() == "my own notes\n"


def test_the_shipped_demo_holds_rounds_4_and_4b_and_gives_their_pooled_fit(demo_store: Path) -> None:
    """`harp design fit` on the demo store pools round 4's design, its random finetunes and round 4b's second
    design, and reproduces the fit that chose the pooled selections (data/demo/run/round4p/fit.json, README
    "Does it help?"), bootstrap seed 5 as in that run."""
    from harp.design import fit_stored_design
    from harp.store import Store

    repo = Path(__file__).resolve().parents[1]
    store = Store.open(demo_store, read_only=True)
    shipped = json.loads((repo / "data" / "demo" / "run" / "round4p" / "fit.json").read_text())
    fit = fit_stored_design(store, level="large", seed=5)
    assert fit.n_mixtures == shipped["finetunes"] == 126 and fit.penalty == shipped["penalty"]
    np.testing.assert_allclose(fit.centred, shipped["centred"], atol=1e-9)
    np.testing.assert_allclose(fit.se, shipped["se"], atol=1e-9)
    assert fit.to_dict()["kept"]["C"] == shipped["kept"]["design-c"]


@pytest.mark.train
def test_design_measure_from_the_command_line_stores_and_resumes(
    tiny_model: Path, eval_set: EvalSet, tmp_path: Path
) -> None:
    from harp.cli import main

    store = _store(tmp_path / "store.duckdb")
    pool = write_pool(tmp_path / "pool.jsonl", N_POINTS)
    config = tmp_path / "config.json"
    config.write_text(CONFIG.to_json())
    arguments = ["design", "measure", "--store", str(store.path), "--model", str(tiny_model), "--pool", str(pool),
                 "--eval", eval_set.path, "--config", str(config), "--level", "parent", "--budgets", "6",
                 "--per-budget", "2", "--adapters-per-batch", "2"]  # fmt: skip
    runner = CliRunner()
    first = runner.invoke(main, arguments)
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout.strip().splitlines()[-1])["measured"] == 2
    again = runner.invoke(main, arguments)
    assert again.exit_code == 0 and json.loads(again.stdout.strip().splitlines()[-1])["skipped"] == 2
    table = Store.open(store.path, read_only=True).design_mixtures().to_pydict()
    assert len(set(table["design_id"])) == 2 and set(table["level"]) == {"parent"}
