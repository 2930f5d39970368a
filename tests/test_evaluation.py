"""The recovered-reward check: correlation code on synthetic data, recovered returns by hand,
and the whole check on CartPole with agents whose recovered reward is known."""

import numpy as np
import pytest
import torch
from torch import nn

from iq_atari.agent import SoftQAgent
from iq_atari.demos import Trajectory
from iq_atari.evaluation import (
    EPSILONS,
    RewardCorrelation,
    action_agreement,
    expert_agreement_on_agent_states,
    pearson,
    plot_reward_correlation,
    rankdata,
    recovered_return,
    reward_correlation,
    spearman,
)
from iq_atari.experts import get_expert


def test_rankdata_averages_ties():
    np.testing.assert_allclose(rankdata([10, 30, 20, 20, -1]), [2, 5, 3.5, 3.5, 1])


@pytest.mark.parametrize("rho", [-0.8, 0.0, 0.5, 0.9])
def test_correlations_recover_known_values(rho):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(20_000)
    y = rho * x + np.sqrt(1 - rho**2) * rng.standard_normal(len(x))
    assert pearson(x, y) == pytest.approx(rho, abs=0.02)
    # Spearman's rho of a bivariate normal is (6 / pi) * arcsin(rho / 2).
    assert spearman(x, y) == pytest.approx(6 / np.pi * np.arcsin(rho / 2), abs=0.02)


def test_spearman_sees_monotone_not_linear():
    x = np.linspace(0.1, 5, 50)
    y = np.exp(3 * x)
    assert spearman(x, y) == pytest.approx(1.0)
    assert pearson(x, y) < 0.8
    assert spearman(x, -y) == pytest.approx(-1.0)


def test_correlations_match_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    x = rng.integers(0, 5, size=40).astype(float)
    y = x + rng.integers(0, 3, size=40)
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0])
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0])


def test_degenerate_samples_give_nan():
    assert np.isnan(pearson([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    assert np.isnan(spearman([1.0], [2.0]))
    with pytest.raises(ValueError):
        pearson([1.0, 2.0], [1.0, 2.0, 3.0])


class ConstantQ(nn.Module):
    """Q(s, .) = per-action constants, whatever the observation."""

    def __init__(self, values):
        super().__init__()
        self.values = torch.tensor(values, dtype=torch.float32)

    def forward(self, obs):
        return self.values.expand(len(obs), -1)


WEIGHT = np.array([[1.0, 0.0, -2.0, 0.5], [0.0, 1.0, 3.0, 0.0]], dtype=np.float32)
BIAS = np.array([0.1, -0.2], dtype=np.float32)


class LinearQ(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 2)
        with torch.no_grad():
            self.linear.weight.copy_(torch.from_numpy(WEIGHT))
            self.linear.bias.copy_(torch.from_numpy(BIAS))

    def forward(self, obs):
        return self.linear(obs.float())


@pytest.mark.parametrize("terminated", [True, False])
def test_recovered_return_by_hand(terminated):
    rng = np.random.default_rng(0)
    obs = rng.standard_normal((6, 4)).astype(np.float32)
    actions = np.array([0, 1, 1, 0, 1])
    trajectory = Trajectory(obs, actions, np.ones(5), terminated, not terminated)
    agent = SoftQAgent(LinearQ(), 2, alpha=0.5)
    gamma = 0.9
    q = obs.astype(np.float64) @ WEIGHT.T + BIAS
    v = 0.5 * np.log(np.exp(q / 0.5).sum(axis=1))
    done = np.array([0, 0, 0, 0, terminated], dtype=float)
    expected = sum(q[t, actions[t]] - gamma * (1 - done[t]) * v[t + 1] for t in range(5))
    for chunk in (512, 2):  # chunking must not change the sum
        got = recovered_return(agent, trajectory, gamma, frame_stack=1, chunk=chunk)
        assert got == pytest.approx(expected, rel=1e-5)


def test_reward_check_on_cartpole_with_known_rewards(tmp_path):
    """A constant Q = c gives r = c - gamma (c + alpha log 2) per step: positive when c is large,
    so the recovered return grows with the episode length, which is CartPole's true return."""
    gamma, alpha = 0.99, 0.01
    expert = get_expert("CartPole")
    good = SoftQAgent(ConstantQ([5.0, 5.0]), 2, alpha=alpha)
    result = reward_correlation(good, "CartPole", gamma, expert, episodes=2, seed=3)
    assert len(result.sources) == 2 * len(EPSILONS) + 2
    assert result.sources[-1] == "agent" and result.sources[0] == "expert eps=0"
    np.testing.assert_array_equal(result.true_returns, result.lengths)  # CartPole: +1 per step
    assert result.true_returns.max() == 500 and result.true_returns.min() < 100  # mixed skill
    assert result.pearson > 0.99 and result.spearman > 0.95
    # Negative per-step reward: long (good) episodes look worst, the correlation flips.
    bad = SoftQAgent(ConstantQ([-5.0, -5.0]), 2, alpha=alpha)
    flipped = reward_correlation(bad, "CartPole", gamma, expert, episodes=2, seed=3)
    assert flipped.pearson < -0.99
    np.testing.assert_array_equal(flipped.true_returns[:-2], result.true_returns[:-2])

    path = plot_reward_correlation(result, tmp_path / "corr.png", "test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = result.to_dict()
    assert record["episodes"] == len(result.sources)
    again = RewardCorrelation(
        record["sources"],
        np.array(record["true_returns"]),
        np.array(record["recovered_returns"]),
        np.array(record["lengths"]),
    )
    assert again.pearson == pytest.approx(result.pearson)


def test_per_step_correlation_sees_through_episode_lengths():
    """Breakout's pattern: better play earns more points per step and lives longer, every
    recovered step is negative but less so for better play. Summed, the short bad episodes look
    best; per step, the ranking is the true one."""
    points_per_step = np.array([0.05, 0.04, 0.02, 0.01, 0.005])
    lengths = np.array([1000, 1000, 300, 200, 100])
    recovered_per_step = np.array([-0.002, -0.003, -0.008, -0.009, -0.010])
    result = RewardCorrelation(
        ["expert eps=0", "expert eps=0.25", "expert eps=0.5", "expert eps=0.75", "expert eps=1"],
        points_per_step * lengths,
        recovered_per_step * lengths,
        lengths,
    )
    assert result.pearson < 0 and result.pearson_per_step > 0.9
    assert result.to_dict()["pearson_per_step"] == result.pearson_per_step


def test_action_agreement_reports_recall_of_rare_actions():
    # Frames carry their step index; the expert moves (action 2) on every 10th step.
    frames = np.zeros((41, 2, 2), np.uint8)
    frames[:, 0, 0] = np.arange(41)
    actions = np.where(np.arange(40) % 10 == 0, 2, 0)
    trajectory = Trajectory(frames, actions, np.zeros(40, np.float32), True, False)

    def always_noop(obs):
        return np.zeros(len(obs), dtype=np.int64)

    def moves_on_steps_0_and_10(obs):
        newest = obs[:, -1, 0, 0]  # the stack's newest frame is the current step
        return np.where(np.isin(newest, (0, 10)), 2, 0)

    noop = action_agreement(always_noop, [trajectory], frame_stack=4, n_actions=3, chunk=7)
    assert noop["accuracy"] == noop["majority_accuracy"] == 0.9
    assert noop["expert_share"] == [0.9, 0.0, 0.1] and noop["recall"] == [1.0, None, 0.0]
    half = action_agreement(moves_on_steps_0_and_10, [trajectory], 4, 3, chunk=7)
    assert half["recall"] == [1.0, None, 0.5] and half["accuracy"] == 0.95 and half["steps"] == 40


def test_expert_agreement_on_agent_states_asks_the_expert_where_the_policy_goes():
    expert = get_expert("CartPole")  # the controller reads the observation only

    def controller(obs):
        return np.array([expert.act(o, None) for o in obs])

    def always_left(obs):
        return np.zeros(len(obs), dtype=np.int64)

    same = expert_agreement_on_agent_states(controller, get_expert("CartPole"), "CartPole", 2, 0)
    assert same["accuracy"] == 1.0 and same["scores"] == [500.0, 500.0] and same["steps"] == 1000
    left = expert_agreement_on_agent_states(always_left, get_expert("CartPole"), "CartPole", 2, 0)
    # Pushing left topples the pole within a few dozen steps; the expert wants right there.
    assert max(left["scores"]) < 30 and left["steps"] == sum(left["scores"])
    assert left["recall"] == [1.0, 0.0] and left["expert_share"][1] > 0.5
