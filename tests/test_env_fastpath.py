"""The env's fast path computes the same thing as the plain one: cached starts, cached and dense
encodings, counter-based draws, the unchecked simulator call; ``device`` and ``obs_backend``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from seqrec.encoders.config import EncoderConfig
from seqrec.encoders.model import SequenceEncoder
from seqrec.envs import rng
from seqrec.envs.seqrec_env import SeqRecEnv
from seqrec.envs.starts import StartCache
from seqrec.envs.vector_env import SeqRecVectorEnv
from seqrec.infra.errors import SeqrecError

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _reencode(sessions) -> torch.Tensor:
    """Every slot's encoder state from scratch, with the encoder's plain (sparse-graph) forward."""
    with torch.no_grad():
        return sessions.encoder(*sessions.history()).float()


def test_stepping_with_cached_encodings_matches_reencoding(tiny_bundle: Path) -> None:
    venv = SeqRecVectorEnv(num_envs=12, bundle=tiny_bundle, action_mode="candidates", n_candidates=5, max_episode_steps=6)
    venv.reset(seed=3)
    g = np.random.default_rng(0)
    clicks = 0
    for _ in range(25):  # crosses autoresets (6-step episodes): started rows come from the start cache
        _, reward, *_ = venv.step(g.integers(0, 5, 12))
        clicks += int((reward > 0).sum())
        fresh = _reencode(venv.sessions)
        torch.testing.assert_close(venv.sessions.emb, fresh, rtol=1e-4, atol=1e-5)
        assert torch.equal(venv.sessions.candidates, venv.sessions.index.search(fresh, 5))
    assert clicks > 0, "no click: the re-encoding path was never exercised"


def test_cached_starts_equal_the_computed_ones(tiny_bundle: Path) -> None:
    venv = SeqRecVectorEnv(num_envs=40, bundle=tiny_bundle)
    venv.reset(seed=0)
    s = venv.sessions
    users = s.state.users.numpy()
    hist, beh = s.seq.user_histories(users, s.simulator.max_history, upto="valid")
    state = s.simulator.initial_state(torch.from_numpy(users), torch.from_numpy(hist), torch.from_numpy(beh.astype(np.int64)))
    for name in ("users", "history", "behaviours", "misses", "satiation", "steps"):
        assert torch.equal(getattr(s.state, name), getattr(state, name)), name
    torch.testing.assert_close(s.emb, _reencode(s), rtol=1e-4, atol=1e-5)


def test_no_cache_gives_the_same_trajectory(tiny_bundle: Path) -> None:
    def run(cached: bool) -> list:
        venv = SeqRecVectorEnv(num_envs=8, bundle=tiny_bundle, max_episode_steps=4)
        if not cached:
            venv.sessions.starts = StartCache(venv.sessions._compute_starts, venv.sessions.seq.n_users, max_bytes=0)
        obs, _ = venv.reset(seed=9)
        out = [obs]
        for t in range(12):
            obs, reward, term, trunc, _ = venv.step(np.arange(8) + t)
            out += [obs, reward, term, trunc]
        return out

    for a, b in zip(run(True), run(False)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("encoder", "fusion", "n_behaviours", "n_item_features"),
                         [("cnn+gnn", "parallel", 0, 0), ("gnn", "parallel", 3, 0), ("cnn+gnn", "stacked", 0, 0),
                          ("cnn+gnn", "parallel", 2, 5), ("cnn", "parallel", 0, 0)])  # fmt: skip
def test_dense_inference_matches_forward(encoder: str, fusion: str, n_behaviours: int, n_item_features: int) -> None:
    torch.manual_seed(0)
    cfg = EncoderConfig(n_items=12, dim=16, max_len=15, gnn_len=10, encoder=encoder, fusion=fusion, gnn_steps=2,
                        n_behaviours=n_behaviours, n_item_features=n_item_features)  # fmt: skip
    model = SequenceEncoder(cfg).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    items = torch.randint(-1, 12, (64, 15))  # repeats, self-loops and padding anywhere
    items[:3] = -1  # empty histories
    items[3, :14] = -1  # one item
    beh = torch.where(items >= 0, torch.randint(0, max(n_behaviours, 1), (64, 15)), -1)
    with torch.no_grad():
        expected = model(items, beh)
    torch.testing.assert_close(model.infer(items, beh), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="eval"):
        model.train().infer(items, beh)


def _mix_reference(z: int) -> int:
    """SplitMix64's finaliser on Python ints, straight from its definition."""
    m = 2**64 - 1
    z = (z + 0x9E3779B97F4A7C15) & m
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    return z ^ (z >> 31)


@pytest.mark.parametrize("n_rows", [1, 3])
def test_uniforms_are_the_documented_splitmix64_draws(n_rows: int) -> None:
    keys = rng.seed_keys(17, n_rows)
    steps = np.array([0, 5, 2**40][:n_rows] if n_rows > 1 else [5], dtype=np.int64)
    got = rng.uniforms(keys, steps, 4)
    for r in range(n_rows):
        base = _mix_reference(int(keys[r]) ^ _mix_reference(int(steps[r])))
        want = [(_mix_reference(base ^ _mix_reference(c)) >> 11) / 2.0**53 for c in range(1, 5)]
        assert got[r].tolist() == want


def test_unchecked_simulator_step_equals_the_checked_one(tiny_bundle: Path) -> None:
    venv = SeqRecVectorEnv(num_envs=16, bundle=tiny_bundle)
    venv.reset(seed=1)
    sim, state = venv.sessions.simulator, venv.sessions.state
    for items in (torch.arange(16) % sim.n_items, torch.arange(48).reshape(16, 3) % sim.n_items):
        noise = torch.rand(16, items.shape[-1] + 2 if items.dim() == 2 else 3, generator=torch.Generator().manual_seed(0))
        a = sim.step(state, items, noise=noise)
        b = sim.step(state, items, noise=noise, validate=False)
        for name in ("clicks", "clicked_item", "position", "behaviours", "values", "left", "click_prob"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name
    with pytest.raises(SeqrecError, match="outside"):
        sim.step(state, torch.full((16,), sim.n_items), noise=noise[:, :3])


def test_bad_actions_still_fail_in_one_line(tiny_bundle: Path) -> None:
    env = SeqRecEnv(bundle=tiny_bundle)
    env.reset(seed=0)
    for bad in (10_000, -1, 2.5, True, np.int64(10_000)):
        with pytest.raises(SeqrecError) as err:
            env.step(bad)
        assert "\n" not in str(err.value) and repr(bad) in str(err.value)
    venv = SeqRecVectorEnv(num_envs=2, bundle=tiny_bundle)
    venv.reset(seed=0)
    for bad in (torch.tensor([0, 10_000]), np.array([0.5, 1.0]), torch.tensor([0.5, 1.0])):
        with pytest.raises(SeqrecError, match="out of range|integers"):
            venv.step(bad)


def test_explicit_cpu_device_and_torch_observations(tiny_bundle: Path) -> None:
    plain = SeqRecVectorEnv(num_envs=6, bundle=tiny_bundle, max_episode_steps=3)
    cpu = SeqRecVectorEnv(num_envs=6, bundle=tiny_bundle, max_episode_steps=3, device="cpu", obs_backend="torch")
    a, _ = plain.reset(seed=4)
    b, _ = cpu.reset(seed=4)
    assert isinstance(b, torch.Tensor) and b.device.type == "cpu" and not b.is_inference()
    np.testing.assert_array_equal(a, b.numpy())
    for t in range(5):  # autoreset at step 3: final_obs holds tensors too
        actions = np.arange(6) + t
        a, ra, ta, ua, ia = plain.step(actions)
        b, rb, tb, ub, ib = cpu.step(torch.from_numpy(actions))
        np.testing.assert_array_equal(a, b.numpy())
        np.testing.assert_array_equal(ra, rb)
        np.testing.assert_array_equal(ta | ua, tb | ub)
        if "final_obs" in ib:
            row = int(np.flatnonzero(ib["_final_obs"])[0])
            np.testing.assert_array_equal(ia["final_obs"][row], ib["final_obs"][row].numpy())
    env = SeqRecEnv(bundle=tiny_bundle, device="cpu")
    obs, _ = env.reset(seed=0)
    assert isinstance(obs, np.ndarray) and env.sessions.emb.device.type == "cpu"


def test_device_options_fail_clearly(tiny_bundle: Path) -> None:
    with pytest.raises(SeqrecError, match="device must be auto | cpu | cuda"):
        SeqRecVectorEnv(num_envs=2, bundle=tiny_bundle, device="gpu0")
    with pytest.raises(SeqrecError, match="obs_backend"):
        SeqRecVectorEnv(num_envs=2, bundle=tiny_bundle, obs_backend="jax")
    with pytest.raises(SeqrecError, match="batched env"):
        SeqRecEnv(bundle=tiny_bundle, obs_backend="torch")
    if not torch.cuda.is_available():
        with pytest.raises(SeqrecError, match="torch sees no CUDA GPU"):
            SeqRecVectorEnv(num_envs=2, bundle=tiny_bundle, device="cuda")


@pytest.mark.gpu
@cuda
def test_cuda_vector_env_matches_cpu(tiny_bundle: Path) -> None:
    cpu = SeqRecVectorEnv(num_envs=32, bundle=tiny_bundle, max_episode_steps=5)
    gpu = SeqRecVectorEnv(num_envs=32, bundle=tiny_bundle, max_episode_steps=5, device="cuda", obs_backend="torch")
    a, _ = cpu.reset(seed=2)
    b, _ = gpu.reset(seed=2)
    assert b.device.type == "cuda" and gpu.sessions.state.history.device.type == "cuda"
    np.testing.assert_allclose(a, b.cpu().numpy(), rtol=1e-4, atol=1e-4)
    same = 0
    for t in range(12):
        actions = (np.arange(32) * 7 + t) % cpu.single_action_space.n
        _, ra, *_ = cpu.step(actions)
        _, rb, *_ = gpu.step(torch.as_tensor(actions, device="cuda"))
        same += int((ra == rb).sum())
    assert same >= 0.99 * 12 * 32  # float rounding may flip a click sitting on its threshold
    assert cpu.sessions.bundle.encoder.item_embedding.weight.device.type == "cpu"  # the shared bundle stayed put


def test_a_bundle_read_from_the_memory_mapped_cache_steps_like_one_in_memory(tiny_bundle) -> None:
    """Bundle.load maps the dataset read-only from disk; the same bundle with every array copied
    into memory gives the same trajectory, observation for observation."""
    import dataclasses

    import numpy as np

    from seqrec.envs.bundle import Bundle
    from seqrec.envs.seqrec_env import SeqRecEnv

    mapped = Bundle.load(tiny_bundle)
    assert not mapped.seq.items.flags.writeable and mapped.seq.items.base is not None  # a view of the mapped file
    copies = {f.name: np.array(getattr(mapped.seq, f.name)) for f in dataclasses.fields(mapped.seq)
              if isinstance(getattr(mapped.seq, f.name), np.ndarray)}
    in_memory = dataclasses.replace(mapped, seq=dataclasses.replace(mapped.seq, **copies))
    assert in_memory.seq.items.flags.writeable
    runs = []
    for bundle in (mapped, in_memory):
        env = SeqRecEnv(bundle=bundle, max_episode_steps=8)
        obs, _ = env.reset(seed=5)
        trace, rng = [obs], np.random.default_rng(0)
        for _ in range(40):
            obs, reward, term, trunc, _ = env.step(int(rng.integers(env.action_space.n)))
            trace.append(np.append(obs, reward))
            if term or trunc:
                trace.append(env.reset()[0])
        runs.append(np.concatenate([np.ravel(t) for t in trace]))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_cached_catalogue_scores_equal_score_items_bit_for_bit(tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A single user's whole-catalogue terms (simulators.simulator.CATALOGUE_CELLS) give exactly
    the P(click) of the per-item path, over states that satiation and clicks have moved."""
    from seqrec.envs.bundle import load_bundle
    from seqrec.simulators import simulator as simulator_module

    bundle = load_bundle(tiny_bundle)
    sim, seq = bundle.simulator, bundle.seq
    g = np.random.default_rng(0)
    users = g.choice(seq.n_users, 20, replace=False)
    hist, beh = seq.user_histories(users, sim.max_history, upto="valid")
    noise = torch.from_numpy(g.random((20, 6, 3)).astype(np.float32))
    used = 0
    with torch.inference_mode():
        for u in range(20):
            state = sim.initial_state(torch.from_numpy(users[u:u + 1]), torch.from_numpy(hist[u:u + 1]), torch.from_numpy(beh[u:u + 1].astype(np.int64)))
            for k in range(6):
                items = torch.from_numpy(g.integers(0, seq.n_items, (1, 4)))
                probs = []
                for cells in (1 << 30, 0):  # cached catalogue terms, then the per-item path
                    monkeypatch.setattr(simulator_module, "CATALOGUE_CELLS", cells)
                    sim._terms_cache = None
                    probs.append(sim.click_probability(state, items, validate=False))
                    used += sim._terms_cache[3] is not None
                assert torch.equal(probs[0], probs[1])
                state = sim.step(state, items[:, 0], noise=noise[u, k][None], validate=False).state
    assert used == 20 * 6  # the cached path ran every time it was asked to


def test_the_numpy_observation_equals_the_tensor_one(tiny_bundle: Path) -> None:
    venv = SeqRecVectorEnv(num_envs=5, bundle=tiny_bundle, max_episode_steps=7)
    obs, _ = venv.reset(seed=2)
    g = np.random.default_rng(1)
    for _ in range(20):
        obs, *_ = venv.step(g.integers(0, venv.single_action_space.n, 5))
        expected = venv.sessions.observation_tensors().numpy()
        assert obs.dtype == expected.dtype and np.array_equal(obs, expected)
