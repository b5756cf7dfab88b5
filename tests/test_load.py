"""Loading results made elsewhere (harp.load.load_arrays, `harp load`) and writing a tree (write_hierarchy)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from harp.cli import main
from harp.hierarchy import build_hierarchy
from harp.load import load_arrays, read_names, read_point_texts, read_texts, write_hierarchy
from harp.store import Store, StoreError

# 3 parents of 2 leaves, 12 points (leaf g holds points 2g and 2g + 1), 2 domains.
LEAF_OF_POINT = np.repeat(np.arange(6), 2)
PARENT_OF_LEAF = np.array([0, 0, 1, 1, 2, 2])


@pytest.fixture
def arrays(rng) -> dict[str, Any]:
    phi = rng.normal(0.0, 0.02, (6, 2))
    phi[0, 0] = 0.2  # a leaf that clearly helps domain "math"
    return {
        "phi": phi,
        "phi_sd": np.full((6, 2), 0.01),
        "leaf_of_point": LEAF_OF_POINT,
        "parent_of_leaf": PARENT_OF_LEAF,
        "base": np.array([0.4, 0.7]),
        "domain_names": ["math", "law"],
        "texts": [f"text {i}" for i in range(12)],
        "X_feat": rng.standard_normal((12, 4)).astype(np.float32),
    }


@pytest.fixture
def files(tmp_path: Path, arrays: dict[str, Any]) -> dict[str, Path]:
    out = {}
    for name in ("phi", "phi_sd", "leaf_of_point", "parent_of_leaf", "X_feat"):
        out[name] = tmp_path / f"{name}.npy"
        np.save(out[name], arrays[name])
    out["base"] = tmp_path / "base.json"
    out["base"].write_text(json.dumps(arrays["base"].tolist()))
    out["domain_names"] = tmp_path / "domains.txt"
    out["domain_names"].write_text("math\nlaw\n")
    out["texts"] = tmp_path / "texts.jsonl"
    out["texts"].write_text("".join(json.dumps({"prompt": text}) + "\n" for text in arrays["texts"]))
    return out


def test_loaded_store_holds_what_was_given(tmp_path, files, arrays):
    store = load_arrays(tmp_path / "old.duckdb", **files, measured=[0, 3])
    inputs = store.selection_inputs()
    np.testing.assert_allclose(inputs.phi, arrays["phi"])
    np.testing.assert_allclose(inputs.sd, arrays["sd"] if "sd" in arrays else arrays["phi_sd"])
    assert inputs.measured[:, 0].tolist() == [True, False, False, True, False, False]
    assert inputs.domain_names == ["math", "law"] and inputs.base.tolist() == [0.4, 0.7]
    assert inputs.leaf_parent.tolist() == PARENT_OF_LEAF.tolist() and inputs.parent_large.tolist() == [
        0,
        0,
        0,
    ]
    assert inputs.active.tolist() == [True, False] or inputs.active[0]
    X = arrays["X_feat"]
    for g, members in enumerate(inputs.members):
        assert sorted(members.tolist()) == [2 * g, 2 * g + 1]
        distance = ((X[members] - X[members].mean(axis=0)) ** 2).sum(axis=1)
        assert distance[0] <= distance[1] + 1e-6  # most central first
    assert all(text == f"text {point}" for point, text, _ in store.leaf_examples(2))
    assert store.layout() is not None and "method=pca" in store.layout_key()
    assert [run["kind"] for run in store.runs()] == ["load"]


def test_minimal_arrays_without_files(tmp_path, arrays):
    store = load_arrays(
        tmp_path / "min.duckdb",
        phi=arrays["phi"],
        leaf_of_point=LEAF_OF_POINT,
        parent_of_leaf=PARENT_OF_LEAF,
        base=arrays["base"],
        domain_names=["math", "law"],
    )
    inputs = store.selection_inputs()
    assert (inputs.sd == 0).all() and not inputs.measured.any()
    assert [m.tolist() for m in inputs.members][:2] == [[0, 1], [2, 3]]  # point order without features
    assert inputs.active.tolist() == [
        bool((arrays["phi"][:, 0] > 0).any()),
        bool((arrays["phi"][:, 1] > 0).any()),
    ]
    assert store.layout() is not None  # from the rows of phi


def test_large_nodes_from_parent_centroids(tmp_path, rng):
    centres = rng.standard_normal((2, 5)) * 10
    parent_of_leaf = np.repeat(np.arange(8), 2)  # 8 parents of 2 leaves, 16 leaves, 3 points each
    leaf_of_point = np.repeat(np.arange(16), 3)
    X = centres[(parent_of_leaf[leaf_of_point] >= 4).astype(int)] + rng.normal(0, 0.1, (48, 5))
    store = load_arrays(
        tmp_path / "big.duckdb",
        phi=np.zeros((16, 1)),
        leaf_of_point=leaf_of_point,
        parent_of_leaf=parent_of_leaf,
        base=[0.5],
        domain_names=["d"],
        X_feat=X.astype(np.float32),
        parents_per_large=4,
        layout_method="pca",
    )
    parent_large = store.selection_inputs().parent_large
    assert (
        parent_large[:4].tolist() == [parent_large[0]] * 4
        and parent_large[4:].tolist() == [parent_large[4]] * 4
    )
    assert parent_large[0] != parent_large[4]


def bad_file(tmp_path: Path, name: str, value: Any) -> Path:
    path = tmp_path / name
    if name.endswith(".npy"):
        np.save(path, value)
    else:
        path.write_text(value)
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda p: {"phi": bad_file(p, "phi5.npy", np.zeros((5, 2)))},
            r"leaf_of_point \(.*leaf_of_point.npy\) uses 6 leaves but phi \(.*phi5.npy\) has 5 rows",
        ),
        (
            lambda p: {"parent_of_leaf": bad_file(p, "par.npy", np.array([0, 0, 1, 1, 2]))},
            r"parent_of_leaf \(.*par.npy\) has 5 entries but there are 6 leaves",
        ),
        (
            lambda p: {"parent_of_leaf": bad_file(p, "gap.npy", np.array([0, 0, 2, 2, 3, 3]))},
            r"gap.npy\) never uses id 1",
        ),
        (lambda p: {"leaf_of_point": bad_file(p, "f.npy", np.zeros(12))}, r"f.npy\) must hold integer ids"),
        (
            lambda p: {"base": bad_file(p, "base3.json", "[0.1, 0.2, 0.3]")},
            r"base \(.*base3.json\) has shape \(3,\) but phi .* has 2 domains",
        ),
        (lambda p: {"base": bad_file(p, "b.txt", "0.5\n1.5\n")}, r"b.txt\) must lie in \[0, 1\]"),
        (
            lambda p: {"domain_names": bad_file(p, "names.txt", "a\n")},
            r"names.txt\) has 1 names but phi .* has 2 domains",
        ),
        (
            lambda p: {"phi_sd": bad_file(p, "sd.npy", np.zeros((6, 3)))},
            r"sd.npy\) has shape \(6, 3\) but phi",
        ),
        (
            lambda p: {"texts": bad_file(p, "t.txt", "one\ntwo\n")},
            r"t.txt\) has 2 texts but leaf_of_point .* has 12 points",
        ),
        (
            lambda p: {"texts": bad_file(p, "t.jsonl", '{"answer": 1}\n')},
            r"line 1 of .*t.jsonl must be a JSON string or an object",
        ),
        (
            lambda p: {"X_feat": bad_file(p, "x.npy", np.zeros((11, 4)))},
            r"x.npy\) has shape \(11, 4\); expected 12 rows",
        ),
        (lambda p: {"phi": bad_file(p, "nan.npy", np.full((6, 2), np.nan))}, r"nan.npy\) must be finite"),
        (lambda p: {"phi": p / "missing.npy"}, r"phi: no file at .*missing.npy"),
        (lambda p: {"measured": [7]}, r"measured holds leaf 7, outside 0..5"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_shape_errors_name_the_file(tmp_path, files, change, message):
    arguments = {**files, **change(tmp_path)}
    with pytest.raises(ValueError, match=message):
        load_arrays(tmp_path / "out.duckdb", **arguments)
    assert not (tmp_path / "out.duckdb").exists()


def test_an_existing_store_is_kept_without_overwrite(tmp_path, files):
    target = tmp_path / "s.duckdb"
    load_arrays(target, **files)
    with pytest.raises(StoreError, match="already exists"):
        load_arrays(target, **files)
    load_arrays(target, **files, overwrite=True)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_readers(tmp_path):
    names = tmp_path / "n.json"
    names.write_text('["a", "b"]')
    assert read_names(names) == ["a", "b"]
    names.write_text('{"a": 1}')
    with pytest.raises(ValueError, match="must hold a JSON list of strings"):
        read_names(names)
    texts = tmp_path / "t.jsonl"
    texts.write_text('"plain"\n{"text": "with\\nnewline"}\nnull\n')
    assert read_texts(texts) == ["plain", "with\nnewline", None]


def test_write_hierarchy_orders_texts_by_rank(tmp_path, rng):
    X = rng.standard_normal((100, 3)).astype(np.float32)
    tree = build_hierarchy(X, leaf_size=25, backend="sklearn")
    store = Store.create(tmp_path / "t.duckdb")
    write_hierarchy(store, tree, texts=[f"point {i}" for i in range(100)], sources=["s"] * 100)
    for g, members in enumerate(tree.members):
        examples = store.leaf_examples(g, limit=100)
        assert [point for point, _, _ in examples] == members.tolist()
        assert all(text == f"point {point}" and source == "s" for point, text, source in examples)
    with pytest.raises(ValueError, match="texts has 3 entries but the tree has 100 points"):
        write_hierarchy(store, tree, texts=["a", "b", "c"])


def test_harp_load(tmp_path, files):
    args = ["load", "--store", str(tmp_path / "cli.duckdb"), "--phi", files["phi"], "--phi-sd", files["phi_sd"],
            "--leaf-of-point", files["leaf_of_point"], "--parent-of-leaf", files["parent_of_leaf"],
            "--base", files["base"], "--domains", files["domain_names"], "--texts", files["texts"],
            "--features", files["X_feat"]]  # fmt: skip
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["counts"]["points"] == 12 and summary["counts"]["effects"] == 12
    assert "loaded 12 points" in result.stderr
    again = CliRunner().invoke(main, [str(a) for a in args])
    assert again.exit_code == 1 and "already exists" in again.output
    bad = bad_file(tmp_path, "names.txt", "only\n")
    args[args.index("--domains") + 1] = bad
    failed = CliRunner().invoke(main, [str(a) for a in [*args, "--force"]])
    assert failed.exit_code == 1 and "names.txt) has 1 names" in failed.output


POOL_RECORDS = [
    {"prompt": "Add 2 and 2.", "response": "5 <script>alert(1)</script>", "source": "math/wrong"},
    {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
    {"prompt": "", "response": "just a response", "source": "bare"},
]


def test_a_training_pool_file_gives_prompt_response_and_source_apart(tmp_path):
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(record) + "\n" for record in POOL_RECORDS))
    read = read_point_texts(pool)
    assert read.texts == ["Add 2 and 2.", "user: hi", ""]
    assert read.responses == ["5 <script>alert(1)</script>", "hello", "just a response"]
    assert read.sources == ["math/wrong", None, "bare"]
    plain = read_point_texts([f"text {i}" for i in range(3)])
    assert (plain.texts, plain.responses, plain.sources) == (["text 0", "text 1", "text 2"], None, None)
    with pytest.raises(ValueError, match="pool.jsonl:2: missing field 'response'"):
        pool.write_text(json.dumps(POOL_RECORDS[0]) + "\n" + json.dumps({"prompt": "no answer"}) + "\n")
        read_point_texts(pool)


def test_harp_load_keeps_the_pool_s_responses(tmp_path, files):
    records = [{"prompt": f"q {i}", "response": f"a {i}", "source": f"s{i % 2}"} for i in range(12)]
    files["texts"].write_text("".join(json.dumps(record) + "\n" for record in records))
    store = load_arrays(tmp_path / "old.duckdb", **files)
    for point, text, source, response in store.leaf_examples(2, with_response=True):
        assert (text, source, response) == (f"q {point}", f"s{point % 2}", f"a {point}")
