"""`harp run CONFIG.toml`: a tiny end-to-end run, resume, and config errors naming the key."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from tiny_models import save_tiny_encoder

from harp.cli import main
from harp.run_config import read_run_config

pytestmark = pytest.mark.filterwarnings("ignore::harp.bayes.BayesWarning")

GOOD = """\
store = "run.duckdb"

[data]
pool = "pool.jsonl"
eval = "eval.jsonl"
features = "X_feat.npy"

[model]
path = "{model}"

[hierarchy]
leaf_size = 8
leaves_per_parent = 2
parents_per_large = 2

[measure]
budget = 2
active_rounds = 1
active_k = 1

[measure.config]
steps = 2
batch_size = 2
max_length = 32
lora_r = 4
lora_alpha = 8

[select]
budget = 10
out = "chosen"
"""


def write_inputs(folder: Path, model: str = "model") -> Path:
    n = 32
    records = [{"prompt": f"q{i % 4}?", "response": f"{'xy'[i % 2]} {i}"} for i in range(n)]
    (folder / "pool.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    questions = [{"question": f"{i}?", "choices": ["a", "b"], "answer": i % 2, "domain": "d" + str(i % 2)}
                 for i in range(4)]  # fmt: skip
    (folder / "eval.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    np.save(folder / "X_feat.npy", np.random.default_rng(1).normal(size=(n, 6)))
    config = folder / "run.toml"
    config.write_text(GOOD.format(model=model))
    return config


@pytest.mark.train
def test_run_end_to_end_and_resume(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    pytest.importorskip("peft")
    from harp.testing import save_random_model

    model = save_random_model(tmp_path_factory.mktemp("model") / "tiny")
    config = write_inputs(tmp_path, str(model))
    result = CliRunner().invoke(main, ["run", str(config)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["store"] == str(tmp_path / "run.duckdb") and summary["points"] == 32
    assert summary["measured_leaves"] == 3  # 2 representatives + 1 active
    assert summary["harp_c"]["points"] <= 10 and summary["harp_e"]["points"] <= 10
    assert summary["csv"] == [str(tmp_path / "chosen-c.csv"), str(tmp_path / "chosen-e.csv")]
    assert (tmp_path / "chosen-c.csv").read_text().startswith("rank,point_id,leaf_id")
    assert (tmp_path / "chosen-e.manifest.json").is_file()
    assert "done in" in result.stderr and "measured" in result.stderr

    again = CliRunner().invoke(main, ["-q", "run", str(config)])
    assert again.exit_code == 0, again.output
    assert (
        "done in" not in again.stderr and "resuming" not in again.stderr
    )  # -q (transformers' own bars aside)
    second = json.loads(again.stdout)
    assert second["measured_leaves"] == 4  # resumed: one more active leaf, nothing measured twice
    assert second["harp_c"]["utility"] >= second["base_utility"]


@pytest.mark.train
@pytest.mark.slow
def test_run_embeds_the_pool_when_no_features_are_given(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    pytest.importorskip("peft")
    from harp.testing import save_random_model

    model = save_random_model(tmp_path_factory.mktemp("model") / "tiny")
    save_tiny_encoder(tmp_path)
    config = write_inputs(tmp_path, str(model))
    config.write_text(config.read_text().replace('features = "X_feat.npy"', 'embedding_model = "encoder"'))
    result = CliRunner().invoke(main, ["run", str(config)])
    assert result.exit_code == 0, result.output
    cached = tmp_path / "run.X_feat.npy"
    features = np.load(cached)
    assert features.shape == (32, 16)  # the encoder's width, one row per pool example
    assert "embedding 32 examples" in result.stderr
    assert json.loads(result.stdout)["points"] == 32
    again = CliRunner().invoke(main, ["run", str(config)])
    assert again.exit_code == 0, again.output
    assert f"using the cached embeddings {cached}" in again.stderr
    np.testing.assert_array_equal(np.load(cached), features)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        pytest.param(lambda t: t.replace("leaf_size = 8", "leaf_sise = 8"), "unknown key 'hierarchy.leaf_sise'", id="key"),
        pytest.param(lambda t: t.replace("budget = 10", 'budget = "ten"'), "select.budget must be an integer, got 'ten'", id="type"),
        pytest.param(lambda t: t.replace('pool = "pool.jsonl"\n', ""), "missing required key 'data.pool'", id="missing"),
        pytest.param(lambda t: t.replace('store = "run.duckdb"', 'stor = "x"'), "unknown key 'stor'", id="top"),
        pytest.param(lambda t: t.replace("steps = 2", "steps = 0"), "measure.config: steps must be an integer >= 1", id="measure-config"),
        pytest.param(lambda t: t.replace("lora_r = 4", "rank = 4"), "measure.config: unknown measure config fields ['rank']", id="config-key"),
        pytest.param(lambda t: t.replace("[model]", "[modelx]"), "unknown key 'modelx'", id="section"),
        pytest.param(lambda t: t + "[[", "not valid TOML", id="toml"),
        pytest.param(lambda t: t.replace("leaf_size = 8", "leaf_size = true"), "hierarchy.leaf_size must be an integer, got True", id="bool"),
    ],
)  # fmt: skip
def test_bad_config_names_the_key(tmp_path: Path, edit: object, message: str) -> None:
    config = write_inputs(tmp_path)
    config.write_text(edit(config.read_text()))  # type: ignore[operator]
    result = CliRunner().invoke(main, ["run", str(config)])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and message in result.output
    with pytest.raises(ValueError, match="run.toml"):
        read_run_config(config)


def test_missing_config_file_and_bad_inputs(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["run", str(tmp_path / "none.toml")])
    assert result.exit_code == 1 and "cannot read the config" in result.output
    config = write_inputs(tmp_path)
    np.save(tmp_path / "X_feat.npy", np.ones((3, 6)))
    result = CliRunner().invoke(main, ["run", str(config)])
    assert (
        result.exit_code == 1
        and "X_feat.npy has 3 rows but the training pool has 32 examples" in result.output
    )


def test_paths_are_relative_to_the_config(tmp_path: Path) -> None:
    config = read_run_config(write_inputs(tmp_path))
    assert config[""]["store"] == str(tmp_path.resolve() / "run.duckdb")
    assert config["data"]["pool"] == str(tmp_path.resolve() / "pool.jsonl")
    assert config["measure"]["config"].steps == 2 and config["measure"]["budget"] == 2


@pytest.mark.parametrize("command", ["run", "next"])
def test_help_has_an_example(command: str) -> None:
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0 and "Example" in result.output


@pytest.mark.train
def test_the_manifests_name_the_contents_the_selections_came_from(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another `harp infer` lands between the selection and the manifests: they must still name the hash of the
    # effects the selection was computed from, not the store's hash at the time they are written.
    pytest.importorskip("peft")
    import harp.pipeline.entry
    from harp.store import Store
    from harp.testing import save_random_model

    model = save_random_model(tmp_path_factory.mktemp("model") / "tiny")
    config = write_inputs(tmp_path, str(model))
    store_path = tmp_path / "run.duckdb"
    real_select = harp.pipeline.entry.select
    hashes: list[str] = []

    def select_then_infer_lands(*args: object, **kwargs: object) -> object:
        chosen = real_select(*args, **kwargs)
        if not hashes:
            store = Store.open(store_path)
            hashes.append(store.content_hash())
            inputs = store.selection_inputs()
            store.write_effects(inputs.phi + 0.01, inputs.sd, inputs.measured)
            hashes.append(store.content_hash())
        return chosen

    monkeypatch.setattr(harp.pipeline.entry, "select", select_then_infer_lands)
    result = CliRunner().invoke(main, ["-q", "run", str(config)])
    assert result.exit_code == 0, result.output
    computed_from, later = hashes
    assert computed_from != later == Store.open(store_path).content_hash()
    for envelope in "ce":
        manifest = json.loads((tmp_path / f"chosen-{envelope}.manifest.json").read_text())
        assert manifest["store_hash"] == computed_from
