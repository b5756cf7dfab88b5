"""Summed log-likelihoods of continuations after their contexts, in batches, for one or several adapters.

What is computed. A pair is a context ``c`` and a continuation ``x`` (token ids; the caller has already cut the
context so that ``c + x`` fits ``max_length``). Its score is the teacher-forced ``sum_t log p(x_t | c, x_<t)``,
exactly what a forward pass over ``c + x`` and a log-softmax of its logits give (the straightforward path,
kept as the reference in ``tests/reference_eval.py``). Two things keep the device on useful work:

- **The LM head only where a token is scored** (``logits_to_keep``): a row's logits at the positions that
  predict its continuation, not at every position. At SmolLM2's 49k vocabulary the float32 logits of one
  128-token sequence are 25 MB, almost all of them unused by the score.
- **A context shared by its continuations**: the options of a multiple-choice question share their context.
  Pairs whose contexts are identical token for token run the context once (one forward pass of the contexts,
  keeping the KV cache), then their continuations on that cache, each context's cache repeated for its pairs.
  A pair whose context was cut differently (a long question, options of different lengths) keeps another
  context and runs whole, as do contexts of one token.

Batches hold up to ``batch_size`` pairs; with ``copies`` > 1 every batch runs ``copies`` times side by side (one
forward pass of ``copies * rows`` rows, copy-major), which a :class:`harp.measure.multi_lora.MultiLoraModel`
routes to adapters 0..copies-1. Models whose forward takes no ``logits_to_keep`` (or returns no cache) get the
whole logits and run every pair whole; the scores are the same.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np

from harp.measure.tokens import pad as pad_rows

__all__ = ["continuation_logliks", "label_token_losses", "scored_span"]


def _forward_parameters(model: Any) -> set[str]:
    """Names the causal LM's own forward takes (through a peft wrapper, the wrapped model's)."""
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        return set(inspect.signature(causal.forward).parameters)
    except (TypeError, ValueError):  # pragma: no cover - a forward without a signature
        return set()


def scored_span(model: Any, first: int, stop: int) -> tuple[dict[str, Any], slice]:
    """Keyword arguments that make ``model`` return logits at positions ``first..stop-1`` only, and the slice of
    the returned logits that holds those positions (the whole logits when the model cannot keep fewer)."""
    import torch

    if "logits_to_keep" in _forward_parameters(model):
        keep = torch.arange(first, stop, device=_device_of(model))
        return {"logits_to_keep": keep}, slice(None)
    return {}, slice(first, stop)


def _device_of(model: Any) -> Any:
    return next(model.parameters()).device


def _cache_names(model: Any) -> tuple[str, str] | None:
    """(keyword of the KV cache, attribute of the output holding it): ``cache`` in transformers 5,
    ``past_key_values`` before; None when the model can not keep only some logits (then nothing is shared)."""
    names = _forward_parameters(model)
    if "logits_to_keep" not in names:
        return None
    if "cache" in names:
        return "cache", "cache"
    if "past_key_values" in names:
        return "past_key_values", "past_key_values"
    return None


def _token_loglik(logits: Any, targets: Any) -> Any:
    logits = logits.float()
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)


def continuation_logliks(
    model: Any,
    contexts: Sequence[Sequence[int]],
    continuations: Sequence[Sequence[int]],
    *,
    pad: int,
    batch_size: int,
    copies: int = 1,
    share: bool = True,
) -> np.ndarray:
    """Summed log-likelihood of every continuation after its context, shape (copies, n_pairs).

    Parameters
    ----------
    model : causal LM (``transformers`` or a peft wrapper), in eval mode, the adapters to score switched on
    contexts, continuations : sequences of n_pairs token-id lists
        Each context non-empty; a continuation may be empty (its score is 0).
    pad : int
        The padding token id.
    batch_size : int
        Pairs per forward pass (per copy).
    copies : int, default 1
    share : bool, default True
        Run a context once for all its pairs (see the module docstring); False runs every pair whole.
    """
    import torch

    n = len(contexts)
    loglik = np.zeros((copies, n))
    groups: dict[tuple[int, ...], list[int]] = {}
    for k, context in enumerate(contexts):
        groups.setdefault(tuple(context), []).append(k)
    names = _cache_names(model) if share else None
    shared = [
        (context, members)
        for context, members in groups.items()
        if names is not None and len(members) > 1 and len(context) >= 2
    ]
    in_shared = {k for _, members in shared for k in members}
    whole = [k for k in range(n) if k not in in_shared]
    with torch.no_grad():
        if whole:
            loglik[:, whole] = _whole(model, [contexts[k] for k in whole], [continuations[k] for k in whole],
                                      pad, batch_size, copies)  # fmt: skip
        if shared:
            assert names is not None
            _shared(model, shared, continuations, pad, batch_size, copies, names, loglik)
    return loglik


def _whole(
    model: Any,
    contexts: Sequence[Sequence[int]],
    continuations: Sequence[Sequence[int]],
    pad: int,
    batch_size: int,
    copies: int,
) -> np.ndarray:
    """Every pair as one sequence ``context + continuation``; logits only over the batch's scored span."""
    import torch

    device = _device_of(model)
    sequences = [list(c) + list(x) for c, x in zip(contexts, continuations, strict=True)]
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    option_start = np.array([len(c) for c in contexts], dtype=np.int64)
    loglik = np.zeros((copies, len(sequences)))
    by_length = np.argsort(lengths, kind="stable")  # batches of similar length pad little
    for start in range(0, len(sequences), batch_size):
        batch = by_length[start : start + batch_size]
        starts, ends = option_start[batch], lengths[batch]
        if (ends <= starts).all():  # only empty continuations: every score is 0
            continue
        ids = torch.from_numpy(pad_rows([sequences[k] for k in batch], pad)).to(device)
        positions = np.arange(ids.shape[1])
        attention = torch.from_numpy((positions < ends[:, None]).astype(np.int64)).to(device)
        # Token t is predicted by the logits at t - 1: positions first..stop-1 predict every scored token.
        first, stop = int(starts[ends > starts].min()) - 1, int(ends.max()) - 1
        span = positions[first:stop]
        target_mask = torch.from_numpy((span >= starts[:, None] - 1) & (span < ends[:, None] - 1)).to(device)
        targets = ids[:, first + 1 : stop + 1]
        if copies > 1:
            ids, attention = ids.repeat(copies, 1), attention.repeat(copies, 1)
        keep, part = scored_span(model, first, stop)
        raw = model(input_ids=ids, attention_mask=attention, **keep).logits[:, part]
        for copy in range(copies):  # one copy's rows at a time: the float32 logits of one batch, not of all
            logits = raw[copy * len(batch) : (copy + 1) * len(batch)]
            loglik[copy, batch] = (_token_loglik(logits, targets) * target_mask).sum(-1).cpu().numpy()
    return loglik


def _shared(
    model: Any,
    groups: Sequence[tuple[tuple[int, ...], list[int]]],
    continuations: Sequence[Sequence[int]],
    pad: int,
    batch_size: int,
    copies: int,
    names: tuple[str, str],
    loglik: np.ndarray,
) -> None:
    """Contexts shared by several pairs: ``context[:-1]`` once with its KV cache, then every pair's
    ``[context[-1]] + continuation`` on the cache (the context's last token predicts the first scored one)."""
    import torch

    device = _device_of(model)
    argument, attribute = names
    order = sorted(range(len(groups)), key=lambda g: len(groups[g][0]))  # similar lengths pad little
    batches: list[list[int]] = [[]]
    count = 0
    for g in order:  # whole groups, up to batch_size pairs a batch (a larger group alone)
        if batches[-1] and count + len(groups[g][1]) > batch_size:
            batches.append([])
            count = 0
        batches[-1].append(g)
        count += len(groups[g][1])
    for batch in batches:
        prompts = [list(groups[g][0][:-1]) for g in batch]
        prompt_lengths = np.array([len(p) for p in prompts], dtype=np.int64)
        prompt_ids = torch.from_numpy(pad_rows(prompts, pad)).to(device)
        prompt_mask = torch.from_numpy(
            (np.arange(prompt_ids.shape[1]) < prompt_lengths[:, None]).astype(np.int64)
        ).to(device)
        pairs = [k for g in batch for k in groups[g][1]]
        pair_prompt = np.array([row for row, g in enumerate(batch) for _ in groups[g][1]], dtype=np.int64)
        rows = [[groups[g][0][-1], *continuations[k]] for g in batch for k in groups[g][1]]
        row_lengths = np.array([len(r) for r in rows], dtype=np.int64)
        ids = torch.from_numpy(pad_rows(rows, pad)).to(device)
        width = ids.shape[1]
        if width < 2:  # only empty continuations: every score is 0
            continue
        row_mask = torch.from_numpy((np.arange(width) < row_lengths[:, None]).astype(np.int64)).to(device)
        positions = torch.from_numpy(prompt_lengths[pair_prompt][:, None] + np.arange(width)).to(device)
        targets = ids[:, 1:]
        target_mask = torch.from_numpy(np.arange(1, width) < row_lengths[:, None]).to(device)
        mask = torch.cat([prompt_mask[torch.from_numpy(pair_prompt).to(device)], row_mask], dim=1)
        # Rows are copy-major: copy c's pair q reads the cache row of copy c's prompt.
        cache_rows = (np.arange(copies)[:, None] * len(batch) + pair_prompt[None, :]).ravel()
        if copies > 1:
            prompt_ids, prompt_mask = prompt_ids.repeat(copies, 1), prompt_mask.repeat(copies, 1)
            ids, mask, positions = ids.repeat(copies, 1), mask.repeat(copies, 1), positions.repeat(copies, 1)
        first = model(input_ids=prompt_ids, attention_mask=prompt_mask, use_cache=True, logits_to_keep=1)
        cache: Any = getattr(first, attribute, None)
        if not hasattr(cache, "batch_select_indices"):  # an older cache format: these pairs run whole
            contexts = [list(groups[g][0]) for g in batch for _ in groups[g][1]]
            loglik[:, pairs] = _whole(
                model, contexts, [continuations[k] for k in pairs], pad, batch_size, copies
            )
            continue
        cache.batch_select_indices(torch.from_numpy(cache_rows).to(device))
        keep = torch.arange(width - 1, device=device)
        raw = model(
            input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=keep,
            **{argument: cache},
        ).logits  # fmt: skip
        del cache, first
        for copy in range(copies):
            logits = raw[copy * len(pairs) : (copy + 1) * len(pairs)]
            loglik[copy, pairs] = (_token_loglik(logits, targets) * target_mask).sum(-1).cpu().numpy()


def label_token_losses(model: Any, ids: Any, attention: Any, labels: Any) -> tuple[Any, Any]:
    """Training's per-token cross-entropy (float32) of the label tokens, with the LM head only over the span of
    positions that predict a label (the prompt's positions carry no loss and get no logits).

    Returns ``(losses, scored)``, both of shape (rows, span): token t is predicted by the logits at t - 1, as in
    the model's own ``labels=`` loss, whose mean over the label tokens is ``losses[scored].mean()``.
    """
    import torch

    scored_all = labels[:, 1:] != -100
    columns = torch.nonzero(scored_all.any(0)).flatten().tolist()
    first, stop = (columns[0], columns[-1] + 1) if columns else (0, 1)
    keep, part = scored_span(model, first, stop)
    logits = model(input_ids=ids, attention_mask=attention, **keep).logits[:, part].float()
    targets = labels[:, first + 1 : stop + 1]
    losses = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction="none"
    ).reshape(targets.shape)
    return losses, targets != -100
