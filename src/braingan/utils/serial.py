"""Dataclass <-> plain dict, for hyperparameters stored inside checkpoints."""

from __future__ import annotations

import dataclasses
from typing import TypeVar

T = TypeVar("T", bound="DictSerializable")


class DictSerializable:
    """Mixin for dataclasses: `to_dict()` and `from_dict()` that ignores unknown (older/newer) keys."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)  # type: ignore[call-overload]  # a mixin: self is a dataclass

    @classmethod
    def from_dict(cls: type[T], d: dict) -> T:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]  # cls is a dataclass
        return cls(**{k: v for k, v in d.items() if k in names})
