"""The straightforward evaluation path, kept as the reference of the fast one (:mod:`harp.measure.loglik`).

``reference_loglik_table`` is :func:`harp.measure.evaluation.loglik_table` as it was before the LM head ran
only at the scored positions and before options shared their question's context: every (context, continuation)
pair one sequence, the float32 logits over the whole vocabulary at every position. ``reference_token_scores`` is
:func:`harp.measure.token_eval.token_scores` as it was, with the same whole logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from harp.data import IGNORE_INDEX, EvalSet
from harp.measure import MeasureConfig
from harp.measure.tokens import encode
from harp.measure.tokens import pad as pad_rows


def reference_loglik_table(
    model: Any, pairs: Sequence[tuple[str, str]], config: MeasureConfig, copies: int
) -> tuple[np.ndarray, np.ndarray]:
    import torch

    tokenizer = model.tokenizer
    sequences: list[list[int]] = []
    starts_list: list[int] = []
    for context_text, continuation_text in pairs:
        context = encode(tokenizer, context_text, special=True)
        continuation = encode(tokenizer, continuation_text, special=False)[: config.max_length - 1]
        kept = context[max(0, len(context) + len(continuation) - config.max_length) :]
        sequences.append(kept + continuation)
        starts_list.append(len(kept))
    lengths = np.array([len(sequence) for sequence in sequences], dtype=np.int64)
    option_start = np.array(starts_list, dtype=np.int64)
    loglik = np.empty((copies, len(sequences)))
    pad = int(tokenizer.pad_token_id)
    by_length = np.argsort(lengths, kind="stable")
    with torch.no_grad():
        for start in range(0, len(sequences), config.eval_batch_size):
            batch = by_length[start : start + config.eval_batch_size]
            ids = torch.from_numpy(pad_rows([sequences[k] for k in batch], pad)).to(model.device)
            positions = np.arange(ids.shape[1])
            starts = option_start[batch][:, None]
            ends = lengths[batch][:, None]
            attention = torch.from_numpy((positions < ends).astype(np.int64)).to(model.device)
            target_mask = torch.from_numpy(((positions >= starts) & (positions < ends))[:, 1:]).to(
                model.device
            )
            if copies > 1:
                ids, attention, target_mask = (t.repeat(copies, 1) for t in (ids, attention, target_mask))
            raw = model.model(input_ids=ids, attention_mask=attention).logits
            for copy in range(copies):
                rows = slice(copy * len(batch), (copy + 1) * len(batch))
                logits = raw[rows, :-1].float()
                targets = ids[rows, 1:]
                token_loglik = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
                loglik[copy, batch] = (token_loglik * target_mask[rows]).sum(-1).cpu().numpy()
    return loglik, lengths - option_start


def reference_token_scores(
    model: Any, eval_set: EvalSet, questions: np.ndarray, config: MeasureConfig, copies: int = 1
) -> np.ndarray:
    import torch

    pairs = [eval_set.token_pair(int(i)) for i in questions]
    lengths = np.array([len(ids) for ids, _ in pairs], dtype=np.int64)
    scores = np.empty((copies, len(pairs)))
    pad = int(model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0)
    by_length = np.argsort(lengths, kind="stable")
    with torch.no_grad():
        for start in range(0, len(pairs), config.eval_batch_size):
            batch = by_length[start : start + config.eval_batch_size]
            ids = torch.from_numpy(pad_rows([pairs[k][0] for k in batch], pad)).to(model.device)
            labels = torch.from_numpy(pad_rows([pairs[k][1] for k in batch], IGNORE_INDEX)).to(model.device)
            attention = torch.from_numpy(
                (np.arange(ids.shape[1]) < lengths[batch][:, None]).astype(np.int64)
            ).to(model.device)
            if copies > 1:
                ids, attention = ids.repeat(copies, 1), attention.repeat(copies, 1)
            raw = model.model(input_ids=ids, attention_mask=attention).logits
            targets = labels[:, 1:]
            scored = targets != IGNORE_INDEX
            safe = targets.clamp(min=0)
            count = scored.sum(-1).clamp(min=1)
            for copy in range(copies):
                logits = raw[copy * len(batch) : (copy + 1) * len(batch), :-1].float()
                if config.score == "probability":
                    token_loglik = logits.gather(-1, safe.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
                    value = torch.exp((token_loglik * scored).sum(-1) / count)
                else:
                    right = (logits.argmax(-1) == safe) | ~scored
                    value = right.all(-1).double()
                scores[copy, batch] = value.cpu().numpy()
    return scores
