"""Subject-level splits: sizes, determinism, whole subjects only, leak detection."""

from __future__ import annotations

from pathlib import Path

import pytest

from braingan.data.layouts import DatasetError, SliceRecord
from braingan.data.splits import check_no_leak, has_holdout, make_holdout, split_subjects, subject_leaks


def records(subjects: list[str], slices: int = 3, label: int = 0, split: str = "train") -> list[SliceRecord]:
    return [SliceRecord(Path(f"{s}_{n}.png"), s, n, label, split) for s in subjects for n in range(slices)]


def test_split_subjects_sizes_follow_fractions_by_subject() -> None:
    subjects = [f"s{i}" for i in range(20)]
    assignment = split_subjects(subjects * 3, {"train": 0.8, "validate": 0.1, "test": 0.1}, seed=0)
    assert set(assignment) == set(subjects)
    counts = {name: list(assignment.values()).count(name) for name in ("train", "validate", "test")}
    assert counts == {"train": 16, "validate": 2, "test": 2}


def test_split_subjects_is_seeded_and_order_independent() -> None:
    subjects = [f"s{i}" for i in range(30)]
    fractions = {"train": 0.7, "test": 0.3}
    a = split_subjects(subjects, fractions, seed=3)
    assert a == split_subjects(list(reversed(subjects)), fractions, seed=3)
    assert a != split_subjects(subjects, fractions, seed=4)


def test_split_subjects_gives_small_splits_one_subject() -> None:
    assignment = split_subjects(["a", "b", "c", "d", "e"], {"train": 0.9, "validate": 0.05, "test": 0.05})
    assert sorted(assignment.values()) == ["test", "train", "train", "train", "validate"]
    with pytest.raises(DatasetError):
        split_subjects(["a"], {"train": 0.0})


def test_make_holdout_moves_whole_subjects_per_class() -> None:
    data = records([f"ad{i}" for i in range(10)], label=0) + records([f"nc{i}" for i in range(10)], label=1)
    out = make_holdout(data, 0.2, seed=0)
    held = {r.subject for r in out if r.split == "validate"}
    assert len(held) == 4
    assert sum(s.startswith("ad") for s in held) == 2 and sum(s.startswith("nc") for s in held) == 2
    assert subject_leaks(out) == {}  # every slice of a held-out subject moved with it
    assert len([r for r in out if r.split == "validate"]) == 4 * 3
    assert has_holdout(out, ["train"]) and not has_holdout(data, ["train"])
    assert make_holdout(data, 0.2, seed=0) == out
    assert make_holdout(data, 0.0) == data


def test_leak_across_splits_is_detected_and_named() -> None:
    data = records(["001", "002"]) + records(["002", "003"], split="validate")
    assert subject_leaks(data) == {"002": ["train", "validate"]}
    with pytest.raises(
        DatasetError, match=r"1 subject\(s\) have slices in more than one split \(002 in train\+validate\)"
    ):
        check_no_leak(data)
    check_no_leak(records(["001"]) + records(["002"], split="test"))


def test_make_holdout_moves_a_subject_found_in_two_classes_whole() -> None:
    """Left and right knee of one patient in two class folders: one subject, held out whole."""
    left = records([f"p{i}" for i in range(6)], label=0)
    right = records([f"p{i}" for i in range(6)], label=1)
    out = make_holdout(left + right, 0.5, seed=2)
    held = {r.subject for r in out if r.split == "validate"}
    assert len(held) == 3  # half of six subjects, not half of each class separately
    assert sum(r.split == "validate" for r in out) == 3 * 3 * 2
    assert subject_leaks(out) == {}


def test_make_holdout_warns_when_nothing_can_be_held_out() -> None:
    with pytest.warns(UserWarning, match="no subject could be held out"):
        out = make_holdout(records(["only"]), 0.2)
    assert {r.split for r in out} == {"train"}
