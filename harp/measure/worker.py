"""A worker: the model built once, then the base model scored and leaf after leaf trained and scored.

Every executor (:mod:`harp.measure.executors`) runs its training in :class:`Worker` objects: one in this process,
one per worker process, or one per Ray actor. With ``adapters_per_batch`` K > 1 a worker holds one model with K
adapters side by side (:mod:`harp.measure.multi_lora`, imported only then: it needs torch at import) and
measures K leaves per training loop; like the executor, this changes how fast leaves are measured, not what a
measurement is.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from harp.data import EvalSet, TrainExamples
from harp.measure.config import REFERENCE_SEED, Device, MeasureConfig
from harp.measure.evaluation import base_scores, evaluate
from harp.measure.model import build_model, hardware_name
from harp.measure.tokens import as_train_data
from harp.measure.training import train_adapter

__all__ = ["LeafResult", "LeafTask", "Worker"]


@dataclass(frozen=True)
class LeafTask:
    """Train on ``examples`` (the leaf's (prompt, response) pairs) and score the eval set.

    ``leaf_id`` seeds the data order; ``steps`` overrides ``config.steps`` for a base-anchored run (a mixture
    of many leaves gets one pass over its examples, see :mod:`harp.validate`).
    """

    leaf_id: int
    examples: TrainExamples
    steps: int | None = None


@dataclass(frozen=True)
class LeafResult:
    """The per-question ``scores`` of one task, with its timings and the worker and hardware that made them."""

    leaf_id: int
    scores: np.ndarray
    timings: dict[str, float]
    worker: str = ""
    hardware: str = ""


class Worker:
    """Builds the model once, then scores the base model or trains and scores leaves.

    With ``adapters_per_batch`` K > 1 the model carries K adapters side by side
    (:mod:`harp.measure.multi_lora`) and :meth:`run_group` measures up to K leaves in one training loop; with
    K = 1 it is the one-adapter peft path.
    ``background`` holds the protocol's background examples (empty for base-anchored), tokenised once.
    """

    def __init__(
        self,
        model_name_or_path: str,
        eval_set: EvalSet,
        config: MeasureConfig,
        device: Device,
        threads: int = 0,
        adapters_per_batch: int = 1,
        background: TrainExamples = (),
    ) -> None:
        if threads > 0:
            import torch

            torch.set_num_threads(threads)
        started = time.perf_counter()
        self.eval_set = eval_set
        self.config = config
        self.name = f"{os.getpid()}:{device}"
        self.hardware = hardware_name(device)
        self.adapters_per_batch = adapters_per_batch
        self.model: Any
        if adapters_per_batch > 1:
            from harp.measure.multi_lora import build_multi_model

            self.model = build_multi_model(model_name_or_path, config, adapters_per_batch, device)
        else:
            self.model = build_model(model_name_or_path, config, device)
        self.background = as_train_data(self.model.tokenizer, background, config)
        self._reference: np.ndarray | None = None
        self._base: np.ndarray | None = None
        self.load_s = time.perf_counter() - started

    def base(self) -> np.ndarray:
        if self._base is None:  # one evaluation per worker, however often a driver asks
            if self.adapters_per_batch > 1:
                from harp.measure.multi_lora import base_scores_multi

                self._base = base_scores_multi(self.model, self.eval_set, self.config)
            else:
                self._base = base_scores(self.model, self.eval_set, self.config)
        return self._base

    def reference(self) -> np.ndarray:
        """Per-question scores that a leaf's are paired with: the base model's (base-anchored), or those of the
        same training run on the background alone (continuation, in-mixture)."""
        if not self.config.uses_background:
            return self.base()
        if self._reference is None:  # one run per worker: a driver may ask again for every batch of leaves
            [result] = self.run_group([LeafTask(REFERENCE_SEED, [])])
            self._reference = result.scores
        return self._reference

    def run_group(self, tasks: Sequence[LeafTask]) -> list[LeafResult]:
        """Measure up to ``adapters_per_batch`` leaves; their results come back together."""
        if self.adapters_per_batch > 1:
            from harp.measure.multi_lora import train_and_score

            seeds = [task.leaf_id for task in tasks]
            _, table, timings = train_and_score(
                self.model,
                [task.examples for task in tasks],
                self.eval_set,
                self.config,
                seeds=seeds,
                background=self.background,
                steps=[task.steps for task in tasks],
            )
            return [
                LeafResult(t.leaf_id, table[k], dict(timings), self.name, self.hardware)
                for k, t in enumerate(tasks)
            ]
        results = []
        for task in tasks:
            started = time.perf_counter()
            train_adapter(
                self.model,
                task.examples,
                self.config,
                seed=task.leaf_id,
                background=self.background,
                steps=task.steps,
            )
            trained = time.perf_counter()
            scores = evaluate(self.model, self.eval_set, self.config)
            timings = {"train_s": trained - started, "eval_s": time.perf_counter() - trained}
            results.append(LeafResult(task.leaf_id, scores, timings, self.name, self.hardware))
        return results
