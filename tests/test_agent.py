"""SoftQAgent: V as a soft maximum, greedy and softmax actions, recovered reward, target, save."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from iq_atari.agent import SoftQAgent
from iq_atari.networks import MLP


class FixedQ(nn.Module):
    """Q(s, .) = the rows of `table` indexed by the (integer) observation."""

    def __init__(self, table):
        super().__init__()
        self.table = nn.Parameter(torch.tensor(table, dtype=torch.float32))

    def forward(self, obs):
        return self.table[obs.long().view(-1)]


def test_value_is_alpha_logsumexp_over_q():
    agent = SoftQAgent(FixedQ([[1.0, 2.0], [0.0, 0.0]]), 2, alpha=0.5)
    v = agent.v(torch.tensor([0, 1]))
    expected = [0.5 * math.log(math.exp(2.0) + math.exp(4.0)), 0.5 * math.log(2.0)]
    torch.testing.assert_close(v, torch.tensor(expected))
    # A small temperature makes V the hard maximum (alpha * log 2 away at a tie).
    cold = SoftQAgent(FixedQ([[1.0, 2.0]]), 2, alpha=1e-3)
    assert cold.v(torch.tensor([0])).item() == pytest.approx(2.0, abs=1e-6)
    # Large Q / alpha does not overflow.
    big = SoftQAgent(FixedQ([[500.0, 400.0]]), 2, alpha=1e-3)
    assert big.v(torch.tensor([0])).item() == pytest.approx(500.0)


def test_greedy_and_sampled_actions():
    table = [[0.0, 1.0, 0.5], [2.0, 0.0, 0.0]]
    agent = SoftQAgent(FixedQ(table), 3, alpha=1.0)
    np.testing.assert_array_equal(agent.act(np.array([0, 1]), greedy=True), [1, 0])
    gen = torch.Generator().manual_seed(0)
    samples = agent.act(np.zeros(20_000, dtype=np.int64), greedy=False, generator=gen)
    freq = np.bincount(samples, minlength=3) / len(samples)
    expected = torch.softmax(torch.tensor(table[0]), 0).numpy()
    np.testing.assert_allclose(freq, expected, atol=0.015)
    # Same generator state, same samples.
    again = agent.act(np.zeros(50, dtype=np.int64), False, torch.Generator().manual_seed(1))
    np.testing.assert_array_equal(
        again, agent.act(np.zeros(50, dtype=np.int64), False, torch.Generator().manual_seed(1))
    )


def test_recovered_reward_bootstraps_only_without_termination():
    agent = SoftQAgent(FixedQ([[1.0, 3.0], [2.0, 2.0]]), 2, alpha=1.0)
    obs, actions, next_obs = torch.tensor([0, 0]), torch.tensor([1, 0]), torch.tensor([1, 1])
    reward = agent.recovered_reward(obs, actions, next_obs, torch.tensor([False, True]), 0.9)
    v1 = 2.0 + math.log(2.0)  # V of state 1
    torch.testing.assert_close(reward, torch.tensor([3.0 - 0.9 * v1, 1.0]))


def test_recovered_reward_with_an_absorbing_state_bootstraps_from_its_value():
    agent = SoftQAgent(FixedQ([[1.0, 3.0], [2.0, 2.0]]), 2, alpha=1.0, absorbing=True)
    assert agent.v_absorb is not None and agent.v_absorb.item() == 0.0
    with torch.no_grad():
        agent.v_absorb.fill_(5.0)
    obs, actions, next_obs = torch.tensor([0, 0]), torch.tensor([1, 0]), torch.tensor([1, 1])
    reward = agent.recovered_reward(obs, actions, next_obs, torch.tensor([False, True]), 0.9)
    v1 = 2.0 + math.log(2.0)
    torch.testing.assert_close(reward, torch.tensor([3.0 - 0.9 * v1, 1.0 - 0.9 * 5.0]))
    assert "v_absorb" in agent.state_dict()  # saved and restored with the weights
    assert agent.q_parameters()[-1] is agent.v_absorb


def test_target_network_soft_and_hard_updates():
    torch.manual_seed(0)
    agent = SoftQAgent(MLP(3, 2, hidden=(4,)), 2, use_target=True)
    online = [p.detach().clone() for p in agent.q_net.parameters()]
    start = [p.detach().clone() for p in agent.target_net.parameters()]
    assert all(not p.requires_grad for p in agent.target_net.parameters())
    with torch.no_grad():
        for p in agent.q_net.parameters():
            p.add_(1.0)
    agent.update_target(0.25)
    for t, s, o in zip(agent.target_net.parameters(), start, online, strict=True):
        torch.testing.assert_close(t, s + 0.25 * (o + 1.0 - s))
    agent.update_target(1.0)
    for t, o in zip(agent.target_net.parameters(), agent.q_net.parameters(), strict=True):
        torch.testing.assert_close(t, o)
    x = torch.randn(5, 3)
    torch.testing.assert_close(agent.target_v(x), agent.v(x).detach())
    assert SoftQAgent(MLP(3, 2), 2).target_net is None


def test_alpha_fixed_or_learned_and_save_load(tmp_path):
    fixed = SoftQAgent(MLP(3, 2), 2, alpha=0.1)
    assert "log_alpha" not in dict(fixed.named_parameters())
    assert fixed.alpha.item() == pytest.approx(0.1)
    learned = SoftQAgent(MLP(3, 2), 2, alpha=0.1, learn_alpha=True)
    assert "log_alpha" in dict(learned.named_parameters())
    assert not learned.alpha.requires_grad  # losses on Q never move alpha
    with pytest.raises(ValueError):
        SoftQAgent(MLP(3, 2), 2, alpha=0.0)

    torch.manual_seed(1)
    agent = SoftQAgent(MLP(3, 2), 2, alpha=0.3)
    agent.save(tmp_path / "agent.pt")
    other = SoftQAgent(MLP(3, 2), 2, alpha=1.0)
    other.load(tmp_path / "agent.pt")
    x = torch.randn(4, 3)
    torch.testing.assert_close(other.v(x), agent.v(x))
    assert other.alpha.item() == pytest.approx(0.3)
