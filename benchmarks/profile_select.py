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
import importlib
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_select import make_effects  # noqa: E402

SELECT = Path(__file__).resolve().parents[1] / "harp" / "select"


def uncached_select() -> list[object]:
    """The modules of harp/select/ loaded as a package of their own with ``cache=False``, so their code is
    compiled here; the first is the package, which holds ``greedy_order``."""
    folder = Path(tempfile.mkdtemp()) / "select_uncached"
    folder.mkdir()
    for source in SELECT.glob("*.py"):
        text = (
            source.read_text()
            .replace("cache=True", "cache=False")
            .replace("harp.select.", "select_uncached.")
        )
        (folder / source.name).write_text(text)
    sys.path.insert(0, str(folder.parent))
    package = importlib.import_module("select_uncached")
    return [package] + [
        importlib.import_module(f"select_uncached.{path.stem}") for path in folder.glob("[!_]*.py")
    ]


def _function_name(symbol: str) -> str:
    """The function's own name in a numba symbol (``...select_uncached6harp_e8greedy_eB2v1...``: greedy_e)."""
    rest = symbol.partition("select_uncached")[2]
    names = []
    while (match := re.match(r"(\d+)", rest)) is not None:
        size = int(match.group(1))
        names.append(rest[match.end() : match.end() + size])
        rest = rest[match.end() + size :]
    return names[-1] if names else symbol[:60]


def write_perf_map(modules: list[object]) -> int:
    """Write /tmp/perf-<pid>.map for every compiled function of ``modules``; return how many."""
    entries = set()
    for dispatcher in (getattr(module, name) for module in modules for name in dir(module)):
        for result in getattr(dispatcher, "overloads", {}).values():
            library = result.library
            for symbol in set(re.findall(r'define [^@]*@"?([^"( ]+)"?\(', library.get_llvm_str())):
                address = library.get_pointer_to_function(symbol)
                if address:
                    short = _function_name(symbol)
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

    modules = uncached_select()
    module = modules[0]
    phi, base = make_effects(args.leaves, args.domains, 0)
    weights = np.ones(args.domains)
    none = np.zeros(0, dtype=np.int64)
    module.greedy_order(phi, base, weights, args.envelope, none, none)  # type: ignore[attr-defined]
    print(f"{write_perf_map(modules)} compiled functions mapped", file=sys.stderr)
    for _ in range(args.repeats):
        module.greedy_order(phi, base, weights, args.envelope, none, none)  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
