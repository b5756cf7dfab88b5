"""The model a measurement trains: a causal LM from local files with one LoRA adapter (:class:`AdapterModel`).

torch, transformers and peft (the ``[train]`` extra) are imported only inside the functions that need them, so
importing :mod:`harp.measure` stays light; :func:`require_train` says which extra to install when one is missing.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any

from harp._validation import is_integer
from harp.measure.config import Device, MeasureConfig

__all__ = ["AdapterModel", "build_model", "hardware_name", "require_train"]


@dataclass
class AdapterModel:
    """A causal LM wrapped with one LoRA adapter, its tokenizer, and the adapter's initial weights."""

    model: Any
    tokenizer: Any
    device: Any
    initial_adapter: dict[str, Any]

    def reset_adapter(self) -> None:
        """Put the adapter back to its initial weights (a fresh adapter, the same for every leaf)."""
        import torch

        with torch.no_grad():
            for name, parameter in self.model.named_parameters():
                if name in self.initial_adapter:
                    parameter.copy_(self.initial_adapter[name])


def _torch_device(device: Device) -> Any:
    """The ``torch.device`` of ``device``: a GPU index (an int or a string of digits) means ``cuda:{index}``."""
    import torch

    if is_integer(device):
        return torch.device(f"cuda:{device}")
    if isinstance(device, str) and device.isdigit():
        return torch.device(f"cuda:{device}")
    return torch.device(device)


def hardware_name(device: Device) -> str:
    """What ``device`` is, for run records: the GPU's model name, or the CPU's."""
    import platform

    chosen = _torch_device(device)
    if chosen.type == "cuda":
        import torch

        return str(torch.cuda.get_device_name(chosen))
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def require_train() -> None:
    """Raise an ImportError naming the ``[train]`` extra unless torch, transformers and peft import."""
    try:
        import peft  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as error:
        raise ImportError(
            f"measuring leaves needs torch, transformers and peft ({error}): pip install 'harp-explorer[train]'"
        ) from None


def build_model(
    model_name_or_path: str | os.PathLike[str], config: MeasureConfig, device: Device = "cpu"
) -> AdapterModel:
    """Load a causal LM and its tokenizer (local files only) and add a LoRA adapter.

    Parameters
    ----------
    model_name_or_path : str or Path
        A local directory (``save_pretrained`` layout) or a name already in the local Hugging Face cache.
    config : MeasureConfig
    device : str or int
        ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a GPU index.
    """
    require_train()
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = _torch_device(device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_name_or_path), local_files_only=True)
        with warnings.catch_warnings():  # transformers' own deprecations, raised from inside peft and itself
            warnings.simplefilter("ignore", FutureWarning)
            base = AutoModelForCausalLM.from_pretrained(
                str(model_name_or_path), dtype=getattr(torch, config.dtype), local_files_only=True
            )
    except OSError as error:
        raise ValueError(f"cannot load the model {model_name_or_path!r} from local files: {error}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    base.to(target)
    torch.manual_seed(config.seed)
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules),
        task_type="CAUSAL_LM",
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            model = get_peft_model(base, lora)
    except ValueError as error:
        raise ValueError(f"cannot add LoRA adapters to {model_name_or_path!r}: {error}") from None
    initial = {
        name: parameter.detach().clone()
        for name, parameter in model.named_parameters()
        if parameter.requires_grad
    }
    return AdapterModel(model=model, tokenizer=tokenizer, device=target, initial_adapter=initial)
