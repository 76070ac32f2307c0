"""Epoch sizes under a wall-clock budget: subsample a large log's epochs rather than give up on it.

Encoder pretraining and the simulator fit both train for epochs over every example of the
log. On a log of millions of events one epoch alone may outlast the time a user has, so
with a budget each epoch draws a random subset of the examples, sized from the step time
measured over the first :data:`PROBE_STEPS` steps so that :data:`BUDGET_EPOCHS` epochs (and
their validation) fit in it; early stopping still sees several validation points, and every
example stays equally likely to be seen.

>>> b = EpochBudget(n_examples=10_000, batch_size=100, max_seconds=10.0)
>>> b.limit
10000
>>> b.probe(seconds=2.0, steps=20, overhead_s=0.5)  # 1 ms per example: 2 s per epoch of 2,000
>>> b.limit, b.subsampled
(2000, True)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

__all__ = ["BUDGET_EPOCHS", "PROBE_STEPS", "EpochBudget"]

PROBE_STEPS = 20
"""Training steps timed before a budget sets the epoch size."""
BUDGET_EPOCHS = 4
"""A budget is spread over at least this many epochs."""


@dataclass
class EpochBudget:
    """How many examples each epoch draws: all, ``examples_per_epoch``, or what the budget allows.

    :param n_examples: training examples in the log.
    :param batch_size: examples per step (an epoch keeps at least one full step).
    :param max_seconds: wall-clock budget from construction; None: no budget.
    :param examples_per_epoch: a fixed cap on the epoch size; None: no cap.
    """

    n_examples: int
    batch_size: int
    max_seconds: float | None = None
    examples_per_epoch: int | None = None
    start: float = field(default_factory=time.perf_counter)
    reserve_s: float = 0.0
    """Seconds kept back for work after training (a final test evaluation); see :meth:`reserve`."""
    limit: int = field(init=False)
    """Examples the next epoch draws."""
    probed: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        cap = self.examples_per_epoch if self.examples_per_epoch is not None else self.n_examples
        self.limit = max(1, min(self.n_examples, cap))
        self.probed = self.max_seconds is None

    @property
    def subsampled(self) -> bool:
        """Whether an epoch draws fewer than every example."""
        return self.limit < self.n_examples

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    @property
    def training_seconds(self) -> float | None:
        """The budget less what is reserved (at least a tenth of it); None: no budget."""
        return None if self.max_seconds is None else max(self.max_seconds - self.reserve_s, 0.1 * self.max_seconds)

    def reserve(self, seconds: float) -> None:
        """Keep ``seconds`` of the budget for what follows training (measured, e.g. the test
        split's evaluation estimated from the validation's)."""
        self.reserve_s = max(0.0, float(seconds))

    def probe(self, seconds: float, steps: int, overhead_s: float = 0.0) -> None:
        """Set the epoch size from ``steps`` training steps that took ``seconds``.

        :param overhead_s: time each epoch spends besides its steps (validation).
        """
        self.probed = True
        if self.max_seconds is None or steps < 1:
            return
        per_example = seconds / (steps * self.batch_size)
        per_epoch = self.training_seconds / BUDGET_EPOCHS - overhead_s
        allowed = int(per_epoch / per_example) if per_example > 0 else self.n_examples
        self.limit = max(self.batch_size, min(self.limit, allowed))

    def exhausted(self) -> bool:
        """Whether the budget is spent (no budget: never)."""
        return self.max_seconds is not None and self.elapsed >= self.training_seconds

    def planned_epochs(self, epochs: int) -> int:
        """Epochs a run of at most ``epochs`` is expected to reach: ``BUDGET_EPOCHS`` when the
        budget sized the epochs (the budget then ends the run), else ``epochs``."""
        return min(epochs, BUDGET_EPOCHS) if self.max_seconds is not None and self.subsampled else epochs

    def steps(self) -> int:
        """Steps in an epoch of ``limit`` examples."""
        return math.ceil(self.limit / self.batch_size)

    def to_dict(self) -> dict:
        """What ``metrics.json`` records: the budget, the epoch size used and whether it subsampled."""
        return {"max_seconds": self.max_seconds, "reserved_s": round(self.reserve_s, 1), "examples_per_epoch": self.limit,
                "n_examples": self.n_examples, "subsampled": self.subsampled}
