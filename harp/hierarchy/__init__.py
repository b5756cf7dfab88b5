"""Stage 1a: cluster the embedded pool into a nested three-level tree, large node -> parent -> leaf.

Notation: the pool has N points with features ``X_feat`` (one row per point, usually L2-normalised embeddings).
Every point lies in exactly one leaf g (``0..L-1``), every leaf in one parent p (``0..P-1``), every parent in one
large node k (``0..K-1``). Leaves are the unit of selection.

Algorithm (top-down k-means, so the tree is nested by construction):

1. Large nodes: k-means of all points into ``K = round(N / (leaf_size * leaves_per_parent * parents_per_large))``
   clusters (at least 1).
2. Parents: inside each large node of n points, k-means into ``round(n / (leaf_size * leaves_per_parent))``.
3. Leaves: inside each parent of n points, k-means into ``round(n / leaf_size)``.

At every level a cluster smaller than ``min_leaf`` points is merged into the cluster of the same node whose
centroid is nearest (so no parent or large node is too small to hold a leaf). At the leaf level the counts are
also kept inside the band ``[min_leaf, max_leaf]``: a tiny leaf is merged into the nearest leaf of its parent
(preferring one that stays <= ``max_leaf``), and an oversized leaf is split again by k-means, recursively. When
k-means cannot split a group (identical or nearly identical points), the group is cut into equal chunks along its
main direction, with a :class:`HierarchyWarning`. The only leaves outside the band are those of a pool smaller
than ``min_leaf``, again with a warning.

Large fits are made on a subsample of at most ``max_points_per_centroid`` points per centroid (as faiss does);
every point is then assigned to its nearest centroid. Members of each leaf are ordered by their distance to the
leaf centroid, most central first (ties by point index), so a budget cut inside a leaf keeps its most typical
examples.

Backends: ``"faiss"`` (on the GPU when faiss sees one), ``"torch"`` (Lloyd's k-means with k-means++
initialisation on a CUDA device; used by ``"auto"`` when faiss is missing and torch sees a GPU) and ``"sklearn"``
(scikit-learn's ``KMeans``). ``"auto"`` picks faiss, then torch on a GPU, then scikit-learn. The tree is a
deterministic function of the features, the parameters, the seed and the backend (faiss on a GPU may differ in
the last bits between runs, as floating-point reductions on GPUs do).

The faiss and scikit-learn engines fit one node at a time. The torch backend holds the features once on its
device and fits all the nodes of a level together (all parents of all large nodes, then all leaves of all
parents), in padded batches, with the same counts, merges, splits and chunk fallback; the members' order is
computed there too. Its draws differ from one fit a node, so its tree is another tree by the same rules, and the
same one at every run (cluster sums come from matrix products, not atomic additions). 10^7 x 384 float32
features take 9-11 s on one H200 this way (benchmarks/bench_stage1a.py).

Modules: :mod:`~harp.hierarchy.tree` (the result types), :mod:`~harp.hierarchy.build` (the entry point),
:mod:`~harp.hierarchy.band` (merging and splitting to the size band), :mod:`~harp.hierarchy.kmeans` (the
one-at-a-time engines), :mod:`~harp.hierarchy.torch_kmeans` (one fit in torch), :mod:`~harp.hierarchy.batched`
(many fits at once), :mod:`~harp.hierarchy.on_device` (the torch backend's levels and order),
:mod:`~harp.hierarchy.arrays` (block-wise helpers) and :mod:`~harp.hierarchy.checks` (input checks).
"""

from harp.hierarchy.arrays import group_means
from harp.hierarchy.build import build_hierarchy
from harp.hierarchy.kmeans import kmeans_labels
from harp.hierarchy.tree import HIERARCHY_VERSION, Hierarchy, HierarchyWarning

__all__ = [
    "HIERARCHY_VERSION",
    "Hierarchy",
    "HierarchyWarning",
    "build_hierarchy",
    "group_means",
    "kmeans_labels",
]
