"""seqrec.encoders on large catalogues: sampled softmax (log-Q correction) and sampled evaluation."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from seqrec.data.prepare import prepare_dataset
from seqrec.encoders import train as train_module
from seqrec.encoders.config import EncoderConfig, PretrainConfig
from seqrec.encoders.metrics import ranking_metrics, sampled_target_ranks, target_ranks
from seqrec.encoders.model import SequenceEncoder
from seqrec.encoders.sampled import NegativeSampler, corrected_logits, sampled_softmax_loss
from seqrec.encoders.train import evaluate, pretrain
from seqrec.infra.errors import SeqrecError

sys.path.insert(0, str(Path(__file__).parent))
from test_encoders import write_pattern_log  # noqa: E402


# ---------------------------------------------------------------------------- the math
def test_log_q_correction_on_hand_made_example() -> None:
    sampler = NegativeSampler(np.array([3, 0, 7]), n_sampled=4, alpha=1.0)  # Q ∝ count + 1 = (4, 1, 8) / 13
    expected_q = torch.tensor([4 / 13, 1 / 13, 8 / 13])
    torch.testing.assert_close(sampler.probs, expected_q)
    torch.testing.assert_close(sampler.log_expected_count(torch.arange(3)), torch.log(4 * expected_q))
    target_logits = torch.tensor([1.0, 2.0])  # targets: items 0 and 2
    negatives = torch.tensor([2, 1, 2])
    negative_logits = torch.tensor([[0.5, -1.0, 0.5], [3.0, 0.0, 3.0]])
    hits = negatives.unsqueeze(0) == torch.tensor([0, 2]).unsqueeze(1)
    logits = corrected_logits(target_logits, negative_logits, sampler.log_expected_count(torch.tensor([0, 2])),
                              sampler.log_expected_count(negatives), hits)  # fmt: skip
    log_mq = [math.log(4 * 4 / 13), math.log(4 * 1 / 13), math.log(4 * 8 / 13)]
    want = torch.tensor(
        [
            [1.0 - log_mq[0], 0.5 - log_mq[2], -1.0 - log_mq[1], 0.5 - log_mq[2]],
            [2.0 - log_mq[2], -math.inf, 0.0 - log_mq[1], -math.inf],  # item 2 is the target: accidental hits removed
        ]
    )
    torch.testing.assert_close(logits, want)


def test_sampled_loss_is_the_full_softmax_when_the_draw_is_the_catalogue() -> None:
    """Negatives = every item once with uniform Q and m = n: log(m Q) = 0, the hit removed, so exact."""
    torch.manual_seed(0)
    model = SequenceEncoder(EncoderConfig(n_items=12, dim=8, max_len=6, cnn_window=3, gnn_len=6, n_item_features=3)).eval()
    model.set_item_features(torch.rand(12, 3))
    state, targets = torch.randn(5, 8), torch.tensor([0, 3, 3, 11, 7])
    sampler = NegativeSampler(np.zeros(12), n_sampled=12, alpha=0.0)
    everything = torch.arange(12)
    [loss] = sampled_softmax_loss(
        [state], model.item_vectors(targets), model.item_bias[targets], model.item_vectors(everything), model.item_bias,
        sampler.log_expected_count(targets), sampler.log_expected_count(everything), everything.unsqueeze(0) == targets.unsqueeze(1),
    )  # fmt: skip
    torch.testing.assert_close(loss, F.cross_entropy(model.scores(state), targets))
    torch.testing.assert_close(model.item_vectors(torch.tensor([4, 0, 4])), model.item_embeddings()[[4, 0, 4]])


def test_sampler_follows_its_proposal_and_its_generator() -> None:
    sampler = NegativeSampler(np.array([0, 1, 10, 100, 1000]), n_sampled=20_000, alpha=0.75)
    ids, log_q = sampler.draw(torch.Generator().manual_seed(1))
    again, _ = sampler.draw(torch.Generator().manual_seed(1))
    assert torch.equal(ids, again) and ids.shape == (20_000,) and log_q.shape == (20_000,)
    weights = (np.array([0, 1, 10, 100, 1000]) + 1.0) ** 0.75
    np.testing.assert_allclose(np.bincount(ids.numpy(), minlength=5) / 20_000, weights / weights.sum(), atol=0.01)
    assert (np.bincount(ids.numpy(), minlength=5) > 0).all()  # add-one smoothing: even the unseen item is drawn


def test_sampled_ranks_on_hand_made_example() -> None:
    target_scores = torch.tensor([0.5, 0.5])
    negative_scores = torch.tensor([[0.9, 0.1, 0.7, 0.6], [0.9, 0.9, 0.1, 0.2]])
    excluded = torch.tensor([[False, False, True, False], [False, False, False, False]])
    assert sampled_target_ranks(target_scores, negative_scores, excluded).tolist() == [3, 3]


# ---------------------------------------------------------------------------- pretraining
@pytest.fixture
def pattern_data(tmp_path: Path):
    return prepare_dataset(write_pattern_log(tmp_path / "log.csv"), cache_dir=tmp_path / "cache")


def tiny_setup(seq, **train_kw) -> tuple[EncoderConfig, PretrainConfig]:
    config = EncoderConfig(n_items=seq.n_items, dim=16, max_len=10, cnn_window=3, n_horizontal=4, n_vertical=2, gnn_len=10)
    base = dict(epochs=4, batch_size=64, lr=1e-2, patience=4, seed=3, precision="fp32", progress=False, tensorboard=False)
    return config, PretrainConfig(**{**base, **train_kw})  # type: ignore[arg-type]


def count_training_scores(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Patch SequenceEncoder.scores to count its calls with autograd on (training steps)."""
    calls: list[int] = []
    full_scores = SequenceEncoder.scores

    def scores(self, state, table=None):
        if torch.is_grad_enabled():
            calls.append(1)
        return full_scores(self, state, table)

    monkeypatch.setattr(SequenceEncoder, "scores", scores)
    return calls


def test_sampled_softmax_above_the_threshold_full_below(tmp_path: Path, pattern_data, monkeypatch: pytest.MonkeyPatch) -> None:
    seq = pattern_data
    calls = count_training_scores(monkeypatch)
    config, train = tiny_setup(seq, epochs=1)
    full = pretrain(seq, config, train, tmp_path / "full")  # 20 items <= the default threshold
    assert full["loss"] == "full-softmax" and calls and full["test"]["protocol"] == "full"
    calls.clear()
    config, train = tiny_setup(seq, epochs=1, sampled_softmax_above=seq.n_items - 1, n_sampled=8)
    sampled = pretrain(seq, config, train, tmp_path / "sampled")
    assert sampled["loss"] == "sampled-softmax-8" and not calls  # no full-catalogue logits in a training step
    assert sampled["pretrain_config"]["n_sampled"] == 8


def test_sampled_softmax_learns_and_is_deterministic(tmp_path: Path, pattern_data) -> None:
    seq = pattern_data
    config, train = tiny_setup(seq, sampled_softmax_above=5, n_sampled=8, precision="bf16")
    first = pretrain(seq, config, train, tmp_path / "a")
    second = pretrain(seq, config, train, tmp_path / "b")
    assert first["valid"]["ndcg@10"] > first["initial_valid"]["ndcg@10"] + 0.1
    assert first["history"][-1]["loss"] < first["history"][0]["loss"]
    assert first["test"] == second["test"] and [r["loss"] for r in first["history"]] == [r["loss"] for r in second["history"]]
    popularity = torch.from_numpy(seq.item_popularity(("train",)).astype(np.float64))
    valid_targets = torch.from_numpy(seq.items[seq.positions("valid")])
    by_popularity = ranking_metrics(target_ranks(popularity.expand(len(valid_targets), -1), valid_targets))
    assert first["valid"]["ndcg@10"] > by_popularity["ndcg@10"] + 0.1


# ---------------------------------------------------------------------------- evaluation
def test_sampled_evaluation_states_its_protocol(tmp_path: Path, pattern_data) -> None:
    seq = pattern_data
    config, train = tiny_setup(seq, epochs=2, full_ranking_max_items=5, eval_negatives=10)
    metrics = pretrain(seq, config, train, tmp_path)
    encoder = SequenceEncoder.load(tmp_path / "encoder.pt")
    for split in ("valid", "test"):
        assert metrics[split]["protocol"] == "sampled-10-uniform" and metrics[split]["n"] == seq.n_users
    again = evaluate(encoder, seq, "test", batch_size=7, full_ranking_max_items=5, n_negatives=10)  # other rows per step
    assert again == metrics["test"]  # the same negatives for any batch size
    assert 0.0 < metrics["test"]["ndcg@10"] <= metrics["test"]["hr@10"] <= 1.0 and metrics["test"]["hr@20"] == 1.0  # rank <= 11
    full = evaluate(encoder, seq, "test")
    assert full["protocol"] == "full" and full["ndcg@10"] <= metrics["test"]["ndcg@10"] + 0.05  # 10 negatives are easier than 19
    random_model = SequenceEncoder(config).eval()
    chance = evaluate(random_model, seq, "test", full_ranking_max_items=5, n_negatives=10)
    assert chance["hr@10"] < metrics["test"]["hr@10"]


def test_full_ranking_is_scored_in_bounded_blocks(pattern_data, monkeypatch: pytest.MonkeyPatch) -> None:
    seq = pattern_data
    torch.manual_seed(0)
    encoder = SequenceEncoder(tiny_setup(seq)[0]).eval()
    whole = evaluate(encoder, seq, "test")
    monkeypatch.setattr(train_module, "SCORE_BLOCK", 7 * seq.n_items)  # seven rows per step
    assert evaluate(encoder, seq, "test") == whole


@pytest.mark.parametrize(
    "kw,message",
    [
        (dict(n_sampled=0), "n_sampled, eval_negatives and full_ranking_max_items must be >= 1"),
        (dict(sampled_softmax_above=-1), "sampled_softmax_above >= 0"),
        (dict(sampling_alpha=-0.5), "sampling_alpha must be >= 0"),
    ],
)
def test_sampled_options_are_validated(kw: dict, message: str) -> None:
    with pytest.raises(SeqrecError, match=message) as info:
        PretrainConfig(**kw)
    assert "\n" not in str(info.value)
