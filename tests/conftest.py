"""Shared fixtures: a seeded random generator, a small synthetic store, a hand-built tiny store, a tiny model.

``tmp_store`` and ``tiny_store`` are paths to fresh store files inside the test's ``tmp_path``; each test gets its
own copy, so it may write to it. ``tiny_values`` holds the hand-written contents of ``tiny_store``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harp.store import Store
from harp.synth import synth_store

# The tiny store: 1 large node, 2 parents, 4 leaves, 8 points, 3 domains.
#   large 0 -> parent 0 -> leaf 0 (points 10, 11), leaf 1 (point 20)
#           -> parent 1 -> leaf 2 (points 32, 30, 31 in rank order), leaf 3 (points 41, 40)
TINY: dict[str, Any] = {
    "members": [[10, 11], [20], [32, 30, 31], [41, 40]],
    "texts": [
        ["What is 2 + 2?", "<script>alert(1)</script>"],
        ['=HYPERLINK("http://x")'],
        ["See [docs](http://example.com)", "Explain photosynthesis.", "Line one\nline two"],
        ['He said "hi", then left.', "Übersetze: naïve café"],
    ],
    "sources": [["alpaca", "alpaca"], ["dolly"], ["flan", "flan", None], ["oasst", "oasst"]],
    "leaf_parent": [0, 0, 1, 1],
    "parent_large": [0, 0],
    "n_large": 1,
    "domain_names": ["algebra", "biology", "history"],
    "base": [0.5, 0.96, 0.3],
    "eval_size": [100, 50, 200],
    "active": [True, False, True],
    "phi": [
        [0.02, 0.00, -0.01],
        [-0.03, 0.01, 0.00],
        [0.01, -0.02, 0.04],
        [0.00, 0.00, 0.01],
    ],
    "sd": [
        [0.005, 0.005, 0.005],
        [0.010, 0.010, 0.010],
        [0.004, 0.004, 0.004],
        [0.012, 0.012, 0.012],
    ],
    "measured": [True, False, True, False],
    "x": [0.0, 0.5, 3.0, 3.5],
    "y": [0.0, 0.2, 1.0, 1.4],
}


def build_tiny_store(path: Path) -> Store:
    """Write the hand-made ``TINY`` store to ``path``."""
    from harp.store import points_from_members

    store = Store.create(path)
    texts = [text for leaf in TINY["texts"] for text in leaf]
    sources = [source for leaf in TINY["sources"] for source in leaf]
    points = points_from_members([np.array(m) for m in TINY["members"]], text=texts, source=sources)
    store.write_tree(points, TINY["leaf_parent"], TINY["parent_large"], TINY["n_large"])
    store.write_domains(TINY["domain_names"], TINY["base"], TINY["eval_size"], TINY["active"])
    store.write_effects(np.array(TINY["phi"]), np.array(TINY["sd"]), np.array(TINY["measured"]))
    store.write_layout(TINY["x"], TINY["y"], "tiny:v1")
    return store


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded NumPy random generator."""
    return np.random.default_rng(20240611)


@pytest.fixture(scope="session")
def _synth_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "synth.duckdb"
    synth_store(path, leaves=40, domains=5, seed=7)
    return path


@pytest.fixture(scope="session")
def _tiny_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "tiny.duckdb"
    build_tiny_store(path)
    return path


def _own_copy(template: Path, folder: Path) -> Path:
    """A copy of a session's template store in the test's own folder, under the template's name."""
    path = folder / template.name
    shutil.copyfile(template, path)
    return path


@pytest.fixture
def tmp_store(tmp_path: Path, _synth_template: Path) -> Path:
    """Path of a small synthetic store (40 leaves, 5 domains, seed 7) of the test's own."""
    return _own_copy(_synth_template, tmp_path)


@pytest.fixture
def tiny_store(tmp_path: Path, _tiny_template: Path) -> Path:
    """Path of the hand-built 4-leaf store described by ``tiny_values``, of the test's own."""
    return _own_copy(_tiny_template, tmp_path)


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped demo store (``data/demo`` imported), once for the session: tests only read it; a test that
    writes takes ``demo_copy``."""
    from harp.store import import_parquet

    path = tmp_path_factory.mktemp("demo") / "demo.duckdb"
    import_parquet(Path(__file__).resolve().parents[1] / "data" / "demo", path)
    return path


@pytest.fixture
def demo_copy(tmp_path: Path, demo_store: Path) -> Path:
    """A private copy of the demo store, for a test that writes into it."""
    return _own_copy(demo_store, tmp_path)


@pytest.fixture
def tiny_values() -> dict[str, Any]:
    """The hand-written contents of ``tiny_store``."""
    return TINY


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama (2 layers, small vocabulary) saved once for the session: the CPU stand-in for a real model."""
    pytest.importorskip("peft")
    from harp.testing import save_random_model

    return save_random_model(tmp_path_factory.mktemp("model") / "tiny-llama")


# A small proxy eval set: multiple choice in two domains (answers as an index and as a letter) and one short answer.
EVAL_RECORDS = [
    {"question": "2+2?", "choices": ["4", "5", "six"], "answer": 0, "domain": "math"},
    {"question": "3+3?", "choices": ["6", "7"], "answer": "A", "domain": "math"},
    {"question": "sky?", "choices": ["blue", "red", "green", "grey"], "answer": 0, "domain": "science"},
    {"question": "ice?", "choices": ["cold", "hot"], "answer": 0, "domain": "science"},
    {"prompt": "Say hi", "answer": "hi", "domain": "science"},
]


@pytest.fixture
def eval_set(tmp_path: Path) -> Any:
    """``EVAL_RECORDS`` written as JSONL and loaded (an :class:`harp.data.EvalSet`)."""
    from harp.data import load_eval_set

    path = tmp_path / "eval.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in EVAL_RECORDS))
    return load_eval_set(path)
