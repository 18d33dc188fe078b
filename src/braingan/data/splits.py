"""Subject-level splits: assign whole subjects to train / validate / test, never single slices.

Neighbouring slices of one brain are nearly identical, so a split by slice puts near copies of
the training images into the evaluation set and makes FID and the memorization audit meaningless.
Every split made here is by subject, seeded, and independent of file order: the subjects are
sorted naturally before the seeded shuffle, so the same subjects and seed give the same split on
any machine.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

import numpy as np

from braingan.data.layouts import DatasetError, SliceRecord, natural_key


def split_subjects(
    subjects: Iterable[str],  # subject ids (duplicates are fine)
    fractions: Mapping[str, float],  # split name -> fraction of subjects, e.g. {"train": .8, ...}
    seed: int = 0,  # shuffling seed
) -> dict[str, str]:
    """Map each distinct subject to a split name; the sizes follow `fractions` by subject count.

    Counts are rounded largest-remainder, so they sum to the number of subjects. A split with a
    positive fraction gets at least one subject whenever there are enough subjects to go round,
    so a 10% held-out split of 5 subjects is 1 subject, not 0.
    """
    names = [name for name, fraction in fractions.items() if fraction > 0]
    if not names:
        raise DatasetError(f"split fractions {dict(fractions)} have no positive entry")
    if any(f < 0 for f in fractions.values()):
        raise DatasetError(f"split fractions {dict(fractions)} must not be negative")
    unique = sorted(set(subjects), key=natural_key)
    n = len(unique)
    total = float(sum(fractions[name] for name in names))
    exact = np.array([fractions[name] / total * n for name in names])
    counts = np.floor(exact).astype(int)
    for index in np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]:
        counts[index] += 1
    # Guarantee one subject per wanted split, taken from the largest split.
    for index in range(len(names)):
        if counts[index] == 0 and n >= len(names):
            donor = int(np.argmax(counts))
            counts[donor] -= 1
            counts[index] += 1
    order = np.random.default_rng(seed).permutation(n)
    assignment: dict[str, str] = {}
    start = 0
    for name, count in zip(names, counts):
        for position in order[start : start + count]:
            assignment[unique[position]] = name
        start += count
    return assignment


def subject_leaks(records: Sequence[SliceRecord]) -> dict[str, list[str]]:
    """Subjects whose slices appear in more than one split: subject -> sorted split names."""
    splits_of: dict[str, set[str]] = {}
    for record in records:
        splits_of.setdefault(record.subject, set()).add(record.split)
    return {s: sorted(v) for s, v in splits_of.items() if len(v) > 1}


def check_no_leak(records: Sequence[SliceRecord]) -> None:
    """Raise DatasetError naming the subjects that appear in two or more splits."""
    leaks = subject_leaks(records)
    if leaks:
        shown = "; ".join(
            f"{subject} in {'+'.join(splits)}"
            for subject, splits in sorted(leaks.items(), key=lambda kv: natural_key(kv[0]))[:5]
        )
        more = f" and {len(leaks) - 5} more" if len(leaks) > 5 else ""
        raise DatasetError(
            f"{len(leaks)} subject(s) have slices in more than one split ({shown}{more}); "
            "splits must be by subject, or evaluation sees near copies of training slices"
        )


def has_holdout(records: Sequence[SliceRecord], train_splits: Sequence[str]) -> bool:
    """True when some records lie outside the training splits (a held-out set exists)."""
    return any(r.split not in train_splits for r in records)


def make_holdout(
    records: Sequence[SliceRecord],  # records of a layout without a held-out split
    fraction: float,  # fraction of subjects moved to `name`
    seed: int = 0,  # split seed (config key dataset.split_seed)
    name: str = "validate",  # split name of the held-out subjects
) -> list[SliceRecord]:
    """Move a seeded `fraction` of the subjects, with all their slices, into split `name`.

    The draw is stratified by class so every class keeps held-out subjects: each subject counts
    once, in the class of its first slice (a subject with slices in two class folders, e.g. the
    left and right knee of one patient, moves whole). Warns when nothing could be held out.
    """
    if not 0 <= fraction < 1:
        raise DatasetError(f"dataset.holdout={fraction} must be in [0, 1)")
    if fraction == 0:
        return list(records)
    class_of: dict[str, int] = {}
    for record in records:
        class_of.setdefault(record.subject, record.label)
    held: set[str] = set()
    for label in sorted(set(class_of.values())):
        subjects = [s for s, k in class_of.items() if k == label]
        if len(subjects) < 2:
            continue  # a single subject cannot be split
        assignment = split_subjects(subjects, {"train": 1 - fraction, name: fraction}, seed + label)
        held.update(s for s, split in assignment.items() if split == name)
    if not held:
        warnings.warn(
            f"dataset.holdout={fraction}: no subject could be held out ({len(class_of)} subject(s) "
            "per class is too few); evaluation will have no held-out slices. With dataset=folder, "
            "set dataset.subject_regex so that the subjects are found",
            stacklevel=2,
        )
    return [replace(r, split=name) if r.subject in held else r for r in records]
