"""Run harp.select's greedy under ``perf`` with the compiled functions named, to see where its time goes.

    perf record -F 4000 -o /tmp/select.data .venv/bin/python benchmarks/profile_select.py --envelope E
    perf report -i /tmp/select.data --no-children --sort sym --stdio | head -30

numba's machine code has no symbols, so ``perf`` shows it as bare addresses. This script compiles the kernels
(with the on-disk cache off, so the code lives in this process), then writes ``/tmp/perf-<pid>.map``, the file
``perf report`` reads to name JIT code: the start address of every compiled function, sized up to the next one.
Functions numba inlined count toward their caller. Then it runs the greedy ``--repeats`` times on the pool of
``bench_select.py``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_select import make_effects  # noqa: E402

SELECT = Path(__file__).resolve().parents[1] / "harp" / "select.py"


def uncached_select() -> object:
    """harp/select.py loaded as a module of its own with ``cache=False``, so its code is compiled here."""
    folder = Path(tempfile.mkdtemp())
    path = folder / "select_uncached.py"
    path.write_text(SELECT.read_text().replace("cache=True", "cache=False"))
    spec = importlib.util.spec_from_file_location("select_uncached", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["select_uncached"] = module
    spec.loader.exec_module(module)
    return module


def write_perf_map(module: object) -> int:
    """Write /tmp/perf-<pid>.map for every compiled function of ``module``; return how many."""
    entries = set()
    for name in dir(module):
        dispatcher = getattr(module, name)
        for result in getattr(dispatcher, "overloads", {}).values():
            library = result.library
            for symbol in set(re.findall(r'define [^@]*@"?([^"( ]+)"?\(', library.get_llvm_str())):
                address = library.get_pointer_to_function(symbol)
                if address:
                    match = re.search(r"select_uncached(\d+)(\w+)", symbol)
                    short = match.group(2)[: int(match.group(1))] if match else symbol[:60]
                    entries.add((address, short))
    ordered = sorted(entries)
    with open(f"/tmp/perf-{os.getpid()}.map", "w") as handle:
        for i, (address, short) in enumerate(ordered):
            size = ordered[i + 1][0] - address if i + 1 < len(ordered) else 4096
            handle.write(f"{address:x} {min(size, 1 << 20):x} {short}\n")
    return len(ordered)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envelope", choices=["C", "E"], default="E")
    parser.add_argument("--leaves", type=int, default=10000)
    parser.add_argument("--domains", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()

    module = uncached_select()
    phi, base = make_effects(args.leaves, args.domains, 0)
    weights = np.ones(args.domains)
    none = np.zeros(0, dtype=np.int64)
    module.greedy_order(phi, base, weights, args.envelope, none, none)  # type: ignore[attr-defined]
    print(f"{write_perf_map(module)} compiled functions mapped", file=sys.stderr)
    for _ in range(args.repeats):
        module.greedy_order(phi, base, weights, args.envelope, none, none)  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
