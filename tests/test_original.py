"""harp.original: the base-score JSONL in both shapes, its errors, and the default eval-indices file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harp.data import EvalSet, eval_set_from_records
from harp.original import default_eval_indices_path, read_base_scores, write_base_scores

SUBJECTS = ["math", "bio", "math", "bio", "law"]


def eval_set(with_subjects: bool = True) -> EvalSet:
    records = [
        {"input_ids": [1, 2, 3], "labels": [-100, 2, 3], **({"subject": s} if with_subjects else {})}
        for s in SUBJECTS
    ]
    return eval_set_from_records(((f"e[{k}]", r) for k, r in enumerate(records)), require_domain=False)


def write(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def test_per_question_lines_in_eval_order(tmp_path: Path) -> None:
    file = write(
        tmp_path / "b.jsonl",
        [{"subject": s, "acc01": a} for s, a in zip(SUBJECTS, [1, 0, 0, 0, 1], strict=True)],
    )
    scores = read_base_scores(file, eval_set(with_subjects=False), np.arange(5))
    assert scores.subjects == SUBJECTS
    assert scores.base == {"bio": 0.0, "law": 1.0, "math": 0.5}
    # One line per proxy question (after eval_indices) is read in proxy order.
    proxy = np.array([4, 0])
    short = write(tmp_path / "c.jsonl", [{"subject": "law", "acc01": 1}, {"subject": "math", "acc01": 0}])
    assert read_base_scores(short, eval_set(with_subjects=False), proxy).base == {"law": 1.0, "math": 0.0}
    # A file of the whole eval set, read for a proxy subset, averages the proxy's questions only.
    assert read_base_scores(file, eval_set(with_subjects=False), proxy).base == {"law": 1.0, "math": 1.0}


def test_per_subject_lines_and_the_written_file(tmp_path: Path) -> None:
    lines = [{"subject": "math", "acc01": 0.25, "n": 2}, {"subject": "bio", "acc01": 0.5, "n": 2},
             {"subject": "law", "acc01": 1.0, "n": 1}]  # fmt: skip
    scores = read_base_scores(write(tmp_path / "s.jsonl", lines), eval_set(), np.arange(5))
    assert scores.subjects == SUBJECTS and scores.base == {"bio": 0.5, "law": 1.0, "math": 0.25}
    # Subjects the proxy set leaves out drop out of b.
    assert read_base_scores(tmp_path / "s.jsonl", eval_set(), np.array([0, 1])).base == {
        "bio": 0.5,
        "math": 0.25,
    }
    # What write_base_scores writes reads back to the same subjects and means.
    proxy = np.array([3, 0, 2])
    chosen = eval_set().take(proxy)
    written = write_base_scores(tmp_path / "out" / "w.jsonl", chosen, proxy, np.array([1.0, 0.0, 1.0]))
    back = read_base_scores(written, eval_set(with_subjects=False), proxy)
    assert back.subjects == ["bio", "math", "math"] and back.base == {"bio": 1.0, "math": 0.5}
    assert [json.loads(line)["index"] for line in written.read_text().splitlines()] == [3, 0, 2]


@pytest.mark.parametrize(
    ("lines", "match"),
    [
        pytest.param([], r"is empty", id="empty"),
        pytest.param(
            [{"subject": "", "acc01": 1}], r"b.jsonl:1: field 'subject' must be a non-empty", id="subject"
        ),
        pytest.param(
            [{"subject": "math", "acc01": -0.1}], r"b.jsonl:1: field 'acc01' must be in \[0, 1\]", id="neg"
        ),
        pytest.param([{"subject": "math", "acc01": "1"}], r"'acc01' must be a number", id="text"),
        pytest.param([{"subject": "math", "acc01": float("nan")}], r"'acc01' must be a number", id="nan"),
        pytest.param(
            [{"subject": "math", "acc01": 1, "index": 0}, {"subject": "math", "acc01": 1, "index": 0}],
            r"b.jsonl:2: index 0 repeats .*b.jsonl:1",
            id="index-twice",
        ),
        pytest.param(
            [{"subject": "math", "acc01": 1, "index": 0}, {"subject": "math", "acc01": 1}],
            r"b.jsonl:2: give 'index' on every line or on none",
            id="index-on-some",
        ),
        pytest.param(
            [{"subject": "math", "acc01": 1, "index": -1}],
            r"'index' must be an integer >= 0, got -1",
            id="index-neg",
        ),
        pytest.param(
            [{"subject": "math", "acc01": 0.5, "n": 2}, {"subject": "bio", "acc01": 1}],
            r"b.jsonl:2: per-subject lines \(with 'n'\) and per-question lines \(without\) are mixed",
            id="mixed",
        ),
        pytest.param(
            [{"subject": "math", "acc01": 0.5, "n": 0}], r"'n' must be an integer >= 1, got 0", id="n"
        ),
        pytest.param(
            [{"subject": "math", "acc01": 0.5, "n": 2}, {"subject": "math", "acc01": 0.5, "n": 2}],
            r"b.jsonl:2: subject 'math' repeats",
            id="subject-twice",
        ),
    ],
)
def test_base_score_errors(tmp_path: Path, lines: list[dict[str, Any]], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        read_base_scores(write(tmp_path / "b.jsonl", lines), eval_set(), np.arange(5))


def test_per_subject_file_needs_subjects_on_the_examples(tmp_path: Path) -> None:
    file = write(tmp_path / "b.jsonl", [{"subject": "math", "acc01": 0.5, "n": 2}])
    with pytest.raises(ValueError, match=r"subject 'math' has no question in eval_examples"):
        read_base_scores(file, eval_set(with_subjects=False), np.arange(5))


def test_default_eval_indices_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert default_eval_indices_path("accuracy", None) is None
    np.save(tmp_path / "eval_indices_accuracy.npy", np.arange(2))
    assert default_eval_indices_path("accuracy", None) == tmp_path / "eval_indices_accuracy.npy"
    assert default_eval_indices_path(None, None) is None
    (tmp_path / "ck").mkdir()
    np.save(tmp_path / "ck" / "eval_indices_accuracy.npy", np.arange(2))
    assert (
        default_eval_indices_path("accuracy", tmp_path / "ck")
        == tmp_path / "ck" / "eval_indices_accuracy.npy"
    )
    assert default_eval_indices_path("accuracy", tmp_path / "ck" / "s.duckdb") == (
        tmp_path / "ck" / "eval_indices_accuracy.npy"
    )
