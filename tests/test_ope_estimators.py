"""Behaviour of the off-policy estimators in seqrec.ope.estimators."""

from __future__ import annotations


import numpy as np
import pytest

from seqrec.ope.estimators import (
    DirectMethod,
    DoublyRobust,
    InverseProbabilityWeighting,
    Replay,
    SelfNormalizedIPS,
    SwitchDoublyRobust,
)
from seqrec.ope.checks import check_ope_inputs
from seqrec.infra.errors import SeqrecError

ALL_ESTIMATORS = [
    DirectMethod(),
    InverseProbabilityWeighting(),
    SelfNormalizedIPS(),
    DoublyRobust(),
    SwitchDoublyRobust(lambda_=2.0),
    Replay(),
]


# ----------------------------------------------------------------------------------------
# A four-round, two-action case worked out by hand
# ----------------------------------------------------------------------------------------
#
# round  action  reward  pscore  pi_e(.|x)   q_hat(x, .)  pi_e(a_i)  w = pi_e(a_i)/pscore
#   0      0       1      0.5    [0.8, 0.2]  [0.6, 0.2]     0.8        1.6
#   1      1       1      0.25   [0.5, 0.5]  [0.5, 0.9]     0.5        2.0
#   2      1       0      0.5    [0.2, 0.8]  [0.4, 0.3]     0.8        1.6
#   3      0       1      0.8    [1.0, 0.0]  [0.7, 0.1]     1.0        1.25
#
# sum_a pi_e q_hat per round: 0.52, 0.70, 0.32, 0.70        (sum 2.24)
# residual r - q_hat(x, a_i): 0.4, 0.1, -0.3, 0.3
# w * residual:               0.64, 0.2, -0.48, 0.375       (sum 0.735)


@pytest.fixture()
def hand() -> dict[str, np.ndarray]:
    return dict(
        reward=np.array([1.0, 1.0, 0.0, 1.0]),
        action=np.array([0, 1, 1, 0]),
        pscore=np.array([0.5, 0.25, 0.5, 0.8]),
        action_dist=np.array([[0.8, 0.2], [0.5, 0.5], [0.2, 0.8], [1.0, 0.0]])[:, :, None],
        estimated_rewards_by_reg_model=np.array([[0.6, 0.2], [0.5, 0.9], [0.4, 0.3], [0.7, 0.1]])[:, :, None],
    )


def test_dm_by_hand(hand):
    # (0.52 + 0.70 + 0.32 + 0.70) / 4
    assert DirectMethod().estimate_policy_value(**hand) == pytest.approx(0.56)
    assert DirectMethod()._estimate_round_rewards(**hand) == pytest.approx([0.52, 0.70, 0.32, 0.70])


def test_ips_by_hand(hand):
    # (1.6*1 + 2.0*1 + 1.6*0 + 1.25*1) / 4 = 4.85 / 4
    assert InverseProbabilityWeighting().estimate_policy_value(**hand) == pytest.approx(1.2125)


def test_ips_clipping_by_hand(hand):
    # weights clipped at 1.5: [1.5, 1.5, 1.5, 1.25] -> (1.5 + 1.5 + 0 + 1.25) / 4
    assert InverseProbabilityWeighting(lambda_=1.5).estimate_policy_value(**hand) == pytest.approx(1.0625)
    # a threshold above every weight changes nothing; clipping at 0 zeroes the estimate
    assert InverseProbabilityWeighting(lambda_=2.0).estimate_policy_value(**hand) == pytest.approx(1.2125)
    assert InverseProbabilityWeighting(lambda_=0.0).estimate_policy_value(**hand) == 0.0


def test_snips_by_hand(hand):
    # sum(w r) / sum(w) = 4.85 / (1.6 + 2.0 + 1.6 + 1.25)
    assert SelfNormalizedIPS().estimate_policy_value(**hand) == pytest.approx(4.85 / 6.45)
    # the round rewards are w r / mean(w)
    mean_w = 6.45 / 4
    assert SelfNormalizedIPS()._estimate_round_rewards(**hand) == pytest.approx(
        [1.6 / mean_w, 2.0 / mean_w, 0.0, 1.25 / mean_w]
    )


def test_dr_by_hand(hand):
    # (2.24 + 0.735) / 4
    assert DoublyRobust().estimate_policy_value(**hand) == pytest.approx(0.74375)
    # clipped at 1.5: corrections 0.6 + 0.15 - 0.45 + 0.375 = 0.675 -> (2.24 + 0.675) / 4
    assert DoublyRobust(lambda_=1.5).estimate_policy_value(**hand) == pytest.approx(0.72875)


def test_switch_dr_by_hand(hand):
    # lambda_ = 1.6 keeps rounds 0, 2, 3 (w <= 1.6) and drops round 1 (w = 2.0):
    # corrections 0.64 - 0.48 + 0.375 = 0.535 -> (2.24 + 0.535) / 4
    assert SwitchDoublyRobust(lambda_=1.6).estimate_policy_value(**hand) == pytest.approx(0.69375)


def test_replay_by_hand(hand):
    # argmax target actions [0, 0 (tie -> lowest), 1, 0]; matches rounds 0, 2, 3; rewards 1, 0, 1
    assert Replay().estimate_policy_value(**hand) == pytest.approx(2 / 3)
    # explicit target: always action 1 -> matches rounds 1, 2; rewards 1, 0
    target = np.array([1, 1, 1, 1])
    assert Replay().estimate_policy_value(reward=hand["reward"], action=hand["action"], target_action=target) == 0.5
    # target_action wins over action_dist
    assert Replay().estimate_policy_value(**hand, target_action=target) == 0.5


# ----------------------------------------------------------------------------------------
# Identities
# ----------------------------------------------------------------------------------------


def _random_inputs(n=500, n_actions=6, seed=0):
    rng = np.random.default_rng(seed)
    logging = rng.dirichlet(np.ones(n_actions), size=n)
    action = (logging.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    target = rng.dirichlet(np.ones(n_actions), size=n)
    q = rng.random((n, n_actions))
    return dict(
        reward=rng.binomial(1, q[np.arange(n), action]).astype(float),
        action=action,
        pscore=logging[np.arange(n), action],
        action_dist=target[:, :, None],
        estimated_rewards_by_reg_model=np.clip(q + rng.normal(0, 0.1, q.shape), 0, 1)[:, :, None],
        logging_dist=logging[:, :, None],
    )


def test_ips_with_target_equal_to_logging_is_the_logged_mean():
    inp = _random_inputs()
    value = InverseProbabilityWeighting().estimate_policy_value(
        reward=inp["reward"], action=inp["action"], pscore=inp["pscore"], action_dist=inp["logging_dist"]
    )
    assert value == np.mean(inp["reward"])


def test_snips_with_constant_weights_is_the_mean_reward():
    # uniform logging (pscore 1/4) and a target that gives every logged action 0.7: w = 2.8 everywhere
    reward = np.array([0.0, 1.0, 1.0, 0.5, 0.25])
    action = np.array([0, 1, 2, 3, 0])
    action_dist = np.full((5, 4), 0.1)
    action_dist[np.arange(5), action] = 0.7
    value = SelfNormalizedIPS().estimate_policy_value(
        reward=reward, action=action, pscore=np.full(5, 0.25), action_dist=action_dist[:, :, None]
    )
    assert value == pytest.approx(reward.mean(), rel=1e-12)


def test_dr_with_a_perfect_reward_model_is_exact():
    # deterministic rewards r = q(x, a): the model is right, so every residual is 0
    rng = np.random.default_rng(3)
    n, n_actions = 200, 4
    q = rng.random((n, n_actions))
    pscore_table = np.full((n, n_actions), 0.25)
    action = rng.integers(0, n_actions, n)
    target = rng.dirichlet(np.ones(n_actions), size=n)
    true_value = float((target * q).sum(axis=1).mean())
    value = DoublyRobust().estimate_policy_value(
        reward=q[np.arange(n), action],
        action=action,
        pscore=pscore_table[np.arange(n), action],
        action_dist=target[:, :, None],
        estimated_rewards_by_reg_model=q[:, :, None],
    )
    assert value == pytest.approx(true_value, rel=1e-12)


def test_switch_dr_limits_are_dm_and_dr():
    inp = _random_inputs()
    inp.pop("logging_dist")
    assert SwitchDoublyRobust(lambda_=0.0).estimate_policy_value(**inp) == pytest.approx(
        DirectMethod().estimate_policy_value(**inp), rel=1e-12
    )
    assert SwitchDoublyRobust(lambda_=np.inf).estimate_policy_value(**inp) == pytest.approx(
        DoublyRobust().estimate_policy_value(**inp), rel=1e-12
    )


def test_clipping_lowers_ips_and_is_monotone():
    inp = _random_inputs()
    inp.pop("logging_dist")
    thresholds = (0.5, 1.0, 2.0, 5.0, np.inf)
    values = [InverseProbabilityWeighting(lambda_=lam).estimate_policy_value(**inp) for lam in thresholds]
    assert values == sorted(values)  # rewards >= 0: a higher threshold never lowers the estimate
    assert values[0] < values[-1]


def test_replay_equals_snips_under_uniform_logging_and_deterministic_target():
    inp = _random_inputs(n=400, n_actions=5, seed=5)
    target_action = np.argmax(inp["action_dist"][:, :, 0], axis=1)
    one_hot = np.eye(5)[target_action][:, :, None]
    snips = SelfNormalizedIPS().estimate_policy_value(
        reward=inp["reward"], action=inp["action"], pscore=np.full(400, 0.2), action_dist=one_hot
    )
    replay = Replay().estimate_policy_value(reward=inp["reward"], action=inp["action"], target_action=target_action)
    assert replay == pytest.approx(snips, rel=1e-12)


def test_every_estimator_takes_the_same_arguments_and_float32():
    inp = _random_inputs()
    inp.pop("logging_dist")
    inp32 = {k: (v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in inp.items()}
    for est in ALL_ESTIMATORS:
        v64 = est.estimate_policy_value(**inp)
        v32 = est.estimate_policy_value(**inp32)
        assert isinstance(v64, float) and np.isfinite(v64)
        assert v32 == pytest.approx(v64, rel=1e-4), est.estimator_name


# ----------------------------------------------------------------------------------------
# Bootstrap interval
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("est", ALL_ESTIMATORS, ids=lambda e: e.estimator_name)
def test_interval_contains_estimate_and_is_deterministic(est):
    inp = _random_inputs(n=2000)
    inp.pop("logging_dist")
    point = est.estimate_policy_value(**inp)
    a = est.estimate_interval(**inp, n_bootstrap_samples=500, random_state=7)
    b = est.estimate_interval(**inp, n_bootstrap_samples=500, random_state=7)
    c = est.estimate_interval(**inp, n_bootstrap_samples=500, random_state=8)
    assert set(a) == {"mean", "lower", "upper"}
    assert a["lower"] <= point <= a["upper"]
    assert a["lower"] <= a["mean"] <= a["upper"]
    assert a == b
    assert a != c
    gen = est.estimate_interval(**inp, n_bootstrap_samples=500, random_state=np.random.default_rng(7))
    assert gen == a


def test_interval_narrows_with_alpha_and_uses_chunks(monkeypatch):
    import seqrec.ope.base as ope

    inp = _random_inputs(n=1000)
    inp.pop("logging_dist")
    est = DoublyRobust()
    wide = est.estimate_interval(**inp, alpha=0.01, n_bootstrap_samples=400, random_state=1)
    narrow = est.estimate_interval(**inp, alpha=0.5, n_bootstrap_samples=400, random_state=1)
    assert wide["lower"] < narrow["lower"] < narrow["upper"] < wide["upper"]
    # tiny chunks (several resamples per block, many blocks) give a valid interval as well
    monkeypatch.setattr(ope, "_BOOTSTRAP_CHUNK_ELEMENTS", 3000)
    chunked = est.estimate_interval(**inp, n_bootstrap_samples=400, random_state=1)
    assert chunked["lower"] <= est.estimate_policy_value(**inp) <= chunked["upper"]


def test_bootstrap_interval_of_a_mean_matches_the_normal_approximation():
    rng = np.random.default_rng(11)
    n = 5000
    reward = rng.normal(1.0, 2.0, n)
    action = np.zeros(n, dtype=int)
    ones = np.ones((n, 1, 1))
    ci = InverseProbabilityWeighting().estimate_interval(
        reward=reward, action=action, pscore=np.ones(n), action_dist=ones, n_bootstrap_samples=2000, random_state=0
    )
    half_width = 1.96 * reward.std() / np.sqrt(n)
    assert (ci["upper"] - ci["lower"]) / 2 == pytest.approx(half_width, rel=0.1)


# ----------------------------------------------------------------------------------------
# A synthetic contextual bandit with a known true value
# ----------------------------------------------------------------------------------------


def test_estimates_recover_the_true_value_of_a_synthetic_bandit():
    rng = np.random.default_rng(2024)
    n, n_actions, n_contexts = 20_000, 5, 10
    context_prob = rng.dirichlet(np.ones(n_contexts) * 5)
    q_table = rng.uniform(0.1, 0.9, size=(n_contexts, n_actions))  # P(reward = 1 | context, action)
    # target: 0.6 on the best action of each context, 0.1 on each other one
    target_table = np.full((n_contexts, n_actions), 0.1)
    target_table[np.arange(n_contexts), q_table.argmax(axis=1)] = 0.6
    true_value = float(context_prob @ (target_table * q_table).sum(axis=1))  # exact

    context = rng.choice(n_contexts, size=n, p=context_prob)
    action = rng.integers(0, n_actions, size=n)  # uniform-random logging
    reward = rng.binomial(1, q_table[context, action]).astype(float)
    # a reward model that is off by up to 0.1
    model = np.clip(q_table + rng.uniform(-0.1, 0.1, q_table.shape), 0, 1)
    inputs = dict(
        reward=reward,
        action=action,
        pscore=np.full(n, 1 / n_actions),
        action_dist=target_table[context][:, :, None],
        estimated_rewards_by_reg_model=model[context][:, :, None],
    )
    for est in (InverseProbabilityWeighting(), SelfNormalizedIPS(), DoublyRobust()):
        value = est.estimate_policy_value(**inputs)
        assert value == pytest.approx(true_value, rel=0.04), est.estimator_name
        ci = est.estimate_interval(**inputs, n_bootstrap_samples=300, random_state=0)
        assert ci["lower"] < true_value < ci["upper"], est.estimator_name
    # the greedy target evaluated by Replay on the same uniform log
    greedy_value = float(context_prob @ q_table.max(axis=1))
    replay = Replay().estimate_policy_value(reward=reward, action=action, target_action=q_table.argmax(axis=1)[context])
    assert replay == pytest.approx(greedy_value, rel=0.05)


# ----------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------


def _dist(*rows):
    return np.array(rows)[:, :, None]


def _bad(hand, **changes):
    out = dict(hand)
    out.update(changes)
    return out


def _one_line_error(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    assert isinstance(excinfo.value, SeqrecError) and isinstance(excinfo.value, ValueError)
    return msg


@pytest.mark.parametrize(
    "changes, words",
    [
        (dict(pscore=np.array([0.5, 0.0, 0.5, 0.8])), ["pscore", "(0, 1]", "round 1"]),
        (dict(pscore=np.array([0.5, 0.25, 1.5, 0.8])), ["pscore", "(0, 1]", "round 2"]),
        (dict(pscore=np.array([0.5, np.nan, 0.5, 0.8])), ["pscore", "round 1"]),
        (dict(action=np.array([0, 1, 2, 0])), ["action", "[0, 2)", "round 2"]),
        (dict(action=np.array([0, -1, 1, 0])), ["action", "non-negative", "round 1"]),
        (dict(action=np.array([0.0, 1.0, 1.0, 0.0])), ["action", "integers"]),
        (dict(action=np.array(["a", "b", "a", "b"])), ["action", "numeric"]),
        (dict(reward=np.array([1.0, np.nan, 0.0, 1.0])), ["reward", "finite", "round 1"]),
        (dict(reward=np.ones(3)), ["rounds", "same length"]),
        (dict(reward=np.ones((4, 1))), ["reward", "1-dimensional"]),
        (dict(action_dist=_dist([0.8, 0.2], [0.5, 0.5], [0.2, 0.7], [1.0, 0.0])), ["action_dist", "sum to 1", "round 2"]),
        (dict(action_dist=_dist([0.8, 0.2], [1.5, -0.5], [0.2, 0.8], [1.0, 0.0])), ["action_dist", "non-negative", "round 1"]),
        (dict(action_dist=_dist([0.8, 0.2], [0.5, 0.5], [0.2, 0.8], [1.0, 0.0])[:, :, 0]), ["action_dist", "[:, :, None]"]),
        (dict(action_dist=np.full((4, 2, 2), 0.25)), ["action_dist", "one position"]),
        (dict(estimated_rewards_by_reg_model=np.zeros((4, 3, 1))), ["estimated_rewards_by_reg_model", "3 actions"]),
        (dict(estimated_rewards_by_reg_model=np.full((4, 2, 1), np.inf)), ["estimated_rewards_by_reg_model", "finite"]),
    ],
)
def test_malformed_input_names_the_problem(hand, changes, words):
    with pytest.raises(ValueError) as excinfo:
        DoublyRobust().estimate_policy_value(**_bad(hand, **changes))
    msg = _one_line_error(excinfo)
    for word in words:
        assert word in msg, msg


def test_missing_required_array_is_named(hand):
    with pytest.raises(SeqrecError, match="InverseProbabilityWeighting needs pscore"):
        InverseProbabilityWeighting().estimate_policy_value(**_bad(hand, pscore=None))
    with pytest.raises(SeqrecError, match="DirectMethod needs estimated_rewards_by_reg_model"):
        DirectMethod().estimate_policy_value(**_bad(hand, estimated_rewards_by_reg_model=None))
    with pytest.raises(SeqrecError, match="target_action or action_dist"):
        Replay().estimate_policy_value(reward=hand["reward"], action=hand["action"])


def test_unused_arrays_are_not_validated(hand):
    # IPS ignores the reward model, so a broken one does not stop it
    assert InverseProbabilityWeighting().estimate_policy_value(
        **_bad(hand, estimated_rewards_by_reg_model=np.full((4, 2, 1), np.nan))
    ) == pytest.approx(1.2125)


def test_undefined_ratio_estimators_raise(hand):
    never = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])[:, :, None]  # never the logged action
    with pytest.raises(SeqrecError, match="every importance weight is 0"):
        SelfNormalizedIPS().estimate_policy_value(**_bad(hand, action_dist=never))
    with pytest.raises(SeqrecError, match="no round"):
        Replay().estimate_policy_value(**_bad(hand, action_dist=never))


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: InverseProbabilityWeighting(lambda_=-1.0), "lambda_"),
        (lambda: InverseProbabilityWeighting(lambda_=np.nan), "lambda_"),
        (lambda: DoublyRobust(lambda_="big"), "lambda_"),
        (lambda: SwitchDoublyRobust(lambda_=True), "lambda_"),
        (lambda: SelfNormalizedIPS(lambda_=-0.1), "lambda_"),
        (lambda: DirectMethod(estimator_name=""), "estimator_name"),
        (lambda: Replay(estimator_name=3), "estimator_name"),
    ],
)
def test_bad_hyperparameters_name_the_field(make, field):
    with pytest.raises(ValueError, match=field):
        make()


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(alpha=0.0), "alpha"),
        (dict(alpha=1.5), "alpha"),
        (dict(n_bootstrap_samples=0), "n_bootstrap_samples"),
        (dict(n_bootstrap_samples=10.5), "n_bootstrap_samples"),
        (dict(random_state="seed"), "random_state"),
        (dict(random_state=-1), "random_state"),
    ],
)
def test_bad_interval_arguments_are_named(hand, kwargs, word):
    with pytest.raises(SeqrecError, match=word):
        InverseProbabilityWeighting().estimate_interval(**hand, **kwargs)


def test_check_ope_inputs_returns_arrays(hand):
    out = check_ope_inputs(reward=[1, 0], action=[0, 1], pscore=[0.5, 0.5])
    assert set(out) == {"reward", "action", "pscore"}
    assert all(isinstance(v, np.ndarray) for v in out.values())
    with pytest.raises(SeqrecError, match="empty"):
        check_ope_inputs(reward=np.array([]))


def test_repr_shows_hyperparameters():
    assert repr(SwitchDoublyRobust(lambda_=3)) == "SwitchDoublyRobust(lambda_=3.0, estimator_name='switch-dr')"


def test_every_estimator_shares_the_base_signature() -> None:
    """One loop calls every estimator with the same keywords: no subclass re-declares the public methods."""
    import inspect

    from seqrec.ope.base import BaseOffPolicyEstimator
    from seqrec.ope.checks import INPUT_NAMES

    for est in ALL_ESTIMATORS:
        for method in ("estimate_policy_value", "estimate_interval"):
            assert getattr(type(est), method) is getattr(BaseOffPolicyEstimator, method), (type(est).__name__, method)
    params = inspect.signature(BaseOffPolicyEstimator.estimate_interval).parameters
    assert set(INPUT_NAMES) <= set(params)
    hand = _random_inputs(n=200)
    hand.pop("logging_dist")
    target = hand["action_dist"][:, :, 0].argmax(axis=1)
    ci = Replay().estimate_interval(**hand, target_action=target, n_bootstrap_samples=50, random_state=0)
    assert ci["lower"] <= Replay().estimate_policy_value(**hand, target_action=target) <= ci["upper"]
