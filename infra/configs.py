"""Config dataclasses to and from plain dicts (JSON in checkpoints and data folders)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, TypeVar

from seqrec.infra.errors import SeqrecError

__all__ = ["from_dict"]

T = TypeVar("T")


def from_dict(cls: type[T], d: dict[str, Any], tuple_fields: Iterable[str] = ()) -> T:
    """``cls(**d)`` for a dataclass, with JSON lists turned back into the tuples ``tuple_fields``
    hold; a key the dataclass does not know is a one-line :class:`SeqrecError` naming it."""
    unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise SeqrecError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}")
    d = dict(d)
    for name in tuple_fields:
        if name in d:
            d[name] = tuple(d[name])
    return cls(**d)
