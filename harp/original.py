"""Inputs of the original HARP release, read for :func:`harp.harp`: in-memory records, the base-score JSONL,
the default eval-indices file, and the tokenizer.

The base-score file (``representatives_path`` in the original's signature) is JSONL in one of two shapes:

- one line per eval question, in eval order: ``{"subject": str, "acc01": 0 or 1}``, optionally ``"index"`` (the
  question's position in ``eval_examples``; give it on every line or on none). Without ``index`` the file has one
  line per question of ``eval_examples``, or one per question of the proxy eval set (after ``eval_indices``).
- one line per subject: ``{"subject": str, "acc01": mean, "n": count}``; the eval examples then carry their
  ``subject`` (or ``domain``).

The subjects are the domains; the base score of subject d is ``b_d`` = the mean ``acc01`` of its questions in the
proxy eval set (per-question file) or its line's ``acc01`` (per-subject file). A subject on an eval example and on
its line must agree. :func:`write_base_scores` writes the per-question shape, with ``index``.

Every problem raises ``ValueError`` naming the file and line, or the eval example, and what is wrong.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harp._validation import is_integer
from harp.data import EvalSet, read_records

__all__ = [
    "BaseScores",
    "LazyTokenizer",
    "default_eval_indices_path",
    "is_base_scores_path",
    "is_collection",
    "read_base_scores",
    "records",
    "write_base_scores",
]

#: Suffixes of a base-score file; any other ``representatives_path`` is the older list of leaf ids.
BASE_SCORE_SUFFIXES = (".jsonl", ".ndjson")


def is_collection(value: Any) -> bool:
    """A list of records, or anything indexed like one (a Hugging Face or torch dataset): ``len`` and ``[i]``."""
    if isinstance(value, str | bytes | Mapping):
        return False
    return hasattr(value, "__len__") and hasattr(value, "__getitem__")


def records(values: Any, name: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, record)`` of in-memory examples (:func:`is_collection`), ``where`` reading ``name[i]``;
    ``(prompt, response)`` pairs of ``train_examples`` become records."""
    for i in range(len(values)):
        value = values[i]
        where = f"{name}[{i}]"
        if isinstance(value, tuple | list) and len(value) == 2 and name == "train_examples":
            value = {"prompt": value[0], "response": value[1]}
        if not isinstance(value, Mapping):
            raise ValueError(f"{where} must be a record (a dict), got {type(value).__name__}")
        yield where, dict(value)


class LazyTokenizer:
    """Decodes with the tokenizer of ``model``, loaded from local files on first use; decodes to "" when it
    cannot be loaded (text previews are a convenience: the measurement reports a missing model itself)."""

    def __init__(self, model: str | os.PathLike[str]) -> None:
        self.model = str(model)
        self._tokenizer: Any = None
        self._failed = False

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        if self._tokenizer is None and not self._failed:
            try:
                from transformers import AutoTokenizer

                self._tokenizer = AutoTokenizer.from_pretrained(self.model, local_files_only=True)
            except Exception:  # any failure to load means no previews, never a failed run
                self._failed = True
        if self._tokenizer is None:
            return ""
        return str(self._tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens))


def default_eval_indices_path(
    eval_metric: str | None, checkpoint_dir: str | os.PathLike[str] | None
) -> Path | None:
    """``eval_indices_<eval_metric>.npy`` in ``checkpoint_dir`` (its folder when it names a ``.duckdb``) or else
    in the working directory, when one exists; None otherwise or when no metric is named."""
    if eval_metric is None:
        return None
    name = f"eval_indices_{str(eval_metric).strip()}.npy"
    folders = []
    if checkpoint_dir is not None:
        folder = Path(checkpoint_dir)
        folders.append(folder.parent if folder.suffix == ".duckdb" else folder)
    folders.append(Path.cwd())
    for folder in folders:
        if (folder / name).is_file():
            return folder / name
    return None


def is_base_scores_path(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in BASE_SCORE_SUFFIXES


@dataclass(frozen=True)
class BaseScores:
    """What a base-score file says about the proxy eval set.

    Attributes
    ----------
    subjects : list of str, length n_questions
        Subject (domain) of each proxy question, in proxy order.
    base : dict of str to float
        ``b_d`` of each subject of the proxy eval set, in [0, 1].
    path : str
    """

    subjects: list[str]
    base: dict[str, float]
    path: str


def _subject(record: dict[str, Any], where: str) -> str:
    subject = record.get("subject")
    if not isinstance(subject, str) or not subject.strip():
        raise ValueError(f"{where}: field 'subject' must be a non-empty string, got {subject!r}")
    return subject.strip()


def _acc01(record: dict[str, Any], where: str) -> float:
    value = record.get("acc01")
    if isinstance(value, bool):
        value = int(value)
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{where}: field 'acc01' must be a number in [0, 1], got {value!r}")
    if not 0 <= value <= 1:
        raise ValueError(f"{where}: field 'acc01' must be in [0, 1], got {value!r}")
    return float(value)


def _count(record: dict[str, Any], key: str, where: str, minimum: int) -> int:
    value = record.get(key)
    if not is_integer(value) or value < minimum:
        raise ValueError(f"{where}: field {key!r} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _record_subject(full: EvalSet, q: int) -> str:
    return full.domain_names[int(full.domain[q])]


def read_base_scores(path: str | os.PathLike[str], full: EvalSet, proxy: np.ndarray) -> BaseScores:
    """Read a base-score file (see the module docstring) against the eval examples.

    Parameters
    ----------
    path : str or Path
    full : EvalSet
        Every eval example, in the order given; a domain "" means the example carries no subject.
    proxy : ndarray of int
        The proxy eval set: positions in ``full``, in order.

    Raises
    ------
    ValueError
        Naming the file and line or the eval example: a bad line (subject, ``acc01`` outside [0, 1], ``index`` out
        of range or repeated, ``n`` below 1), shapes mixed in one file, a line count that fits no eval set, a
        subject that disagrees with its example's, a question without a subject, a subject without a score, or a
        per-subject line whose subject has no question in ``eval_examples``.
    """
    file = Path(path)
    lines = list(read_records(file))
    if not lines:
        raise ValueError(
            f"representatives_path ({file}) is empty: give one line per eval question or per subject"
        )
    summary = "n" in lines[0][1]
    for where, record in lines:
        if ("n" in record) != summary:
            raise ValueError(
                f"{where}: per-subject lines (with 'n') and per-question lines (without) are mixed in one file"
            )
    if summary:
        return _read_summary(file, lines, full, proxy)
    return _read_questions(file, lines, full, proxy)


def _read_questions(
    file: Path, lines: list[tuple[str, dict[str, Any]]], full: EvalSet, proxy: np.ndarray
) -> BaseScores:
    with_index = "index" in lines[0][1]
    line_of: dict[int, tuple[str, str, float]] = {}  # eval example -> (where, subject, acc01)
    for k, (where, record) in enumerate(lines):
        if ("index" in record) != with_index:
            raise ValueError(f"{where}: give 'index' on every line or on none")
        subject, acc01 = _subject(record, where), _acc01(record, where)
        if with_index:
            q = _count(record, "index", where, 0)
            if q >= len(full):
                raise ValueError(
                    f"{where}: index {q} is out of range: eval_examples has {len(full)} questions "
                    f"(0..{len(full) - 1})"
                )
            if q in line_of:
                raise ValueError(f"{where}: index {q} repeats {line_of[q][0]}")
        elif len(lines) == len(full):
            q = k
        elif len(lines) == proxy.size:
            q = int(proxy[k])
        else:
            raise ValueError(
                f"representatives_path ({file}) has {len(lines)} lines but eval_examples has {len(full)} questions "
                f"and the proxy eval set {proxy.size}: give one line per question, or an 'index' on each line"
            )
        line_of[q] = (where, subject, acc01)
    subjects: list[str] = []
    scores: dict[str, list[float]] = {}
    for q in proxy.tolist():
        own = _record_subject(full, q)
        if q in line_of:
            where, subject, acc01 = line_of[q]
            if own and own != subject:
                raise ValueError(f"{where}: subject {subject!r} but eval_examples[{q}] has {own!r}")
            scores.setdefault(subject, []).append(acc01)
        elif own:
            subject = own
        else:
            raise ValueError(
                f"eval_examples[{q}] has no subject: it carries no 'subject' (or 'domain') and "
                f"representatives_path ({file}) has no line for it"
            )
        subjects.append(subject)
    missing = sorted(set(subjects) - set(scores))
    if missing:
        raise ValueError(
            f"representatives_path ({file}) has no acc01 for the subject {missing[0]!r}: none of its questions has "
            "a line"
        )
    return BaseScores(subjects, {s: float(np.mean(v)) for s, v in sorted(scores.items())}, str(file))


def _read_summary(
    file: Path, lines: list[tuple[str, dict[str, Any]]], full: EvalSet, proxy: np.ndarray
) -> BaseScores:
    known = {name for name in full.domain_names if name}
    base: dict[str, float] = {}
    first: dict[str, str] = {}
    for where, record in lines:
        subject, acc01 = _subject(record, where), _acc01(record, where)
        _count(record, "n", where, 1)
        if subject in first:
            raise ValueError(f"{where}: subject {subject!r} repeats {first[subject]}")
        if subject not in known:
            raise ValueError(
                f"{where}: subject {subject!r} has no question in eval_examples (their subjects: "
                f"{sorted(known)[:5]})"
            )
        first[subject] = where
        base[subject] = acc01
    subjects = []
    for q in proxy.tolist():
        own = _record_subject(full, q)
        if not own:
            raise ValueError(
                f"eval_examples[{q}] has no subject: a per-subject representatives_path ({file}) needs a "
                "'subject' (or 'domain') on every eval example"
            )
        if own not in base:
            raise ValueError(f"representatives_path ({file}) has no line for the subject {own!r}")
        subjects.append(own)
    return BaseScores(subjects, {s: base[s] for s in sorted(set(subjects))}, str(file))


def write_base_scores(
    path: str | os.PathLike[str], eval_set: EvalSet, proxy: np.ndarray, scores: np.ndarray
) -> Path:
    """Write the base model's per-question scores as a per-question base-score file, with ``index`` (the
    question's position in ``eval_examples``); written whole to a temporary file, then moved into place."""
    file = Path(path)
    lines = [
        json.dumps(
            {"subject": eval_set.domain_names[int(d)], "acc01": float(score), "index": int(q)},
            ensure_ascii=False,
        )
        for d, score, q in zip(eval_set.domain, scores, proxy, strict=True)
    ]
    file.parent.mkdir(parents=True, exist_ok=True)
    temporary = file.with_name(f".{file.name}.{os.getpid()}.tmp")
    temporary.write_text("\n".join(lines) + "\n", encoding="utf-8")
    temporary.replace(file)
    return file
