"""``harp.harp(...)``: the whole pipeline in one call, with the original HARP release's signature.

The stages, each a library call documented in its own module:

1. Stage 1a, hierarchy (:func:`harp.hierarchy.build_hierarchy`) of the L2-normalised features ``X_feat``, written
   to the store with previews of each prompt and response (:func:`harp.load.write_hierarchy`).
2. Representatives (:func:`harp.measure.choose_representatives`): per parent the leaf nearest its centroid, then
   farthest-point order, ``n_representatives`` leaves in all (default: one per parent); or the leaves listed in
   ``representative_leaves_path``.
3. Measurements (:func:`harp.measure.run_measurements`): a LoRA adapter per representative, scored against the
   base model on the proxy eval set; every finished leaf is committed to the store at once.
4. Empirical Bayes (:func:`harp.load.infer_effects`): posterior effects of every leaf, active domains.
5. Optionally ``active_rounds`` rounds of active refinement (:func:`harp.active.next_leaves`): measure the
   ``active_k`` leaves whose measurement would most change the selection, then infer again.
6. Selection (:func:`harp.select`) under HARP-C and HARP-E, cut at the best prefix, capped at ``TOP_K_POINTS``,
   from the base scores ``b_d`` of ``v0``, else of the base-score JSONL ``representatives_path``
   (:mod:`harp.original`), else of the base model as measured.

Train and eval examples come as text records or tokenised (``input_ids``/``labels``, as the original release
takes them; :mod:`harp.data`): tokenised examples are trained on and scored as given, never re-tokenised.

Everything goes through a store: a temporary one when ``checkpoint_dir`` is None (deleted at the end: the run
is "in memory"), else ``checkpoint_dir/harp.duckdb`` (or ``checkpoint_dir`` itself when it names a ``.duckdb``
file). Calling again with the same ``checkpoint_dir`` resumes: the tree is reused when it was built from the same
features and parameters (a different one is refused rather than silently replaced), and leaves already measured
under the same measurement config, model and eval set are never measured again.
"""

from __future__ import annotations

from harp.pipeline.entry import HarpResult, harp

__all__ = [
    "HarpResult",
    "harp",
]
