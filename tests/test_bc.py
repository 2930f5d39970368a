"""Behavioural cloning: the loss, the validation split, early stopping, and learning CartPole."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from iq_atari.bc import BCConfig, BCLearner, Validation, bc_loss, hold_out
from iq_atari.buffers import Batch, expert_buffer
from iq_atari.config import TrainConfig
from iq_atari.demos import Trajectory
from iq_atari.learners import load_learner
from iq_atari.rollout import record_demos
from iq_atari.train import train


@pytest.fixture(scope="module")
def cartpole_demos(tmp_path_factory):
    path = tmp_path_factory.mktemp("demos") / "CartPole_controller_10ep.npz"
    return record_demos("CartPole", None, episodes=10, seed=0, out=path, progress=False)


def test_bc_loss_values_and_metrics():
    uniform = torch.zeros(4, 3)
    loss, metrics = bc_loss(uniform, torch.tensor([0, 1, 2, 0]))
    assert loss.item() == pytest.approx(math.log(3))
    assert metrics["entropy"].item() == pytest.approx(math.log(3))
    logits = torch.tensor([[5.0, 0.0], [0.0, 5.0], [5.0, 0.0]], requires_grad=True)
    loss, metrics = bc_loss(logits, torch.tensor([0, 1, 1]))
    assert metrics["accuracy"].item() == pytest.approx(2 / 3)
    assert loss.item() == pytest.approx(
        (2 * math.log1p(math.exp(-5)) + math.log1p(math.exp(5))) / 3
    )
    loss.backward()
    # The gradient raises the logit of the expert action in the misclassified row.
    assert logits.grad[2, 1] < 0 < logits.grad[2, 0]


def _episode(length: int, start: float) -> Trajectory:
    obs = np.stack([np.full(3, start + t, dtype=np.float32) for t in range(length + 1)])
    return Trajectory(obs, np.arange(length) % 2, np.ones(length), True, False)


def test_hold_out_takes_contiguous_blocks_out_of_sampling():
    buffer = expert_buffer([_episode(20, 0.0), _episode(9, 1000.0), _episode(1, 5000.0)], 1)
    val = hold_out(buffer, 0.2, np.random.default_rng(0))
    held = val.obs[:, 0]
    first, second = held[held < 1000], held[held >= 1000]
    assert len(first) == 4 and len(second) == 2  # ceil(0.2 * 20), ceil(0.2 * 9); 1-step kept
    assert np.all(np.diff(first) == 1) and np.all(np.diff(second) == 1)
    np.testing.assert_array_equal(val.actions, (held % 1000) % 2)
    seen = buffer.sample(5000, np.random.default_rng(1)).obs[:, 0]
    assert not np.isin(seen, held).any()
    assert len(np.unique(seen)) == 20 + 9 + 1 - 6  # everything else is still sampled
    assert hold_out(buffer, 0.0, np.random.default_rng(0)) is None


def test_subsampled_demos_are_true_transitions():
    """Every 5th step of each episode (official subsample_freq): (s_t, a_t, s_t+1), never s_t+5."""
    episodes = [_episode(40, 0.0), _episode(23, 1000.0)]
    buffer = expert_buffer(episodes, 1, subsample=5, rng=np.random.default_rng(3))
    batch = buffer.sample(4000, np.random.default_rng(4))
    t = batch.obs[:, 0] % 1000
    np.testing.assert_array_equal(batch.next_obs[:, 0], batch.obs[:, 0] + 1)
    np.testing.assert_array_equal(batch.actions, t % 2)
    for start in (0.0, 1000.0):
        steps = np.unique(t[(batch.obs[:, 0] >= start) & (batch.obs[:, 0] < start + 1000)])
        assert len(steps) >= 4 and np.all(np.diff(steps) == 5)
    assert len(buffer) == 8 + 5  # 40 steps: 8 from any offset; 23 steps: 5 from offset 0..2
    np.testing.assert_array_equal(buffer.observations(np.array([0, 41]))[:, 0], [0.0, 1000.0])


def _batch(obs: np.ndarray, actions: np.ndarray) -> Batch:
    n = len(actions)
    zeros = np.zeros(n, dtype=bool)
    return Batch(obs, actions, np.zeros(n, np.float32), obs, zeros, zeros)


def test_early_stopping_restores_the_best_weights():
    """Validation labels are the opposite of the training labels: the validation loss only
    rises, so training stops after `patience` checks with the weights of the first check."""
    rng = np.random.default_rng(0)
    obs = rng.standard_normal((64, 4)).astype(np.float32)
    actions = (obs[:, 0] > 0).astype(np.int64)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    config = BCConfig(lr=1e-2, val_interval=5, patience=3, val_chunk=24)  # chunks: 24+24+16
    learner = BCLearner(net, config, validation=Validation(obs, 1 - actions))
    metrics = {}
    for _ in range(100):
        metrics = learner.update(_batch(obs, actions), None)
        if learner.stopped:
            break
    assert learner.stopped and learner.updates == 5 * (1 + config.patience)
    assert learner.best_update == 5
    weights = {k: v.clone() for k, v in net.state_dict().items()}
    for name, value in learner.best_weights.items():
        torch.testing.assert_close(weights[name], value)
    assert float(metrics["val_loss"]) > learner.best_val_loss
    with torch.no_grad():  # chunked validation = one pass over everything
        whole, _ = bc_loss(net(torch.from_numpy(obs)), torch.from_numpy(1 - actions))
    assert learner.validation_metrics()["val_loss"] == pytest.approx(whole.item(), rel=1e-5)
    after = learner.update(_batch(obs, actions), None)
    assert after["stopped"] == 1.0 and learner.updates == 5 * (1 + config.patience)
    for name, value in net.state_dict().items():
        torch.testing.assert_close(value, weights[name])

    fresh = BCLearner(nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2)), config)
    fresh.load_state_dict(learner.state_dict())
    assert fresh.stopped and fresh.best_update == 5
    np.testing.assert_array_equal(fresh.act(obs, greedy=True), learner.act(obs, greedy=True))
    with pytest.raises(ValueError, match="offline"):
        learner.update(_batch(obs, actions), _batch(obs, actions))


def test_bc_learns_cartpole_from_10_demos(cartpole_demos, tmp_path):
    record = train(
        TrainConfig(
            game="CartPole",
            algo="bc",
            demos=str(cartpole_demos),
            num_demos=10,
            steps=1500,
            eval_interval=500,
            eval_episodes=10,
            seed=0,
            run_dir=str(tmp_path / "bc"),
            tensorboard=False,
            progress=False,
        )
    )
    assert record["algo"] == "bc" and record["updates"] == 1500 and record["episodes"] == 10
    assert record["mean_return"] >= 475, record["returns"]  # expert 500, random ~ 20
    assert "reward_correlation" not in record  # BC has no reward to recover
    # The checkpoint reloads into the same policy.
    learner, config = load_learner(tmp_path / "bc" / "checkpoints" / "last.pt")
    assert config.algo == "bc"
    obs = np.random.default_rng(0).uniform(-0.2, 0.2, size=(32, 4)).astype(np.float32)
    assert learner.act(obs, greedy=True).shape == (32,)
