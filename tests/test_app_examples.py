"""The examples of open leaves on the map, under AppTest: the toggle with and without stored positions, the
layer file the map fetches (escaped hover texts), and the cap."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from test_app import make_app, run

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app import example_layer  # noqa: E402
from app.leaf_map import serving_dir  # noqa: E402
from harp.layout import point_positions  # noqa: E402
from harp.store import Store  # noqa: E402
from harp.synth import synth_store  # noqa: E402


@pytest.fixture(scope="module")
def plain_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("examples") / "plain.duckdb"
    synth_store(path, leaves=60, domains=3, seed=3)
    return path


@pytest.fixture(scope="module")
def positions_store(plain_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic store with every point placed around its leaf from random features."""
    path = tmp_path_factory.mktemp("examples") / "positions.duckdb"
    shutil.copy(plain_store, path)
    store = Store.open(path)
    points = store.read_table("points")
    ids, leaves = points["point_id"].to_numpy(), points["leaf_id"].to_numpy()
    X = np.random.default_rng(0).standard_normal((int(ids.max()) + 1, 8))
    x, y = store.layout()  # type: ignore[misc]
    store.write_layout(
        x, y, store.layout_key() or "k", point_positions=(ids, *point_positions(X, ids, leaves, x, y))
    )
    return path


def start(monkeypatch: pytest.MonkeyPatch, store: Path, **query: str) -> AppTest:
    return run(make_app(monkeypatch, store, **query))


def component_args(at: AppTest) -> dict:
    (component,) = at.get("component_instance")
    return json.loads(component.proto.json_args)


def test_without_positions_the_toggle_says_how_to_compute_them(monkeypatch, plain_store: Path) -> None:
    at = start(monkeypatch, plain_store, open="0,1")
    assert at.toggle(key=example_layer.TOGGLE_KEY).label == "Show the examples of open leaves"
    assert component_args(at)["examples"] is None
    at.toggle(key=example_layer.TOGGLE_KEY).set_value(True).run()
    assert not at.exception
    notes = " ".join(str(i.value) for i in at.info)
    assert "harp layout --store STORE --features X_feat.npy" in notes
    assert component_args(at)["examples"] is None


def test_with_positions_the_open_leaves_examples_go_to_the_map(monkeypatch, positions_store: Path) -> None:
    at = start(monkeypatch, positions_store, open="0,1")
    assert component_args(at)["examples"] is None, "off by default"
    at.toggle(key=example_layer.TOGGLE_KEY).set_value(True).run()
    assert not at.exception
    name = component_args(at)["examples"]
    assert name.startswith("examples-")
    trace = json.loads((serving_dir() / name).read_text())
    expected = Store.open(positions_store, read_only=True).point_positions([0, 1])
    assert sorted(g for g, _ in trace["customdata"]) == sorted(expected["leaf_id"].to_pylist())
    assert {p for _, p in trace["customdata"]} == set(expected["point_id"].to_pylist())
    hover = " ".join(trace["text"])
    assert "&lt;script&gt;" in hover and "<script>" not in hover, "hostile training text is escaped"
    assert "javascript\u200b:" in hover or "javascript:" not in hover
    captions = " ".join(str(c.value) for c in at.caption)
    assert f"Showing the {expected.num_rows:,} examples of the open leaves" in captions
    at.toggle(key=example_layer.TOGGLE_KEY).set_value(False).run()
    assert component_args(at)["examples"] is None


def test_the_layer_is_capped_with_the_most_central_of_each_leaf(positions_store: Path) -> None:
    columns, total = example_layer.read_examples(str(positions_store), [0, 1, 2, 3], cap=8)
    every = Store.open(positions_store, read_only=True).point_positions([0, 1, 2, 3], with_texts=True)
    assert total == every.num_rows > 8
    assert len(columns["hover"]) == 8
    assert sorted(set(columns["leaf_id"].tolist())) == [0, 1, 2, 3], "every open leaf keeps some"
    ranks = dict(zip(every["point_id"].to_pylist(), every["rank_in_leaf"].to_pylist(), strict=True))
    assert max(ranks[p] for p in columns["point_id"].tolist()) == 1, "two most central examples per leaf"
