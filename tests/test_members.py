"""harp.members.LeafMembers: leaves as offsets into one array of point ids, and select's one-pass check of them."""

from __future__ import annotations

import numpy as np
import pytest

from harp import select
from harp.members import LeafMembers

POINTS = np.array([7, 3, 0, 9, 4, 1], dtype=np.int64)
OFFSETS = np.array([0, 2, 2, 5, 6], dtype=np.int64)  # leaf 1 is empty


def test_each_leaf_is_a_view_of_its_slice() -> None:
    members = LeafMembers(POINTS, OFFSETS)
    assert len(members) == 4
    assert [m.tolist() for m in members] == [[7, 3], [], [0, 9, 4], [1]]
    assert members[2].tolist() == [0, 9, 4] and np.shares_memory(members[2], POINTS)
    assert members[-1].tolist() == [1]
    assert [m.tolist() for m in members[1:3]] == [[], [0, 9, 4]]
    with pytest.raises(IndexError, match="leaf 4 is outside 0..3"):
        members[4]
    assert list(LeafMembers(np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64))) == []


@pytest.mark.parametrize(
    ("point_ids", "offsets", "match"),
    [
        (POINTS.astype(np.int32), OFFSETS, "point_ids must be a 1-D int64 array, got int32"),
        (POINTS, np.zeros(0, dtype=np.int64), "offsets must be a non-empty 1-D int64 array"),
        (POINTS, np.array([0, 2, 5], dtype=np.int64), r"rise from 0 to the 6 point ids, got 0\.\.5"),
        (POINTS, np.array([0, 4, 2, 6], dtype=np.int64), r"decreasing somewhere"),
    ],
    ids=["int32-ids", "no-offsets", "short", "decreasing"],
)
def test_offsets_that_do_not_cut_the_ids_into_leaves_are_refused(point_ids, offsets, match) -> None:
    with pytest.raises(ValueError, match=match):
        LeafMembers(point_ids, offsets)


def test_select_gives_the_same_selection_from_offsets_as_from_a_list(rng) -> None:
    phi = rng.normal(0, 0.1, (4, 3))
    members = LeafMembers(POINTS, OFFSETS)
    for envelope in ("C", "E"):
        for budget in (None, 3):
            fast = select(phi, [0.5, 0.2, 0.9], envelope=envelope, members=members, budget=budget)
            listed = select(phi, [0.5, 0.2, 0.9], envelope=envelope, members=list(members), budget=budget)
            assert fast.points.tolist() == listed.points.tolist()
            assert fast.point_leaves.tolist() == listed.point_leaves.tolist()


def test_select_refuses_offsets_that_repeat_a_point_or_miscount_the_leaves() -> None:
    phi = np.zeros((4, 2))
    repeated = LeafMembers(np.array([7, 3, 0, 9, 3, 1], dtype=np.int64), OFFSETS)
    with pytest.raises(ValueError, match=r"members: point 3 is in more than one leaf \(leaves \[0, 2\]\)"):
        select(phi, [0.5, 0.5], envelope="C", members=repeated)
    negative = LeafMembers(np.array([7, 3, 0, -9, 4, 1], dtype=np.int64), OFFSETS)
    with pytest.raises(ValueError, match=r"members\[2\] holds a negative point index -9"):
        select(phi, [0.5, 0.5], envelope="C", members=negative)
    with pytest.raises(ValueError, match="phi has 3 rows but members has 4 leaves"):
        select(np.zeros((3, 2)), [0.5, 0.5], envelope="C", members=LeafMembers(POINTS, OFFSETS))


def test_select_checks_a_leaf_members_once_and_it_cannot_change_after(monkeypatch) -> None:
    """A weight edit in the app reruns select on the same members: the distinct-points pass runs once, and the
    checked point ids are read-only, so a repeat cannot slip in unchecked."""
    from harp import _validation

    calls = []
    original = _validation._check_distinct
    monkeypatch.setattr(
        _validation, "_check_distinct", lambda flat, leaves: calls.append(leaves) or original(flat, leaves)
    )
    members = LeafMembers(POINTS.copy(), OFFSETS)
    phi = np.array([[0.1, 0.0], [0.0, 0.2], [-0.1, 0.3], [0.2, 0.2]])
    for weights in ([1.0, 2.0], [3.0, 1.0], [1.0, 2.0]):
        chosen = select(phi, [0.5, 0.5], envelope="C", members=members, weights=weights)
        assert (
            chosen.points.tolist()
            == select(
                phi, [0.5, 0.5], envelope="C", weights=weights, members=[m.copy() for m in members]
            ).points.tolist()
        )
    assert [c for c in calls if c is members] == [members] and members.checked_distinct
    with pytest.raises(ValueError, match="read-only"):
        members.point_ids[4] = 3  # would repeat point 3
    fresh = LeafMembers(np.array([7, 3, 0, 9, 3, 1], dtype=np.int64), OFFSETS)
    with pytest.raises(ValueError, match="point 3 is in more than one leaf"):
        select(phi, [0.5, 0.5], envelope="C", members=fresh)
