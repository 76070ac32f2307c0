"""The user simulator: a fitted response model, outcome model and exit model behind one batched API.

>>> sim = fit_simulator(seq, SimulatorConfig())                          # doctest: +SKIP
>>> state = sim.initial_state(users, history, behaviours)                 # (B,), (B, L0), (B, L0)
>>> g = torch.Generator().manual_seed(0)
>>> res = sim.step(state, items, g)       # items (B,) or a slate (B, k)
>>> res.clicks, res.clicked_item, res.behaviours, res.values, res.left, res.state

Everything is batched over users (no Python loop per user); the randomness of a step comes
only from the generator passed in, with a fixed number of draws per step, so the same
generator seed and the same items give identical results.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from seqrec.infra.atomic import atomic_write
from seqrec.infra.errors import CheckpointError, SeqrecError
from seqrec.data.sequences import SequenceData
from seqrec.simulators.behaviour import OutcomeModel
from seqrec.simulators.calibration import Calibration
from seqrec.simulators.config import SimulatorConfig
from seqrec.simulators.dynamics import ExitModel, SimState, compact_left, fit_exit_model, push_click
from seqrec.simulators.examples import ClickLog
from seqrec.simulators.response import ResponseModel
from seqrec.simulators.response_fit import fit_response_model

FORMAT_VERSION = 1
"""Version of the checkpoint written by :meth:`UserSimulator.save`."""

CHECKPOINT_NAME = "simulator.pt"


@dataclass
class StepResult:
    """Outcome of :meth:`UserSimulator.step` for B users.

    :param clicks: 1.0 where the user clicked, ``(B,)`` float.
    :param clicked_item: the clicked item, -1 if none, ``(B,)`` long.
    :param position: slate position of the click (0 for single items), -1 if none, ``(B,)`` long.
    :param behaviours: behaviour index that followed the click (in ``behaviour_names``), -1 if none, ``(B,)`` long.
    :param values: value of that outcome (rating, funnel depth), 0.0 if no click, ``(B,)`` float.
    :param left: the user ended the session after this step, ``(B,)`` bool.
    :param click_prob: probability of a click this step (of any slate position), ``(B,)`` float.
    :param state: the next state.
    """

    clicks: Tensor
    clicked_item: Tensor
    position: Tensor
    behaviours: Tensor
    values: Tensor
    left: Tensor
    click_prob: Tensor
    state: SimState


CATALOGUE_CELLS = 1 << 15
"""Largest ``B * L * M`` (users x history x items) whose whole-catalogue scores a simulator caches
per state: a single env's user on a catalogue of up to ~650 items then scores its step's item
with two gathers instead of the ~20 operations of ``score_items`` (most of a step at one row);
larger batches or catalogues would spend more recomputing it after each click than they save."""


class UserSimulator:
    """Simulated users fitted from a log; see the module docstring and :mod:`~seqrec.simulators.dynamics`.

    :param model: the fitted :class:`ResponseModel` (raw logits).
    :param calibration: raw logit -> P(click).
    :param outcomes: what follows a click.
    :param exit_model: when the user leaves.
    :param config: the config it was fitted with.
    :param behaviour_names: behaviour vocabulary of the log.
    :param dataset_key: ``seq.meta["key"]`` of the log it was fitted on.
    :param info: fit diagnostics (kept in the checkpoint and the fidelity report).
    """

    def __init__(self, model: ResponseModel, calibration: Calibration, outcomes: OutcomeModel, exit_model: ExitModel,
                 config: SimulatorConfig, behaviour_names: list[str], positive_behaviours: list[int],
                 dataset_key: str | None = None, info: dict | None = None):
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.calibration = calibration
        self.outcomes = outcomes
        self.exit_model = exit_model
        self.config = config
        self.behaviour_names = list(behaviour_names)
        self.positive_behaviours = list(positive_behaviours)
        self.dataset_key = dataset_key
        self.info = dict(info or {})
        self._refresh()

    def _refresh(self) -> None:
        with torch.no_grad():
            self._tables = self.model.item_table()
            self._decay = float(self.model.decay)
        dev = self._tables.q.device
        self._positive = torch.zeros(max(len(self.behaviour_names), 1), dtype=torch.bool, device=dev)
        self._positive[self.positive_behaviours] = True
        self._exam: dict[tuple, Tensor] = {}
        self._terms_cache: tuple | None = None  # (users, history, HistoryTerms, catalogue terms) of the last state scored

    def __repr__(self) -> str:
        return (f"UserSimulator(n_users={self.n_users}, n_items={self.n_items}, behaviours={self.behaviour_names}, "
                f"exit=sigmoid({self.exit_model.intercept:.3g} + {self.exit_model.slope:.3g}*misses))")

    # -- facts ----------------------------------------------------------------------------
    @property
    def n_items(self) -> int:
        return self.model.n_items

    @property
    def n_users(self) -> int:
        return self.model.n_users

    @property
    def max_history(self) -> int:
        return self.model.max_history

    @property
    def device(self) -> torch.device:
        return self._tables.q.device

    def to(self, device: torch.device | str) -> "UserSimulator":
        """Move every tensor to ``device`` (returns self)."""
        self.model.to(device)
        self.outcomes = self.outcomes.to(device)
        self._refresh()
        return self

    # -- state ----------------------------------------------------------------------------
    def initial_state(self, users: Tensor, history: Tensor, behaviours: Tensor | None = None) -> SimState:
        """State of B users starting from a logged history prefix.

        :param users: user indices ``(B,)`` long.
        :param history: item ids ``(B, L0)`` long, left-padded with -1, most recent last (any L0).
        :param behaviours: behaviour index of each entry ``(B, L0)`` or None (all clicks).
            Entries whose behaviour is a real negative (``view`` …) are dropped: the
            simulated history holds clicks only, the last :attr:`max_history` of them.
        :return: a :class:`SimState` with satiation ``gamma ** age`` and zero misses and steps.
        """
        dev = self.device
        users = self._check_ids(users, "users", self.n_users, (1,)).to(dev)
        history = torch.as_tensor(history, device=dev)
        if history.dtype.is_floating_point or history.dtype == torch.bool or history.dim() != 2 or history.shape[0] != users.shape[0]:
            raise SeqrecError(f"history must be an integer tensor of shape (B, L) with B = {users.shape[0]}, "
                              f"got {tuple(history.shape)} {history.dtype}")
        history = history.long()
        if history.numel() and (history.min() < -1 or history.max() >= self.n_items):
            raise SeqrecError(f"history has item ids outside [-1, {self.n_items - 1}]")
        keep = history >= 0
        if behaviours is None:
            behaviours = torch.where(keep, torch.as_tensor(self.positive_behaviours[0], device=dev), torch.full_like(history, -1))
        else:
            behaviours = torch.as_tensor(behaviours, device=dev).long()
            if behaviours.shape != history.shape:
                raise SeqrecError(f"behaviours shape {tuple(behaviours.shape)} != history shape {tuple(history.shape)}")
            if behaviours.numel() and behaviours[keep].numel() and (behaviours[keep].min() < 0 or behaviours[keep].max() >= len(self.behaviour_names)):
                raise SeqrecError(f"behaviours outside [0, {len(self.behaviour_names) - 1}] where history is set")
            keep = keep & self._positive[behaviours.clamp(0, len(self.behaviour_names) - 1)]
        L = self.max_history
        hist, beh = compact_left(history, keep, L, behaviours)
        B = users.shape[0]
        with torch.no_grad():
            sat = self.model.history_satiation(hist)
        zero = torch.zeros(B, dtype=torch.long, device=dev)
        return SimState(users=users, history=hist, behaviours=beh, misses=zero, satiation=sat, steps=zero.clone())

    # -- the model ------------------------------------------------------------------------
    def click_probability(self, state: SimState, items: Tensor, *, validate: bool = True) -> Tensor:
        """P(click) of each item if shown alone, satiation included.

        :param items: ``(B,)`` or ``(B, K)`` long.
        :param validate: check ``items`` (ids, shape, batch); a caller that has checked them
            already (the envs) passes False and ``items`` as a long tensor on :attr:`device`.
        :return: same shape as ``items``, float in (0, 1).
        """
        if validate:
            items = self._check_ids(items, "items", self.n_items, (1, 2)).to(self.device)
            if items.shape[0] != state.batch_size:
                raise SeqrecError(f"items has batch {items.shape[0]} but the state has {state.batch_size} users")
        single = items.dim() == 1
        it = items[:, None] if single else items
        # the model's (B, L, K) similarity terms: score K in blocks that keep them near 2^24 floats,
        # so scoring a whole large catalogue for a batch of users stays within memory
        block = max(1, (1 << 24) // max(it.shape[0] * max(state.history.shape[1], 1), 1))
        with torch.no_grad():
            terms, catalogue = self._history_terms(state)
            if catalogue is not None:
                z = self.model.score_catalogue(*catalogue, it, state.satiation)
            else:
                blocks = [self.model.score_items(terms, it[:, k:k + block], state.satiation, self._tables) for k in range(0, it.shape[1], block)]
                z = blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=1)
            p = self.calibration.probability(z)
        return p[:, 0] if single else p

    def _history_terms(self, state: SimState):
        """The response model's history terms of ``state`` and, for a small batch and catalogue
        (``B * L * M <= CATALOGUE_CELLS``: a single env's user), its catalogue terms
        (:meth:`~seqrec.simulators.response.ResponseModel.catalogue_terms`, else None); reused
        while the state's users and history are the same tensors: states are never written in
        place (:func:`~seqrec.simulators.dynamics.push_click` shares them when nobody clicked,
        :meth:`SimState.replace_rows` copies), so the same tensor objects mean the same
        histories, and most steps (no click) skip that work."""
        cached = self._terms_cache
        if cached is not None and cached[0] is state.users and cached[1] is state.history:
            return cached[2], cached[3]
        terms = self.model.history_terms(state.users, state.history, self._tables)
        small = state.batch_size * state.history.shape[1] * self.n_items <= CATALOGUE_CELLS
        catalogue = self.model.catalogue_terms(terms, self._tables) if small else None
        self._terms_cache = (state.users, state.history, terms, catalogue)
        return terms, catalogue

    def exit_probability(self, state: SimState) -> Tensor:
        """P(the user leaves after a step that ends in ``state``), ``(B,)`` float."""
        return self.exit_model.probability(state.misses)

    def step(self, state: SimState, items: Tensor, generator: torch.Generator | None = None, *,
             noise: Tensor | None = None, validate: bool = True) -> StepResult:
        """Show each user one item ``(B,)`` or a slate ``(B, k)`` and simulate the response.

        Slates follow the cascade model: positions are examined in order, position ``j`` with
        probability ``examination_decay ** j``, and the first examined position the user
        clicks (with its :meth:`click_probability`) is the click; the user then stops.
        Draws per step: ``B * k`` click uniforms, ``B`` outcome uniforms, ``B`` exit uniforms,
        from ``generator`` — or, given ``noise`` ``(B, k + 2)`` uniforms, from those (the envs
        pass per-user counter-based draws so a user behaves the same alone or in a batch).
        ``validate=False``: ``items`` (long, on :attr:`device`) and ``noise`` are known good
        (see :meth:`click_probability`).
        """
        p = self.click_probability(state, items, validate=validate)
        dev = self.device
        single = p.dim() == 1
        P = p[:, None] if single else p
        it = items[:, None] if single else items
        B, k = P.shape
        if validate:
            it = it.to(dev).long()
            if noise is not None and tuple(noise.shape) != (B, k + 2):
                raise SeqrecError(f"noise must have shape ({B}, {k + 2}), got {tuple(noise.shape)}")
        if noise is None:
            if generator is None:
                raise SeqrecError("step needs a torch.Generator or a noise tensor of uniforms")
            noise = torch.rand(B, k + 2, generator=generator, device=dev)
        noise = noise.to(device=dev, dtype=P.dtype)
        clicked, pos, item, click_prob = self._cascade(P, it, noise[:, :k])
        any_click = bool(clicked.any())
        if any_click:
            beh, val = self.outcomes.sample(state.users, item.clamp_min(0), noise[:, k])
            beh = torch.where(clicked, beh, -1)
            val = torch.where(clicked, val, 0.0)
        else:  # the outcome uniforms go unused, as they would where no row clicked
            beh, val = torch.full_like(item, -1), torch.zeros_like(click_prob)
        nxt = push_click(state, clicked, item, beh, self._decay, self.config.idle_satiation_decay, any_click=any_click)
        left = noise[:, k + 1] < self.exit_model.probability(nxt.misses)
        return StepResult(clicks=clicked.to(torch.float32), clicked_item=item, position=pos, behaviours=beh, values=val,
                          left=left, click_prob=click_prob, state=nxt)

    def _cascade(self, P: Tensor, items: Tensor, u_click: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The cascade click of :meth:`step`: P(click) and items ``(B, k)``, uniforms ``(B, k)`` ->
        clicked ``(B,)`` bool, position, clicked item (-1: none) and P(any click) ``(B,)``."""
        if P.shape[1] == 1:  # one item: no examination decay (its weight is decay ** 0 = 1)
            clicked = u_click[:, 0] < P[:, 0]
            return clicked, clicked.long() - 1, torch.where(clicked, items[:, 0], -1), 1 - (1 - P[:, 0])
        q = P * self._examination(P.shape[1], P.dtype)  # P(examined and clicked | reached)
        hit = u_click < q
        clicked = hit.any(dim=1)
        pos = torch.where(clicked, hit.to(torch.int8).argmax(dim=1), -1)
        item = torch.where(clicked, items.gather(1, pos.clamp_min(0)[:, None])[:, 0], -1)
        return clicked, pos, item, 1 - torch.prod(1 - q, dim=1)

    def _examination(self, k: int, dtype: torch.dtype) -> Tensor:
        """``examination_decay ** j`` for the slate positions ``j < k``, ``(k,)``, cached per size."""
        key = (k, dtype, self.device)
        if key not in self._exam:
            self._exam[key] = self.config.examination_decay ** torch.arange(k, device=self.device, dtype=dtype)
        return self._exam[key]

    @staticmethod
    def _check_ids(x: Any, name: str, high: int, ndim: tuple[int, ...]) -> Tensor:
        t = torch.as_tensor(x)
        if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
            raise SeqrecError(f"{name} must be an integer tensor, got dtype {t.dtype}")
        if t.dim() not in ndim:
            raise SeqrecError(f"{name} must have {' or '.join(map(str, ndim))} dimension(s), got shape {tuple(t.shape)}")
        if t.numel() and (t.min() < 0 or t.max() >= high):
            bad = t[(t < 0) | (t >= high)].flatten()[0]
            raise SeqrecError(f"{name} has value {int(bad)} outside [0, {high - 1}]")
        return t.long()

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the checkpoint atomically (temp file in the same folder, then rename); returns the path."""
        path = Path(path)
        if path.is_dir():
            path = path / CHECKPOINT_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format_version": FORMAT_VERSION,
            "dataset_key": self.dataset_key,
            "config": json.dumps(self.config.to_dict()),
            "behaviour_names": list(self.behaviour_names),
            "positive_behaviours": list(self.positive_behaviours),
            "model_args": json.dumps({"n_users": self.model.n_users, "n_items": self.model.n_items, "dim": self.model.dim,
                                      "max_history": self.model.max_history,
                                      "similarity_threshold": self.model.similarity_threshold}),
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "calibration": json.dumps(self.calibration.to_dict()),
            "outcomes": {k: v.cpu() for k, v in self.outcomes.state().items()},
            "outcome_experts": self.outcomes.experts,
            "exit": json.dumps(self.exit_model.to_dict()),
            "info": json.dumps(self.info, default=str),
        }
        buf = io.BytesIO()
        torch.save(payload, buf)
        data = buf.getvalue()
        digest = hashlib.sha256(data).hexdigest().encode()
        with atomic_write(path, "wb") as fh:
            fh.write(b"SEQREC-SIM\n" + digest + b"\n" + data)
        return path

    @classmethod
    def load(cls, path: str | Path, dataset_key: str | None = None, map_location: str | torch.device = "cpu") -> "UserSimulator":
        """Read a checkpoint written by :meth:`save`.

        :param dataset_key: when given, the checkpoint must have been fitted on the dataset
            with this ``seq.meta["key"]``.
        :raises CheckpointError: (one line) missing, truncated or corrupted file, another
            format version, or a checkpoint fitted on another dataset.
        """
        path = Path(path)
        if path.is_dir():
            path = path / CHECKPOINT_NAME
        if not path.is_file():
            raise CheckpointError(f"{path}: simulator checkpoint missing; fit one with `seqrec simulator fit DATA --out DIR`")
        try:
            raw = path.read_bytes()
        except OSError as err:
            raise CheckpointError(f"{path}: unreadable simulator checkpoint ({type(err).__name__})") from None
        head, _, rest = raw.partition(b"\n")
        digest, _, data = rest.partition(b"\n")
        if head != b"SEQREC-SIM":
            raise CheckpointError(f"{path}: not a seqrec simulator checkpoint")
        if hashlib.sha256(data).hexdigest().encode() != digest:
            raise CheckpointError(f"{path}: simulator checkpoint is truncated or corrupted (checksum mismatch); refit it")
        try:
            ck = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
            version = int(ck["format_version"])
        except Exception as err:  # torch/zip raise many types
            msg = " ".join(str(err).split())[:160]
            raise CheckpointError(f"{path}: corrupted simulator checkpoint ({type(err).__name__}: {msg})") from None
        if version != FORMAT_VERSION:
            raise CheckpointError(f"{path}: simulator checkpoint format version {version}, this seqrec reads {FORMAT_VERSION}; refit it")
        if dataset_key is not None and ck.get("dataset_key") != dataset_key:
            raise CheckpointError(f"{path}: simulator was fitted on dataset {ck.get('dataset_key')!r}, not on {dataset_key!r}; "
                                  f"refit it on this data")
        try:
            config = SimulatorConfig.from_dict(json.loads(ck["config"]))
            margs = json.loads(ck["model_args"])
            sd = ck["model"]
            model = ResponseModel(margs["n_users"], margs["n_items"], margs["dim"], margs["max_history"],
                                  sd.get("features"), sd.get("similarity_basis"), margs["similarity_threshold"],
                                  sd.get("item_has_id"), sd.get("user_has_id"))
            model.load_state_dict(sd)
            cal = json.loads(ck["calibration"])
            calibration = Calibration(kind=cal["kind"], a=cal["a"], b=cal["b"], x=cal["x"], y=cal["y"], shift=cal.get("shift", 0.0))
            outcomes = OutcomeModel(**{k: ck["outcomes"][k] for k in ("behaviour", "value", "log_item", "log_user")},
                                    experts=ck["outcome_experts"])
            exit_model = ExitModel(**json.loads(ck["exit"]))
            sim = cls(model, calibration, outcomes, exit_model, config, ck["behaviour_names"], ck["positive_behaviours"],
                      dataset_key=ck.get("dataset_key"), info=json.loads(ck["info"]))
        except Exception as err:
            msg = " ".join(str(err).split())[:160]
            raise CheckpointError(f"{path}: corrupted simulator checkpoint ({type(err).__name__}: {msg})") from None
        return sim.to(map_location)


def fit_simulator(seq: SequenceData, config: SimulatorConfig | None = None, out_dir: Path | None = None, *,
                  on_epoch: Callable[[int, dict], None] | None = None) -> UserSimulator:
    """Fit the response, outcome and exit models on ``seq`` and return the simulator.

    :param seq: a prepared dataset (:func:`seqrec.data.prepare.prepare_dataset`).
    :param config: how to fit; :class:`SimulatorConfig` defaults when None.
    :param out_dir: when given, the checkpoint is written there as ``simulator.pt``.
    :param on_epoch: called after every training epoch with ``(epoch, metrics)`` (progress bars).
    """
    config = config or SimulatorConfig()
    t0 = time.perf_counter()
    clicks = ClickLog.build(seq, config.negative_behaviours)
    fit = fit_response_model(seq, clicks, config, on_epoch=on_epoch)
    outcomes = OutcomeModel.fit(seq, clicks.positive)
    exit_model = fit_exit_model(seq, clicks.positive, config.session_gap_s, config.max_misses, config.default_exit_slope)
    positive_codes = sorted(set(np.unique(seq.behaviours[clicks.positive]).astype(int).tolist()))
    info = {"response": fit.info, "exit": exit_model.to_dict(), "outcomes": {
        "n": outcomes.n_outcomes, "experts": outcomes.experts,
        "labels": [f"{seq.behaviour_names[int(b)]}={float(v):g}" for b, v in zip(outcomes.behaviour, outcomes.value)]},
        "dataset": {"key": seq.meta.get("key"), "source": seq.meta.get("source"), "n_users": seq.n_users,
                    "n_items": seq.n_items, "n_events": seq.n_events},
        "fit_seconds": round(time.perf_counter() - t0, 2)}
    sim = UserSimulator(fit.model, fit.calibration, outcomes, exit_model, config, list(seq.behaviour_names),
                        positive_codes, dataset_key=seq.meta.get("key"), info=info)
    if out_dir is not None:
        sim.save(Path(out_dir) / CHECKPOINT_NAME)
    return sim
