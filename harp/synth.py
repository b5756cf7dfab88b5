"""A synthetic, realistic HARP pool for tests, benchmarks and the demo app.

The pool has the shape the pipeline produces: points in leaves (log-normal sizes, mean about 64 points, at least
one), about 8 leaves a parent and 8 parents a large node, a 2-D layout in which large nodes and their parents form
visible clusters, and posterior effects ``phi[g, d]`` of every leaf g on every domain d with their standard
deviations.

Effects model (all in score units, so 0.01 is one accuracy point)::

    phi[g, d] = s_d * (A[k, d] + B[p, d] + c_p * w_d + e[g, d]) + m_d  (+ planted regions)

with leaf g in parent p in large node k, a per-domain scale ``s_d``, large-node and parent effects ``A`` and ``B``,
a shared parent factor ``c_p`` with domain loadings ``w_d`` (so a parent that helps one domain tends to help
others), and leaf noise ``e``. A few parents are planted as clearly harmful (about -4 points on most domains) and a
few as clearly helpful on a handful of domains. One representative leaf per parent (about 12% of leaves) is
"measured": its posterior sd is small; the others are inferred with a larger sd. Posterior means scatter around
the true effects by their sd. Domains near saturation (base 0.95 and above) get small effects.

Texts are short instruction-style prompts assembled from word lists with vectorised Arrow string operations (no
per-point Python loop). A few points carry hostile or awkward strings (HTML script tags, spreadsheet formulas,
markdown links, quotes, newlines, non-ASCII) so that every place that shows or exports text is exercised.

Everything is a function of ``seed``: the same seed gives the same store content hash.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from harp._validation import check_integer
from harp.store import Store
from harp.store.files import check_target, publish, remove_quietly, temporary_beside

__all__ = ["SPECIAL_TEXTS", "SynthPool", "generate", "synth_store"]

GENERATOR_VERSION = "synth-v1"

_MMLU_SUBJECTS = (
    "abstract_algebra", "anatomy", "astronomy", "business_ethics", "clinical_knowledge", "college_biology",
    "college_chemistry", "college_computer_science", "college_mathematics", "college_medicine", "college_physics",
    "computer_security", "conceptual_physics", "econometrics", "electrical_engineering", "elementary_mathematics",
    "formal_logic", "global_facts", "high_school_biology", "high_school_chemistry", "high_school_computer_science",
    "high_school_european_history", "high_school_geography", "high_school_government_and_politics",
    "high_school_macroeconomics", "high_school_mathematics", "high_school_microeconomics", "high_school_physics",
    "high_school_psychology", "high_school_statistics", "high_school_us_history", "high_school_world_history",
    "human_aging", "human_sexuality", "international_law", "jurisprudence", "logical_fallacies", "machine_learning",
    "management", "marketing", "medical_genetics", "miscellaneous", "moral_disputes", "moral_scenarios",
    "nutrition", "philosophy", "prehistory", "professional_accounting", "professional_law",
    "professional_medicine", "professional_psychology", "public_relations", "security_studies", "sociology",
    "us_foreign_policy", "virology", "world_religions",
)  # fmt: skip

_PREFIXES = (
    "Explain ", "Summarize the main ideas of ", "Write a short quiz question about ", "Give two examples of ",
    "What is the role of ", "Describe the history of ", "List common mistakes when studying ",
    "Compare two views on ", "Write a haiku about ", "Translate into French a sentence about ",
    "Solve a practice problem on ", "Draft an email to a colleague about ", "Outline a lesson plan on ",
    "Correct this student's answer about ", "Write a tweet that explains ", "Argue for and against ",
)  # fmt: skip

_TOPICS = (
    "photosynthesis", "the French Revolution", "binary search trees", "supply and demand",
    "Newton's laws of motion", "the immune system", "plate tectonics", "Roman law", "prime numbers",
    "climate feedback loops", "sorting algorithms", "contract law", "the nitrogen cycle", "Keynesian economics",
    "the Cold War", "probability distributions", "cell division", "medieval trade routes", "linear regression",
    "the human heart", "renewable energy", "Shakespeare's sonnets", "quantum tunnelling", "moral philosophy",
    "the water cycle", "public-key cryptography", "the Silk Road", "vaccines", "game theory", "black holes",
    "the printing press", "inflation", "DNA replication", "the Pythagorean theorem", "volcanoes",
    "the Roman Empire", "neural networks", "the stock market", "chemical bonding", "the Renaissance",
    "operating systems", "human memory", "electric circuits", "world religions", "tax accounting",
    "the causes of World War I", "organic chemistry", "marketing funnels", "logical fallacies", "nutrition labels",
    "the Magna Carta", "sound waves", "recursion", "international trade", "ecosystems", "the US Constitution",
    "statistical significance", "viral infections", "the Industrial Revolution", "machine translation",
    "thermodynamics", "child development", "urban planning", "ancient Egypt",
)  # fmt: skip

_QUALIFIERS = (
    "", " in everyday life", " for high-school students", " in exam questions", " with worked numbers",
    " and its critics", " in modern research", " for a job interview", " in one paragraph", " using an analogy",
    " with a diagram described in words", " in simple English",
)  # fmt: skip

_SUFFIXES = (
    ".", "?", " in two sentences.", " for a ten-year-old.", " step by step.", " and cite one source.",
    ", then check your answer.", " in under 100 words.", " as a numbered list.", ". Use **bold** for key terms.",
)  # fmt: skip

# Openings of the synthetic responses; the response then names its leaf's topic (no random draws: adding the
# responses left every other generated value as it was).
_OPENINGS = (
    "Here is a short answer about ", "In brief, the key point of ", "A worked explanation of ",
    "The usual textbook account of ", "Three facts about ", "A common mistake about ",
)  # fmt: skip

_SOURCES = ("alpaca", "dolly", "flan_v2", "oasst1", "code_alpaca", "sharegpt", "gsm8k_train", "lima")

#: Awkward strings planted in a few points so that escaping and CSV export are exercised.
SPECIAL_TEXTS: tuple[str, ...] = (
    "<script>alert(1)</script> Summarize this page.",
    '=HYPERLINK("http://x")',
    "See [the guide](http://example.com/guide) and explain it.",
    "<img src=x onerror=alert(1)> Describe the picture.",
    "Reply with \"yes\", 'no', or a | pipe; commas, too.",
    "Line one\nLine two: explain the difference.",
    "Übersetze: “naïve café” — 日本語のテキスト ✓",
    "**Bold claim**: _markdown_ `code` and a # heading",
    "+SUM(A1:A9) @cmd -2+3 are not formulas here.",
    "[click me](javascript:alert(1))",
)


@dataclass(frozen=True)
class SynthPool:
    """A synthetic pool in memory; :func:`synth_store` writes it to a store.

    Points are listed leaf by leaf, each leaf's points in rank order.

    Attributes
    ----------
    seed : int
    point_id : ndarray of int64, shape (n_points,)
        A permutation of ``0..n_points-1`` (indices into the training pool).
    leaf_id, rank_in_leaf : ndarray of int32, shape (n_points,)
    text, source, response : pyarrow.StringArray of length n_points
        The prompt, where it came from, and the response (hostile strings planted in both).
    leaf_parent : ndarray of int64, shape (n_leaves,)
    parent_large : ndarray of int64, shape (n_parents,)
    n_large : int
    domain_names : list of str
    base : ndarray of shape (n_domains,)
        Base scores ``b_d`` in (0, 1); a couple are 0.95 or above.
    eval_size : ndarray of int64, shape (n_domains,)
    active : ndarray of bool, shape (n_domains,)
        Some leaf credibly helps the domain (mean / sd > 1.645) and its base score is below 1.
    true_phi, mean, sd : ndarray of shape (n_leaves, n_domains)
        The planted effects, their posterior mean and posterior sd.
    measured : ndarray of bool, shape (n_leaves, n_domains)
    measured_phi, measured_variance : ndarray of shape (n_measured_leaves, n_domains)
        Raw measurements of the measured leaves, in the order of ``measured_leaves``.
    measured_leaves : ndarray of int64
    harmful_parents, helpful_parents : ndarray of int64
        Parents planted as clearly harmful (most domains) or clearly helpful (a few domains).
    x, y : ndarray of shape (n_leaves,)
        2-D layout coordinates.
    """

    seed: int
    point_id: np.ndarray
    leaf_id: np.ndarray
    rank_in_leaf: np.ndarray
    text: pa.Array
    source: pa.Array
    response: pa.Array
    leaf_parent: np.ndarray
    parent_large: np.ndarray
    n_large: int
    domain_names: list[str]
    base: np.ndarray
    eval_size: np.ndarray
    active: np.ndarray
    true_phi: np.ndarray
    mean: np.ndarray
    sd: np.ndarray
    measured: np.ndarray
    measured_leaves: np.ndarray
    measured_phi: np.ndarray
    measured_variance: np.ndarray
    harmful_parents: np.ndarray
    helpful_parents: np.ndarray
    x: np.ndarray
    y: np.ndarray

    @property
    def n_leaves(self) -> int:
        return int(self.leaf_parent.size)

    @property
    def n_domains(self) -> int:
        return len(self.domain_names)

    @property
    def n_points(self) -> int:
        return int(self.point_id.size)

    @property
    def leaf_size(self) -> np.ndarray:
        return np.bincount(self.leaf_id, minlength=self.n_leaves)

    @property
    def members(self) -> list[np.ndarray]:
        """Point ids of each leaf in rank order."""
        return np.split(self.point_id, np.cumsum(self.leaf_size)[:-1])

    def points_table(self) -> pa.Table:
        """The ``points`` argument of :meth:`harp.Store.write_tree`."""
        return pa.table(
            {
                "point_id": self.point_id,
                "leaf_id": self.leaf_id,
                "rank_in_leaf": self.rank_in_leaf,
                "text": self.text,
                "source": self.source,
                "response": self.response,
            }
        )

    def measurement_rows(self, *, run_id: str | None = None, config_key: str = GENERATOR_VERSION) -> pa.Table:
        """The raw measurements as rows for :meth:`harp.Store.add_measurements`."""
        n_measured, n_domains = self.measured_phi.shape
        return pa.table(
            {
                "leaf_id": np.repeat(self.measured_leaves, n_domains),
                "domain_id": np.tile(np.arange(n_domains), n_measured),
                "phi": self.measured_phi.ravel(),
                "variance": self.measured_variance.ravel(),
                "n_eval": np.tile(self.eval_size, n_measured),
                "run_id": pa.array([run_id] * (n_measured * n_domains), pa.string()),
                "config_key": pa.array([config_key] * (n_measured * n_domains), pa.string()),
            }
        )


def _split_into_groups(rng: np.random.Generator, n_items: int, per_group: float) -> np.ndarray:
    """Group id of each item: contiguous groups of varying size (at least 1), about ``per_group`` on average."""
    n_groups = max(1, int(round(n_items / per_group)))
    extra = rng.multinomial(n_items - n_groups, rng.dirichlet(np.full(n_groups, 4.0)))
    return np.repeat(np.arange(n_groups), 1 + extra)


def _sunflower(n: int, spacing: float) -> np.ndarray:
    """``n`` well-spread points in a disc (Vogel's spiral), shape (n, 2)."""
    index = np.arange(n) + 0.5
    radius = spacing * np.sqrt(index)
    angle = index * np.pi * (3.0 - np.sqrt(5.0))
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)


def _domain_names(n_domains: int) -> list[str]:
    subjects = len(_MMLU_SUBJECTS)
    return [
        _MMLU_SUBJECTS[d % subjects]
        if d < subjects
        else f"{_MMLU_SUBJECTS[d % subjects]}_{d // subjects + 1}"
        for d in range(n_domains)
    ]


def _pick(words: tuple[str, ...], index: np.ndarray) -> pa.Array:
    return pa.array(words, pa.string()).take(pa.array(index % len(words)))


def _texts(
    rng: np.random.Generator, leaf_id: np.ndarray, leaf_parent: np.ndarray, leaf_large: np.ndarray
) -> tuple[pa.Array, pa.Array, pa.Array]:
    """Instruction-style prompts (a leaf keeps to one topic), sources (mostly one per large node) and
    responses (on the leaf's topic; the hostile strings in the responses of the points that hold them in the
    prompt, in reverse order)."""
    n_points, n_leaves = leaf_id.size, leaf_parent.size
    # A leaf is about one topic (shared within its parent) with its own angle; points vary the instruction.
    leaf_topic = pc.binary_join_element_wise(
        _pick(_TOPICS, leaf_parent * 7 + rng.integers(0, 2, n_leaves)),
        _pick(_QUALIFIERS, rng.integers(0, len(_QUALIFIERS), n_leaves)),
        "",
    )
    text = pc.binary_join_element_wise(
        _pick(_PREFIXES, rng.integers(0, len(_PREFIXES), n_points)),
        leaf_topic.take(pa.array(leaf_id)),
        _pick(_SUFFIXES, rng.integers(0, len(_SUFFIXES), n_points)),
        "",
    )
    # Hostile strings near the top of a few leaves, where hover texts and example panels show them.
    first_leaves = np.arange(min(n_leaves, len(SPECIAL_TEXTS)))
    chosen_leaves = np.concatenate(
        [first_leaves, rng.choice(n_leaves, size=min(n_leaves, n_points // 5000), replace=False)]
    )
    sizes = np.bincount(leaf_id, minlength=n_leaves)
    starts = np.cumsum(sizes) - sizes
    positions = np.unique(
        starts[chosen_leaves] + np.minimum(1, sizes[chosen_leaves] - 1) * (chosen_leaves % 2)
    )
    special = np.zeros(n_points, dtype=bool)
    special[positions] = True
    special_index = np.zeros(n_points, dtype=np.int64)
    special_index[positions] = np.arange(positions.size)
    text = pc.if_else(pa.array(special), _pick(SPECIAL_TEXTS, special_index), text)
    large_of_point = leaf_large[leaf_id]
    source = _pick(
        _SOURCES, large_of_point * 3 + (rng.random(n_points) < 0.15) * rng.integers(1, 8, n_points)
    )
    response = pc.binary_join_element_wise(
        _pick(_OPENINGS, np.arange(n_points)), leaf_topic.take(pa.array(leaf_id)), ".", ""
    )
    hostile = _pick(SPECIAL_TEXTS, len(SPECIAL_TEXTS) - 1 - special_index % len(SPECIAL_TEXTS))
    response = pc.if_else(pa.array(special), hostile, response)
    return text, source, response


def generate(
    n_leaves: int,
    n_domains: int,
    seed: int = 0,
    *,
    mean_leaf_size: float = 64.0,
    leaves_per_parent: float = 8.0,
    parents_per_large: float = 8.0,
) -> SynthPool:
    """Generate a synthetic pool in memory.

    Parameters
    ----------
    n_leaves : int
        Number of leaves L (>= 1).
    n_domains : int
        Number of domains D (>= 1); named after MMLU subjects, suffixed ``_2``, ``_3``... beyond 57.
    seed : int, default 0
        Everything is a function of the seed.
    mean_leaf_size : float, default 64
        Mean of the log-normal leaf sizes (each leaf has at least one point).
    leaves_per_parent, parents_per_large : float, default 8
        Average fan-out of the tree.

    Returns
    -------
    SynthPool
    """
    n_leaves = check_integer(n_leaves, "n_leaves", minimum=1)
    n_domains = check_integer(n_domains, "n_domains", minimum=1)
    check_integer(seed, "seed", minimum=0)
    for name, value in (
        ("mean_leaf_size", mean_leaf_size),
        ("leaves_per_parent", leaves_per_parent),
        ("parents_per_large", parents_per_large),
    ):
        if not np.isfinite(value) or value < 1:
            raise ValueError(f"{name} must be >= 1, got {value!r}")
    rng = np.random.default_rng(int(seed))

    # Tree.
    leaf_parent = _split_into_groups(rng, n_leaves, leaves_per_parent)
    n_parents = int(leaf_parent.max()) + 1
    parent_large = _split_into_groups(rng, n_parents, parents_per_large)
    n_large = int(parent_large.max()) + 1
    leaf_large = parent_large[leaf_parent]

    # Points: log-normal leaf sizes, ids a permutation of the pool's indices.
    sigma = 0.7
    sizes = np.maximum(1, np.rint(rng.lognormal(np.log(mean_leaf_size) - sigma**2 / 2, sigma, n_leaves)))
    sizes = sizes.astype(np.int64)
    n_points = int(sizes.sum())
    leaf_id = np.repeat(np.arange(n_leaves, dtype=np.int32), sizes)
    rank = (np.arange(n_points) - np.repeat(np.cumsum(sizes) - sizes, sizes)).astype(np.int32)
    point_id = rng.permutation(n_points).astype(np.int64)

    # Layout: large nodes spread on a spiral, parents around them, leaves around their parent.
    large_xy = _sunflower(n_large, 6.0) + rng.normal(0, 0.5, (n_large, 2))
    parent_rank = np.arange(n_parents) - np.searchsorted(parent_large, parent_large)
    parent_xy = (
        large_xy[parent_large] + _sunflower(n_parents, 1.1)[parent_rank] + rng.normal(0, 0.2, (n_parents, 2))
    )
    leaf_xy = parent_xy[leaf_parent] + rng.normal(0, 0.3, (n_leaves, 2))

    # Domains.
    domain_names = _domain_names(n_domains)
    base = rng.uniform(0.3, 0.85, n_domains)
    saturated = rng.choice(n_domains, size=min(2, max(0, n_domains - 2)), replace=False)
    base[saturated] = np.array([0.955, 0.975])[: saturated.size]
    eval_size = rng.integers(100, 1000, n_domains).astype(np.int64)

    # Effects.
    scale = rng.uniform(0.5, 1.5, n_domains) * 0.01 * np.where(base >= 0.95, 0.2, 1.0)
    loading = rng.normal(0.5, 0.5, n_domains)
    large_effect = rng.normal(0, 0.6, (n_large, n_domains))
    parent_effect = rng.normal(0, 0.8, (n_parents, n_domains))
    parent_factor = rng.normal(0, 0.8, n_parents)
    leaf_noise = rng.normal(0, 0.5, (n_leaves, n_domains))
    true_phi = scale * (
        large_effect[leaf_large]
        + parent_effect[leaf_parent]
        + parent_factor[leaf_parent, None] * loading
        + leaf_noise
    ) + rng.normal(0.001, 0.001, n_domains)
    n_planted = max(1, n_parents // 40)
    planted = rng.choice(n_parents, size=min(n_parents, 2 * n_planted), replace=False)
    harmful_parents = np.sort(planted[:n_planted])
    helpful_parents = np.sort(planted[n_planted:])
    harmful_domains = rng.random((n_planted, n_domains)) < 0.8
    harm = np.zeros((n_parents, n_domains))
    harm[harmful_parents] = -rng.uniform(0.03, 0.05, (n_planted, n_domains)) * harmful_domains
    if helpful_parents.size:
        helped = rng.random((helpful_parents.size, n_domains)) < min(1.0, 4 / n_domains)
        harm[helpful_parents] = rng.uniform(0.02, 0.04, (helpful_parents.size, n_domains)) * helped
    true_phi += harm[leaf_parent] * np.where(base >= 0.95, 0.3, 1.0)

    # Measured representatives (one per parent) and posterior effects.
    parent_start = np.searchsorted(leaf_parent, np.arange(n_parents))
    parent_count = np.bincount(leaf_parent, minlength=n_parents)
    measured_leaves = (parent_start + rng.integers(0, parent_count)).astype(np.int64)
    is_measured = np.zeros(n_leaves, dtype=bool)
    is_measured[measured_leaves] = True
    measured_variance = (0.005 * rng.uniform(0.7, 1.3, (measured_leaves.size, n_domains))) ** 2
    measured_phi = true_phi[measured_leaves] + rng.normal(0, np.sqrt(measured_variance))
    sd = np.where(is_measured[:, None], 0.004, 0.010) * rng.uniform(0.8, 1.25, (n_leaves, n_domains))
    mean = true_phi + rng.normal(0, sd)
    active = ((mean / sd) > 1.645).any(axis=0) & (base < 1)

    text, source, response = _texts(rng, leaf_id, leaf_parent, leaf_large)
    return SynthPool(
        seed=int(seed),
        point_id=point_id,
        leaf_id=leaf_id,
        rank_in_leaf=rank,
        text=text,
        source=source,
        response=response,
        leaf_parent=leaf_parent.astype(np.int64),
        parent_large=parent_large.astype(np.int64),
        n_large=n_large,
        domain_names=domain_names,
        base=base,
        eval_size=eval_size,
        active=active,
        true_phi=true_phi,
        mean=mean,
        sd=sd,
        measured=np.broadcast_to(is_measured[:, None], (n_leaves, n_domains)).copy(),
        measured_leaves=measured_leaves,
        measured_phi=measured_phi,
        measured_variance=measured_variance,
        harmful_parents=harmful_parents.astype(np.int64),
        helpful_parents=helpful_parents.astype(np.int64),
        x=leaf_xy[:, 0].copy(),
        y=leaf_xy[:, 1].copy(),
    )


def synth_store(
    path: str | os.PathLike[str],
    *,
    leaves: int,
    domains: int,
    seed: int = 0,
    overwrite: bool = False,
    mean_leaf_size: float = 64.0,
) -> Store:
    """Generate a synthetic pool and write it, complete, to a new store.

    Writes the tree and texts, the domains, raw measurements of the representatives, posterior effects, the
    layout and a run record (kind ``synth``). The store is built under a temporary name and renamed into place.

    Parameters
    ----------
    path : str or Path
        The store file to create.
    leaves, domains : int
        Number of leaves L and domains D.
    seed : int, default 0
        The same seed gives the same content hash.
    overwrite : bool, default False
        Replace an existing file at ``path``.
    mean_leaf_size : float, default 64
        Mean number of points of a leaf (see :func:`generate`): 10^6 leaves of 10 make a 10^7-point pool.

    Returns
    -------
    Store
    """
    target = Path(path)
    check_integer(leaves, "leaves", minimum=1)
    check_integer(domains, "domains", minimum=1)
    if not np.isfinite(mean_leaf_size) or mean_leaf_size < 1:
        raise ValueError(f"mean_leaf_size must be >= 1, got {mean_leaf_size!r}")
    check_target(target, overwrite)  # before the work: a taken target fails at once
    pool = generate(leaves, domains, seed, mean_leaf_size=mean_leaf_size)
    temporary = temporary_beside(target, "synth")
    try:
        store = Store.create(temporary)
        config = {
            "leaves": pool.n_leaves,
            "domains": pool.n_domains,
            "seed": pool.seed,
            "generator": GENERATOR_VERSION,
            **({} if mean_leaf_size == 64.0 else {"mean_leaf_size": float(mean_leaf_size)}),
        }
        run_id = store.add_run("synth", config, run_id=f"synth-{pool.seed}")
        store.write_tree(pool.points_table(), pool.leaf_parent, pool.parent_large, pool.n_large)
        store.write_domains(pool.domain_names, pool.base, pool.eval_size, pool.active)
        store.add_measurements(pool.measurement_rows(run_id=run_id))
        store.write_effects(pool.mean, pool.sd, pool.measured)
        store.write_layout(pool.x, pool.y, f"{GENERATOR_VERSION}:leaves={pool.n_leaves}:seed={pool.seed}")
        store.finish_run(run_id, status="done")
        publish(temporary, target, overwrite=overwrite)
    finally:
        remove_quietly(temporary)
    return Store(target)
