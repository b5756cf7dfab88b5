"""Loading the training pool and the proxy eval set for Stage 1b.

Both come as JSONL (one JSON object a line; blank lines are skipped) or Parquet (one record a row), in the usual
Hugging Face shapes.

Training pool, one record per example:

- ``prompt`` and ``response`` (strings), or chat ``messages``: a list of ``{"role", "content"}``. A chat is split
  into a prompt (every turn before the last assistant turn, rendered as ``role: content`` lines) and a response
  (the last assistant turn), so training sees the same (prompt, response) shape either way.
- or tokenised, as Hugging Face SFT datasets hold them: ``input_ids`` (a list of token ids), optional ``labels``
  (the same length; -100 on the tokens without loss, typically the prompt; default: ``input_ids``, a loss on every
  token) and optional ``attention_mask`` (the same length; positions with 0 are padding and are dropped). Training
  uses these ids and labels as they are: nothing is re-tokenised, and ``max_length`` does not cut them. Extra keys
  are ignored. A pool is all text or all tokenised.
- optional ``id`` (string or integer, unique in the file) and ``source`` (string).

The point id of an example in the store is its position in the pool file (0, 1, 2, ...): the row of ``X_feat``,
the row of the pool and the ``point_id`` of the store are the same number.

Proxy eval set, one record per question:

- multiple choice: ``question``, ``choices`` (a list of at least two strings), ``answer`` (0-based index, or a
  letter ``A``, ``B``, ...), ``domain``; scored by comparing option log-likelihoods.
- short generation: ``prompt``, ``answer`` (string), ``domain``; scored by exact match of the greedy answer.
- tokenised: ``input_ids``, ``labels`` (-100 on the prompt), optional ``attention_mask``, ``domain``; scored 1 when
  every label token is the model's greedy (argmax) prediction under teacher forcing, else 0.

``subject`` is read as ``domain`` when ``domain`` is absent (the original HARP release's name).

Domains are numbered in sorted name order, so the same eval file always gives the same domain ids.

Every problem raises ``ValueError`` naming the file and the line (JSONL) or row (Parquet) where it was found, or
the example (``train_examples[3]``) for records given in memory (:func:`training_pool_from_records`,
:func:`eval_set_from_records`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from harp._validation import is_integer

__all__ = [
    "EvalSet",
    "TrainData",
    "TrainExamples",
    "TrainingPool",
    "eval_set_from_records",
    "load_eval_set",
    "load_training_pool",
    "read_records",
    "training_pool_from_records",
]

EvalKind = Literal["choice", "generate", "tokens"]

#: The label of a token without loss (Hugging Face's ignore index).
IGNORE_INDEX = -100

#: Characters kept in a text preview for the store (the app shows a few lines of each example).
PREVIEW_CHARS = 400


@dataclass
class TrainData:
    """Tokenised training examples: ``input_ids[k]`` and ``labels[k]`` (tokens without loss labelled -100)."""

    input_ids: list[list[int]]
    labels: list[list[int]]

    def __len__(self) -> int:
        return len(self.input_ids)


#: What training takes: (prompt, response) pairs to tokenise, or examples tokenised already.
TrainExamples = Sequence[tuple[str, str]] | TrainData


@dataclass(frozen=True)
class TrainingPool:
    """The training pool: example i is ``prompts[i]`` followed by ``responses[i]``; its point id is i.

    Attributes
    ----------
    prompts, responses : list of str, length n_examples
        For a tokenised pool, the decoded tokens without and with loss (empty without a tokenizer): previews only.
    ids : list of str
        The record's ``id`` (as a string) or, when absent, its position.
    sources : list of str or None
    path : str
        Where the pool was read from ("" when built in memory).
    tokens : TrainData or None
        The given token ids and labels of a tokenised pool (None for a text pool).
    """

    prompts: list[str]
    responses: list[str]
    ids: list[str]
    sources: list[str | None]
    path: str = ""
    tokens: TrainData | None = None

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

    def store_texts(self, max_chars: int = PREVIEW_CHARS) -> tuple[list[str | None], list[str | None]]:
        """The store's ``points.text`` and ``points.response`` of every example: the prompt (a chat's earlier
        turns as ``role: content`` lines) and the response, each cut to ``max_chars``. None for both where
        nothing was decoded (a tokenised pool read without a tokenizer)."""
        texts: list[str | None] = []
        responses: list[str | None] = []
        for prompt, response in zip(self.prompts, self.responses, strict=True):
            if self.tokens is not None and not prompt and not response:
                texts.append(None)
                responses.append(None)
            else:
                texts.append(preview(prompt, max_chars))
                responses.append(preview(response, max_chars))
        return texts, responses

    def subset(self, point_ids: Sequence[int] | np.ndarray) -> list[tuple[str, str]]:
        """The (prompt, response) pairs of the given point ids (decoded text for a tokenised pool)."""
        return [(self.prompts[int(i)], self.responses[int(i)]) for i in point_ids]

    def examples(self, point_ids: Sequence[int] | np.ndarray) -> TrainExamples:
        """What training takes for the given point ids: the given tokens of a tokenised pool, else the pairs."""
        if self.tokens is None:
            return self.subset(point_ids)
        rows = [int(i) for i in point_ids]
        return TrainData([self.tokens.input_ids[i] for i in rows], [self.tokens.labels[i] for i in rows])


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
    tokens : list of (input_ids, labels) or None
        For a tokenised question its given ids and labels (its ``prompts``/``answers`` entries are the decoded
        prompt and answer, for display only); None for the others. Empty when no question is tokenised.
    """

    kinds: list[EvalKind]
    prompts: list[str]
    choices: list[list[str]]
    answers: list[int | str]
    domain: np.ndarray
    domain_names: list[str]
    path: str = ""
    tokens: list[tuple[list[int], list[int]] | None] = field(default_factory=list)
    _fingerprint: list[str] = field(default_factory=list, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def n_domains(self) -> int:
        return len(self.domain_names)

    def eval_size(self) -> np.ndarray:
        """Number of questions of each domain, shape (n_domains,)."""
        return np.bincount(self.domain, minlength=self.n_domains).astype(np.int64)

    def take(self, indices: Sequence[int] | np.ndarray, path: str | None = None) -> EvalSet:
        """The questions at ``indices`` (checked by the caller), in that order; domains left without a question
        drop out and the rest are renumbered in sorted name order."""
        rows = [int(i) for i in indices]
        return self._build(rows, [self.domain_names[int(self.domain[i])] for i in rows], path)

    def with_domains(self, names: Sequence[str]) -> EvalSet:
        """The same questions with question i in domain ``names[i]``."""
        if len(names) != len(self):
            raise ValueError(f"names has {len(names)} entries but the eval set has {len(self)} questions")
        return self._build(list(range(len(self))), list(names), None)

    def _build(self, rows: list[int], names: list[str], path: str | None) -> EvalSet:
        sorted_names = sorted(set(names))
        index = {name: d for d, name in enumerate(sorted_names)}
        return EvalSet(
            kinds=[self.kinds[i] for i in rows],
            prompts=[self.prompts[i] for i in rows],
            choices=[self.choices[i] for i in rows],
            answers=[self.answers[i] for i in rows],
            domain=np.array([index[name] for name in names], dtype=np.int64),
            domain_names=sorted_names,
            path=self.path if path is None else path,
            tokens=[self.tokens[i] for i in rows] if self.tokens else [],
        )

    def token_pair(self, i: int) -> tuple[list[int], list[int]]:
        """The given (input_ids, labels) of tokenised question ``i``."""
        pair = self.tokens[i] if i < len(self.tokens) else None
        if pair is None:
            raise ValueError(f"eval question {i} is not tokenised")
        return pair

    def fingerprint(self) -> str:
        """SHA-256 over the questions, options, answers, domains and given tokens (not the file name)."""
        if not self._fingerprint:
            digest = hashlib.sha256()
            for i, (kind, prompt, choices, answer, d) in enumerate(
                zip(self.kinds, self.prompts, self.choices, self.answers, self.domain, strict=True)
            ):
                record: list[Any] = [kind, prompt, choices, answer, self.domain_names[int(d)]]
                if kind == "tokens":
                    record.extend(self.token_pair(i))
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


def _int_list(value: Any, key: str, where: str) -> list[int]:
    if hasattr(value, "tolist") and not isinstance(value, list | tuple):  # numpy arrays, torch tensors
        value = value.tolist()
    if not isinstance(value, list | tuple):
        raise ValueError(f"{where}: field {key!r} must be a list of integers, got {type(value).__name__}")
    out: list[int] = []
    for k, item in enumerate(value):
        if not is_integer(item):
            raise ValueError(f"{where}: {key}[{k}] must be an integer, got {item!r}")
        out.append(int(item))
    return out


def tokenised_example(record: dict[str, Any], where: str) -> tuple[list[int], list[int]]:
    """The (input_ids, labels) of a tokenised record, padding (``attention_mask`` 0) dropped, checked.

    Raises
    ------
    ValueError
        Naming ``where`` and the key: ``input_ids`` empty or not a list of non-negative integers; ``labels`` or
        ``attention_mask`` of another length than ``input_ids``; a label other than -100 that is negative; a
        mask value other than 0 and 1; no label to learn or score (every label after the first is -100).
    """
    ids = _int_list(record["input_ids"], "input_ids", where)
    if not ids:
        raise ValueError(f"{where}: field 'input_ids' is empty")
    if min(ids) < 0:
        raise ValueError(f"{where}: field 'input_ids' holds the negative token id {min(ids)}")
    labels = list(ids) if record.get("labels") is None else _int_list(record["labels"], "labels", where)
    for key, values in (("labels", labels), ("attention_mask", record.get("attention_mask"))):
        if values is None:
            continue
        values = _int_list(values, key, where)
        if len(values) != len(ids):
            relation = "longer than" if len(values) > len(ids) else "shorter than"
            raise ValueError(
                f"{where}: field {key!r} has {len(values)} tokens, {relation} 'input_ids' ({len(ids)} tokens); "
                "give one per token"
            )
        if key == "attention_mask":
            if any(value not in (0, 1) for value in values):
                raise ValueError(f"{where}: field 'attention_mask' must hold only 0 and 1")
            labels = [label for label, keep in zip(labels, values, strict=True) if keep]
            ids = [token for token, keep in zip(ids, values, strict=True) if keep]
    bad = [label for label in labels if label < 0 and label != IGNORE_INDEX]
    if bad:
        raise ValueError(f"{where}: field 'labels' holds {bad[0]}: a label is a token id or {IGNORE_INDEX}")
    if all(label == IGNORE_INDEX for label in labels[1:]):
        raise ValueError(
            f"{where}: field 'labels' marks no token to learn: every label after the first is {IGNORE_INDEX} "
            "(or 'attention_mask' is 0 there)"
        )
    return ids, labels


def _decode(tokenizer: Any, ids: list[int], labels: list[int]) -> tuple[str, str]:
    """The decoded tokens without loss and with loss (prompt and response); empty without a tokenizer."""
    if tokenizer is None:
        return "", ""
    prompt = [token for token, label in zip(ids, labels, strict=True) if label == IGNORE_INDEX]
    answer = [token for token, label in zip(ids, labels, strict=True) if label != IGNORE_INDEX]
    return (
        str(tokenizer.decode(prompt, skip_special_tokens=True)),
        str(tokenizer.decode(answer, skip_special_tokens=True)),
    )


def load_training_pool(path: str | os.PathLike[str], *, tokenizer: Any = None) -> TrainingPool:
    """Read a training pool from JSONL or Parquet (see the module docstring for the record shapes).

    Raises
    ------
    ValueError
        Naming the file and line: a record without ``prompt``/``response``, ``messages`` or ``input_ids``, an
        empty response, a bad tokenised record, a duplicate ``id``, or an empty file.
    """
    return training_pool_from_records(read_records(path), path=str(path), tokenizer=tokenizer)


def training_pool_from_records(
    records: Iterable[tuple[str, dict[str, Any]]], *, path: str = "", tokenizer: Any = None
) -> TrainingPool:
    """A training pool from ``(where, record)`` pairs (``where`` names the record in errors).

    ``tokenizer`` (optional) decodes tokenised records into the text previews; it is not used for training.
    """
    prompts: list[str] = []
    responses: list[str] = []
    ids: list[str] = []
    sources: list[str | None] = []
    tokens = TrainData([], [])
    first: dict[bool, str] = {}
    seen: dict[str, str] = {}
    for where, record in records:
        tokenised = False
        if "messages" in record and record["messages"] is not None:
            prompt, response = _chat(record["messages"], where)
        elif "prompt" in record or "response" in record:
            prompt = _text(record, "prompt", where, allow_empty=True)
            response = _text(record, "response", where)
        elif record.get("input_ids") is not None:
            tokenised = True
            token_ids, labels = tokenised_example(record, where)
            prompt, response = _decode(tokenizer, token_ids, labels)
            tokens.input_ids.append(token_ids)
            tokens.labels.append(labels)
        else:
            raise ValueError(
                f"{where}: missing fields: give 'prompt' and 'response', or chat 'messages', or tokenised "
                f"'input_ids' (with 'labels'); it has {sorted(record)[:8]}"
            )
        first.setdefault(tokenised, where)
        if len(first) > 1:
            kinds = {True: "tokenised", False: "text"}
            raise ValueError(
                f"{where}: a {kinds[tokenised]} record in a pool whose first record ({first[not tokenised]}) is "
                f"{kinds[not tokenised]}; give every example the same way"
            )
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
        raise ValueError(f"{path or 'train_examples'}: the training pool is empty")
    return TrainingPool(
        prompts, responses, ids, sources, path=path, tokens=tokens if tokens.input_ids else None
    )


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


def load_eval_set(path: str | os.PathLike[str], *, tokenizer: Any = None) -> EvalSet:
    """Read the proxy eval set from JSONL or Parquet (see the module docstring for the record shapes).

    Raises
    ------
    ValueError
        Naming the file and line: a missing field, an empty domain name, fewer than two choices, an answer that
        is not a valid option, a bad tokenised record, or an empty file.
    """
    return eval_set_from_records(read_records(path), path=str(path), tokenizer=tokenizer)


def eval_set_from_records(
    records: Iterable[tuple[str, dict[str, Any]]],
    *,
    path: str = "",
    tokenizer: Any = None,
    require_domain: bool = True,
) -> EvalSet:
    """The proxy eval set from ``(where, record)`` pairs (``where`` names the record in errors).

    With ``require_domain=False`` a record may lack ``domain``/``subject``; its domain is then "" until the caller
    gives every question one (:meth:`EvalSet.with_domains`). ``tokenizer`` only decodes tokenised records for
    display.
    """
    kinds: list[EvalKind] = []
    prompts: list[str] = []
    choices: list[list[str]] = []
    answers: list[int | str] = []
    domains: list[str] = []
    tokens: list[tuple[list[int], list[int]] | None] = []
    for where, record in records:
        key = "domain" if record.get("domain") is not None or "subject" not in record else "subject"
        domain = record.get(key)
        if domain is None and require_domain:
            raise ValueError(f"{where}: missing field 'domain'")
        if domain is not None and (not isinstance(domain, str) or not domain.strip()):
            raise ValueError(f"{where}: field {key!r} must be a non-empty string, got {domain!r}")
        pair: tuple[list[int], list[int]] | None = None
        if "choices" in record and record["choices"] is not None:
            options = record["choices"]
            if not isinstance(options, list | tuple) or len(options) < 2:
                raise ValueError(f"{where}: field 'choices' must be a list of at least two options")
            if not all(isinstance(option, str) and option.strip() for option in options):
                raise ValueError(f"{where}: every choice must be a non-empty string")
            if "answer" not in record or record["answer"] is None:
                raise ValueError(f"{where}: missing field 'answer'")
            kinds.append("choice")
            prompts.append(_text(record, "question", where))
            choices.append([str(option) for option in options])
            answers.append(_answer_index(record["answer"], len(options), where))
        elif "prompt" in record:
            if "answer" not in record or record["answer"] is None:
                raise ValueError(f"{where}: missing field 'answer'")
            kinds.append("generate")
            prompts.append(_text(record, "prompt", where))
            choices.append([])
            answers.append(_text(record, "answer", where))
        elif record.get("input_ids") is not None:
            pair = tokenised_example(record, where)
            prompt, answer = _decode(tokenizer, *pair)
            kinds.append("tokens")
            prompts.append(prompt)
            choices.append([])
            answers.append(answer)
        else:
            raise ValueError(
                f"{where}: missing fields: give 'question' and 'choices' (multiple choice), 'prompt' "
                f"(short generation) or tokenised 'input_ids' with 'labels'; it has {sorted(record)[:8]}"
            )
        tokens.append(pair)
        domains.append("" if domain is None else domain.strip())
    if not prompts:
        raise ValueError(f"{path or 'eval_examples'}: the eval set is empty")
    names = sorted(set(domains))
    index = {name: d for d, name in enumerate(names)}
    domain_ids = np.array([index[name] for name in domains], dtype=np.int64)
    if all(pair is None for pair in tokens):
        tokens = []
    return EvalSet(kinds, prompts, choices, answers, domain_ids, names, path=path, tokens=tokens)
