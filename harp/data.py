"""Loading the training pool and the proxy eval set for Stage 1b.

Both come as JSONL (one JSON object a line; blank lines are skipped) or Parquet (one record a row), in the usual
Hugging Face shapes.

Training pool, one record per example:

- ``prompt`` and ``response`` (strings), or chat ``messages``: a list of ``{"role", "content"}``. A chat is split
  into a prompt (every turn before the last assistant turn, rendered as ``role: content`` lines) and a response
  (the last assistant turn), so training sees the same (prompt, response) shape either way.
- optional ``id`` (string or integer, unique in the file) and ``source`` (string).

The point id of an example in the store is its position in the pool file (0, 1, 2, ...): the row of ``X_feat``,
the row of the pool and the ``point_id`` of the store are the same number.

Proxy eval set, one record per question:

- multiple choice: ``question``, ``choices`` (a list of at least two strings), ``answer`` (0-based index, or a
  letter ``A``, ``B``, ...), ``domain``; scored by comparing option log-likelihoods.
- short generation: ``prompt``, ``answer`` (string), ``domain``; scored by exact match of the greedy answer.

Domains are numbered in sorted name order, so the same eval file always gives the same domain ids.

Every problem raises ``ValueError`` naming the file and the line (JSONL) or row (Parquet) where it was found.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = ["EvalSet", "TrainingPool", "load_eval_set", "load_training_pool", "read_records"]

EvalKind = Literal["choice", "generate"]

#: Characters kept in a text preview for the store (the app shows a few lines of each example).
PREVIEW_CHARS = 400


@dataclass(frozen=True)
class TrainingPool:
    """The training pool: example i is ``prompts[i]`` followed by ``responses[i]``; its point id is i.

    Attributes
    ----------
    prompts, responses : list of str, length n_examples
    ids : list of str
        The record's ``id`` (as a string) or, when absent, its position.
    sources : list of str or None
    path : str
        Where the pool was read from ("" when built in memory).
    """

    prompts: list[str]
    responses: list[str]
    ids: list[str]
    sources: list[str | None]
    path: str = ""

    def __len__(self) -> int:
        return len(self.prompts)

    def texts(self) -> list[str]:
        """Prompt and response joined by a newline: what is embedded for the hierarchy."""
        return [
            join_example(prompt, response)
            for prompt, response in zip(self.prompts, self.responses, strict=True)
        ]

    def previews(self, max_chars: int = PREVIEW_CHARS) -> list[str]:
        """Short texts for the store's ``points.text`` (what the app shows on hover)."""
        return [preview(text, max_chars) for text in self.texts()]

    def subset(self, point_ids: Sequence[int] | np.ndarray) -> list[tuple[str, str]]:
        """The (prompt, response) pairs of the given point ids."""
        return [(self.prompts[int(i)], self.responses[int(i)]) for i in point_ids]


@dataclass(frozen=True, eq=False)
class EvalSet:
    """The proxy eval set: one entry per question, in file order.

    Attributes
    ----------
    kinds : list of {"choice", "generate"}
    prompts : list of str
        The question (multiple choice) or the prompt (generation).
    choices : list of list of str
        The options of a multiple-choice question; empty for a generation question.
    answers : list of int or str
        The index of the right option (multiple choice) or the expected answer (generation).
    domain : ndarray of shape (n_questions,), int64
        Domain id of each question, an index into ``domain_names``.
    domain_names : list of str
        Sorted, distinct.
    path : str
    """

    kinds: list[EvalKind]
    prompts: list[str]
    choices: list[list[str]]
    answers: list[int | str]
    domain: np.ndarray
    domain_names: list[str]
    path: str = ""
    _fingerprint: list[str] = field(default_factory=list, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def n_domains(self) -> int:
        return len(self.domain_names)

    def eval_size(self) -> np.ndarray:
        """Number of questions of each domain, shape (n_domains,)."""
        return np.bincount(self.domain, minlength=self.n_domains).astype(np.int64)

    def fingerprint(self) -> str:
        """SHA-256 over the questions, options, answers and domains (not the file name)."""
        if not self._fingerprint:
            digest = hashlib.sha256()
            for kind, prompt, choices, answer, d in zip(
                self.kinds, self.prompts, self.choices, self.answers, self.domain, strict=True
            ):
                record = [kind, prompt, choices, answer, self.domain_names[int(d)]]
                digest.update(json.dumps(record, ensure_ascii=False).encode())
                digest.update(b"\n")
            self._fingerprint.append(digest.hexdigest())
        return self._fingerprint[0]


def join_example(prompt: str, response: str) -> str:
    """The text of one training example as the model is trained on it: prompt, newline, response."""
    return f"{prompt}\n{response}" if prompt else response


def preview(text: str, max_chars: int = PREVIEW_CHARS) -> str:
    """``text`` cut to ``max_chars`` characters, with an ellipsis when cut."""
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


# ----------------------------------------------------------------------------------------------------------------
# Reading records


def read_records(path: str | os.PathLike[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(where, record)`` from a JSONL or Parquet file; ``where`` reads ``FILE:LINE`` or ``FILE row N``.

    Raises
    ------
    ValueError
        The file is missing, of an unknown type, or a line is not a JSON object.
    """
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"{file} does not exist (expected a .jsonl or .parquet file)")
    suffix = file.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        with file.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                where = f"{file}:{number}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(f"{where}: not valid JSON ({error.msg})") from None
                if not isinstance(record, dict):
                    raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
                yield where, record
    elif suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(file)
        except Exception as error:  # pyarrow raises several types for a bad file
            raise ValueError(f"{file}: cannot read it as Parquet ({error})") from None
        for number, record in enumerate(table.to_pylist()):
            yield f"{file} row {number}", record
    else:
        raise ValueError(f"{file}: unknown file type {suffix!r}; use .jsonl or .parquet")


def _text(record: dict[str, Any], name: str, where: str, *, allow_empty: bool = False) -> str:
    if name not in record or record[name] is None:
        raise ValueError(f"{where}: missing field {name!r}")
    value = record[name]
    if not isinstance(value, str):
        raise ValueError(f"{where}: field {name!r} must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise ValueError(f"{where}: field {name!r} is empty")
    return value


def _chat(messages: Any, where: str) -> tuple[str, str]:
    if not isinstance(messages, list | tuple) or not messages:
        raise ValueError(f"{where}: field 'messages' must be a non-empty list of {{role, content}}")
    turns: list[tuple[str, str]] = []
    for k, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise ValueError(f"{where}: messages[{k}] must be an object with 'role' and 'content'")
        role, content = message["role"], message["content"]
        if not isinstance(role, str) or not isinstance(content, str):
            raise ValueError(f"{where}: messages[{k}] role and content must be strings")
        turns.append((role, content))
    last = max((k for k, (role, _) in enumerate(turns) if role == "assistant"), default=-1)
    if last < 0:
        raise ValueError(f"{where}: messages has no 'assistant' turn to train on")
    if not turns[last][1].strip():
        raise ValueError(f"{where}: the last assistant message is empty")
    prompt = "\n".join(f"{role}: {content}" for role, content in turns[:last])
    return prompt, turns[last][1]


def load_training_pool(path: str | os.PathLike[str]) -> TrainingPool:
    """Read a training pool from JSONL or Parquet (see the module docstring for the record shapes).

    Raises
    ------
    ValueError
        Naming the file and line: a record without ``prompt``/``response`` or ``messages``, an empty response, a
        duplicate ``id``, or an empty file.
    """
    prompts: list[str] = []
    responses: list[str] = []
    ids: list[str] = []
    sources: list[str | None] = []
    seen: dict[str, str] = {}
    for where, record in read_records(path):
        if "messages" in record and record["messages"] is not None:
            prompt, response = _chat(record["messages"], where)
        elif "prompt" in record or "response" in record:
            prompt = _text(record, "prompt", where, allow_empty=True)
            response = _text(record, "response", where)
        else:
            raise ValueError(f"{where}: missing fields: give 'prompt' and 'response', or chat 'messages'")
        raw_id = record.get("id")
        if raw_id is None:
            example_id = str(len(prompts))
        elif isinstance(raw_id, str | int) and not isinstance(raw_id, bool):
            example_id = str(raw_id)
        else:
            raise ValueError(f"{where}: field 'id' must be a string or an integer, got {raw_id!r}")
        if example_id in seen:
            raise ValueError(f"{where}: duplicate id {example_id!r} (first at {seen[example_id]})")
        seen[example_id] = where
        source = record.get("source")
        if source is not None and not isinstance(source, str):
            raise ValueError(f"{where}: field 'source' must be a string, got {type(source).__name__}")
        prompts.append(prompt)
        responses.append(response)
        ids.append(example_id)
        sources.append(source)
    if not prompts:
        raise ValueError(f"{path}: the training pool is empty")
    return TrainingPool(prompts, responses, ids, sources, path=str(path))


def _answer_index(answer: Any, n_choices: int, where: str) -> int:
    if isinstance(answer, bool):
        raise ValueError(f"{where}: field 'answer' must be an option index or letter, got {answer!r}")
    if isinstance(answer, int | np.integer):
        index = int(answer)
    elif isinstance(answer, str) and len(answer.strip()) == 1 and answer.strip().isalpha():
        index = ord(answer.strip().upper()) - ord("A")
    elif isinstance(answer, str) and answer.strip().isdigit():
        index = int(answer.strip())
    else:
        raise ValueError(f"{where}: field 'answer' must be an option index or letter, got {answer!r}")
    if not 0 <= index < n_choices:
        raise ValueError(
            f"{where}: answer {answer!r} is out of range for {n_choices} choices (0..{n_choices - 1} or "
            f"A..{chr(ord('A') + n_choices - 1)})"
        )
    return index


def load_eval_set(path: str | os.PathLike[str]) -> EvalSet:
    """Read the proxy eval set from JSONL or Parquet (see the module docstring for the record shapes).

    Raises
    ------
    ValueError
        Naming the file and line: a missing field, an empty domain name, fewer than two choices, an answer that
        is not a valid option, or an empty file.
    """
    kinds: list[EvalKind] = []
    prompts: list[str] = []
    choices: list[list[str]] = []
    answers: list[int | str] = []
    domains: list[str] = []
    for where, record in read_records(path):
        if "domain" not in record or record["domain"] is None:
            raise ValueError(f"{where}: missing field 'domain'")
        domain = record["domain"]
        if not isinstance(domain, str) or not domain.strip():
            raise ValueError(f"{where}: field 'domain' must be a non-empty string, got {domain!r}")
        if "answer" not in record or record["answer"] is None:
            raise ValueError(f"{where}: missing field 'answer'")
        if "choices" in record and record["choices"] is not None:
            options = record["choices"]
            if not isinstance(options, list | tuple) or len(options) < 2:
                raise ValueError(f"{where}: field 'choices' must be a list of at least two options")
            if not all(isinstance(option, str) and option.strip() for option in options):
                raise ValueError(f"{where}: every choice must be a non-empty string")
            kinds.append("choice")
            prompts.append(_text(record, "question", where))
            choices.append([str(option) for option in options])
            answers.append(_answer_index(record["answer"], len(options), where))
        elif "prompt" in record:
            kinds.append("generate")
            prompts.append(_text(record, "prompt", where))
            choices.append([])
            answers.append(_text(record, "answer", where))
        else:
            raise ValueError(
                f"{where}: missing fields: give 'question' and 'choices' (multiple choice) or 'prompt' "
                "(short generation)"
            )
        domains.append(domain.strip())
    if not prompts:
        raise ValueError(f"{path}: the eval set is empty")
    names = sorted(set(domains))
    index = {name: d for d, name in enumerate(names)}
    domain = np.array([index[name] for name in domains], dtype=np.int64)
    return EvalSet(kinds, prompts, choices, answers, domain, names, path=str(path))
