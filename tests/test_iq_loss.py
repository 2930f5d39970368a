"""The IQ loss against hand-computed numbers on a 4-row batch, every variant; the learner step.

Batch (gamma = 0.9): rows 0, 1 expert, rows 2, 3 agent; row 1 terminated.
  q_sa   = [1.0, 0.5, 2.0, -1.0]      next_v = [2.0, 1.0, 3.0, 1.0]
  v      = [1.5, 1.0, 2.5,  0.0]      y = 0.9 (1 - term) next_v = [1.8, 0.0, 2.7, 0.9]
  r = q_sa - y = [-0.8, 0.5, -0.7, -1.9]      v - y = [-0.3, 1.0, -0.2, -0.9]
"""

import dataclasses
import math

import numpy as np
import pytest
import torch

from iq_atari.agent import SoftQAgent
from iq_atari.buffers import Batch
from iq_atari.errors import InputError
from iq_atari.iq import IQLossConfig, absorbing_rows, gradient_penalty, iq_loss
from iq_atari.iq_learner import IQLearner, IQLearnerConfig
from iq_atari.networks import MLP

GAMMA = 0.9


def batch(q_sa=(1.0, 0.5, 2.0, -1.0)):
    return dict(
        q_sa=torch.tensor(q_sa, requires_grad=True),
        v=torch.tensor([1.5, 1.0, 2.5, 0.0]),
        next_v=torch.tensor([2.0, 1.0, 3.0, 1.0]),
        terminated=torch.tensor([False, True, False, False]),
        is_expert=torch.tensor([True, True, False, False]),
    )


def loss_of(config, **extra):
    b = batch()
    loss, metrics = iq_loss(**b, config=config, **extra)
    return loss, metrics, b["q_sa"]


def test_offline_recipe_value_expert_chi2_over_expert():
    loss, m, q_sa = loss_of(IQLossConfig(gamma=GAMMA))
    softq = -(-0.8 + 0.5) / 2  # 0.15
    value = (-0.3 + 1.0) / 2  # 0.35
    chi2 = (0.64 + 0.25) / 2 / (4 * 0.5)  # 0.2225
    assert m["softq_loss"].item() == pytest.approx(softq)
    assert m["value_loss"].item() == pytest.approx(value)
    assert m["chi2_loss"].item() == pytest.approx(chi2)
    assert loss.item() == pytest.approx(softq + value + chi2)
    assert m["reward_expert"].item() == pytest.approx(-0.15)
    assert m["reward_agent"].item() == pytest.approx(-1.3)
    loss.backward()
    # d/dq for expert rows: -1/2 (expert term) + r / 2 (chi2: 2 r / (2 rows * 4 * 0.5)).
    torch.testing.assert_close(q_sa.grad, torch.tensor([-0.9, -0.25, 0.0, 0.0]))


def test_value_term_variants():
    _, m, _ = loss_of(IQLossConfig(gamma=GAMMA, value_term="value"))
    assert m["value_loss"].item() == pytest.approx((-0.3 + 1.0 - 0.2 - 0.9) / 4)
    v_init = torch.tensor([1.0, 3.0])
    loss, m, _ = loss_of(IQLossConfig(gamma=GAMMA, value_term="v0"), v_init=v_init)
    assert m["value_loss"].item() == pytest.approx((1 - GAMMA) * 2.0)
    assert loss.item() == pytest.approx(0.15 + 0.2 + 0.2225)
    with pytest.raises(ValueError, match="v_init"):
        loss_of(IQLossConfig(gamma=GAMMA, value_term="v0"))


def test_chi2_regulariser_over_all_and_over_policy_actions():
    _, m, _ = loss_of(IQLossConfig(gamma=GAMMA, regularize_over="all"))
    assert m["chi2_loss"].item() == pytest.approx((0.64 + 0.25 + 0.49 + 3.61) / 4 / 2)
    # "policy": agent rows use Q(s, a') at the current policy's action: 3.0 - 2.7, 0.0 - 0.9.
    q_policy = torch.tensor([9.0, 9.0, 3.0, 0.0])  # expert rows ignored
    _, m, _ = loss_of(IQLossConfig(gamma=GAMMA, regularize_over="policy"), q_policy=q_policy)
    assert m["chi2_loss"].item() == pytest.approx((0.64 + 0.25 + 0.09 + 0.81) / 4 / 2)
    with pytest.raises(ValueError, match="q_policy"):
        loss_of(IQLossConfig(gamma=GAMMA, regularize_over="policy"))
    _, m, _ = loss_of(IQLossConfig(gamma=GAMMA, chi2_alpha=0.1))
    assert m["chi2_loss"].item() == pytest.approx((0.64 + 0.25) / 2 / 0.4)


@pytest.mark.parametrize(
    ("divergence", "phi"),
    [
        ("kl", lambda r: math.exp(-r - 1)),
        ("kl_fix", lambda r: math.exp(-r)),
        ("js", lambda r: math.exp(-r) / (2 - math.exp(-r))),
        ("hellinger", lambda r: 1 / (1 + r) ** 2),
    ],
)
def test_divergence_weights(divergence, phi):
    loss, m, q_sa = loss_of(IQLossConfig(gamma=GAMMA, divergence=divergence))
    w0, w1 = phi(-0.8), phi(0.5)
    assert m["softq_loss"].item() == pytest.approx(-(w0 * -0.8 + w1 * 0.5) / 2, rel=1e-5)
    assert "chi2_loss" not in m  # the regulariser belongs to chi2 only
    assert loss.item() == pytest.approx(m["softq_loss"].item() + 0.35, rel=1e-5)
    loss.backward()
    # The weights carry no gradient: d/dq = -phi(r) / 2 on expert rows.
    torch.testing.assert_close(q_sa.grad, torch.tensor([-w0 / 2, -w1 / 2, 0.0, 0.0]))


def test_terminated_rows_do_not_bootstrap_truncation_does():
    b = batch()
    b["next_v"] = b["next_v"].clone()
    b["next_v"][1] = 1000.0  # terminated row: V(s') must not matter
    loss, _ = iq_loss(**b, config=IQLossConfig(gamma=GAMMA))
    assert loss.item() == pytest.approx(0.7225)
    b["next_v"][0] = 1000.0  # not terminated (e.g. a time-limit end): it must matter
    assert iq_loss(**b, config=IQLossConfig(gamma=GAMMA))[0].item() != pytest.approx(0.7225)


def test_absorbing_state_prices_the_termination():
    # V_abs = 2: the terminated expert row 1 bootstraps from it (y = 1.8, r = -1.3) and an
    # absorbing self-transition joins the expert rows (Q = V = V' = 2: r = v - y = 0.2).
    b = batch()
    v_absorb = torch.tensor(2.0, requires_grad=True)
    *rows, q_policy = absorbing_rows(*b.values(), v_absorb)
    q_sa, v, next_v, terminated, is_expert = rows
    assert q_policy is None and not terminated.any()
    assert is_expert.tolist() == [True, True, False, False, True]
    torch.testing.assert_close(next_v, torch.tensor([2.0, 2.0, 3.0, 1.0, 2.0]))
    loss, m = iq_loss(*rows, config=IQLossConfig(gamma=GAMMA))
    softq = -(-0.8 - 1.3 + 0.2) / 3
    value = (-0.3 - 0.8 + 0.2) / 3
    chi2 = (0.64 + 1.69 + 0.04) / 3 / (4 * 0.5)
    assert loss.item() == pytest.approx(softq + value + chi2)
    loss.backward()
    # The expert and value terms cancel in V_abs (chi2: the end is priced by the regulariser):
    # d/dV_abs = 2 (r1 (-0.9) + r4 (1 - 0.9)) / (3 rows * 2) = (2.34 + 0.04) / 6.
    assert v_absorb.grad.item() == pytest.approx(2.38 / 6)
    # An agent row that ended adds its absorbing row on the agent side, with Q(abs, pi) = V_abs.
    b = batch()
    b["terminated"] = torch.tensor([False, False, False, True])
    *_, is_expert, q_policy = absorbing_rows(*b.values(), v_absorb, torch.zeros(4))
    assert is_expert.tolist() == [True, True, False, False, False]
    assert q_policy.tolist() == [0.0, 0.0, 0.0, 0.0, 2.0]


def test_learner_trains_the_absorbing_value():
    rng = np.random.default_rng(0)
    agent = SoftQAgent(MLP(3, 2), 2, alpha=0.1, absorbing=True)
    learner = IQLearner(agent, IQLearnerConfig(lr=1e-2))
    metrics = learner.update(_batch(rng, 4), None)  # nothing ends: V_abs plays no part
    assert agent.v_absorb.item() == 0.0 and metrics["v_absorb"].item() == 0.0
    learner.update(_batch(rng, 4, terminated=True), None)
    assert agent.v_absorb.item() != 0.0


def test_unknown_options_raise_input_errors():
    for kwargs in ({"value_term": "value_policy"}, {"divergence": "chi"}, {"regularize_over": "x"}):
        with pytest.raises(InputError, match="expected one of"):
            IQLossConfig(**kwargs)
    with pytest.raises(InputError):
        IQLossConfig(chi2_alpha=0.0)
    with pytest.raises(InputError, match="next_v"):
        IQLearnerConfig(next_v="lagged")


def test_gradient_penalty_of_a_linear_q():
    net = MLP(3, 2, hidden=())  # Q = W x + b: dQ_a/dx = W[a], whatever the input
    with torch.no_grad():
        net.net[0].weight.copy_(torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 1.0]]))
    expert, agent = torch.randn(5, 3), torch.randn(5, 3)
    gp = gradient_penalty(net, expert, agent, weight=10.0)
    assert gp.item() == pytest.approx(10.0 * ((5 - 1) ** 2 + 0) / 2)
    gp.backward()
    assert net.net[0].weight.grad is not None


def _batch(rng, n, obs_dim=3, terminated=False):
    obs = rng.standard_normal((n, obs_dim)).astype(np.float32)
    next_obs = rng.standard_normal((n, obs_dim)).astype(np.float32)
    flags = np.full(n, terminated)
    return Batch(obs, rng.integers(0, 2, n), np.zeros(n, np.float32), next_obs, flags, flags)


class CountingMLP(MLP):
    def __init__(self):
        super().__init__(3, 2, hidden=(8,))
        self.calls = []

    def forward(self, obs):
        self.calls.append(len(obs))
        return super().forward(obs)


def test_learner_runs_one_forward_over_obs_and_next_obs():
    rng = np.random.default_rng(0)
    net = CountingMLP()
    config = IQLearnerConfig(loss=IQLossConfig(value_term="value", regularize_over="policy"))
    learner = IQLearner(SoftQAgent(net, 2, alpha=0.1), config)
    metrics = learner.update(_batch(rng, 4), _batch(rng, 4))
    assert net.calls == [16]  # obs + next_obs of 4 expert + 4 agent rows, together
    assert {"softq_loss", "value_loss", "chi2_loss", "reward_agent", "alpha"} <= set(metrics)

    # With a target network: the online net sees obs only, the target net next_obs.
    target_cfg = IQLearnerConfig(next_v="target", tau=1.0, target_interval=2)
    agent = SoftQAgent(CountingMLP(), 2, use_target=True)
    learner = IQLearner(agent, target_cfg)
    learner.update(_batch(rng, 4), None)
    assert agent.q_net.calls == [4] and agent.target_net.calls == [4]
    assert not torch.equal(agent.q_net.net[0].weight, agent.target_net.net[0].weight)
    learner.update(_batch(rng, 4), None)  # 2nd update: hard copy
    assert torch.equal(agent.q_net.net[0].weight, agent.target_net.net[0].weight)


def test_learner_v0_uses_initial_observations_in_the_same_forward():
    rng = np.random.default_rng(0)
    net = CountingMLP()
    initial = rng.standard_normal((3, 3)).astype(np.float32)
    config = IQLearnerConfig(loss=IQLossConfig(value_term="v0"))
    learner = IQLearner(SoftQAgent(net, 2), config, initial_obs=initial)
    with torch.no_grad():
        v0 = learner.agent.v(torch.from_numpy(initial)).mean().item()
    net.calls.clear()
    metrics = learner.update(_batch(rng, 4), None)
    assert net.calls == [4 + 4 + 3]
    assert metrics["value_loss"].item() == pytest.approx((1 - 0.99) * v0, rel=1e-5)
    without = IQLearner(SoftQAgent(MLP(3, 2), 2), config)  # fine for acting, not for training
    with pytest.raises(ValueError, match="initial"):
        without.update(_batch(rng, 4), None)


def test_learner_fits_the_expert_action_and_round_trips_state():
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    expert = _batch(rng, 32)
    expert = dataclasses.replace(expert, actions=(expert.obs[:, 0] > 0).astype(np.int64))
    learner = IQLearner(SoftQAgent(MLP(3, 2), 2, alpha=0.01), IQLearnerConfig(lr=1e-2))
    for _ in range(200):
        learner.update(expert, None)
    accuracy = (learner.act(expert.obs, greedy=True) == expert.actions).mean()
    assert accuracy > 0.9

    clone = IQLearner(SoftQAgent(MLP(3, 2), 2, alpha=0.01), IQLearnerConfig(lr=1e-2))
    clone.load_state_dict(learner.state_dict())
    np.testing.assert_array_equal(clone.act(expert.obs, True), learner.act(expert.obs, True))
    learner.update(expert, None)
    clone.update(expert, None)
    for a, b in zip(learner.agent.parameters(), clone.agent.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_learned_alpha_moves_towards_the_target_entropy():
    rng = np.random.default_rng(0)
    agent = SoftQAgent(MLP(3, 2), 2, alpha=1.0, learn_alpha=True)  # near-uniform policy
    config = IQLearnerConfig(lr=1e-2, target_entropy=0.1)
    learner = IQLearner(agent, config)
    for _ in range(20):
        metrics = learner.update(_batch(rng, 16), None)
    assert metrics["alpha"].item() < 1.0  # entropy above target -> lower temperature
