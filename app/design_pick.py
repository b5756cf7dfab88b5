"""The design selection beside HARP-C and HARP-E: its settings, its points, its manifest, and saving it.

The Designed mixtures page chooses the settings (design, bootstrap seed, rule, budget, draw seed) and keeps them
under :data:`SETTINGS_KEY`, so that the Explore page's map and overlap panel show the same selection; without a
visit there, the first design with rule C, a budget of 1,000 points and seeds 0. The selection and its manifest
are :mod:`harp.design_selection`'s, the same as ``harp design select`` writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from app import data
from app.data import StoreBundle, StoreProblem
from harp.design import design_select
from harp.design_selection import DesignSettings, design_manifest
from harp.store import StoreError

SETTINGS_KEY = "design_settings"  # the Designed mixtures page's last choice, read on every page
DEFAULT_BUDGET = 1000


@dataclass(frozen=True)
class DesignPick:
    """A design selection as the app shows it: the settings, the fit, the selection and its manifest."""

    settings: DesignSettings
    fit: Any
    selection: Any
    manifest: dict[str, Any]

    @property
    def label(self) -> str:
        budget = "every kept point" if self.settings.budget is None else f"{self.settings.budget:,} points"
        return (
            f"design rule {self.settings.rule} ({self.settings.level} level, {budget}, draw seed "
            f"{self.settings.seed})"
        )


def default_settings(bundle: StoreBundle, configs: list[tuple[str, str]]) -> DesignSettings | None:
    """The settings last chosen on the Designed mixtures page, else the first design's defaults; None when
    the store holds no design mixtures."""
    if not configs:
        return None
    stored = st.session_state.get(SETTINGS_KEY)
    if isinstance(stored, dict) and (stored.get("config_key"), stored.get("level")) in configs:
        try:
            return DesignSettings(**stored)
        except (TypeError, ValueError):
            pass  # settings of an older session: fall back to the defaults
    config_key, level = configs[0]
    return DesignSettings("C", level, config_key, 0, min(DEFAULT_BUDGET, max(1, bundle.total_points)), 0)


def remember(settings: DesignSettings) -> None:
    st.session_state[SETTINGS_KEY] = settings.to_dict()


def pick(bundle: StoreBundle, settings: DesignSettings, fit: Any | None = None) -> DesignPick:
    """The design selection of ``settings`` on ``bundle`` (its fit read from the cache unless given).

    Raises
    ------
    StoreProblem
        The store cannot be read.
    ValueError
        The design cannot be fitted (shown by the caller).
    """
    if fit is None:
        fit, _ = data.design_fit(bundle.path, bundle.token, settings.config_key, settings.level,
                                 settings.bootstrap_seed)  # fmt: skip
    region_of_leaf = bundle.leaf_large if settings.level == "large" else bundle.leaf_parent
    selection = design_select(
        fit, bundle.members, region_of_leaf, rule=settings.rule, budget=settings.budget, seed=settings.seed
    )
    manifest = design_manifest(
        fit, settings, selection, store_hash=bundle.content_hash, store_path=Path(bundle.path).resolve()
    )
    return DesignPick(settings, fit, selection, manifest)


def explore_pick(bundle: StoreBundle) -> tuple[DesignPick | None, str | None]:
    """The design selection the Explore page shows, or None with the reason (None, None: no design mixtures)."""
    try:
        settings = default_settings(bundle, data.design_configs(bundle.path, bundle.token))
        if settings is None:
            return None, None
        return pick(bundle, settings), None
    except StoreProblem as problem:
        return None, problem.message
    except ValueError as error:
        return None, f"The design cannot be fitted: {error}"


def save(path: str, name: str, chosen: DesignPick, *, overwrite: bool) -> int:
    """Save ``chosen`` under ``name`` through the app's own short read-write connection."""
    store = data.open_store(path, read_only=False)
    try:
        return int(
            store.save_design_selection(
                name,
                settings=chosen.settings.to_dict(),
                selection=chosen.selection,
                manifest=chosen.manifest,
                store_hash=str(chosen.manifest["store_hash"]),
                overwrite=overwrite,
            )
        )
    except StoreError as error:
        raise data.problem_from(error) from error


def leaves_of(chosen: DesignPick | None) -> np.ndarray:
    return np.zeros(0, dtype=np.int64) if chosen is None else np.asarray(chosen.selection.leaves, np.int64)
