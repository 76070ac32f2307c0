"""Traced hot paths compute exactly what the eager code does: ``infra.traced.TracedByShape`` and
the single env's traced re-encoding (``encoders.traced.EncoderInference``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from seqrec.encoders.config import EncoderConfig
from seqrec.encoders.model import SequenceEncoder
from seqrec.encoders.traced import EncoderInference
from seqrec.envs.seqrec_env import SeqRecEnv
from seqrec.infra.traced import TracedByShape


class _Affine(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.lin(x)) * x.shape[0]  # a shape-derived constant: exact per traced shape


class _Untraceable(nn.Module):
    def forward(self, x: torch.Tensor) -> dict:
        return {"sum": float(x.sum())}  # not a tensor output: torch.jit.trace refuses it


def test_a_signature_is_traced_after_its_warmup_and_gives_the_eager_result() -> None:
    torch.manual_seed(0)
    f = TracedByShape(_Affine(), warmup=2)
    x = torch.randn(5, 4)
    with torch.no_grad():
        outs = [f(x) for _ in range(4)]
        assert f.n_traces == 1
        y = torch.randn(2, 4)  # another shape: eager until its own warmup is over
        f(y)
        assert f.n_traces == 1
        f(y), f(y)
        assert f.n_traces == 2
        assert torch.equal(f(y), f.module(y))
    for out in outs[1:]:
        assert torch.equal(out, outs[0])


def test_with_autograd_or_past_max_traces_the_module_runs_itself() -> None:
    f = TracedByShape(_Affine(), warmup=0, max_traces=1)
    x = torch.randn(3, 4)
    assert f(x).requires_grad and f.n_traces == 0  # grad enabled: never traced
    with torch.no_grad():
        f(x)
        f(torch.randn(6, 4))
    assert f.n_traces == 1


def test_a_module_that_cannot_be_traced_keeps_running_eagerly() -> None:
    f = TracedByShape(_Untraceable(), warmup=0)
    with torch.no_grad():
        assert f(torch.ones(3)) == {"sum": 3.0}
        assert f(torch.ones(3)) == {"sum": 3.0}
    assert f.n_traces == 0


@pytest.mark.parametrize("encoder,fusion", [("cnn+gnn", "parallel"), ("cnn+gnn", "stacked"), ("gnn", "parallel"), ("cnn", "parallel")])
def test_the_traced_encoder_equals_infer_bit_for_bit(encoder: str, fusion: str) -> None:
    torch.manual_seed(1)
    cfg = EncoderConfig(n_items=30, dim=16, max_len=12, encoder=encoder, fusion=fusion, gnn_len=8, cnn_window=3, n_behaviours=3)
    enc = SequenceEncoder(cfg).eval()
    f = TracedByShape(EncoderInference(enc), warmup=0)
    g = torch.Generator().manual_seed(2)
    for trial in range(12):
        items = torch.randint(0, 6 if trial % 2 else 30, (1, 12), generator=g)  # few distinct items: repeats, loops
        items[0, : trial] = -1  # left padding, up to an all-but-one history
        if trial == 5:
            items[0, 7] = -1  # a gap inside the history
        if trial == 11:
            items[:] = -1  # an empty history
        beh = torch.randint(0, 3, (1, 12), generator=g)
        with torch.inference_mode():
            assert torch.equal(f(items, beh), enc.infer(items, beh)), f"trial {trial}"
    assert f.n_traces == 1


def test_the_single_env_steps_identically_with_and_without_the_trace(tiny_bundle: Path) -> None:
    def run(traced: bool) -> tuple[list[np.ndarray], int]:
        env = SeqRecEnv(bundle=tiny_bundle)
        if not traced:
            env.sessions._one_row.warmup = 10**9
        obs, _ = env.reset(seed=4)
        g = np.random.default_rng(0)
        out, clicks = [obs], 0
        for _ in range(120):
            obs, reward, term, trunc, _ = env.step(int(g.integers(env.action_space.n)))
            out.append(obs)
            clicks += reward > 0
            if term or trunc:
                out.append(env.reset()[0])
        assert env.sessions._one_row.n_traces == (1 if traced else 0)
        return out, clicks

    (a, clicks), (b, _) = run(True), run(False)
    assert clicks > 5, "too few clicks to exercise the re-encoding"
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
