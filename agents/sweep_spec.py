"""The spec of ``seqrec sweep``: what the trials share, the grid, an optional Tune search space and
the scoring of every trial (the format is in :mod:`seqrec.agents.sweep`'s docstring); each trial's
``TrainConfig`` and folder name.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqrec.agents.train import TrainConfig, load_config_file
from seqrec.infra.configs import from_dict
from seqrec.infra.errors import SeqrecError

__all__ = ["DISTRIBUTIONS", "SearchSpec", "SweepEvaluation", "SweepSpec", "load_spec", "trial_config", "trial_name"]

DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice")


@dataclass
class SweepEvaluation:
    """How each trial's final model is scored: the same seeded users for every trial."""

    episodes: int = 200
    """Simulated users per trial."""
    seed: int = 0
    """Episode i is seeded ``seed + i`` (common random numbers across trials)."""


@dataclass
class SearchSpec:
    """An optional Tune search space, sampled ``num_samples`` times per grid point."""

    space: dict[str, dict[str, list]] = field(default_factory=dict)
    """Option -> ``{distribution: args}``: uniform [lo, hi], loguniform [lo, hi], randint [lo, hi), choice [values]."""
    algorithm: str = "random"
    """``random`` (Tune's BasicVariantGenerator, combines with the grid) or a ``tune.create_searcher`` name."""
    num_samples: int = 1
    """Draws (trials) per grid point."""
    metric: str = "mean_return"
    """What a searcher maximises (a key of ``trial.json``)."""

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise SeqrecError(f"search.num_samples must be >= 1, not {self.num_samples}")
        for name, dist in self.space.items():
            if not isinstance(dist, dict) or len(dist) != 1 or next(iter(dist)) not in DISTRIBUTIONS:
                raise SeqrecError(f"search.space.{name} must be one of {{{'|'.join(DISTRIBUTIONS)}: [...]}}, not {dist!r}")


@dataclass
class SweepSpec:
    """What ``seqrec sweep SPEC`` runs (see the module docstring)."""

    base: dict[str, Any] = field(default_factory=dict)
    """TrainConfig options shared by every trial."""
    grid: dict[str, list] = field(default_factory=dict)
    """TrainConfig option -> the values swept (every combination is one configuration)."""
    search: SearchSpec | None = None
    """Optional Tune search space."""
    evaluation: SweepEvaluation = field(default_factory=SweepEvaluation)
    """Scoring of every trial's final model."""

    def __post_init__(self) -> None:
        for name, values in self.grid.items():
            if not isinstance(values, list) or not values:
                raise SeqrecError(f"grid.{name} must be a non-empty list, not {values!r}")
        overlap = sorted((set(self.base) | set(self.search.space if self.search else {})) & set(self.grid))
        if overlap:
            raise SeqrecError(f"option(s) {', '.join(overlap)} are both in the grid and in base or search.space")

    def points(self) -> list[dict[str, Any]]:
        """Every grid combination, in the spec's order (one dict of options each)."""
        names = list(self.grid)
        return [dict(zip(names, combo)) for combo in itertools.product(*(self.grid[n] for n in names))] or [{}]


def load_spec(path: str | Path) -> SweepSpec:
    """Read and check a spec file: unknown sections, options and algorithms are one-line errors naming the file."""
    path = Path(path)
    raw = load_config_file(path)
    try:
        if not isinstance(raw, dict):
            raise SeqrecError("a sweep spec is a mapping with base, grid, search and evaluation")
        raw = dict(raw)
        if raw.get("search") is not None:
            raw["search"] = from_dict(SearchSpec, raw["search"])
        if raw.get("evaluation") is not None:
            raw["evaluation"] = from_dict(SweepEvaluation, raw["evaluation"])
        spec = from_dict(SweepSpec, raw)
        for point in spec.points():  # every combination must be a valid TrainConfig (algo, action mode, option names)
            trial_config(spec, point, {}, Path("runs"))
    except SeqrecError as err:
        raise SeqrecError(f"{path}: {err}") from None
    return spec


def trial_config(spec: SweepSpec, point: dict[str, Any], sampled: dict[str, Any], folder: Path) -> TrainConfig:
    """The TrainConfig of one trial: base, then its grid point, then its sampled values."""
    return TrainConfig.from_sources(None, {**spec.base, **point, **sampled, "out": str(folder)})


def trial_name(params: dict[str, Any]) -> str:
    """A trial's folder name from its options: ``algo=ppo,seed=0`` (a bundle by its folder name)."""
    parts = []
    for k, v in params.items():
        if k == "bundle" and v is not None:
            v = Path(str(v)).name
        elif isinstance(v, float):
            v = f"{v:.4g}"
        elif isinstance(v, (dict, list)):
            v = json.dumps(v, sort_keys=True, separators=(",", ":"))
        parts.append(f"{k}={v}".replace("/", "_").replace(" ", ""))
    return ",".join(parts) or "trial"
