"""Domain weights given by name in a JSON file, ``{"domain name": weight, ...}`` (``harp select --weights``).

:func:`read_weights_file` reads and checks the file's shape, with no store at hand; :func:`weights_for_domains`
puts its weights into a default vector (one weight per domain d of a store). Every message starts with
``name``, the option or argument the file came from.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from harp._validation import check_weights, is_number

__all__ = ["read_weights_file", "weights_for_domains"]


def read_weights_file(path: Path, name: str = "weights") -> dict[str, float]:
    """The JSON object ``{domain: weight}`` of ``path``, checked for shape but not against a store.

    Parameters
    ----------
    path : Path
        The JSON file.
    name : str, default "weights"
        What the caller calls the file (``--weights`` on the command line).

    Returns
    -------
    dict of str to float

    Raises
    ------
    ValueError
        The file cannot be read, is not JSON, is not an object, or a weight is not a number.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{name}: cannot read {path}: {error}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{name}: {path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f'{name}: {path} must hold a JSON object {{"domain name": weight, ...}}')
    for domain, value in data.items():
        if not is_number(value):
            raise ValueError(f"{name}: weight of {domain!r} in {path} must be a number, got {value!r}")
    return {domain: float(value) for domain, value in data.items()}


def weights_for_domains(
    data: dict[str, float] | None,
    path: Path | None,
    domain_names: list[str],
    default: np.ndarray,
    name: str = "weights",
) -> np.ndarray:
    """The default weights with those of a weights file put in; domains it leaves out keep their default.

    Parameters
    ----------
    data : dict of str to float, or None
        As :func:`read_weights_file` returns it; None keeps every default.
    path : Path or None
        The file ``data`` came from, for the messages.
    domain_names : list of str, length n_domains
        The store's domains, in order.
    default : ndarray of shape (n_domains,)
        The weight of each domain the file does not name.
    name : str, default "weights"
        What the caller calls the file.

    Returns
    -------
    ndarray of float64, shape (n_domains,)
        Checked by :func:`harp._validation.check_weights` (finite, >= 0, not all zero).

    Raises
    ------
    ValueError
        The file names a domain the store does not have, or the weights fail the check.
    """
    weights = default.astype(np.float64).copy()
    if data is not None:
        unknown = sorted(set(data) - set(domain_names))
        if unknown:
            raise ValueError(
                f"{name}: {path} names unknown domains {unknown[:5]}; the store has {domain_names[:5]}..."
            )
        for domain, value in data.items():
            weights[domain_names.index(domain)] = value
    try:
        return check_weights(weights, len(domain_names))
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from None
