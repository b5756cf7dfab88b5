"""Loading the training pool and the proxy eval set: shapes, chat records, Parquet, and every error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harp.data import TrainData, TrainingPool, load_eval_set, load_training_pool, preview


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


def test_store_texts_keep_prompt_and_response_apart() -> None:
    pool = TrainingPool(["p" * 500, "user: hi"], ["r", "hello"], ["0", "1"], [None, "s"])
    texts, responses = pool.store_texts(max_chars=10)
    assert texts == ["p" * 9 + "…", "user: hi"] and responses == ["r", "hello"]
    tokenised = TrainingPool(
        ["", ""], ["", ""], ["0", "1"], [None, None], tokens=TrainData([[1], [2]], [[1], [2]])
    )
    assert tokenised.store_texts() == ([None, None], [None, None])  # nothing decoded: no text, not ""


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


# ----------------------------------------------------------------------------------------------------------------
# Tokenised records


class CharTokenizer:
    """Decodes token id k as the letter chr(ord('a') + k)."""

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(chr(ord("a") + k) for k in ids)


def test_tokenised_pool_keeps_the_given_tokens(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "pool.jsonl",
        [
            {"input_ids": [0, 1, 2, 3], "labels": [-100, -100, 2, 3], "attention_mask": [1, 1, 1, 1], "n": 4},
            {
                "input_ids": [4, 5, 6, 9, 9],
                "labels": [-100, 5, 6, -100, -100],
                "attention_mask": [1, 1, 1, 0, 0],
            },
            {"input_ids": np.array([7, 8]).tolist(), "source": "s"},  # no labels: a loss on every token
        ],
    )
    pool = load_training_pool(path, tokenizer=CharTokenizer())
    assert pool.tokens is not None and len(pool.tokens) == 3
    assert pool.tokens.input_ids == [[0, 1, 2, 3], [4, 5, 6], [7, 8]]
    assert pool.tokens.labels == [[-100, -100, 2, 3], [-100, 5, 6], [7, 8]]
    assert pool.prompts == ["ab", "e", ""] and pool.responses == ["cd", "fg", "hi"]
    assert pool.previews()[0] == "ab\ncd" and pool.sources == [None, None, "s"]
    examples = pool.examples([1])
    assert isinstance(examples, TrainData) and examples.input_ids == [[4, 5, 6]]
    # Without a tokenizer there is no text, only the tokens.
    assert load_training_pool(path).prompts == ["", "", ""]


def test_text_pool_examples_are_the_pairs(tmp_path: Path) -> None:
    pool = load_training_pool(write_jsonl(tmp_path / "pool.jsonl", [{"prompt": "p", "response": "r"}]))
    assert pool.tokens is None and pool.examples([0]) == [("p", "r")]


@pytest.mark.parametrize(
    ("records", "match"),
    [
        pytest.param(
            [{"input_ids": [1, 2], "labels": [1, 2, 3]}],
            r"pool.jsonl:1: field 'labels' has 3 tokens, longer than 'input_ids' \(2 tokens\)",
            id="labels-longer",
        ),
        pytest.param([{"input_ids": []}], r"pool.jsonl:1: field 'input_ids' is empty", id="empty-ids"),
        pytest.param([{"input_ids": [1, -2]}], r"negative token id -2", id="negative-id"),
        pytest.param(
            [{"input_ids": [1, 2.5]}], r"pool.jsonl:1: input_ids\[1\] must be an integer, got 2.5", id="float"
        ),
        pytest.param([{"input_ids": [[1, 2]]}], r"input_ids\[0\] must be an integer", id="nested"),
        pytest.param([{"input_ids": "12"}], r"field 'input_ids' must be a list of integers", id="string"),
        pytest.param([{"input_ids": [1, 2], "labels": [1, -5]}], r"'labels' holds -5", id="bad-label"),
        pytest.param(
            [{"input_ids": [1, 2], "attention_mask": [1, 2]}],
            r"'attention_mask' must hold only 0 and 1",
            id="mask",
        ),
        pytest.param(
            [{"input_ids": [1, 2, 3], "labels": [1, 2, 3], "attention_mask": [1, 0, 0]}],
            r"marks no token to learn",
            id="all-masked",
        ),
        pytest.param(
            [{"prompt": "p", "response": "r"}, {"input_ids": [1, 2]}],
            r"pool.jsonl:2: a tokenised record in a pool whose first record \(.*pool.jsonl:1\) is text",
            id="mixed",
        ),
        pytest.param(
            [{"ids": [1]}], r"pool.jsonl:1: missing fields: .* tokenised 'input_ids'.*\['ids'\]", id="neither"
        ),
    ],
)
def test_tokenised_pool_errors(tmp_path: Path, records: list[Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        load_training_pool(write_jsonl(tmp_path / "pool.jsonl", records))


def test_tokenised_eval_set_subject_and_fingerprint(tmp_path: Path) -> None:
    records: list[dict[str, Any]] = [
        {"input_ids": [0, 1, 2], "labels": [-100, 1, 2], "subject": "math"},
        {"question": "Q", "choices": ["x", "y"], "answer": 1, "subject": "bio"},
    ]
    path = write_jsonl(tmp_path / "eval.jsonl", records)
    evals = load_eval_set(path, tokenizer=CharTokenizer())
    assert evals.kinds == ["tokens", "choice"] and evals.domain_names == ["bio", "math"]
    assert evals.token_pair(0) == ([0, 1, 2], [-100, 1, 2]) and evals.tokens[1] is None
    assert evals.prompts[0] == "a" and evals.answers[0] == "bc"
    # The tokens are part of the fingerprint; a text-only eval set keeps the fingerprint it always had.
    records[0]["labels"] = [-100, -100, 2]
    assert load_eval_set(write_jsonl(tmp_path / "other.jsonl", records)).fingerprint() != evals.fingerprint()
    text = load_eval_set(write_jsonl(tmp_path / "text.jsonl", [records[1]]))
    assert text.tokens == [] and text.fingerprint() == (
        "3fe52a31dbe80fe1154f73aa49738d84d8892dfd598f458e2e41ddc88b4b09a1"
    )
    subset = evals.take([1]).with_domains(["chem"])
    assert subset.kinds == ["choice"] and subset.domain_names == ["chem"] and subset.tokens == [None]


def test_eval_set_without_domain_when_allowed() -> None:
    from harp.data import eval_set_from_records

    records = [("e[0]", {"input_ids": [1, 2], "labels": [-100, 2]})]
    with pytest.raises(ValueError, match=r"e\[0\]: missing field 'domain'"):
        eval_set_from_records(records)
    evals = eval_set_from_records(records, require_domain=False)
    assert evals.domain_names == [""] and evals.with_domains(["x"]).domain_names == ["x"]
