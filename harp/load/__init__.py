"""Moving pipeline results in and out of a store: the tree, the posterior effects, and arrays made elsewhere.

The store is touched only here (and in :mod:`harp.layout`'s cache check); :mod:`harp.hierarchy` and
:mod:`harp.bayes` work on numpy arrays. Point ids are the row numbers of ``X_feat`` (``0..N-1``).

- :func:`write_hierarchy` writes a :class:`~harp.hierarchy.Hierarchy` (tree, in-leaf order, optional texts).
- :func:`infer_effects` reads the measurements, fits :func:`harp.bayes.fit_effects` and writes the posterior
  effects and the active flags (``harp infer``).
- :func:`load_arrays` builds a whole store from the arrays another HARP run produced (``harp load``): ``phi``
  and optionally its sd, the leaf of each point, the parent of each leaf, optionally the large node of each
  parent, base scores, domain names, optional texts and optional features for the in-leaf order and the layout.
  Each input is an array or a file (``.npy``; names and base scores also ``.json`` or ``.txt``; texts ``.jsonl``
  or ``.txt``), and shapes are checked against each other before anything is written, with messages that name
  the file.
"""

from __future__ import annotations

from harp.load.arrays import load_arrays
from harp.load.effects import infer_effects, write_hierarchy
from harp.load.files import PointTexts, load_vector, read_names, read_point_texts, read_texts

__all__ = [
    "PointTexts",
    "infer_effects",
    "load_arrays",
    "load_vector",
    "read_names",
    "read_point_texts",
    "read_texts",
    "write_hierarchy",
]
