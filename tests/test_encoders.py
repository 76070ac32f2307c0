"""seqrec.encoders: session graphs, model API, checkpoints, metrics, pretraining, SB3 extractor."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from seqrec.infra.errors import CheckpointError
from seqrec.data.prepare import prepare_dataset
from seqrec.encoders.config import EncoderConfig, PretrainConfig
from seqrec.encoders.graph import build_session_graph
from seqrec.encoders.metrics import ranking_metrics, target_ranks
from seqrec.encoders.model import SequenceEncoder
from seqrec.encoders.train import evaluate, pretrain

VARIANTS = [("cnn", "parallel"), ("gnn", "parallel"), ("cnn+gnn", "parallel"), ("cnn+gnn", "stacked")]


# ---------------------------------------------------------------------------- graph building
def reference_graph(row: list[int]) -> tuple[list[int], dict[tuple[int, int], tuple[float, float]], int | None]:
    """Slow pure-Python SR-GNN graph of one padded history: nodes, edges -> (w_in, w_out), last item."""
    seq = [i for i in row if i != -1]
    nodes = sorted(set(seq))
    edges = sorted({(a, b) for a, b in zip(seq, seq[1:])})
    in_deg = {n: sum(1 for _, b in edges if b == n) for n in nodes}
    out_deg = {n: sum(1 for a, _ in edges if a == n) for n in nodes}
    weights = {(a, b): (1.0 / in_deg[b], 1.0 / out_deg[a]) for a, b in edges}
    return nodes, weights, (seq[-1] if seq else None)


def random_histories(rng: np.random.Generator, n: int, length: int, n_items: int, anywhere: bool = False) -> torch.Tensor:
    """Histories with many repeats and left padding (or, with ``anywhere``, padding at random places)."""
    items = rng.integers(0, n_items, size=(n, length))
    lengths = rng.integers(0, length + 1, size=n)
    pad = np.arange(length)[None, :] < (length - lengths)[:, None]
    if anywhere:
        pad = rng.random((n, length)) < 0.3
    items[pad] = -1
    return torch.from_numpy(items)


@pytest.mark.parametrize("anywhere", [False, True])
def test_session_graph_matches_python_reference(anywhere: bool) -> None:
    rng = np.random.default_rng(0)
    items = random_histories(rng, 64, 12, n_items=6, anywhere=anywhere)
    items[0] = -1  # an empty history
    items[1] = 3  # one item repeated: a single node with a self-loop
    g = build_session_graph(items)
    src, dst = g.edge_index
    for b, row in enumerate(items.tolist()):
        nodes, weights, last = reference_graph(row)
        mine = torch.nonzero(g.node_batch == b).flatten()
        assert g.node_item[mine].tolist() == nodes
        for t, item in enumerate(row):  # every position points to its item's node
            node = int(g.position_node[b, t])
            assert (node == -1) if item == -1 else (g.node_item[node] == item and g.node_batch[node] == b)
        got = {}
        for e in torch.nonzero(g.node_batch[src] == b).flatten().tolist():
            key = (int(g.node_item[src[e]]), int(g.node_item[dst[e]]))
            assert key not in got, "duplicate edge"
            got[key] = (float(g.weight_in[e]), float(g.weight_out[e]))
        assert got.keys() == weights.keys()
        for key, (w_in, w_out) in weights.items():
            assert got[key] == pytest.approx((w_in, w_out))
        assert (int(g.last_node[b]) == -1) if last is None else (int(g.node_item[g.last_node[b]]) == last)
    assert g.num_sequences == 64


# ---------------------------------------------------------------------------- model API
def small_config(encoder: str = "cnn+gnn", fusion: str = "parallel", **kw) -> EncoderConfig:
    base = dict(n_items=30, dim=16, max_len=8, cnn_window=3, n_horizontal=4, n_vertical=2, gnn_len=6, dropout=0.2)
    return EncoderConfig(encoder=encoder, fusion=fusion, **{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize("gnn_len", [8, 5])
@pytest.mark.parametrize("encoder,fusion", VARIANTS)
def test_forward_shapes_and_length_handling(encoder: str, fusion: str, gnn_len: int) -> None:
    torch.manual_seed(0)
    model = SequenceEncoder(small_config(encoder, fusion, gnn_len=gnn_len)).eval()
    items = random_histories(np.random.default_rng(1), 10, 8, n_items=30)
    items[0] = -1
    state = model(items)
    assert state.shape == (10, 16) and torch.isfinite(state).all()
    assert model.scores(state).shape == (10, 30) and model.item_embeddings().shape == (30, 16)
    # shorter inputs are left-padded, longer ones cut to their last max_len columns
    torch.testing.assert_close(model(items[:, 3:]), model(torch.cat([torch.full((10, 3), -1), items[:, 3:]], 1)))
    longer = torch.cat([torch.randint(0, 30, (10, 5)), items], dim=1)
    torch.testing.assert_close(model(longer), state)


@pytest.mark.parametrize("encoder,fusion", VARIANTS)
def test_forward_branches(encoder: str, fusion: str) -> None:
    torch.manual_seed(0)
    model = SequenceEncoder(small_config(encoder, fusion)).eval()
    items = random_histories(np.random.default_rng(4), 5, 8, n_items=30)
    state, branches = model.forward_branches(items)
    torch.testing.assert_close(state, model(items))
    if (encoder, fusion) == ("cnn+gnn", "parallel"):  # the gate mixes exactly these two states
        assert [b.shape for b in branches] == [(5, 16), (5, 16)]
        z = torch.sigmoid(model.gate(torch.cat(branches, dim=-1)))
        torch.testing.assert_close(state, z * branches[0] + (1 - z) * branches[1])
    else:
        assert branches == []


def test_behaviour_and_feature_inputs() -> None:
    torch.manual_seed(0)
    model = SequenceEncoder(small_config(n_behaviours=4, n_item_features=5)).eval()
    model.set_item_features(torch.rand(30, 5))
    items = random_histories(np.random.default_rng(2), 6, 8, n_items=30)
    behaviours = torch.where(items >= 0, torch.randint(0, 4, items.shape), -1)
    a, b = model(items, behaviours), model(items, torch.where(items >= 0, 0, -1))
    assert a.shape == (6, 16) and not torch.allclose(a, b)


# ---------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("encoder,fusion", VARIANTS)
def test_save_load_round_trip(tmp_path: Path, encoder: str, fusion: str) -> None:
    torch.manual_seed(0)
    model = SequenceEncoder(small_config(encoder, fusion, n_item_features=3)).eval()
    model.set_item_features(torch.rand(30, 3))
    path = model.save(tmp_path / "enc.pt", dataset_key="abc")
    loaded = SequenceEncoder.load(path, dataset_key="abc")
    items = random_histories(np.random.default_rng(3), 7, 8, n_items=30)
    assert torch.equal(loaded(items), model(items))
    assert torch.equal(loaded.scores(loaded(items)), model.scores(model(items)))
    assert loaded.config == model.config and loaded.dataset_key == "abc"
    assert not list(tmp_path.glob("*.tmp"))  # the temp file was renamed away


def _one_line_error(path: Path, **kw) -> str:
    with pytest.raises(CheckpointError) as info:
        SequenceEncoder.load(path, **kw)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_checkpoint_errors_are_one_line(tmp_path: Path) -> None:
    model = SequenceEncoder(small_config())
    good = model.save(tmp_path / "enc.pt", dataset_key="key-a")
    data = good.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    assert "truncated or corrupted" in _one_line_error(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    assert "truncated or corrupted" in _one_line_error(garbage)
    assert "key-a" in _one_line_error(good, dataset_key="key-b")
    assert "not found" in _one_line_error(tmp_path / "missing.pt")
    payload = torch.load(good, weights_only=True)
    payload["format"] = 999
    torch.save(payload, tmp_path / "future.pt")
    assert "format 999" in _one_line_error(tmp_path / "future.pt")


# ---------------------------------------------------------------------------- metrics
def test_metrics_on_hand_computed_ranking() -> None:
    scores = torch.tensor([[0.9, 0.1, 0.5, 0.3], [0.2, 0.8, 0.1, 0.4], [0.1, 0.2, 0.3, 0.4]])
    targets = torch.tensor([2, 1, 0])  # ranks 2, 1, 4
    ranks = target_ranks(scores, targets)
    assert ranks.tolist() == [2, 1, 4]
    m = ranking_metrics(ranks, ("hr@1", "hr@2", "ndcg@2", "mrr@2", "ndcg@10", "mrr@10"))
    assert m["hr@1"] == pytest.approx(1 / 3)
    assert m["hr@2"] == pytest.approx(2 / 3)
    assert m["ndcg@2"] == pytest.approx((1 / math.log2(3) + 1) / 3)
    assert m["mrr@2"] == pytest.approx((0.5 + 1) / 3)
    assert m["ndcg@10"] == pytest.approx((1 / math.log2(3) + 1 + 1 / math.log2(5)) / 3)
    assert m["mrr@10"] == pytest.approx((0.5 + 1 + 0.25) / 3)


# ---------------------------------------------------------------------------- pretraining
def write_pattern_log(path: Path, n_users: int = 60, n_items: int = 20, length: int = 14, seed: int = 0) -> Path:
    """A small CSV log with a learnable order: the next item is usually the previous one + 1."""
    rng = np.random.default_rng(seed)
    rows = ["user,item,ts"]
    for u in range(n_users):
        item = int(rng.integers(n_items))
        for t in range(length):
            rows.append(f"u{u},i{item},{1000 * u + t}")
            item = (item + 1) % n_items if rng.random() < 0.85 else int(rng.integers(n_items))
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture
def pattern_data(tmp_path: Path):
    return prepare_dataset(write_pattern_log(tmp_path / "log.csv"), cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_pretrain_learns_and_is_deterministic(tmp_path: Path, pattern_data, precision: str) -> None:
    seq = pattern_data
    config = EncoderConfig(n_items=seq.n_items, dim=16, max_len=10, cnn_window=3, n_horizontal=4, n_vertical=2, gnn_len=10)
    train = PretrainConfig(epochs=4, batch_size=64, lr=1e-2, patience=4, seed=3, precision=precision, progress=False, tensorboard=False)
    first = pretrain(seq, config, train, tmp_path / "a")
    second = pretrain(seq, config, train, tmp_path / "b")
    assert first["valid"]["ndcg@10"] > first["initial_valid"]["ndcg@10"] + 0.1
    assert first["test"] == second["test"] and first["history"][-1]["loss"] == second["history"][-1]["loss"]
    saved = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert saved["test"] == first["test"] and saved["dataset_key"] == seq.meta["key"]
    assert saved["training_dtype"] == {"fp32": "float32", "bf16": "bfloat16"}[precision]
    encoder = SequenceEncoder.load(tmp_path / "a" / "encoder.pt", dataset_key=seq.meta["key"])
    assert evaluate(encoder, seq, "test") == first["test"]


# ---------------------------------------------------------------------------- SB3 extractor
def test_features_extractor_output_shape(tmp_path: Path) -> None:
    from gymnasium import spaces

    from seqrec.encoders.extractor import SequenceFeaturesExtractor

    length = 8
    space = spaces.Dict(
        {
            "items": spaces.Box(-1, 29, (length,), np.float32),
            "behaviours": spaces.Box(-1, 3, (length,), np.float32),
            "mask": spaces.Box(0, 1, (length,), np.float32),
        }
    )
    extractor = SequenceFeaturesExtractor(space, config=small_config(n_behaviours=4))
    obs = {k: torch.as_tensor(np.stack([space[k].sample() for _ in range(5)])).round() for k in space.spaces}
    assert extractor(obs).shape == (5, extractor.features_dim) == (5, 16)
    path = extractor.encoder.save(tmp_path / "enc.pt")
    frozen = SequenceFeaturesExtractor(space, checkpoint=path, freeze=True)
    assert frozen(obs).shape == (5, 16) and not any(p.requires_grad for p in frozen.parameters())
    with pytest.raises(ValueError, match="Dict observation space"):
        SequenceFeaturesExtractor(spaces.Box(-1, 29, (length,)), config=small_config())  # type: ignore[arg-type]


def test_byte_dropout_rate_and_eval_identity() -> None:
    from seqrec.encoders.dropout import ByteDropout

    torch.manual_seed(0)
    layer = ByteDropout(0.3)
    x = torch.ones(200, 500)
    y = layer(x)
    assert abs(float((y == 0).float().mean()) - 77 / 256) < 0.01
    assert abs(float(y.mean()) - 1.0) < 0.02
    assert torch.equal(layer.eval()(x), x)


def test_attention_dim_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = SequenceEncoder(small_config(attention_dim=4)).eval()
    assert model.readout.w_node.weight.shape == (4, 16) and model.readout.position.weight.shape == (8, 4)
    items = random_histories(np.random.default_rng(5), 6, 8, n_items=30)
    loaded = SequenceEncoder.load(model.save(tmp_path / "enc.pt"))
    assert torch.equal(loaded(items), model(items)) and loaded.config.attention_dim == 4


@pytest.mark.parametrize(
    "kw,message",
    [
        (dict(attention_dim=-1), "attention_dim must be >= 0"),
    ],
)
def test_new_config_options_are_validated(kw: dict, message: str) -> None:
    from seqrec.infra.errors import SeqrecError

    with pytest.raises(SeqrecError, match=message) as info:
        small_config(**kw)
    assert "\n" not in str(info.value)


def test_unknown_precision_is_one_line() -> None:
    from seqrec.infra.errors import SeqrecError

    with pytest.raises(SeqrecError, match="precision must be one of auto, fp32, bf16, not 'fp16'") as info:
        PretrainConfig(precision="fp16")  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_paired_comparison_of_ranks() -> None:
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("bench_encoders", Path(__file__).parents[1] / "benchmarks" / "encoders.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_encoders", bench)  # dataclasses look their module up there
    spec.loader.exec_module(bench)  # type: ignore[union-attr]
    rng = torch.Generator().manual_seed(0)
    ranks_b = torch.randint(1, 60, (3, 200), generator=rng)
    same = bench.paired_comparison(ranks_b, ranks_b.clone(), n_boot=200)
    assert same["ndcg@10"]["diff"] == 0 and same["hr@10"]["ci_users"] == [0.0, 0.0]
    better = bench.paired_comparison(torch.ones_like(ranks_b), ranks_b, n_boot=200)  # A ranks every target first
    hr = better["hr@10"]
    assert hr["mean_a"] == 1.0 and hr["diff"] == pytest.approx(1.0 - float((ranks_b <= 10).double().mean()))
    assert 0 < hr["ci_users"][0] <= hr["diff"] <= hr["ci_users"][1] and hr["p_le_0"] == 0.0 and len(hr["per_seed"]) == 3
    with pytest.raises(ValueError, match="shape"):
        bench.paired_comparison(ranks_b, ranks_b[:2], n_boot=10)
