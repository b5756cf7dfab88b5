"""The Stores and Runs pages under AppTest: open another store of the folder, import a Parquet export or
``harp load``'s arrays into a new store (and every refusal as an st.error that replaces nothing), watch a run's
progress, and rerun ``harp infer`` once new measurements have landed."""

from __future__ import annotations

import datetime as dt
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from streamlit import config as st_config
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.runs_watch import duration_words  # noqa: E402
from harp.runs import utc_now  # noqa: E402
from harp.store import Store, export_parquet  # noqa: E402
from harp.synth import synth_store  # noqa: E402

APP = str(ROOT / "app" / "streamlit_app.py")


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    where = tmp_path_factory.mktemp("stores")
    synth_store(where / "a.duckdb", leaves=60, domains=3, seed=1)
    synth_store(where / "b.duckdb", leaves=90, domains=4, seed=2)
    export_parquet(where / "b.duckdb", where / "b-export")
    return {"a": where / "a.duckdb", "b": where / "b.duckdb", "export": where / "b-export"}


@pytest.fixture
def folder(tmp_path: Path, templates: dict[str, Path]) -> Path:
    """A folder of stores holding a.duckdb and b.duckdb (fresh copies), next to an export of b."""
    stores = tmp_path / "stores"
    stores.mkdir()
    for name in ("a", "b"):
        shutil.copy(templates[name], stores / f"{name}.duckdb")
    shutil.copytree(templates["export"], tmp_path / "b-export")
    return stores


@pytest.fixture(autouse=True)
def served_on_localhost():
    """The address `harp app` binds by default (AppTest itself binds nothing, so the option is unset)."""
    before = st_config.get_option("server.address")
    st_config.set_option("server.address", "127.0.0.1")
    yield
    st_config.set_option("server.address", before)


def make_app(monkeypatch: pytest.MonkeyPatch, store: Path, stores: Path, page: str) -> AppTest:
    monkeypatch.setenv("HARP_STORE", str(store))
    monkeypatch.setenv("HARP_STORES", str(stores))
    at = AppTest.from_file(APP, default_timeout=120)
    run(at)
    at.switch_page(page)
    return run(at)


def run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def explore_caption(at: AppTest) -> str:
    at.switch_page("views/explore.py")
    run(at)
    return texts(at.caption)


# --------------------------------------------------------------------------------------------------------------
# Stores


def test_open_another_store_of_the_folder(monkeypatch, folder) -> None:
    at = make_app(monkeypatch, folder / "a.duckdb", folder, "views/stores.py")
    (table,) = [d.value for d in at.dataframe if "store" in d.value.columns]
    assert table["store"].tolist() == ["a.duckdb", "b.duckdb"]
    assert table["open now"].tolist() == [True, False]
    assert "60 leaves" in explore_caption(at)

    at.switch_page("views/stores.py")
    run(at)
    at.selectbox(key="stores_pick").set_value("b.duckdb")
    at.button(key="stores_open").click()
    run(at)
    assert "Opened" in texts(at.success) and not at.error
    assert "90 leaves" in explore_caption(at)  # every page now reads b
    at.switch_page("views/store.py")
    run(at)
    assert str((folder / "b.duckdb").resolve()) in texts(at.markdown)


def test_started_on_a_folder_alone_the_pages_point_to_the_stores_page(monkeypatch, folder) -> None:
    monkeypatch.delenv("HARP_STORE", raising=False)
    monkeypatch.setenv("HARP_STORES", str(folder))
    at = run(AppTest.from_file(APP, default_timeout=120))
    assert "No store is open yet" in texts(at.info) and not at.error
    at.switch_page("views/runs.py")
    run(at)
    assert "No store is open yet" in texts(at.info) and not at.error
    at.switch_page("views/stores.py")
    run(at)
    assert "No store is open yet" in texts(at.warning)
    at.selectbox(key="stores_pick").set_value("a.duckdb")
    at.button(key="stores_open").click()
    run(at)
    assert "60 leaves" in explore_caption(at)


def test_a_store_gone_from_under_the_tab_leaves_the_stores_page_usable(monkeypatch, folder) -> None:
    at = make_app(monkeypatch, folder / "a.duckdb", folder, "views/stores.py")
    at.selectbox(key="stores_pick").set_value("b.duckdb")
    at.button(key="stores_open").click()
    run(at)
    (folder / "b.duckdb").unlink()
    at.switch_page("views/explore.py")
    run(at)
    assert "does not exist" in texts(at.error)
    at.switch_page("views/stores.py")
    run(at)
    assert "does not exist" in texts(at.warning)
    at.selectbox(key="stores_pick").set_value("a.duckdb")
    at.button(key="stores_open").click()
    run(at)
    assert "60 leaves" in explore_caption(at)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"not a store at all, but long enough", "is not a DuckDB file", id="not-duckdb"),
        pytest.param(None, "is a DuckDB database but not a HARP store", id="foreign-duckdb"),
    ],
)
def test_a_file_that_is_not_a_store_is_refused_and_the_open_store_stays(
    monkeypatch, folder, content, message
) -> None:
    stranger = folder / "notes.duckdb"
    if content is None:
        import duckdb

        con = duckdb.connect(str(stranger))
        con.execute("CREATE TABLE notes (x INTEGER)")
        con.close()
    else:
        stranger.write_bytes(content)
    before = files(folder)
    at = make_app(monkeypatch, folder / "a.duckdb", folder, "views/stores.py")
    at.selectbox(key="stores_pick").set_value("notes.duckdb")
    at.button(key="stores_open").click()
    run(at)
    assert message in texts(at.error) and not at.success
    assert "60 leaves" in explore_caption(at)
    assert files(folder) == before


def test_import_a_parquet_export_into_a_new_store_and_open_it(monkeypatch, folder) -> None:
    at = make_app(monkeypatch, folder / "a.duckdb", folder, "views/stores.py")
    at.text_input(key="import_source").input(str(folder.parent / "b-export"))
    at.text_input(key="import_name").input("b-again")
    at.button(key="FormSubmitter:import_form-Import").click()
    run(at)
    assert not at.error, texts(at.error)
    assert "Built" in texts(at.success) and "open now" in texts(at.success)
    imported = folder / "b-again.duckdb"
    assert (
        Store.open(imported, read_only=True).content_hash() == Store.open(folder / "b.duckdb").content_hash()
    )
    assert "90 leaves" in explore_caption(at)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        pytest.param("corrupt", "points.parquet is not a readable Parquet file", id="corrupt-parquet"),
        pytest.param(
            "not-an-export", "has no meta.parquet, so it is not an export of a HARP store", id="not-export"
        ),
        pytest.param(
            "missing-folder", "is not a folder; give the folder that `harp export` wrote", id="no-folder"
        ),
        pytest.param("taken", "A store named a.duckdb already exists", id="name-taken"),
        pytest.param("bad-name", "Name must be a plain file name", id="bad-name"),
    ],
)
def test_import_refusals_are_errors_that_replace_nothing(monkeypatch, folder, case, message) -> None:
    source = folder.parent / "b-export"
    name = "new"
    if case == "corrupt":
        (source / "points.parquet").write_bytes(b"PAR1 truncated")
    elif case == "not-an-export":
        source = folder.parent / "photos"
        source.mkdir()
        (source / "cat.jpg").write_bytes(b"\xff\xd8")
    elif case == "missing-folder":
        source = folder.parent / "nowhere"
    elif case == "taken":
        name = "a"
    elif case == "bad-name":
        name = "../a"
    before = files(folder)
    at = make_app(monkeypatch, folder / "a.duckdb", folder, "views/stores.py")
    at.text_input(key="import_source").input(str(source))
    at.text_input(key="import_name").input(name)
    at.button(key="FormSubmitter:import_form-Import").click()
    run(at)
    shown = texts(at.error)
    assert message in shown.replace("\n", " "), shown
    assert "overwrite=True" not in shown and "--force" not in shown and not at.success
    assert files(folder) == before  # no new store, no temporary left, a.duckdb untouched
    assert "60 leaves" in explore_caption(at)


def _arrays(where: Path) -> dict[str, Path]:
    where.mkdir()
    paths = {key: where / f"{key}.npy" for key in ("phi", "leaf_of_point", "parent_of_leaf")}
    np.save(paths["phi"], np.array([[0.02, -0.01], [0.0, 0.03], [-0.02, 0.01]]))
    np.save(paths["leaf_of_point"], np.array([0, 0, 1, 2, 2, 2]))
    np.save(paths["parent_of_leaf"], np.array([0, 0, 1]))
    (where / "base.json").write_text("[0.4, 0.7]")
    (where / "domains.txt").write_text("algebra\nhistory\n")
    (where / "texts.txt").write_text("one\ntwo\nthree\nfour\nfive\nsix\n")
    return {
        **paths,
        "base": where / "base.json",
        "domain_names": where / "domains.txt",
        "texts": where / "texts.txt",
    }


def _fill_arrays(at: AppTest, arrays: dict[str, Path], name: str) -> None:
    for key, path in arrays.items():
        at.text_input(key=f"load_{key}").input(str(path))
    at.text_input(key="load_name").input(name)
    at.button(key="FormSubmitter:load_form-Build the store").click()


def test_load_arrays_into_a_new_store(monkeypatch, folder) -> None:
    arrays = _arrays(folder.parent / "arrays")
    at = make_app(monkeypatch, folder / "a.duckdb", folder, "views/stores.py")
    _fill_arrays(at, arrays, "loaded")
    run(at)
    assert not at.error, texts(at.error)
    summary = Store.open(folder / "loaded.duckdb", read_only=True).summary()
    assert (summary["n_leaves"], summary["n_points"], summary["n_domains"]) == (3, 6, 2)
    assert "3 leaves" in explore_caption(at)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        pytest.param("shape", "base (BASE) has shape (3,) but phi (PHI) has 2 domains", id="shape-mismatch"),
        pytest.param("missing", "missing: domain names", id="required-missing"),
        pytest.param("taken", "A store named b.duckdb already exists", id="name-taken"),
    ],
)
def test_load_refusals_name_the_file_and_replace_nothing(monkeypatch, folder, case, message) -> None:
    arrays = _arrays(folder.parent / "arrays")
    name = "b" if case == "taken" else "loaded"
    if case == "shape":
        arrays["base"].write_text("[0.4, 0.7, 0.1]")
    elif case == "missing":
        del arrays["domain_names"]
    before = files(folder)
    at = make_app(monkeypatch, folder / "a.duckdb", folder, "views/stores.py")
    _fill_arrays(at, arrays, name)
    run(at)
    expected = message.replace("BASE", str(arrays["base"])).replace("PHI", str(arrays["phi"]))
    assert expected in texts(at.error).replace("\n", " "), texts(at.error)
    assert files(folder) == before


def test_imports_are_off_when_the_app_serves_other_machines(monkeypatch, folder) -> None:
    st_config.set_option("server.address", "0.0.0.0")
    at = make_app(monkeypatch, folder / "a.duckdb", folder, "views/stores.py")
    assert "only while the app serves this machine alone" in texts(at.info)
    assert not [t for t in at.text_input if t.key == "import_source"]
    assert at.button(key="stores_open")  # opening a store of the folder still works


# --------------------------------------------------------------------------------------------------------------
# Runs


def _measure(store: Store, leaf: int, at: dt.datetime, run_id: str, key: str) -> None:
    store.add_measurements(
        [
            {"leaf_id": leaf, "domain_id": d, "phi": 0.01, "variance": 1e-4, "run_id": run_id, "config_key": key,
             "created_at": at}
            for d in range(3)
        ]
    )  # fmt: skip


def test_runs_page_shows_progress_and_reruns_infer_when_measurements_landed(monkeypatch, folder) -> None:
    path = folder / "a.duckdb"
    store = Store.open(path)
    t0 = utc_now()  # after the store's own measurements: the writer's clock only moves on
    key = str(store.read_table("measurements")["config_key"][0])
    effects = store.read_table("effects")
    measured = set(np.asarray(effects.filter(effects["measured"])["leaf_id"]).tolist())
    fresh = [g for g in range(60) if g not in measured][:4]
    store.add_run("measure", {"leaves": fresh, "config_key": key}, run_id="m1")
    with store.write(rehash=()) as con:
        con.execute("UPDATE runs SET started_at = ? WHERE run_id = 'm1'", [t0])
        con.execute("UPDATE runs SET started_at = ? WHERE run_id <> 'm1'", [t0 - dt.timedelta(days=1)])
    _measure(store, fresh[0], t0 + dt.timedelta(seconds=30), "m1", key)
    _measure(store, fresh[1], t0 + dt.timedelta(seconds=90), "m1", key)

    at = make_app(monkeypatch, path, folder, "views/runs.py")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Leaves done"] == "2 / 4"
    assert metrics["Leaves a minute"] == "1.00"  # one more leaf in the 60 s after the first
    assert "2 of 4 leaves measured" in [p.proto.text for p in at.get("progress")]
    assert "**2** leaves were measured after the effects were fitted" in texts(at.info)
    (table,) = [d.value for d in at.dataframe]
    assert table["run"].tolist()[0] == "m1" and table["leaves"].tolist()[0] == "2 / 4"

    at.button(key="runs_infer").click()
    run(at)
    assert "UTC: effects refitted from" in texts(at.success), texts(at.error)
    assert "nothing new for `harp infer`" in texts(at.caption)
    assert {r["kind"]: r["status"] for r in Store.open(path).runs()}["infer"] == "done"
    assert Store.open(path).summary()["n_fit_leaves"] == len(measured) + 2

    _measure(store, fresh[2], t0 + dt.timedelta(seconds=150), "m1", key)  # the writer goes on
    run(at)
    assert {m.label: m.value for m in at.metric}["Leaves done"] == "3 / 4"
    assert "**1** leaves were measured after the effects were fitted" in texts(at.info)
    assert "effects refitted from" in texts(at.success)  # the outcome stays through the panel's redraws


def test_runs_page_without_a_running_run_lists_the_runs(monkeypatch, folder) -> None:
    at = make_app(monkeypatch, folder / "a.duckdb", folder, "views/runs.py")
    assert [d.value for d in at.dataframe][0]["kind"].tolist() == ["synth"]
    assert "No run is running now." in texts(at.caption)


@pytest.mark.parametrize(
    ("seconds", "words"),
    [(None, "\u2013"), (-3, "0 s"), (44.6, "45 s"), (89, "about 1 min"), (3599, "about 1 h"), (7500, "about 2 h 5 min"), (255_000, "about 3 d")],
)  # fmt: skip
def test_duration_words(seconds, words) -> None:
    assert duration_words(seconds) == words


def test_a_run_silent_for_days_is_called_quiet_not_running(monkeypatch, folder) -> None:
    store = Store.open(folder / "a.duckdb")
    store.add_run("measure", {"leaves": [1, 2, 3]}, run_id="killed")
    with store.write(rehash=()) as con:
        con.execute(
            "UPDATE runs SET started_at = ? WHERE run_id = 'killed'", [utc_now() - dt.timedelta(days=2)]
        )
    at = make_app(monkeypatch, folder / "a.duckdb", folder, "views/runs.py")
    assert not at.metric and "No run is running now." in texts(at.caption)
    assert "most likely stopped without recording their end" in texts(at.warning)
    assert "run killed: 0 of 3 leaves, last written 2 d ago" in texts(at.warning).replace("\\", "")
    (table,) = [d.value for d in at.dataframe]
    assert dict(zip(table["run"], table["status"], strict=True))["killed"] == "running (quiet)"
