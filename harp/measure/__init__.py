"""Stage 1b, measurements: a fresh LoRA adapter per representative leaf, scored against the base model.

Leaf g's measured effect on domain d is the mean paired difference of per-question scores, with the adapter
trained on the leaf and without it (:mod:`harp.measure.effects` defines phi and its variance). The package holds
one concern a module:

- :mod:`~harp.measure.config`: :class:`MeasureConfig`, everything that decides what a measurement is, and its
  ``config_key``;
- :mod:`~harp.measure.model`: the causal LM with one LoRA adapter (:func:`build_model`);
- :mod:`~harp.measure.tokens`: text to token ids and padded batches (:func:`build_data`);
- :mod:`~harp.measure.training`: the protocols' training plans and the training loop (:func:`train_adapter`);
- :mod:`~harp.measure.evaluation`: per-question scores (:func:`evaluate`), on the batched log-likelihoods of
  :mod:`~harp.measure.loglik` and the token scores of :mod:`~harp.measure.token_eval`;
- :mod:`~harp.measure.effects`: paired effects and one leaf's measurement (:func:`measure_leaf`);
- :mod:`~harp.measure.worker` and :mod:`~harp.measure.executors`: where the training runs (in process, worker
  processes, Ray);
- :mod:`~harp.measure.multi_lora`: K adapters side by side in one model (``adapters_per_batch``; needs torch at
  import, so it is imported only when used);
- :mod:`~harp.measure.driver`: :func:`run_measurements`, resumable, writing the store;
- :mod:`~harp.measure.representatives`: which leaves to measure (:func:`choose_representatives`);
- :mod:`~harp.measure.noise`: the training noise of measured effects across seeds.

Importing this package loads no torch, transformers or peft: those are imported where a model is built or run.
"""

from harp.measure.config import (
    MEASURE_VERSION,
    PROTOCOLS,
    REFERENCE_SEED,
    Device,
    ExecutorName,
    MeasureConfig,
)
from harp.measure.driver import (
    MeasureReport,
    leaf_members,
    record_domains,
    resolve_config_key,
    run_measurements,
)
from harp.measure.effects import LeafMeasurement, measure_leaf, paired_effects
from harp.measure.evaluation import base_scores, continuation_loglik, evaluate, option_loglik
from harp.measure.executors import (
    Executor,
    InProcessExecutor,
    ProcessExecutor,
    RayExecutor,
    make_executor,
)
from harp.measure.model import AdapterModel, build_model, hardware_name
from harp.measure.representatives import choose_representatives, leaf_centroids
from harp.measure.tokens import as_train_data, build_data
from harp.measure.training import (
    background_fingerprint,
    background_points,
    learning_rate_at,
    train_adapter,
    training_plan,
)
from harp.measure.worker import LeafResult, LeafTask

__all__ = [
    "MEASURE_VERSION",
    "PROTOCOLS",
    "REFERENCE_SEED",
    "AdapterModel",
    "Device",
    "Executor",
    "ExecutorName",
    "InProcessExecutor",
    "LeafMeasurement",
    "LeafResult",
    "LeafTask",
    "MeasureConfig",
    "MeasureReport",
    "ProcessExecutor",
    "RayExecutor",
    "as_train_data",
    "background_fingerprint",
    "background_points",
    "base_scores",
    "build_data",
    "build_model",
    "choose_representatives",
    "continuation_loglik",
    "evaluate",
    "hardware_name",
    "leaf_centroids",
    "leaf_members",
    "learning_rate_at",
    "make_executor",
    "measure_leaf",
    "option_loglik",
    "paired_effects",
    "record_domains",
    "resolve_config_key",
    "run_measurements",
    "train_adapter",
    "training_plan",
]
