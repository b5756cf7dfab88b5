"""harp.pipeline.harp: the whole pipeline on a tiny random model (CPU), resume, and argument checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harp.pipeline import harp
from harp.select import select
from harp.store import Store

pytestmark = pytest.mark.filterwarnings("ignore::harp.bayes.BayesWarning")

N_POINTS = 48
LORA = {"steps": 3, "batch_size": 4, "max_length": 32, "eval_batch_size": 16, "r": 4, "lora_alpha": 8,
        "learning_rate": 0.05, "warmup_steps": 0, "lora_dropout": 0.0}  # fmt: skip
TREE = {"leaf_size": 8, "leaves_per_parent": 2, "parents_per_large": 2}


def pool_records(n: int = N_POINTS) -> list[dict[str, str]]:
    return [{"prompt": f"q{i % 5} {'abc'[i % 3]}?", "response": f"{'xyz'[i % 3]} {i}"} for i in range(n)]


EVAL = [
    {"question": f"{i}+{i}?", "choices": [str(2 * i), "x", "y z"], "answer": i % 3, "domain": ["math", "sci", "art"][i % 3]}
    for i in range(9)
]  # fmt: skip


def features(n: int = N_POINTS) -> np.ndarray:
    # Three well-separated groups (the three response letters) with some spread.
    rng = np.random.default_rng(0)
    centers = np.eye(8)[:3] * 5
    return centers[np.arange(n) % 3] + rng.normal(size=(n, 8))


def run(model: Path, checkpoint: Path | None, **kwargs: Any) -> Any:
    arguments: dict[str, Any] = {
        "TOP_K_POINTS": 20,
        "lora_config": LORA,
        "checkpoint_dir": checkpoint,
        **TREE,
    }
    arguments.update(kwargs)
    return harp(features(), model, pool_records(), EVAL, **arguments)


@pytest.mark.train
def test_end_to_end_resume_and_outputs(tiny_model: Path, tmp_path: Path) -> None:
    lines: list[str] = []
    reps = tmp_path / "reps.json"
    result = run(tiny_model, tmp_path / "ck", representatives_path=reps, active_rounds=1, active_k=2,
                 progress=lines.append)  # fmt: skip
    info = result.info
    store = Store.open(info["store"], read_only=True)
    inputs = store.selection_inputs()
    n_leaves = inputs.n_leaves
    assert info["phi"].shape == info["phi_sd"].shape == (n_leaves, 3)
    assert info["domain_names"] == ["art", "math", "sci"] and info["leaf_of_point"].shape == (N_POINTS,)
    # Representatives: written to the file, one per parent, all measured; the active round measured 2 more.
    assert json.loads(reps.read_text()) == info["representatives"].tolist()
    assert info["representatives"].size == int(inputs.leaf_parent.max()) + 1
    assert set(info["representatives"].tolist()) <= set(info["measured_leaves"].tolist())
    assert info["measured_leaves"].size == min(n_leaves, info["representatives"].size + 2)
    assert any("active round 1" in line for line in lines)
    # Each selection is harp.select on the posterior means, capped at TOP_K_POINTS.
    for name, points in (("C", result.harp_c), ("E", result.harp_e)):
        expected = select(info["phi"], info["base"], envelope=name, weights=info["weights"],
                          members=inputs.members, budget=20)  # fmt: skip
        np.testing.assert_array_equal(points, expected.points)
        np.testing.assert_array_equal(info[f"order_{name.lower()}"], expected.order)
        assert info[f"cut_{name.lower()}"] == expected.cut
        assert points.size <= 20 and np.unique(points).size == points.size
        assert ((points >= 0) & (points < N_POINTS)).all()
    assert not np.allclose(info["phi"], 0), "training should move at least one effect"
    assert info["bayes"]["domains"][0]["domain"] == "art"
    n_rows = store.read_table("measurements").num_rows

    # Resume: same call, nothing measured again, same answer.
    lines.clear()
    again = run(tiny_model, tmp_path / "ck", representatives_path=reps, progress=lines.append)
    assert store.read_table("measurements").num_rows == n_rows
    assert any("resuming" in line for line in lines) and any("0 leaves to measure" in line for line in lines)
    np.testing.assert_array_equal(again.info["phi"], info["phi"])
    # Another tree into the same checkpoint is refused, not silently replaced.
    with pytest.raises(ValueError, match=r"holds a tree built with other leaf_size"):
        run(tiny_model, tmp_path / "ck", leaf_size=12)


@pytest.mark.train
def test_in_memory_eval_subset_and_v0(tiny_model: Path) -> None:
    math_and_sci = [i for i, record in enumerate(EVAL) if record["domain"] != "art"]
    result = run(tiny_model, None, eval_indices=math_and_sci, v0={"math": 0.25, "sci": 0.75},
                 tokenizer=object(), n_representatives=2, TOP_K_POINTS=None)  # fmt: skip
    info = result.info
    assert info["store"] is None and info["ignored"] == ["tokenizer"]
    assert info["domain_names"] == ["math", "sci"]
    np.testing.assert_allclose(info["base"], [0.25, 0.75])
    assert info["measured_leaves"].size == 2


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        pytest.param({"eval_metric": "bleu"}, r"eval_metric must be one of", id="metric"),
        pytest.param(
            {"eval_metric": "exact_match"}, r"eval_metric 'exact_match' does not fit", id="metric-kind"
        ),
        pytest.param(
            {"eval_indices": [0], "eval_indices_path": "x.npy"}, r"at most one of eval_indices", id="both"
        ),
        pytest.param(
            {"eval_indices": [0, 99]}, r"eval_indices must be question indices in 0..8, got 99", id="range"
        ),
        pytest.param({"TOP_K_POINTS": -1}, r"budget must be >= 0, got -1", id="budget"),
        pytest.param({"active_k": 0}, r"active_k must be an integer >= 1, got 0", id="active-k"),
        pytest.param({"lora_config": {"rank": 2}}, r"unknown measure config fields \['rank'\]", id="lora"),
        pytest.param({"lora_config": 3}, r"lora_config must be a MeasureConfig", id="lora-type"),
    ],
)
def test_rejects_bad_arguments(changes: dict[str, Any], match: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=match):
        run(tmp_path / "no-model", None, **changes)


def test_rejects_features_of_another_pool(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"X_feat has shape \(10, 8\) but train_examples has 48 examples"):
        harp(features()[:10], tmp_path / "no-model", pool_records(), EVAL)


KILLED_RUN = """
import sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_pipeline import run
run(Path({model!r}), Path({checkpoint!r}), lora_config={lora!r},
    progress=lambda message: print(message, file=sys.stderr, flush=True))
"""


@pytest.mark.train
@pytest.mark.slow
def test_resume_after_kill(tiny_model: Path, tmp_path: Path) -> None:
    """harp.harp killed with SIGKILL after its first measured leaf; the rerun repeats and loses nothing."""
    import os
    import signal
    import subprocess
    import sys
    import time

    repo = Path(__file__).resolve().parents[1]
    lora = {**LORA, "steps": 30}  # slower leaves, so the kill surely lands while leaves remain
    script = KILLED_RUN.format(tests=str(repo / "tests"), model=str(tiny_model), checkpoint=str(tmp_path / "ck"),
                               lora=lora)  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-c", script], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONPATH": str(repo)},
    )  # fmt: skip
    assert process.stderr is not None
    deadline = time.monotonic() + 300
    seen = []
    for line in process.stderr:
        seen.append(line)
        if "measured (1/" in line or time.monotonic() > deadline:
            break
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert any("measured (1/" in line for line in seen), "".join(seen[-20:])
    [store_path] = list((tmp_path / "ck").glob("*.duckdb"))
    store = Store.open(store_path, read_only=True)
    first = store.read_table("measurements").to_pylist()
    # The kill follows the first leaf's progress line; on a fast machine a second leaf may just make it too.
    done = {row["leaf_id"] for row in first}
    assert done
    [killed] = [record for record in store.runs() if record["kind"] == "measure"]
    assert killed["status"] == "running"

    lines: list[str] = []
    resumed = run(tiny_model, tmp_path / "ck", lora_config=lora, progress=lines.append)
    rows = Store.open(store_path, read_only=True).read_table("measurements").to_pylist()
    assert {row["run_id"] for row in rows if row["leaf_id"] in done} == {killed["run_id"]}, (
        "the leaves measured before the kill must not be measured again"
    )
    assert any(f"{len(done)} already measured" in line for line in lines)
    # Killed and resumed gives what one uninterrupted run gives.
    clean = run(tiny_model, tmp_path / "clean", lora_config=lora)
    np.testing.assert_allclose(resumed.info["phi"], clean.info["phi"], atol=1e-6)
    np.testing.assert_array_equal(resumed.harp_c, clean.harp_c)
    np.testing.assert_array_equal(resumed.harp_e, clean.harp_e)
