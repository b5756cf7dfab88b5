"""The explorer app under Streamlit's AppTest: every control's logic, URL state, store problems, save and reload.

Each test runs the real entry script (``app/streamlit_app.py``, with ``st.navigation``) against a small synthetic
store named by ``HARP_STORE``, changes widgets the way a user would, and checks what the page shows against
``harp.select`` run directly on the same store.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harp.select import select  # noqa: E402
from harp.store import Store  # noqa: E402
from harp.synth import synth_store  # noqa: E402

APP = str(ROOT / "app" / "streamlit_app.py")
LEAVES, DOMAINS = 240, 5


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("app") / "app.duckdb"
    synth_store(path, leaves=LEAVES, domains=DOMAINS, seed=7)
    return path


@pytest.fixture(scope="module")
def inputs(store_path: Path):
    return Store.open(store_path, read_only=True).selection_inputs()


@pytest.fixture
def fresh_store(store_path: Path, tmp_path: Path) -> Path:
    """A private copy of the store, for tests that write to it or alter it."""
    path = tmp_path / "copy.duckdb"
    shutil.copy(store_path, path)
    return path


def make_app(monkeypatch: pytest.MonkeyPatch, store: Path | str | None, **query: str) -> AppTest:
    if store is None:
        monkeypatch.delenv("HARP_STORE", raising=False)
    else:
        monkeypatch.setenv("HARP_STORE", str(store))
    at = AppTest.from_file(APP, default_timeout=120)
    for key, value in query.items():
        at.query_params[key] = value
    return at


def run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metric(at: AppTest, label: str) -> str:
    values = [m.value for m in at.metric if m.label == label]
    assert values, f"no metric {label!r}; have {[m.label for m in at.metric]}"
    return values[0]


def expected(inputs, envelope: str, **kwargs):
    weights = kwargs.pop("weights", np.where(inputs.active, 1.0, 0.0) if inputs.active.any() else None)
    return select(
        inputs.phi, inputs.base, envelope=envelope, weights=weights, members=inputs.members, **kwargs
    )


def shows(at: AppTest, envelope: str, selection) -> None:
    name = f"HARP-{envelope}"
    assert metric(at, f"{name} points") == f"{len(selection.points):,}"
    assert metric(at, f"{name} leaves") == f"{len(selection.leaves):,}"


def map_sent(at: AppTest) -> tuple[str, list[dict]]:
    """What the leaf map component sends the browser: the JSON of the two files it fetches (the base, then the
    colors, one after the other) and the marks."""
    import json

    from app.leaf_map import serving_dir

    (component,) = at.get("component_instance")
    args = json.loads(component.proto.json_args)
    fetched = (serving_dir() / args["base"]).read_text() + (serving_dir() / args["colors"]).read_text()
    return fetched, args["marks"]


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


# --------------------------------------------------------------------------------------------------------------
# Loading and the controls


def test_first_view_matches_harp_select(monkeypatch, store_path, inputs) -> None:
    at = run(make_app(monkeypatch, store_path))
    shows(at, "C", expected(inputs, "C"))
    assert not at.error and not at.warning
    assert dict(at.query_params) == {}
    assert at.segmented_control(key="ctl_envelope").value == "C"
    assert at.number_input(key="ctl_budget_number").value == int(inputs.leaf_size.sum())


def test_envelope_switch_changes_the_selection(monkeypatch, store_path, inputs) -> None:
    at = run(make_app(monkeypatch, store_path))
    at.segmented_control(key="ctl_envelope").set_value("E")
    run(at)
    e = expected(inputs, "E")
    shows(at, "E", e)
    assert not [m for m in at.metric if m.label.startswith("HARP-C")]
    assert at.query_params["envelope"] in ("E", ["E"])
    assert len(e.points) != len(expected(inputs, "C").points)  # the switch is visible in this store

    at.segmented_control(key="ctl_envelope").set_value("both")
    run(at)
    shows(at, "C", expected(inputs, "C"))
    shows(at, "E", e)


def test_budget_input_and_slider_stay_in_sync(monkeypatch, store_path, inputs) -> None:
    at = run(make_app(monkeypatch, store_path))
    full = expected(inputs, "C")
    budget = len(full.points) // 2
    at.number_input(key="ctl_budget_number").set_value(budget)
    run(at)
    assert metric(at, "HARP-C points") == f"{budget:,}"
    assert at.slider(key="ctl_budget_slider").value == budget
    shows(at, "C", expected(inputs, "C", budget=budget))
    assert at.query_params["budget"] in (str(budget), [str(budget)])

    at.slider(key="ctl_budget_slider").set_value(10)
    run(at)
    assert at.number_input(key="ctl_budget_number").value == 10
    assert metric(at, "HARP-C points") == "10"


def test_weights_edit_changes_the_selection(monkeypatch, store_path, inputs) -> None:
    at = run(make_app(monkeypatch, store_path))
    # AppTest cannot type into a data editor; set the view the way a callback does and let the widgets follow.
    from app.state import ViewState

    view: ViewState = at.session_state["view"]
    weights = (5.0, 0.0, 0.0, 1.0, 0.0)
    at.session_state["view"] = ViewState(
        envelope=view.envelope,
        budget=view.budget,
        weights=weights,
        active=(True,) * DOMAINS,
        color=view.color,
        pinned=(),
        excluded=(),
    )
    at.session_state["view_dirty"] = True
    run(at)
    shows(at, "C", expected(inputs, "C", weights=np.array(weights)))
    assert at.query_params["weights"] in ("5,0,0,1,0", ["5,0,0,1,0"])
    assert not at.data_editor  # the editor is built only while its expander is open
    at.session_state["ctl_weights_open"] = True
    run(at)
    assert at.data_editor[0].value["weight"].tolist() == list(weights)
    shows(at, "C", expected(inputs, "C", weights=np.array(weights)))


def test_weights_from_link_and_reset_to_active_domains(monkeypatch, store_path, inputs) -> None:
    at = run(make_app(monkeypatch, store_path, weights="1,2,3,4,5", active="1" * DOMAINS))
    shows(at, "C", expected(inputs, "C", weights=np.arange(1.0, 6.0)))
    at.button(key="ctl_reset_weights").click()
    run(at)
    shows(at, "C", expected(inputs, "C"))
    assert "weights" not in at.query_params and "active" not in at.query_params


def test_pin_and_exclude_by_typing_ids(monkeypatch, store_path, inputs) -> None:
    at = run(make_app(monkeypatch, store_path))
    full = expected(inputs, "C")
    outsider = int(next(g for g in range(LEAVES) if g not in set(full.leaves.tolist())))
    first = int(full.leaves[0])
    at.text_input(key="ctl_pinned").set_value(str(outsider))
    at.text_input(key="ctl_excluded").set_value(str(first))
    run(at)
    want = expected(inputs, "C", pinned=[outsider], excluded=[first])
    assert want.order[0] == outsider
    shows(at, "C", want)
    assert at.query_params["pin"] in (str(outsider), [str(outsider)])

    at.text_input(key="ctl_pinned").set_value("not a leaf")
    run(at)
    assert "Pinned leaves" in texts(at.warning)
    shows(at, "C", want)  # a bad entry keeps the previous pins


def test_pin_and_exclude_from_the_leaf_panel(monkeypatch, store_path, inputs) -> None:
    at = run(make_app(monkeypatch, store_path))
    at.text_input(key="explore_open").set_value("5, 6")
    run(at)
    assert at.session_state["open_leaves"] == [5, 6]
    at.button(key="explore_pin").click()
    run(at)
    assert at.session_state["view"].pinned == (5, 6)
    assert at.text_input(key="ctl_pinned").value == "5, 6"
    shows(at, "C", expected(inputs, "C", pinned=[5, 6]))

    at.button(key="explore_exclude").click()
    run(at)
    assert at.session_state["view"].pinned == ()
    assert at.session_state["view"].excluded == (5, 6)
    shows(at, "C", expected(inputs, "C", excluded=[5, 6]))
    assert at.query_params["exclude"] in ("5,6", ["5,6"])

    at.button(key="explore_release").click()
    run(at)
    assert at.session_state["view"].excluded == ()


def test_leaf_panel_shows_examples_and_parent(monkeypatch, store_path, inputs) -> None:
    at = run(make_app(monkeypatch, store_path, **{"pin": "3"}))
    at.text_input(key="explore_open").set_value("3")
    run(at)
    frames = [d.value for d in at.dataframe]
    leaf_tables = [f for f in frames if "status" in f.columns]
    opened, siblings = leaf_tables
    assert opened["leaf"].tolist() == [3]
    assert opened["status"].iloc[0].startswith("pinned")
    examples = [f for f in frames if "point id" in f.columns][0]
    assert examples["point id"].tolist() == inputs.members[3][:20].tolist()
    assert sorted(siblings["leaf"]) == np.flatnonzero(inputs.leaf_parent == inputs.leaf_parent[3]).tolist()


def test_color_by_domain_and_the_map_carries_escaped_leaf_data(monkeypatch, fresh_store, inputs) -> None:
    with Store.open(fresh_store).write() as con:
        con.execute(
            "UPDATE points SET text = ? WHERE leaf_id = 0 AND rank_in_leaf = 0",
            ['<script>alert(1)</script> [x](javascript:alert(1)) =HYPERLINK("http://x")'],
        )
    name = inputs.domain_names[1]
    at = run(make_app(monkeypatch, fresh_store, color=name))
    assert at.selectbox(key="ctl_color").value == name
    spec, marks = map_sent(at)
    assert "&lt;script&gt;" in spec
    assert "<script>" not in spec and "javascript:" not in spec
    assert f"phi[{name}]" in spec
    assert [m["name"] for m in marks] == ["selected (HARP-C)", "selected (HARP-E)", "open in leaf panel"]


# --------------------------------------------------------------------------------------------------------------
# The URL


def test_link_reproduces_the_view(monkeypatch, store_path, inputs) -> None:
    query = {"envelope": "E", "budget": "100", "pin": "3", "color": inputs.domain_names[0]}
    at = run(make_app(monkeypatch, store_path, **query))
    assert at.segmented_control(key="ctl_envelope").value == "E"
    assert at.number_input(key="ctl_budget_number").value == 100
    assert at.text_input(key="ctl_pinned").value == "3"
    shows(at, "E", expected(inputs, "E", budget=100, pinned=[3]))
    assert {k: (v[0] if isinstance(v, list) else v) for k, v in at.query_params.items()} == query
    assert not at.warning


def test_bad_query_params_warn_and_fall_back(monkeypatch, store_path, inputs) -> None:
    at = run(
        make_app(
            monkeypatch,
            store_path,
            envelope="Z",
            budget="-5",
            weights="a,b",
            pin="99999",
            color="<script>alert(1)</script>",
            active="xyz",
        )
    )
    warning = texts(at.warning)
    for fragment in ("envelope", "budget", "weights", "pin", "color", "active"):
        assert fragment in warning
    assert "<script>" not in warning
    shows(at, "C", expected(inputs, "C"))


def test_open_leaves_labels_and_region_travel_in_the_link(monkeypatch, store_path, inputs) -> None:
    at = run(make_app(monkeypatch, store_path))
    at.text_input(key="explore_open").set_value("5, 6")
    at.selectbox(key="ctl_labels").set_value("parent")
    run(at)
    assert at.query_params["open"] in ("5,6", ["5,6"])
    assert at.query_params["labels"] in ("parent", ["parent"])

    parent = int(inputs.leaf_parent[3])
    at = run(make_app(monkeypatch, store_path, open="3,4", labels="large", region=f"parent:{parent}"))
    assert not at.warning
    assert at.session_state["open_leaves"] == [3, 4]
    assert at.selectbox(key="ctl_labels").value == "large"
    assert at.session_state["view"].region == f"parent:{parent}"
    opened = [d.value for d in at.dataframe if "status" in d.value.columns][0]
    assert opened["leaf"].tolist() == [3, 4]

    at = run(make_app(monkeypatch, store_path, open="3,99999", labels="<b>", region="parent:99999"))
    warning = texts(at.warning)
    assert "open" in warning and "labels" in warning and "region" in warning
    assert at.session_state["open_leaves"] == []


def test_budget_slider_spans_the_range_where_the_selection_changes(monkeypatch, store_path, inputs) -> None:
    at = run(make_app(monkeypatch, store_path))
    full = expected(inputs, "C")
    total = int(inputs.leaf_size.sum())
    assert len(full.points) < total // 2  # the cut holds a small share of this pool
    slider = at.slider(key="ctl_budget_slider")
    assert slider.max == len(full.points) and slider.value == len(full.points)
    slider.set_value(len(full.points) // 3)
    run(at)
    assert at.number_input(key="ctl_budget_number").value == len(full.points) // 3
    shows(at, "C", expected(inputs, "C", budget=len(full.points) // 3))
    at.slider(key="ctl_budget_slider").set_value(len(full.points))  # the right end: no cap
    run(at)
    assert at.number_input(key="ctl_budget_number").value == total
    assert "budget" not in at.query_params
    shows(at, "C", full)


@pytest.mark.parametrize(("typed", "used"), [(10**9, None), (-5, 0)], ids=["above-pool", "negative"])
def test_out_of_range_exact_budget_says_so_and_never_keeps_the_old_selection(
    monkeypatch, store_path, inputs, typed, used
) -> None:
    at = run(make_app(monkeypatch, store_path))
    full = expected(inputs, "C")
    total = int(inputs.leaf_size.sum())
    at.number_input(key="ctl_budget_number").set_value(len(full.points) // 2)
    run(at)
    assert metric(at, "HARP-C points") == f"{len(full.points) // 2:,}"
    at.number_input(key="ctl_budget_number").set_value(typed)
    run(at)
    error = texts(at.error)
    assert "Budget, exact" in error and f"{total:,}" in error
    want = full if used is None else expected(inputs, "C", budget=used)
    shows(at, "C", want)
    assert at.number_input(key="ctl_budget_number").value == (total if used is None else used)
    at.button(key="ctl_reset_view").click()
    run(at)
    assert not at.error
    assert at.number_input(key="ctl_budget_number").value == total
    shows(at, "C", full)


# --------------------------------------------------------------------------------------------------------------
# Store problems


def test_no_store_configured(monkeypatch) -> None:
    at = run(make_app(monkeypatch, None))
    assert "harp app --store" in texts(at.error)


def test_missing_store(monkeypatch, tmp_path) -> None:
    at = run(make_app(monkeypatch, tmp_path / "nope.duckdb"))
    assert "does not exist" in texts(at.error)


@pytest.mark.parametrize(
    "content", [b"", b"this is not a database at all" * 10], ids=["empty-file", "garbage"]
)
def test_corrupt_store(monkeypatch, tmp_path, content) -> None:
    path = tmp_path / "bad.duckdb"
    path.write_bytes(content)
    at = run(make_app(monkeypatch, path))
    assert at.error and str(path.name) in texts(at.error)


def test_store_without_tree(monkeypatch, tmp_path) -> None:
    path = tmp_path / "empty.duckdb"
    Store.create(path)
    at = run(make_app(monkeypatch, path))
    assert "leaves" in texts(at.info) and not at.error
    at.switch_page("views/store.py")
    run(at)  # the store page still works


def test_old_store_version(monkeypatch, fresh_store) -> None:
    with Store.open(fresh_store).write() as con:
        con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    at = run(make_app(monkeypatch, fresh_store))
    assert "schema version 99" in texts(at.error)


def test_store_locked_by_a_writer(monkeypatch, fresh_store) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import duckdb, sys, time
                con = duckdb.connect({str(fresh_store)!r})
                print("locked", flush=True)
                time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        start = time.monotonic()
        at = run(make_app(monkeypatch, fresh_store))
        assert "being written" in texts(at.warning)
        assert at.button(key="store_retry")
        assert time.monotonic() - start < 60
    finally:
        holder.kill()
        holder.wait()
    at.button(key="store_retry").click()
    run(at)
    assert not at.warning and at.metric


def test_domain_without_measurements(monkeypatch, fresh_store, inputs) -> None:
    with Store.open(fresh_store).write() as con:
        con.execute("UPDATE effects SET measured = false WHERE domain_id = 2")
    name = inputs.domain_names[2]
    at = run(make_app(monkeypatch, fresh_store, color=name))
    assert "No leaf has been measured" in texts(at.info)
    assert at.metric  # the rest of the page works
    at.switch_page("views/store.py")
    run(at)
    assert "no measurements" in texts(at.info)


# --------------------------------------------------------------------------------------------------------------
# Export, save and reload; the other pages


def test_save_and_reload_a_selection(monkeypatch, fresh_store, inputs) -> None:
    at = run(make_app(monkeypatch, fresh_store, envelope="E", budget="150", pin="4"))
    at.session_state["explore_tab"] = "Export and save"
    run(at)
    at.text_input(key="save_name").set_value("my <b>pick</b>")
    at.button[[b.label for b in at.button].index("Save selection")].click()
    run(at)
    assert "Saved" in texts(at.success)
    saved = Store.open(fresh_store, read_only=True).load_selection("my <b>pick</b>")
    want = expected(inputs, "E", budget=150, pinned=[4])
    assert saved["points"].tolist() == want.points.tolist()
    assert saved["budget"] == 150 and saved["pinned"] == [4]

    # Change the view, then reload the saved one from the Selections page.
    at.segmented_control(key="ctl_envelope").set_value("C")
    run(at)
    at.switch_page("views/selections.py")
    run(at)
    assert at.selectbox(key="saved_pick").value == "my <b>pick</b>"
    at.button(key="saved_load").click()
    run(at)
    view = at.session_state["view"]
    assert (view.envelope, view.budget, view.pinned) == ("E", 150, (4,))
    at.switch_page("views/explore.py")
    run(at)
    assert at.segmented_control(key="ctl_envelope").value == "E"
    shows(at, "E", want)

    # Saving the same name again is refused with a message, not a traceback.
    at.session_state["explore_tab"] = "Export and save"
    run(at)
    at.text_input(key="save_name").set_value("my <b>pick</b>")
    at.button[[b.label for b in at.button].index("Save selection")].click()
    run(at)
    assert "already exists" in texts(at.error)


def test_saving_a_taken_name_says_what_to_do_in_the_app(monkeypatch, fresh_store) -> None:
    name = "see https://example.com/a_b"
    at = run(make_app(monkeypatch, fresh_store))
    at.session_state["explore_tab"] = "Export and save"
    run(at)
    for _ in range(2):
        at.text_input(key="save_name").set_value(name)
        at.button[[b.label for b in at.button].index("Save selection")].click()
        run(at)
    error = texts(at.error)
    assert "already exists" in error and "Replace a saved selection of the same name" in error
    assert "overwrite=True" not in error and "\u200b" not in error
    assert f"`{name}`" in error  # the name verbatim, in a code span (never a link)
    at.checkbox(key="save_overwrite").check()
    at.button[[b.label for b in at.button].index("Save selection")].click()
    run(at)
    assert "Saved" in texts(at.success) and not at.error


def test_other_pages_render(monkeypatch, store_path) -> None:
    at = run(make_app(monkeypatch, store_path))
    for page in ("views/leaves.py", "views/selections.py", "views/store.py"):
        at.switch_page(page)
        run(at)
        assert not at.error, page
    at.switch_page("views/leaves.py")
    run(at)
    assert any(len(d.value) == LEAVES for d in at.dataframe)


def test_export_files_match_harp(monkeypatch, store_path, inputs) -> None:
    """The CSV and manifest the download buttons serve are harp.export's, for the view's selection."""
    from app.data import read_content_hash
    from harp.export import selection_csv, selection_manifest

    at = run(make_app(monkeypatch, store_path, budget="77"))
    at.session_state["explore_tab"] = "Export and save"
    run(at)
    assert [b for b in at.get("download_button")]
    want = expected(inputs, "C", budget=77)
    csv_text = selection_csv(want)
    assert csv_text.splitlines()[0] == "rank,point_id,leaf_id"
    assert len(csv_text.splitlines()) == 78
    view = at.session_state["view"]
    assert (view.envelope, view.budget, view.pinned, view.excluded) == ("C", 77, (), ())
    manifest = selection_manifest(
        want,
        envelope="C",
        weights=view.effective_weights().tolist(),
        budget=77,
        pinned=[],
        excluded=[],
        store_hash=read_content_hash(str(store_path)),
        domain_names=list(inputs.domain_names),
    )
    assert manifest  # built without error from the view's settings


def test_new_measurements_show_on_the_next_run(monkeypatch, fresh_store) -> None:
    at = run(make_app(monkeypatch, fresh_store))
    before = Store.open(fresh_store, read_only=True).selection_inputs()
    shows(at, "C", expected(before, "C"))
    # A running `harp measure` writes new effects: flip every sign.
    with Store.open(fresh_store).write() as con:
        con.execute("UPDATE effects SET mean = -mean")
    after = Store.open(fresh_store, read_only=True).selection_inputs()
    assert len(expected(after, "C").points) != len(expected(before, "C").points)
    run(at)
    shows(at, "C", expected(after, "C"))


def test_leaves_page_opens_ticked_rows(monkeypatch, store_path) -> None:
    at = run(make_app(monkeypatch, store_path))
    at.switch_page("views/leaves.py")
    run(at)
    at.session_state["open_leaves"] = [7, 8]
    run(at)
    assert at.text_input(key="leaves_open").value == "7, 8"
    assert any("status" in d.value.columns and d.value["leaf"].tolist() == [7, 8] for d in at.dataframe)


def test_store_page_shows_run_configs_as_json_text(monkeypatch, fresh_store) -> None:
    """Runs of different kinds have configs of different shapes (a list of leaves in one, a number in another);
    the runs table shows each config and timings as one line of JSON text, so Arrow serialises it as it is."""
    import json

    store = Store.open(fresh_store)
    configs = [
        {"leaves": [4, 5, 6], "model": "/tmp/m"},
        {"leaves": 7, "note": "<b>user</b> [x](javascript:alert(1))"},
        {"leaves": "REPS,HOLDOUT", "nested": {"r": [1, {"a": None}]}},
    ]
    for i, config in enumerate(configs):
        run_id = store.add_run("probe", config, run_id=f"probe-{i}")
        if i != 1:
            store.finish_run(run_id, timings={"total": 1.5 + i, "steps": [1, 2]} if i else {"total": 2})
    at = run(make_app(monkeypatch, fresh_store))
    at.switch_page("views/store.py")
    run(at)
    assert not at.error
    (runs,) = [d.value for d in at.dataframe if "config" in d.value.columns]
    probes = runs[runs["kind"] == "probe"].set_index("run_id")
    assert [json.loads(probes.loc[f"probe-{i}", "config"]) for i in range(3)] == configs
    assert probes.loc["probe-1", "config"] == (
        '{"leaves":7,"note":"<b>user</b> [x](javascript:alert(1))"}'
    )  # compact, and the user's string as it is (a dataframe cell is plain text)
    assert json.loads(probes.loc["probe-2", "timings"]) == {"total": 3.5, "steps": [1, 2]}
    assert probes["timings"].isna().tolist() == [False, True, False]


# --------------------------------------------------------------------------------------------------------------
# The shipped demo store (data/demo, what `make app` opens)

DEMO_DOMAINS = [
    "math_add",
    "math_compare",
    "math_div",
    "math_mul",
    "math_round",
    "math_sub",
    "mmlu_humanities",
    "mmlu_other",
    "mmlu_social",
    "mmlu_stem",
]


def test_the_demo_shows_why_a_harmful_leaf_hurts(monkeypatch, demo_store) -> None:
    """Every demo example has its prompt, response and source apart; a leaf of the planted wrong-arithmetic
    region shows the wrong answer as the response of the example read in full."""
    import duckdb

    with duckdb.connect(str(demo_store), read_only=True) as con:
        missing = con.execute(
            "SELECT count(*) FROM points WHERE text IS NULL OR response IS NULL OR source IS NULL"
        ).fetchone()
        leaf, point, prompt, response = con.execute(
            "SELECT leaf_id, point_id, text, response FROM points WHERE source = 'harmful/wrong-arithmetic' "
            "AND rank_in_leaf = 0 ORDER BY leaf_id LIMIT 1"
        ).fetchone()
    assert missing == (0,)
    at = run(make_app(monkeypatch, demo_store, open=str(leaf)))
    assert at.selectbox(key=f"explore_example_full_{leaf}").value == point
    blocks = [c.value for c in at.code]
    assert blocks[-1] == response and prompt.split("\n")[-1] in blocks[-2]
    assert "source: `harmful/wrong-arithmetic`" in texts(at.caption)


def clean(at: AppTest, where: str) -> AppTest:
    run(at)
    assert not at.error, (where, texts(at.error))
    return at


def test_the_shipped_demo_opens_on_every_page(monkeypatch, demo_store) -> None:
    """`make app`'s store: every page and every Explore tab renders without an error, and shows the store's facts."""
    inputs = Store.open(demo_store, read_only=True).selection_inputs()
    assert list(inputs.domain_names) == DEMO_DOMAINS
    assert (len(inputs.leaf_size), int(inputs.leaf_size.sum())) == (266, 13_462)

    at = clean(make_app(monkeypatch, demo_store), "explore")
    assert not at.warning
    assert at.selectbox(key="ctl_color").options == ["weighted objective", *DEMO_DOMAINS]
    assert at.number_input(key="ctl_budget_number").value == 13_462
    default = expected(inputs, "C")  # weight 1 on the 2 active domains of the in-mixture effects
    assert inputs.active.sum() == 2 and inputs.active[DEMO_DOMAINS.index("mmlu_social")]
    shows(at, "C", default)
    _, marks = map_sent(at)
    assert len(marks[0]["x"]) == len(default.leaves) > 0  # one ring per selected leaf

    at.segmented_control(key="ctl_envelope").set_value("both")
    clean(at, "explore, both")
    shows(at, "C", default)
    shows(at, "E", expected(inputs, "E"))
    at.text_input(key="explore_open").set_value(str(int(default.leaves[0])))
    for tab in ("Leaf panel", "Predicted scores", "Running gain", "Compare selections", "Export and save"):
        at.session_state["explore_tab"] = tab
        clean(at, tab)
    at.selectbox(key="ctl_color").set_value("math_add")
    clean(at, "color by math_add")
    assert not at.info  # every domain of the demo has measurements

    at.switch_page("views/leaves.py")
    clean(at, "leaves")
    assert any(len(d.value) == 266 for d in at.dataframe)
    at.switch_page("views/selections.py")
    clean(at, "selections")
    assert "No selection saved yet" in texts(at.info)
    at.switch_page("views/store.py")
    clean(at, "store")
    (domains,) = [d.value for d in at.dataframe if "domain" in d.value.columns]
    assert domains["domain"].tolist() == DEMO_DOMAINS
    assert domains["measured leaves"].tolist() == [125] * 10  # the in-mixture effects: 125 measured leaves
    (runs,) = [d.value for d in at.dataframe if "config" in d.value.columns]
    assert "demo-proof" in runs["kind"].tolist()
    assert all(isinstance(c, str) for c in runs["config"])


# --------------------------------------------------------------------------------------------------------------
# Mixture validation


def _add_mixtures(path: Path, inputs, config_key: str, count: int, seed: int) -> tuple[np.ndarray, dict]:
    """Store ``count`` mixtures whose measured effect is HARP-E's prediction plus noise; return what was stored."""
    from harp.mixtures import draw_mixtures, predict_mixture

    store = Store.open(path)
    rng = np.random.default_rng(seed)
    measured_leaves = np.flatnonzero(inputs.measured.any(axis=1))
    sizes = rng.integers(1, 12, size=count).tolist()
    measured: list[np.ndarray] = []
    predicted: dict[str, list[np.ndarray]] = {"HARP-C": [], "HARP-E": []}
    for leaves in draw_mixtures(measured_leaves, sizes, seed=seed):
        c = predict_mixture(inputs.phi, inputs.base, leaves, envelope="C")
        e = predict_mixture(inputs.phi, inputs.base, leaves, envelope="E")
        phi = e + rng.normal(0.0, 0.01, size=e.shape)
        n_points = int(inputs.leaf_size[leaves].sum())
        store.add_mixture("run-v", config_key, leaves, n_points, phi, np.full(e.shape, 1e-4), c, e)
        measured.append(phi)
        predicted["HARP-C"].append(c)
        predicted["HARP-E"].append(e)
    return np.array(measured), {k: np.array(v) for k, v in predicted.items()}


def test_validation_page_without_mixtures_says_how_to_make_them(monkeypatch, store_path) -> None:
    at = run(make_app(monkeypatch, store_path))
    at.switch_page("views/validation.py")
    run(at)
    assert "harp validate --store STORE --model MODEL --pool POOL --eval EVAL" in texts(at.info)
    assert not at.error and not at.dataframe


def test_validation_page_shows_mixture_report(monkeypatch, fresh_store, inputs) -> None:
    import json

    from harp.mixtures import mixture_report

    measured, predicted = _add_mixtures(fresh_store, inputs, "in-mixture", 9, seed=1)
    other_measured, other_predicted = _add_mixtures(fresh_store, inputs, "base-anchored", 4, seed=2)
    weights = np.where(inputs.active, 1.0, 0.0) if inputs.active.any() else np.ones(DOMAINS)
    at = run(make_app(monkeypatch, fresh_store))
    at.switch_page("views/validation.py")
    run(at)
    assert not at.error and not at.warning
    assert at.selectbox(key="validation_config").options == ["base-anchored", "in-mixture"]

    def shown(name: str):
        (frame,) = [d.value for d in at.dataframe if name in d.value.columns]
        return frame

    for config_key, (m, p) in {
        "base-anchored": (other_measured, other_predicted),
        "in-mixture": (measured, predicted),
    }.items():
        at.selectbox(key="validation_config").set_value(config_key)
        run(at)
        report = mixture_report(m, p, weights)
        metrics = shown("envelope").set_index("envelope")
        assert metrics.index.tolist() == ["HARP-C", "HARP-E"]
        for envelope in ("HARP-C", "HARP-E"):
            expected_row = report["envelopes"][envelope]
            for key, label in {
                "gain_correlation": "gain correlation",
                "gain_rmse": "gain RMSE",
                "gain_bias": "gain bias",
                "effect_rmse": "effect RMSE",
                "mean_sign_agreement": "mean sign agreement",
            }.items():
                assert metrics.loc[envelope, label] == pytest.approx(expected_row[key], abs=1e-12), (
                    config_key,
                    envelope,
                    key,
                )
        signs = shown("domain")
        assert signs["domain"].tolist() == list(inputs.domain_names)
        assert signs["weight"].tolist() == weights.tolist()
        for envelope in ("HARP-C", "HARP-E"):
            assert signs[f"{envelope} sign agreement"].tolist() == pytest.approx(
                report["envelopes"][envelope]["sign_agreement"]
            )
        mixtures = shown("measured gain")
        assert mixtures["measured gain"].tolist() == pytest.approx(report["measured_gain"])
        assert len(mixtures) == len(m)
        assert f"{len(m):,} mixtures" in texts(at.caption)
        (chart,) = at.get("plotly_chart")
        traces = json.loads(chart.proto.spec)["data"]
        assert [t["name"] for t in traces] == ["predicted = measured", "HARP-C", "HARP-E"]


# --------------------------------------------------------------------------------------------------------------
# Regions


def _region_means(inputs, groups: np.ndarray, values: np.ndarray) -> dict[int, float]:
    """Points-weighted mean effect per region, straight from the store's arrays with pandas."""
    import pandas as pd

    frame = pd.DataFrame({"region": groups, "size": inputs.leaf_size, "effect": values})
    frame["weighted"] = frame["size"] * frame["effect"]
    sums = frame.groupby("region")[["weighted", "size"]].sum()
    return {int(r): float(w / n) for r, (w, n) in sums.iterrows()}


@pytest.mark.parametrize("domain", ["math_add", "math_round"], ids=["math_add", "math_round"])
def test_most_harmful_regions_of_the_demo_are_the_lowest_posterior_means(
    monkeypatch, demo_store, domain
) -> None:
    inputs = Store.open(demo_store, read_only=True).selection_inputs()
    d = DEMO_DOMAINS.index(domain)
    at = run(make_app(monkeypatch, demo_store, color=domain))
    at.session_state["explore_tab"] = "Regions"
    run(at)
    for level, groups in (
        ("parent", np.asarray(inputs.leaf_parent)),
        ("large", np.asarray(inputs.parent_large)[np.asarray(inputs.leaf_parent)]),
    ):
        at.segmented_control(key="regions_level").set_value(level)
        run(at)
        means = _region_means(inputs, groups, np.asarray(inputs.phi)[:, d])
        lowest = sorted((m, r) for r, m in means.items() if m < 0)[:5]
        highest = sorted(((-m, r) for r, m in means.items() if m > 0))[:5]
        tables = [t.value for t in at.dataframe if level in t.value.columns]
        assert len(tables) == 1 + bool(lowest) + bool(highest)  # a side with no region says so instead
        every = tables[-1]
        if lowest:
            assert tables[0][level].tolist() == [r for _, r in lowest]
            np.testing.assert_allclose(tables[0][f"mean phi[{domain}]"], [m for m, _ in lowest])
        if highest:
            assert tables[1 if lowest else 0][level].tolist() == [r for _, r in highest]
        assert lowest, "the demo has regions that hurt this domain"
        assert sorted(every[level].tolist()) == sorted(means)
        assert every["points"].sum() == int(inputs.leaf_size.sum())


def test_choose_a_region_then_exclude_and_pin_it(monkeypatch, store_path, inputs) -> None:
    at = run(make_app(monkeypatch, store_path))
    at.session_state["explore_tab"] = "Regions"
    run(at)
    parent = int(inputs.leaf_parent[10])
    leaves = np.flatnonzero(inputs.leaf_parent == parent).tolist()
    at.selectbox(key="regions_pick").set_value(f"parent:{parent}")
    run(at)
    assert at.session_state["open_leaves"] == leaves
    assert at.query_params["region"] in (f"parent:{parent}", [f"parent:{parent}"])
    at.button(key="regions_exclude").click()
    run(at)
    assert at.session_state["view"].excluded == tuple(leaves)
    shows(at, "C", expected(inputs, "C", excluded=leaves))
    at.button(key="regions_pin").click()
    run(at)
    assert at.session_state["view"].pinned == tuple(leaves) and at.session_state["view"].excluded == ()
    shows(at, "C", expected(inputs, "C", pinned=leaves))
    at.button(key="regions_release").click()
    run(at)
    assert at.session_state["view"].pinned == ()

    # The region travels in the link: a new session opens on it.
    at = run(make_app(monkeypatch, store_path, region=f"parent:{parent}", open=",".join(map(str, leaves))))
    at.session_state["explore_tab"] = "Regions"
    run(at)
    assert at.selectbox(key="regions_pick").value == f"parent:{parent}"
    assert at.button(key="regions_exclude")


# --------------------------------------------------------------------------------------------------------------
# Examples: in full, with the leaf's effect, searchable


HOSTILE_CHAT = "user: what is <b>2+2</b>?\nassistant: [see](javascript:alert(1))\nuser: and :red[3+3]?\n=6 <script>x</script>"
HOSTILE_RESPONSE = "**5** <img src=x onerror=alert(1)> [win](http://evil.example) :red[x] $y$\n=SUM(A1)"


def test_an_example_in_full_shows_turns_source_and_the_leaf_effect(monkeypatch, fresh_store, inputs) -> None:
    with Store.open(fresh_store).write() as con:
        con.execute(
            "UPDATE points SET text = ?, source = ?, response = ? WHERE leaf_id = 3 AND rank_in_leaf = 0",
            [HOSTILE_CHAT, "crawl <img src=x onerror=alert(1)> http://a.b/c", HOSTILE_RESPONSE],
        )
    name = inputs.domain_names[2]
    at = run(make_app(monkeypatch, fresh_store, color=name, open="3"))
    effect_lines = [m.value for m in at.markdown if str(m.value).startswith("**Leaf 3**")]
    assert (
        effect_lines
        and f"{inputs.phi[3, 2]:+.4f}" in effect_lines[0]
        and f"{inputs.sd[3, 2]:.4f}" in effect_lines[0]
    )
    assert ("measured" if inputs.measured[3, 2] else "inferred") in effect_lines[0]
    assert at.selectbox(key="explore_example_full_3").value == int(inputs.members[3][0])
    blocks = [c.value for c in at.code]
    assert blocks == [
        "what is <b>2+2</b>?",
        "[see](javascript:alert(1))",
        "and :red[3+3]?\n=6 <script>x</script>",
        HOSTILE_RESPONSE,  # the response apart, verbatim in a code block: characters, never Markdown or HTML
    ]
    captions = texts(at.caption)
    assert "**user**" in captions and "**assistant**" in captions
    assert "**prompt**" in captions and "**response**" in captions
    (table,) = [d.value for d in at.dataframe if "response" in d.value.columns]
    assert table["prompt"].iloc[0] == " ".join(HOSTILE_CHAT.split())  # a dataframe cell is plain text
    assert table["response"].iloc[0] == " ".join(HOSTILE_RESPONSE.split())
    # The source verbatim in a code span: shown as characters, never an element or a link.
    assert "source: `crawl <img src=x onerror=alert(1)> http://a.b/c`" in captions


def test_search_a_leaf_and_the_whole_pool(monkeypatch, fresh_store, inputs) -> None:
    import duckdb

    leaf = 7
    members = inputs.members[leaf]
    with Store.open(fresh_store).write() as con:
        for k, point in enumerate(members[[1, 4]]):
            con.execute(
                "UPDATE points SET text = ? WHERE point_id = ?", [f"needle {k} in the HAYSTACK", int(point)]
            )
        other = int(inputs.members[leaf + 1][0])
        con.execute("UPDATE points SET text = ? WHERE point_id = ?", ["another haystack", other])
        in_response = int(members[6])  # found by its response alone
        con.execute("UPDATE points SET response = ? WHERE point_id = ?", ["a Haystack answer", in_response])
    at = run(make_app(monkeypatch, fresh_store, open=str(leaf)))
    at.text_input(key="explore_example_search").set_value("haystack")
    run(at)
    (hits,) = [d.value for d in at.dataframe if "point id" in d.value.columns]
    assert hits["point id"].tolist() == [int(p) for p in members[[1, 4, 6]]]  # in rank order
    assert hits["rank"].tolist() == [1, 4, 6]
    assert hits["response"].tolist()[-1] == "a Haystack answer"
    assert "3 of the leaf's" in texts(at.caption)

    at.switch_page("views/leaves.py")
    run(at)
    at.text_input(key="pool_search").set_value("HayStack")
    run(at)
    with duckdb.connect(str(fresh_store), read_only=True) as con:
        want = con.execute(
            "SELECT point_id FROM points WHERE lower(text) LIKE '%haystack%' OR lower(response) LIKE '%haystack%' "
            "ORDER BY leaf_id, rank_in_leaf"
        ).fetchall()
    (pool,) = [d.value for d in at.dataframe if "rank in leaf" in d.value.columns]
    assert pool["point id"].tolist() == [int(p) for (p,) in want] and len(want) == 4
    at.button(key="pool_search_open").click()
    run(at)
    assert at.session_state["open_leaves"] == [leaf, leaf + 1]


def test_explore_searches_the_pool_with_each_hits_leaf_effect(monkeypatch, fresh_store, inputs) -> None:
    """The Search examples tab: the hits of each kind of query, each with its leaf's effect on the colored
    domain; a bad pattern is an error on the page, not a traceback; hostile text arrives as plain cells."""
    planted = {(5, 0): "Needle <img src=x onerror=alert(1)> ONE", (9, 2): "the one needle"}
    with Store.open(fresh_store).write() as con:
        for (leaf, rank), prompt in planted.items():
            con.execute(
                "UPDATE points SET text = ? WHERE leaf_id = ? AND rank_in_leaf = ?", [prompt, leaf, rank]
            )
    name = inputs.domain_names[2]
    at = run(make_app(monkeypatch, fresh_store, color=name))
    at.session_state["explore_tab"] = "Search examples"
    run(at)
    at.text_input(key="explore_pool_search").set_value("one NEEDLE")
    clean(at, "words")
    (hits,) = [d.value for d in at.dataframe if "rank in leaf" in d.value.columns]
    assert hits["leaf"].tolist() == [5, 9] and hits["rank in leaf"].tolist() == [0, 2]
    assert hits[f"phi[{name}]"].tolist() == pytest.approx([inputs.phi[5, 2], inputs.phi[9, 2]])
    assert hits["sd"].tolist() == pytest.approx([inputs.sd[5, 2], inputs.sd[9, 2]])
    assert hits["measured"].tolist() == [bool(inputs.measured[5, 2]), bool(inputs.measured[9, 2])]
    assert hits["prompt"].tolist() == list(planted.values())  # plain cells: the markup as characters
    assert "2 examples match" in texts(at.caption)

    at.radio(key="explore_pool_search_mode").set_value("phrase")
    clean(at, "phrase")
    (hits,) = [d.value for d in at.dataframe if "rank in leaf" in d.value.columns]
    assert hits["leaf"].tolist() == [9]

    at.radio(key="explore_pool_search_mode").set_value("pattern")
    at.text_input(key="explore_pool_search").set_value("needle (one")
    run(at)
    assert "Query is not a valid regular expression" in texts(at.error)
    assert not [d for d in at.dataframe if "rank in leaf" in d.value.columns]

    at.text_input(key="explore_pool_search").set_value(r"needle\s+<img")
    clean(at, "pattern")
    (hits,) = [d.value for d in at.dataframe if "rank in leaf" in d.value.columns]
    assert hits["leaf"].tolist() == [5]


# --------------------------------------------------------------------------------------------------------------
# Designed mixtures


def test_design_page_without_design_mixtures_says_how_to_make_them(monkeypatch, store_path) -> None:
    at = run(make_app(monkeypatch, store_path))
    at.switch_page("views/design.py")
    run(at)
    assert "harp design measure --store STORE --model MODEL --pool POOL --eval EVAL" in texts(at.info)
    assert not at.error and not at.dataframe


def test_design_page_shows_the_demo_fit_and_its_selection(monkeypatch, demo_store) -> None:
    """The demo's designs (rounds 4 and 4b): the regions table is the library's fit, and the selection shown is
    `harp design select`'s (rule C keeps the regions of data/demo/run/round4p/fit.json)."""
    from harp.design import design_select, fit_stored_design, region_of_leaves

    at = run(make_app(monkeypatch, demo_store))
    at.switch_page("views/design.py")
    clean(at, "design, bootstrap seed 0")
    at.number_input(key="design_bootstrap_seed").set_value(5)
    clean(at, "design")
    store = Store.open(demo_store, read_only=True)
    fit = fit_stored_design(store, level="large", seed=5)
    (table,) = [d.value for d in at.dataframe if "effect" in d.value.columns]
    assert len(table) == 18 and table["effect"].is_monotonic_decreasing
    np.testing.assert_allclose(table.sort_values("region")["effect"], fit.centred, atol=1e-12)
    shipped = json.loads((ROOT / "data" / "demo" / "run" / "round4p" / "fit.json").read_text())
    assert sorted(table.loc[table["kept by C"], "region"]) == shipped["kept"]["design-c"]
    assert "leave-one-out R2 0.363" in texts(at.caption) and not at.warning
    wrong = table.loc[table["main sources"].str.contains("harmful/wrong-arithmetic"), "kept by C"]
    assert wrong.tolist() == [False]  # the planted wrong-arithmetic node is left out by rule C
    inputs = store.selection_inputs()
    want = design_select(fit, inputs.members, region_of_leaves(store, "large"), rule="C", budget=1000, seed=0)
    assert f"{want.points.size:,} are drawn uniformly (seed 0)" in texts(at.caption)
    assert "--rule C --budget 1000 --seed 0" in at.code[-1].value
    at.radio(key="design_rule").set_value("E")
    clean(at, "rule E")
    assert "--rule E" in at.code[-1].value


def test_design_page_warns_when_the_fit_explains_nothing(monkeypatch, fresh_store) -> None:
    from harp.design import draw_design, region_of_points, region_shares

    store = Store.open(fresh_store)
    region = region_of_points(store, "large")
    n_regions = int(region.max()) + 1
    n_domains = store.read_table("domains").num_rows
    rng = np.random.default_rng(3)
    for m in draw_design(region, [20, 40], 8, 0):
        noise = rng.normal(0.0, 0.01, n_domains)  # no region does anything
        store.add_design_mixture(None, "noise", level="large", regions=m.regions.tolist(), budget=m.budget,
                                 seed=m.seed, shares=region_shares(m.points, region, n_regions).tolist(),
                                 n_points=m.budget, phi=noise, variance=np.zeros(n_domains))  # fmt: skip
    at = run(make_app(monkeypatch, fresh_store))
    at.switch_page("views/design.py")
    clean(at, "design, noise")
    assert "close to a random one" in texts(at.warning)
