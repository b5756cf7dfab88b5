"""A design selection as one reproducible thing: its settings, its points and the manifest that says how.

:func:`harp.design.design_select` keeps the regions a design fit says help and draws the budget from them. Here
the settings that make one (rule, level, the fit's config key and bootstrap seed, budget, draw seed) travel
together (:class:`DesignSettings`), and :func:`design_manifest` is the one writer of its manifest, so that
``harp design select --out``, ``--save-as`` and the app's "Save this selection" agree byte for byte.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harp._validation import check_design_settings

if TYPE_CHECKING:
    from harp.design import DesignFit
    from harp.select import Selection
    from harp.store import Store

__all__ = ["DesignRun", "DesignSettings", "design_manifest", "resolve_config_key", "select_by_design"]


@dataclass(frozen=True)
class DesignSettings:
    """What makes a design selection: the fit (``config_key``, ``level``, ``bootstrap_seed``) and the draw
    (``rule``, ``budget``: None for every kept point, ``seed``)."""

    rule: str
    level: str
    config_key: str
    bootstrap_seed: int = 0
    budget: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        checked = check_design_settings(self.to_dict())
        object.__setattr__(self, "rule", checked["rule"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "level": self.level,
            "config_key": self.config_key,
            "bootstrap_seed": self.bootstrap_seed,
            "budget": self.budget,
            "seed": self.seed,
        }

    @property
    def method(self) -> str:
        """``design-C`` or ``design-E``: the manifest's ``envelope`` and the saved selection's ``method``."""
        return f"design-{self.rule}"


@dataclass(frozen=True)
class DesignRun:
    """A design selection made from a store: its settings, the fit, the selection and its manifest."""

    settings: DesignSettings
    fit: DesignFit
    selection: Selection
    manifest: dict[str, Any]


def resolve_config_key(store: Store, level: str, config_key: str | None) -> str:
    """``config_key``, or the one config the store's design mixtures at ``level`` were measured under.

    Raises
    ------
    ValueError
        No design mixtures at ``level`` (under ``config_key``), or several configs and none chosen.
    """
    keys = sorted(set(store.design_mixtures(config_key, level)["config_key"].to_pylist()))
    if not keys:
        where = f" under config {config_key}" if config_key else ""
        raise ValueError(
            f"{store.path} holds no design mixtures at level {level!r}{where}: run `harp design measure` first"
        )
    if len(keys) > 1:
        raise ValueError(
            f"{store.path} holds design mixtures under {len(keys)} configs ({', '.join(keys)}): pick one with "
            "config_key"
        )
    return str(keys[0])


def design_manifest(
    fit: DesignFit,
    settings: DesignSettings,
    selection: Selection,
    *,
    store_hash: str | None,
    store_path: str | os.PathLike[str] | None,
    created_at: str | None = None,
) -> dict[str, Any]:
    """The manifest of a design selection (format ``harp-selection/1``, ``envelope`` ``design-C``/``design-E``).

    ``store_hash`` is the content hash of the store the fit was read from; ``created_at`` defaults to now (UTC,
    ISO 8601 to the second).
    """
    from harp import __version__
    from harp.design import kept_regions
    from harp.export import MANIFEST_FORMAT

    return {
        "format": MANIFEST_FORMAT,
        "envelope": settings.method,
        "budget": settings.budget,
        "design": {
            "level": settings.level,
            "rule": settings.rule,
            "seed": settings.seed,
            "bootstrap_seed": settings.bootstrap_seed,
            "config_key": settings.config_key,
            "fit": fit.to_dict(),
        },
        "store_hash": store_hash,
        "store_path": None if store_path is None else str(store_path),
        "harp_version": __version__,
        "created_at": created_at or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "counts": {
            "points": int(selection.points.size),
            "leaves": int(selection.leaves.size),
            "kept_regions": int(kept_regions(fit, settings.rule).size),
        },
    }


def select_by_design(
    store: Store,
    *,
    rule: str = "C",
    level: str = "large",
    config_key: str | None = None,
    bootstrap_seed: int = 0,
    budget: int | None = None,
    seed: int = 0,
    store_path: str | os.PathLike[str] | None = None,
) -> DesignRun:
    """Fit the store's design at ``level`` and select by ``rule`` (what ``harp design select`` writes).

    ``store_path`` goes into the manifest (default: the store's path, resolved).
    """
    from harp.design import design_select, fit_stored_design, region_of_leaves
    from harp.measure import leaf_members

    check_design_settings(
        {"rule": rule, "level": level, "config_key": config_key or "-", "bootstrap_seed": bootstrap_seed,
         "budget": budget, "seed": seed}
    )  # fmt: skip
    settings = DesignSettings(
        rule, level, resolve_config_key(store, level, config_key), bootstrap_seed, budget, seed
    )
    fit = fit_stored_design(store, level=level, config_key=settings.config_key, seed=bootstrap_seed)
    members = leaf_members(store, store.count("points"))
    selection = design_select(
        fit, members, region_of_leaves(store, level), rule=settings.rule, budget=budget, seed=seed
    )
    manifest = design_manifest(
        fit,
        settings,
        selection,
        store_hash=store.content_hash(),
        store_path=Path(store.path).resolve() if store_path is None else store_path,
    )
    return DesignRun(settings, fit, selection, manifest)
