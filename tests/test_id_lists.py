"""harp.id_lists: the one reader of id lists given as text or as a file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harp.id_lists import leaf_id_list, read_id_file, split_ids


@pytest.mark.parametrize(
    ("text", "separators", "expected"),
    [
        pytest.param("3,8,12", ",", [3, 8, 12], id="commas"),
        pytest.param(" 3, 8 ,,12, ", ",", [3, 8, 12], id="spaces-around-and-empty-parts"),
        pytest.param("3 8,12", ", ", [3, 8, 12], id="spaces-as-separators"),
        pytest.param("", ",", [], id="empty"),
        pytest.param("5,5", ",", [5, 5], id="duplicates-kept"),
    ],
)
def test_split_ids(text, separators, expected):
    ids = split_ids(text, "--leaves", separators=separators)
    assert ids.dtype == np.int64 and ids.tolist() == expected


def test_split_ids_names_the_option_and_the_text():
    with pytest.raises(
        ValueError, match=r"^--leaves: expected comma-separated leaf ids or a file of ids, got '3 8'$"
    ):
        split_ids("3 8", "--leaves")


@pytest.mark.parametrize("suffix", [".json", ".txt", ".npy"])
def test_leaf_id_list_reads_a_file_of_ids(tmp_path, suffix):
    path = tmp_path / f"ids{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps([4, 1, 7]))
    elif suffix == ".txt":
        path.write_text("4\n1\n7\n")
    else:
        np.save(path, np.array([4, 1, 7]))
    ids = leaf_id_list(str(path), "--hold-out")
    assert ids.dtype == np.int64 and ids.tolist() == [4, 1, 7]


def test_read_id_file_refuses_fractions_and_names_the_option(tmp_path):
    path = tmp_path / "ids.json"
    path.write_text("[1, 2.5]")
    with pytest.raises(ValueError, match=r"^--hold-out: leaf ids must be integers$"):
        read_id_file(path, "--hold-out")


def test_read_id_file_names_the_option_and_the_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"^--leaves: no file at .*ids\.npy$"):
        read_id_file(tmp_path / "ids.npy", "--leaves")
