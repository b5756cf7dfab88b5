"""Loading the training pool and the proxy eval set: shapes, chat records, Parquet, and every error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harp.data import load_eval_set, load_training_pool, preview


def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def test_pool_prompt_response_and_chat(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "pool.jsonl",
        [
            {"prompt": "2+2?", "response": "4", "id": "a", "source": "math"},
            {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello"},
                ]
            },
        ],
    )
    pool = load_training_pool(path)
    assert len(pool) == 2
    assert pool.prompts == ["2+2?", "system: Be brief.\nuser: Hi"]
    assert pool.responses == ["4", "Hello"]
    assert pool.ids == ["a", "1"]
    assert pool.sources == ["math", None]
    assert pool.texts()[0] == "2+2?\n4"
    assert pool.subset([1]) == [("system: Be brief.\nuser: Hi", "Hello")]


def test_pool_from_parquet(tmp_path: Path) -> None:
    path = tmp_path / "pool.parquet"
    pq.write_table(pa.table({"prompt": ["p0", "p1"], "response": ["r0", "r1"], "id": [7, 8]}), path)
    pool = load_training_pool(path)
    assert pool.ids == ["7", "8"] and pool.responses == ["r0", "r1"]


def test_previews_are_cut() -> None:
    assert preview("abc", 10) == "abc"
    assert preview("x" * 20, 10) == "x" * 9 + "…"


@pytest.mark.parametrize(
    ("records", "match"),
    [
        pytest.param([{"prompt": "p"}], r"pool.jsonl:1: missing field 'response'", id="no-response"),
        pytest.param([{"text": "p"}], r"pool.jsonl:1: missing fields", id="no-fields"),
        pytest.param(
            [{"prompt": "p", "response": "  "}], r"pool.jsonl:1: field 'response' is empty", id="empty"
        ),
        pytest.param(
            [{"prompt": "a", "response": "b", "id": 1}, {"prompt": "c", "response": "d", "id": 1}],
            r"pool.jsonl:2: duplicate id '1' \(first at .*pool.jsonl:1\)",
            id="duplicate-id",
        ),
        pytest.param(
            [{"messages": [{"role": "user", "content": "hi"}]}],
            r"pool.jsonl:1: .*no 'assistant'",
            id="no-assistant",
        ),
        pytest.param([{"messages": [{"role": "user"}]}], r"pool.jsonl:1: messages\[0\]", id="bad-message"),
        pytest.param(["not an object"], r"pool.jsonl:1: expected a JSON object", id="not-object"),
        pytest.param([], r"pool.jsonl: the training pool is empty", id="empty-file"),
    ],
)
def test_pool_errors(tmp_path: Path, records: list[Any], match: str) -> None:
    path = write_jsonl(tmp_path / "pool.jsonl", records)
    with pytest.raises(ValueError, match=match):
        load_training_pool(path)


def test_pool_bad_json_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "pool.jsonl"
    path.write_text('{"prompt": "a", "response": "b"}\n\n{oops\n')
    with pytest.raises(ValueError, match=r"pool.jsonl:3: not valid JSON"):
        load_training_pool(path)
    with pytest.raises(ValueError, match=r"does not exist"):
        load_training_pool(tmp_path / "missing.jsonl")
    (tmp_path / "pool.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match=r"unknown file type '.csv'"):
        load_training_pool(tmp_path / "pool.csv")


def test_eval_set_mixed(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "eval.jsonl",
        [
            {"question": "Q1", "choices": ["x", "y", "z"], "answer": "B", "domain": "math"},
            {"question": "Q2", "choices": ["x", "y"], "answer": 0, "domain": "bio"},
            {"prompt": "Capital of France?", "answer": "Paris", "domain": "geo"},
        ],
    )
    evals = load_eval_set(path)
    assert evals.kinds == ["choice", "choice", "generate"]
    assert evals.answers == [1, 0, "Paris"]
    assert evals.domain_names == ["bio", "geo", "math"]
    np.testing.assert_array_equal(evals.domain, [2, 0, 1])
    np.testing.assert_array_equal(evals.eval_size(), [1, 1, 1])
    assert len(evals.fingerprint()) == 64
    assert evals.fingerprint() == load_eval_set(path).fingerprint()


@pytest.mark.parametrize(
    ("record", "match"),
    [
        pytest.param(
            {"question": "q", "choices": ["a", "b"], "answer": 0},
            r"eval.jsonl:1: missing field 'domain'",
            id="no-domain",
        ),
        pytest.param(
            {"question": "q", "choices": ["a", "b"], "answer": 0, "domain": " "},
            r"eval.jsonl:1: field 'domain' must be a non-empty",
            id="empty-domain",
        ),
        pytest.param(
            {"question": "q", "choices": ["a", "b"], "answer": 2, "domain": "d"},
            r"eval.jsonl:1: answer 2 is out of range for 2 choices",
            id="index",
        ),
        pytest.param(
            {"question": "q", "choices": ["a", "b"], "answer": "C", "domain": "d"},
            r"answer 'C' is out of range",
            id="letter",
        ),
        pytest.param(
            {"question": "q", "choices": ["a", "b"], "answer": True, "domain": "d"},
            r"option index or letter",
            id="bool",
        ),
        pytest.param(
            {"question": "q", "choices": ["a"], "answer": 0, "domain": "d"},
            r"at least two options",
            id="one-choice",
        ),
        pytest.param(
            {"choices": ["a", "b"], "answer": 0, "domain": "d"}, r"missing field 'question'", id="no-question"
        ),
        pytest.param({"prompt": "p", "domain": "d"}, r"missing field 'answer'", id="no-answer"),
        pytest.param(
            {"text": "p", "answer": "a", "domain": "d"}, r"missing fields: give 'question'", id="no-fields"
        ),
    ],
)
def test_eval_errors(tmp_path: Path, record: dict[str, Any], match: str) -> None:
    path = write_jsonl(tmp_path / "eval.jsonl", [record])
    with pytest.raises(ValueError, match=match):
        load_eval_set(path)
