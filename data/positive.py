"""``--positive EXPR``: which logged events are positive feedback, the rest real negatives.

A ratings log records what a user was shown and then rated; a low rating is a shown-and-not-liked
event, not a click. A rule turns such a log into positives and negatives: events that pass keep
their behaviour name, events that fail are renamed :data:`NEGATIVE` during preprocessing (one of
``SimulatorConfig.negative_behaviours``, so the simulator reads them as shown and not clicked).

======================= ===============================================
``value>=X``            the event's value (a rating) is at least X
``value>X``             … greater than X
``value==X``            … equal to X (e.g. ``value==1`` on a 0/1 click column)
``behaviour==NAME``     the event's behaviour is NAME (e.g. ``behaviour==click``)
======================= ===============================================

Spaces around the parts are allowed; anything else is a one-line error naming the expression.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from seqrec.infra.errors import SeqrecError

if TYPE_CHECKING:
    from seqrec.data.sequences import SequenceData
    from seqrec.data.table import InteractionTable

NEGATIVE = "negative"
"""Behaviour name given to the events that fail a rule."""

FORMS = "value>=X, value>X, value==X or behaviour==NAME"
_VALUE = re.compile(r"^\s*value\s*(>=|>|==)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")
_BEHAVIOUR = re.compile(r"^\s*behaviou?r\s*==\s*([^\s=<>]+)\s*$")


@dataclass(frozen=True)
class PositiveRule:
    """A parsed ``--positive`` expression (build it with :func:`parse_positive`).

    :param field: ``"value"`` or ``"behaviour"``.
    :param op: ``">="``, ``">"`` or ``"=="`` (``behaviour`` takes ``==`` only).
    :param operand: the threshold (float) or the behaviour name (str).
    """

    field: Literal["value", "behaviour"]
    op: Literal[">=", ">", "=="]
    operand: float | str

    def __str__(self) -> str:
        operand = f"{self.operand:g}" if isinstance(self.operand, float) else self.operand
        return f"{self.field}{self.op}{operand}"

    def mask(self, table: "InteractionTable | SequenceData") -> np.ndarray:
        """Whether each event passes the rule, shape (n_events,) bool.

        Takes an :class:`~seqrec.data.table.InteractionTable` or a
        :class:`~seqrec.data.sequences.SequenceData` (the same columns under other names).
        ``behaviour==NAME`` with a NAME the log does not have is a one-line error.
        """
        cols = getattr(table, "columns", None)
        if self.field == "behaviour":
            names = list(table.behaviour_names)
            if self.operand not in names:
                raise SeqrecError(f"--positive {self}: the log has no behaviour {self.operand!r} (it has: {', '.join(names)})")
            codes = cols["behaviour"] if cols is not None else table.behaviours
            return np.asarray(codes) == names.index(self.operand)
        values = np.asarray(cols["value"] if cols is not None else table.values)
        x = np.float32(self.operand)  # compared in the column's own precision: value==4.5 matches 4.5 read as float32
        if self.op == ">=":
            return values >= x
        return values > x if self.op == ">" else values == x


def parse_positive(expr: str) -> PositiveRule:
    """Parse ``value>=X`` / ``value>X`` / ``value==X`` / ``behaviour==NAME``; one-line error otherwise."""
    text = str(expr)
    match = _VALUE.match(text)
    if match:
        return PositiveRule("value", match.group(1), float(match.group(2)))  # type: ignore[arg-type]
    match = _BEHAVIOUR.match(text)
    if match:
        return PositiveRule("behaviour", "==", match.group(1))
    raise SeqrecError(f"--positive: cannot read {text!r}; expected {FORMS} (e.g. 'value>=4')")
