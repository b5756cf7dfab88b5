"""Scoring tokenised eval examples: the original HARP release's ``eval_metric="accuracy"`` on given tokens.

A tokenised question is its given ``input_ids`` and ``labels`` (-100 on the prompt; see :mod:`harp.data`). Under
teacher forcing the model predicts token t from tokens 0..t-1; the question scores

- 1 when every label token (t >= 1, ``labels[t] != -100``) is the model's argmax prediction, else 0
  (``MeasureConfig.score == "accuracy"``, the default), or
- the per-token geometric-mean probability of the label tokens (``score == "probability"``), graded like the
  short-answer probability score of :mod:`harp.measure.evaluation`.

Nothing is generated and nothing re-tokenised. Sequences keep their given length (``max_length`` does not cut
them). Questions of similar length share a forward pass; with ``copies`` > 1 every batch runs side by side through
a :class:`harp.measure.multi_lora.MultiLoraModel`, group k of the rows routed to adapter k, as in
:func:`harp.measure.evaluation.loglik_table`. The LM head runs only over the positions that predict a label token
(:func:`harp.measure.loglik.scored_span`), not over the whole sequence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from harp.data import IGNORE_INDEX, EvalSet
from harp.measure.loglik import scored_span
from harp.measure.tokens import pad as pad_rows

if TYPE_CHECKING:
    from harp.measure.config import MeasureConfig

__all__ = ["token_scores"]


def token_scores(
    model: Any, eval_set: EvalSet, questions: np.ndarray, config: MeasureConfig, copies: int = 1
) -> np.ndarray:
    """Scores of the tokenised ``questions`` for ``copies`` adapters, shape (copies, len(questions)).

    ``model`` is a :class:`harp.measure.model.AdapterModel` (or a multi-adapter model with the same attributes), in
    eval mode with the adapters it should score switched on.
    """
    import torch

    pairs = [eval_set.token_pair(int(i)) for i in questions]
    lengths = np.array([len(ids) for ids, _ in pairs], dtype=np.int64)
    scores = np.empty((copies, len(pairs)))
    pad = int(model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0)
    by_length = np.argsort(lengths, kind="stable")  # batches of similar length pad little
    with torch.no_grad():
        for start in range(0, len(pairs), config.eval_batch_size):
            batch = by_length[start : start + config.eval_batch_size]
            ids = torch.from_numpy(pad_rows([pairs[k][0] for k in batch], pad)).to(model.device)
            labels = torch.from_numpy(pad_rows([pairs[k][1] for k in batch], IGNORE_INDEX)).to(model.device)
            attention = torch.from_numpy(
                (np.arange(ids.shape[1]) < lengths[batch][:, None]).astype(np.int64)
            ).to(model.device)
            # Token t is predicted by the logits at t - 1; the LM head runs only over the positions first..stop-1
            # that predict a scored token of some row (outside them nothing is scored).
            scored_all = (labels[:, 1:] != IGNORE_INDEX).cpu().numpy()
            columns = np.flatnonzero(scored_all.any(0))
            first, stop = (int(columns[0]), int(columns[-1]) + 1) if columns.size else (0, 1)
            targets = labels[:, first + 1 : stop + 1]
            if copies > 1:
                ids, attention = ids.repeat(copies, 1), attention.repeat(copies, 1)
            keep, part = scored_span(model.model, first, stop)
            raw = model.model(input_ids=ids, attention_mask=attention, **keep).logits[:, part]
            scored = targets != IGNORE_INDEX
            safe = targets.clamp(min=0)
            count = (labels[:, 1:] != IGNORE_INDEX).sum(-1).clamp(min=1)
            for copy in range(copies):  # one copy's rows at a time: float32 logits of one batch, not of all
                logits = raw[copy * len(batch) : (copy + 1) * len(batch)].float()
                if config.score == "probability":
                    token_loglik = logits.gather(-1, safe.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
                    value = torch.exp((token_loglik * scored).sum(-1) / count)
                else:
                    right = (logits.argmax(-1) == safe) | ~scored
                    value = right.all(-1).double()
                scores[copy, batch] = value.cpu().numpy()
    return scores
