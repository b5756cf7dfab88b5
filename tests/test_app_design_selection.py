"""The design selection in the app (AppTest): saved from the Designed mixtures page, marked on the Explore map,
counted in the overlap panel, listed with its method on the Selections page."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_app import clean, make_app, map_sent, run, texts

from harp.cli import main
from harp.design import design_select, fit_stored_design, region_of_leaves
from harp.export import saved_selection_files
from harp.select import select
from harp.store import Store


def _design_page(monkeypatch: pytest.MonkeyPatch, store: Path, budget: int = 500):
    at = run(make_app(monkeypatch, store))
    at.switch_page("views/design.py")
    clean(at, "design page")
    at.number_input(key="design_budget").set_value(budget)
    return clean(at, "design budget")


def _save(at, name: str, overwrite: bool = False):
    at.text_input(key="design_save_name").set_value(name)
    at.checkbox(key="design_save_overwrite").set_value(overwrite)
    at.button[[b.label for b in at.button].index("Save this selection")].click()
    return run(at)


def test_save_this_selection_saves_what_harp_design_select_writes(monkeypatch, demo_copy, tmp_path) -> None:
    at = _design_page(monkeypatch, demo_copy)
    _save(at, "design <b>pick</b>")
    assert "Saved as" in texts(at.success) and not at.error
    record = Store.open(demo_copy, read_only=True).load_selection("design <b>pick</b>")
    assert record["method"] == "design-C"
    assert record["design"] == {"rule": "C", "level": "large", "config_key": "design-round4", "bootstrap_seed": 0,
                                "budget": 500, "seed": 0}  # fmt: skip
    out = tmp_path / "cli.csv"
    result = CliRunner().invoke(main, ["design", "select", "--store", str(demo_copy), "--rule", "C", "--budget", "500",
                                       "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    csv_text, manifest_text = saved_selection_files(record)
    assert csv_text.encode() == out.read_bytes(), "the saved CSV is harp design select's, byte for byte"
    cli_manifest = json.loads((tmp_path / "cli.manifest.json").read_text())
    assert manifest_text is not None
    assert {**json.loads(manifest_text), "created_at": None} == {**cli_manifest, "created_at": None}

    # The same name again: refused with the Explore page's message, the first one kept.
    _save(at, "design <b>pick</b>")
    assert "already exists in this store" in texts(at.error)
    assert "Replace a saved selection of the same name" in texts(at.error)
    assert not at.success
    _save(at, "   ")
    assert "Give the selection a name." in texts(at.error)
    assert [r["name"] for r in Store.open(demo_copy, read_only=True).list_selections()] == [
        "design <b>pick</b>"
    ]
    at.radio(key="design_rule").set_value("E")
    clean(at, "rule E")
    _save(at, "design <b>pick</b>", overwrite=True)
    assert "Saved as" in texts(at.success)
    [record] = Store.open(demo_copy, read_only=True).list_selections()
    assert record["method"] == "design-E"

    # The Selections page lists it with its method, and offers its manifest as saved.
    at.switch_page("views/selections.py")
    clean(at, "selections")
    (table,) = [d.value for d in at.dataframe if "method" in d.value.columns]
    assert table["method"].tolist() == ["design-E"]
    assert "design\\-E" in texts(at.markdown) and "A design selection: rule E" in texts(at.caption)
    assert not [b for b in at.button if b.key == "saved_load"], (
        "a design selection is not loaded into Explore"
    )


def test_explore_marks_the_design_selection_and_counts_its_overlap(monkeypatch, demo_store) -> None:
    at = _design_page(monkeypatch, demo_store, budget=800)
    at.switch_page("views/explore.py")
    clean(at, "explore")
    _, marks = map_sent(at)
    assert not [m for m in marks if "design" in m["name"]], "not marked until asked"
    at.checkbox(key="show_design").set_value(True)
    clean(at, "show design")
    _, marks = map_sent(at)
    (mark,) = [m for m in marks if m["name"] == "selected (design-C)"]
    store = Store.open(demo_store, read_only=True)
    fit = fit_stored_design(store, level="large", seed=0)
    inputs = store.selection_inputs()
    want = design_select(fit, inputs.members, region_of_leaves(store, "large"), rule="C", budget=800, seed=0)
    rings = {m["name"]: m for m in marks if m["name"].startswith("selected")}
    assert {m["marker"]["color"] for m in rings.values()} >= {"#1b7837", "#111111"}
    assert len({json.dumps(m["meta"]) for m in rings.values()}) == len(rings), (
        "each ring its own size and dash"
    )
    assert "800 points" in texts(at.caption)
    leaves = np.frombuffer(base64.b64decode(mark["customdata"]["bdata"]), dtype="<i4")
    assert sorted(leaves.tolist()) == sorted(want.leaves.tolist())

    at.session_state["explore_tab"] = "Compare selections"
    clean(at, "overlap")
    tables = {d.proto.id: d.value for d in at.dataframe}
    (overlap,) = [t for t in tables.values() if "design" in t.columns]
    assert overlap.loc["leaves", "design"] == want.leaves.size
    assert overlap.loc["points", "design"] == want.points.size == 800
    view = at.session_state["view"]
    total = sum(len(m) for m in inputs.members)
    harp_c = select(inputs.phi, inputs.base, envelope="C", weights=view.effective_weights(), members=inputs.members,
                    budget=view.budget if view.budget < total else None)  # fmt: skip
    ours = set(want.leaves.tolist())
    assert overlap.loc["leaves", "design and HARP-C"] == len(ours & set(harp_c.leaves.tolist()))
