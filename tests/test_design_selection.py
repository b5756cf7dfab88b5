"""The design selection as a saved selection: migration m007_selection_method, Store.save_design_selection,
`harp design select --save-as`, and the saved files equal to `harp design select`'s byte for byte."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from store_versions import downgrade_sql
from test_design_run import _store, _stored_design

from harp.cli import main
from harp.design_selection import select_by_design
from harp.export import saved_selection_files
from harp.store import Store, StoreError, export_parquet, import_parquet, migrations
from harp.store.selections import Selections

SETTINGS = {
    "rule": "C",
    "level": "parent",
    "config_key": "key-a",
    "bootstrap_seed": 0,
    "budget": 5,
    "seed": 0,
}
M007_COLUMNS = ("method", "design", "manifest")


def raw(path: Path, *queries: str) -> list[list[tuple[Any, ...]]]:
    con = duckdb.connect(str(path))
    try:
        return [con.execute(query).fetchall() for query in queries]
    finally:
        con.close()


@pytest.fixture
def design_store(tmp_path: Path) -> Store:
    """48 points, 8 leaves, 4 parents; design mixtures at the parent level under config key-a."""
    store = _store(tmp_path / "store.duckdb")
    _stored_design(store)
    return store


def _save_harp_c(store: Store, name: str) -> None:
    """A HARP-C selection of 4 points, saved as `harp select --save-as` saves one (save_selection reads only its
    points and their leaves)."""
    chosen = SimpleNamespace(points=np.array([0, 1, 2, 3]), point_leaves=np.array([0, 0, 0, 0]))
    store.save_selection(
        name, envelope="c", weights=None, budget=4, pinned=None, excluded=None, selection=chosen
    )


def _undo_m007(path: Path) -> None:
    """What the store was before m007: no selection method, m007 not recorded, one version less."""
    before_m007 = [migration.name for migration in migrations.MIGRATIONS].index("m007_selection_method")
    raw(path, *downgrade_sql(before_m007))


# -- the migration ------------------------------------------------------------------------------------------------


def test_m007_is_the_last_migration_and_adds_the_method_columns(tmp_path: Path) -> None:
    assert migrations.MIGRATIONS[-1].name == "m007_selection_method"
    assert migrations.latest_version() == len(migrations.MIGRATIONS)
    store = Store.create(tmp_path / "new.duckdb")
    columns = [row[0] for row in raw(store.path, "DESCRIBE selections")[0]]
    assert columns[-3:] == list(M007_COLUMNS)


def test_m007_gives_older_selections_their_envelope_as_method(design_store: Store) -> None:
    _save_harp_c(design_store, "older")
    hash_before = design_store.content_hash()
    _undo_m007(design_store.path)
    with pytest.raises(StoreError, match="run `harp migrate"):
        Store.open(design_store.path, read_only=True)
    migrated = Store.open(design_store.path)
    [record] = migrated.list_selections()
    assert (record["method"], record["envelope"], record["design"], record["manifest"]) == (
        "HARP-C",
        "C",
        None,
        None,
    )
    assert migrated.meta()["schema_version"] == str(migrations.latest_version())
    assert migrated.read_table("migrations")["name"].to_pylist()[-1] == "m007_selection_method"
    assert migrated.content_hash() == migrated.content_hash(recompute=True) == hash_before


def _broken_m007(con: duckdb.DuckDBPyConnection) -> None:
    migrations.m007_selection_method(con)
    con.execute("DELETE FROM selections")
    raise RuntimeError("disk on fire")


def test_a_failing_m007_rolls_back(design_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    _save_harp_c(design_store, "kept")
    _undo_m007(design_store.path)
    before = raw(design_store.path, "SELECT * FROM selections", "SELECT * FROM selection_points")
    steps = [*migrations.MIGRATIONS[:-1], migrations.Migration("m007_selection_method", _broken_m007)]
    monkeypatch.setattr(migrations, "MIGRATIONS", steps)
    version = len(steps) - 1
    with pytest.raises(
        StoreError,
        match=rf"m007_selection_method failed and was rolled back \(the store stays at schema version {version}\)"
        ": disk on fire",
    ):
        Store.open(design_store.path)
    monkeypatch.undo()
    assert raw(design_store.path, "SELECT * FROM selections", "SELECT * FROM selection_points") == before
    assert raw(design_store.path, "SELECT value FROM meta WHERE key = 'schema_version'") == [
        [(str(version),)]
    ]
    Store.open(design_store.path)  # the real migration then applies
    assert Store.open(design_store.path).list_selections()[0]["method"] == "HARP-C"


def test_an_export_from_before_m007_imports_and_is_migrated(design_store: Store, tmp_path: Path) -> None:
    _save_harp_c(design_store, "older")
    folder = tmp_path / "export"
    export_parquet(design_store.path, folder)
    selections = pq.read_table(folder / "selections.parquet")
    pq.write_table(selections.drop_columns(list(M007_COLUMNS)), folder / "selections.parquet")
    version = str(migrations.latest_version() - 1)
    meta = pq.read_table(folder / "meta.parquet").to_pydict()
    meta["value"] = [
        version if k == "schema_version" else v for k, v in zip(meta["key"], meta["value"], strict=True)
    ]
    pq.write_table(pa.table(meta), folder / "meta.parquet")
    applied = pq.read_table(folder / "migrations.parquet")
    pq.write_table(applied.slice(0, applied.num_rows - 1), folder / "migrations.parquet")
    copy = import_parquet(folder, tmp_path / "copy.duckdb")
    assert copy.read_table("migrations")["name"].to_pylist()[-1] == "m007_selection_method"
    [record] = copy.list_selections()
    assert (record["name"], record["method"], record["design"]) == ("older", "HARP-C", None)
    assert copy.load_selection("older")["points"].tolist() == [0, 1, 2, 3]


# -- saving, listing and loading ----------------------------------------------------------------------------------


def test_a_design_selection_is_saved_listed_and_loaded_with_its_method(design_store: Store) -> None:
    made = select_by_design(design_store, **{k: v for k, v in SETTINGS.items() if k != "config_key"})
    assert made.settings.to_dict() == SETTINGS, "the only config is named in the settings"
    _save_harp_c(design_store, "harp")
    selection_id = design_store.save_design_selection(
        "design", settings=SETTINGS, selection=made.selection, manifest=made.manifest,
        store_hash=made.manifest["store_hash"],
    )  # fmt: skip
    listed = {record["name"]: record for record in design_store.list_selections()}
    assert [listed[n]["method"] for n in ("harp", "design")] == ["HARP-C", "design-C"]
    assert listed["design"]["selection_id"] == selection_id and listed["design"]["design"] == SETTINGS
    assert listed["design"]["envelope"] is None and listed["design"]["budget"] == 5
    loaded = design_store.load_selection("design")
    assert loaded["points"].tolist() == made.selection.points.tolist()
    assert loaded["point_leaves"].tolist() == made.selection.point_leaves.tolist()
    assert loaded["manifest"] == made.manifest and loaded["store_hash"] == design_store.content_hash()
    assert loaded["n_points"] == 5


def test_save_selection_keeps_its_signature_for_harp_c_and_e() -> None:
    import inspect

    parameters = list(inspect.signature(Selections.save_selection).parameters)
    assert parameters == ["self", "name", "envelope", "weights", "budget", "pinned", "excluded", "selection",
                          "overwrite", "store_hash"]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "match"),
    [
        pytest.param({"rule": "X"}, r"settings\.rule must be one of C, E, got 'X'", id="rule"),
        pytest.param(
            {"level": "leaf"}, r"settings\.level must be one of large, parent, got 'leaf'", id="level"
        ),
        pytest.param({"config_key": ""}, r"settings\.config_key must be a non-empty string", id="config-key"),
        pytest.param({"budget": 0}, r"settings\.budget must be an integer >= 1 or None", id="budget"),
        pytest.param({"seed": -1}, r"settings\.seed must be an integer >= 0, got -1", id="seed"),
        pytest.param(
            {"bootstrap_seed": 1.5}, r"settings\.bootstrap_seed must be an integer >= 0", id="bootstrap"
        ),
        pytest.param({"extra": 1}, r"settings must have exactly the keys .*unknown: extra", id="unknown-key"),
    ],
)
def test_bad_settings_are_refused_by_name(design_store: Store, change: dict[str, Any], match: str) -> None:
    made = select_by_design(design_store, level="parent", budget=5)
    with pytest.raises(ValueError, match=match):
        design_store.save_design_selection(
            "bad", settings={**SETTINGS, **change}, selection=made.selection, manifest=made.manifest,
            store_hash=made.manifest["store_hash"],
        )  # fmt: skip
    assert design_store.list_selections() == [], "nothing was saved"


def test_a_manifest_or_hash_that_does_not_describe_the_selection_is_refused(design_store: Store) -> None:
    made = select_by_design(design_store, level="parent", budget=5)
    common = {"settings": SETTINGS, "selection": made.selection}
    with pytest.raises(ValueError, match=r"manifest\.budget is 6 but the selection's is 5"):
        design_store.save_design_selection("x", **common, manifest={**made.manifest, "budget": 6},
                                           store_hash=made.manifest["store_hash"])  # fmt: skip
    with pytest.raises(ValueError, match=r"manifest\.store_hash is .* but the selection's is 'f+'"):
        design_store.save_design_selection("x", **common, manifest=made.manifest, store_hash="f" * 64)
    with pytest.raises(ValueError, match=r"store_hash must be a content hash \(64 hex digits\), got None"):
        design_store.save_design_selection("x", **common, manifest=made.manifest, store_hash=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"manifest must be a harp-selection/1 manifest"):
        design_store.save_design_selection("x", **common, manifest={}, store_hash=made.manifest["store_hash"])
    with pytest.raises(ValueError, match=r"name must be a non-empty string"):
        design_store.save_design_selection(" ", **common, manifest=made.manifest,
                                           store_hash=made.manifest["store_hash"])  # fmt: skip
    design_store.save_design_selection(
        "x", **common, manifest=made.manifest, store_hash=made.manifest["store_hash"]
    )
    with pytest.raises(ValueError, match=r"name: a selection named 'x' already exists"):
        design_store.save_design_selection("x", **common, manifest=made.manifest,
                                           store_hash=made.manifest["store_hash"])  # fmt: skip


# -- the command line ---------------------------------------------------------------------------------------------


def _design_select(store: Path, out: Path, *extra: str) -> Any:
    arguments = ["design", "select", "--store", str(store), "--level", "parent", "--rule", "C", "--budget", "5",
                 "--seed", "3", "--out", str(out), *extra]  # fmt: skip
    return CliRunner().invoke(main, arguments)


def test_save_as_saves_what_the_command_writes_byte_for_byte(design_store: Store, tmp_path: Path) -> None:
    out = tmp_path / "chosen.csv"
    result = _design_select(design_store.path, out, "--save-as", "design pick")
    assert result.exit_code == 0, result.output
    assert "saved as 'design pick'" in result.stderr
    record = Store.open(design_store.path, read_only=True).load_selection("design pick")
    assert record["method"] == "design-C"
    assert record["design"] == {**SETTINGS, "seed": 3}
    csv_text, manifest_text = saved_selection_files(record)
    assert csv_text.encode() == out.read_bytes()
    assert (
        manifest_text is not None
        and manifest_text.encode() == (tmp_path / "chosen.manifest.json").read_bytes()
    )
    assert json.loads(manifest_text)["design"]["config_key"] == "key-a"

    # Another run with the same settings: the same CSV byte for byte; the manifest differs only in its time.
    again = tmp_path / "again.csv"
    assert _design_select(design_store.path, again).exit_code == 0
    assert again.read_bytes() == out.read_bytes()
    rerun = json.loads((tmp_path / "again.manifest.json").read_text())
    assert {**rerun, "created_at": None} == {**json.loads(manifest_text), "created_at": None}


def test_save_as_refuses_a_taken_or_empty_name_and_writes_nothing(
    design_store: Store, tmp_path: Path
) -> None:
    _save_harp_c(design_store, "taken")
    out = tmp_path / "chosen.csv"
    taken = _design_select(design_store.path, out, "--save-as", "taken")
    assert taken.exit_code == 1
    assert (
        f"Error: --save-as: a selection named 'taken' already exists in {design_store.path} (saved: 'taken'); "
        "choose another name; nothing was written"
    ) in taken.output
    assert not out.exists() and not (tmp_path / "chosen.manifest.json").exists()
    empty = _design_select(design_store.path, out, "--save-as", "  ")
    assert empty.exit_code == 1 and "--save-as: the name must not be empty" in empty.output
    assert [r["name"] for r in Store.open(design_store.path, read_only=True).list_selections()] == ["taken"]
    # `harp select` words the same refusal the same way.
    select = CliRunner().invoke(main, ["select", "--store", str(design_store.path), "--envelope", "C", "--out",
                                       str(tmp_path / "harp.csv"), "--save-as", "taken"])  # fmt: skip
    assert select.exit_code == 1
    assert "--save-as: a selection named 'taken' already exists" in select.output
