"""Where the training runs: the executors that drive :class:`~harp.measure.worker.Worker` objects.

Workers build the model once, then train and score leaf after leaf; the driver alone computes phi and writes
the store. ``"inprocess"`` runs one worker here; ``"process"`` runs one worker process per entry of ``devices``
(repeat a device, or pass ``workers_per_device``, to train several adapters at once on one GPU); ``"ray"`` runs
Ray actors on a local instance or the cluster at ``address`` (``gpus_per_worker`` below 1 packs several adapters
on one GPU). Each worker process holds its one worker in this module's process-global state.
"""

from __future__ import annotations

import concurrent.futures as futures
import multiprocessing
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np

from harp._validation import check_integer
from harp.data import EvalSet, TrainData, TrainExamples
from harp.measure.config import Device, ExecutorName, MeasureConfig
from harp.measure.worker import LeafResult, LeafTask, Worker

__all__ = [
    "Executor",
    "InProcessExecutor",
    "ProcessExecutor",
    "RayExecutor",
    "check_adapters_per_batch",
    "make_executor",
]


def _groups(tasks: Iterable[LeafTask], size: int) -> Iterator[list[LeafTask]]:
    """Consecutive groups of ``size`` tasks (the last may be smaller)."""
    group: list[LeafTask] = []
    for task in tasks:
        group.append(task)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def check_adapters_per_batch(value: Any) -> int:
    """``adapters_per_batch`` as an int; a ValueError unless it is an integer >= 1."""
    return check_integer(value, "adapters_per_batch", minimum=1)


class Executor(Protocol):
    """Where the training runs. The driver calls :meth:`base` and :meth:`reference` once, then :meth:`run`
    with all the tasks."""

    def base(self) -> np.ndarray:
        """Per-question base-model scores."""
        ...

    def reference(self) -> np.ndarray:
        """Per-question scores a leaf's are paired with (see :meth:`harp.measure.worker.Worker.reference`)."""
        ...

    def run(self, tasks: Iterable[LeafTask]) -> Iterator[LeafResult]:
        """Yield each task's result as soon as it is done, in any order."""
        ...

    def close(self) -> None: ...


class InProcessExecutor:
    """One worker in this process; ``adapters_per_batch`` leaves trained side by side in one model."""

    def __init__(
        self,
        model_name_or_path: str,
        eval_set: EvalSet,
        config: MeasureConfig,
        *,
        device: Device = "cpu",
        adapters_per_batch: int = 1,
        background: TrainExamples = (),
    ) -> None:
        self.adapters_per_batch = check_adapters_per_batch(adapters_per_batch)
        self.worker = Worker(
            model_name_or_path, eval_set, config, device, 0, self.adapters_per_batch, background
        )

    def base(self) -> np.ndarray:
        return self.worker.base()

    def reference(self) -> np.ndarray:
        return self.worker.reference()

    def run(self, tasks: Iterable[LeafTask]) -> Iterator[LeafResult]:
        for group in _groups(tasks, self.adapters_per_batch):
            yield from self.worker.run_group(group)

    def close(self) -> None:
        pass


_PROCESS_WORKER: Worker | None = None


def _process_init(
    model: str,
    eval_set: EvalSet,
    config: MeasureConfig,
    device: Device,
    threads: int,
    adapters_per_batch: int,
    background: TrainExamples,
) -> None:
    global _PROCESS_WORKER
    _PROCESS_WORKER = Worker(model, eval_set, config, device, threads, adapters_per_batch, background)


def _process_base() -> np.ndarray:
    assert _PROCESS_WORKER is not None
    return _PROCESS_WORKER.base()


def _process_reference() -> np.ndarray:
    assert _PROCESS_WORKER is not None
    return _PROCESS_WORKER.reference()


def _process_ready() -> bool:
    return _PROCESS_WORKER is not None


def _process_run(tasks: list[LeafTask]) -> list[LeafResult]:
    assert _PROCESS_WORKER is not None
    return _PROCESS_WORKER.run_group(tasks)


class ProcessExecutor:
    """One worker process per entry of ``devices`` (times ``workers_per_device``), started with ``spawn``.

    Each worker keeps one group of ``adapters_per_batch`` tasks in flight and gets the next as soon as it
    finishes, so fast and slow devices balance themselves. Several workers on one GPU train several adapters at
    once; ``adapters_per_batch`` > 1 makes each of them train that many side by side in one model.
    """

    def __init__(
        self,
        model_name_or_path: str,
        eval_set: EvalSet,
        config: MeasureConfig,
        *,
        devices: Sequence[Device],
        workers_per_device: int = 1,
        adapters_per_batch: int = 1,
        background: TrainExamples = (),
    ) -> None:
        if not devices:
            raise ValueError("devices must name at least one device, for example [0, 1] or ['cpu']")
        if workers_per_device < 1:
            raise ValueError(f"workers_per_device must be >= 1, got {workers_per_device}")
        self.adapters_per_batch = check_adapters_per_batch(adapters_per_batch)
        slots = [device for device in devices for _ in range(workers_per_device)]
        cpu_slots = sum(1 for device in slots if str(device).startswith("cpu"))
        threads = max(1, (os.cpu_count() or 1) // cpu_slots) if cpu_slots else 0
        context = multiprocessing.get_context("spawn")
        self.pools = [
            futures.ProcessPoolExecutor(
                max_workers=1,
                mp_context=context,
                initializer=_process_init,
                initargs=(
                    model_name_or_path,
                    eval_set,
                    config,
                    device,
                    threads if str(device).startswith("cpu") else 0,
                    self.adapters_per_batch,
                    background if isinstance(background, TrainData) else list(background),
                ),
            )
            for device in slots
        ]

        # Start every worker now (model loaded), so start-up is not counted as measuring time.
        for ready in [pool.submit(_process_ready) for pool in self.pools]:
            ready.result()

    def base(self) -> np.ndarray:
        return self.pools[0].submit(_process_base).result()

    def reference(self) -> np.ndarray:
        return self.pools[0].submit(_process_reference).result()

    def run(self, tasks: Iterable[LeafTask]) -> Iterator[LeafResult]:
        pending = _groups(tasks, self.adapters_per_batch)
        in_flight: dict[futures.Future[list[LeafResult]], int] = {}

        def feed(slot: int) -> None:
            group = next(pending, None)
            if group is not None:
                in_flight[self.pools[slot].submit(_process_run, group)] = slot

        for slot in range(len(self.pools)):
            feed(slot)
        while in_flight:
            done, _ = futures.wait(in_flight, return_when=futures.FIRST_COMPLETED)
            for future in done:
                slot = in_flight.pop(future)
                results = future.result()
                feed(slot)
                yield from results

    def close(self) -> None:
        for pool in self.pools:
            pool.shutdown(wait=True, cancel_futures=True)


class RayExecutor:
    """``num_workers`` Ray actors, each with ``gpus_per_worker`` GPUs (a fraction packs several per GPU).

    Connects to the cluster at ``address`` (None: the running or a new local instance). ``runtime_env`` is passed
    to ``ray.init`` (for example ``{"py_modules": [harp]}`` when the cluster's nodes lack harp-explorer).
    """

    def __init__(
        self,
        model_name_or_path: str,
        eval_set: EvalSet,
        config: MeasureConfig,
        *,
        address: str | None = None,
        num_workers: int = 1,
        gpus_per_worker: float | None = None,
        runtime_env: dict[str, Any] | None = None,
        adapters_per_batch: int = 1,
        background: TrainExamples = (),
    ) -> None:
        try:
            import ray
        except ImportError:
            raise ImportError("the Ray executor needs Ray: pip install 'harp-explorer[cluster]'") from None
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        self.adapters_per_batch = check_adapters_per_batch(adapters_per_batch)
        if not ray.is_initialized():
            ray.init(address=address, runtime_env=runtime_env, include_dashboard=False, log_to_driver=False)
        if gpus_per_worker is None:
            gpus_per_worker = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
        device = "cuda" if gpus_per_worker > 0 else "cpu"
        remote = ray.remote(num_cpus=0 if gpus_per_worker > 0 else 1, num_gpus=gpus_per_worker)(Worker)
        self.ray: Any = ray
        self.actors: list[Any] = [
            remote.remote(
                model_name_or_path,
                eval_set,
                config,
                device,
                0,
                self.adapters_per_batch,
                background if isinstance(background, TrainData) else list(background),
            )
            for _ in range(num_workers)
        ]

    def base(self) -> np.ndarray:
        return self.ray.get(self.actors[0].base.remote())

    def reference(self) -> np.ndarray:
        return self.ray.get(self.actors[0].reference.remote())

    def run(self, tasks: Iterable[LeafTask]) -> Iterator[LeafResult]:
        pending = _groups(tasks, self.adapters_per_batch)
        in_flight: dict[Any, Any] = {}

        def feed(actor: Any) -> None:
            group = next(pending, None)
            if group is not None:
                in_flight[actor.run_group.remote(group)] = actor

        for actor in self.actors:
            feed(actor)
        while in_flight:
            ready, _ = self.ray.wait(list(in_flight), num_returns=1)
            actor = in_flight.pop(ready[0])
            results = self.ray.get(ready[0])
            feed(actor)
            yield from results

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)


def make_executor(
    executor: ExecutorName,
    model_name_or_path: str,
    eval_set: EvalSet,
    config: MeasureConfig,
    *,
    devices: Sequence[Device] | None = None,
    workers_per_device: int = 1,
    address: str | None = None,
    gpus_per_worker: float | None = None,
    adapters_per_batch: int = 1,
    background: TrainExamples = (),
) -> Executor:
    """Build an executor by name (see the module docstring)."""
    if executor == "inprocess":
        device = devices[0] if devices else ("cuda" if _cuda_available() else "cpu")
        return InProcessExecutor(
            model_name_or_path,
            eval_set,
            config,
            device=device,
            adapters_per_batch=adapters_per_batch,
            background=background,
        )
    if executor == "process":
        return ProcessExecutor(
            model_name_or_path,
            eval_set,
            config,
            devices=list(devices) if devices else ["cpu"],
            workers_per_device=workers_per_device,
            adapters_per_batch=adapters_per_batch,
            background=background,
        )
    if executor == "ray":
        return RayExecutor(
            model_name_or_path,
            eval_set,
            config,
            address=address,
            num_workers=max(1, len(devices or [0])) * workers_per_device,
            gpus_per_worker=gpus_per_worker,
            adapters_per_batch=adapters_per_batch,
            background=background,
        )
    raise ValueError(f"executor must be 'inprocess', 'process' or 'ray', got {executor!r}")


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())
