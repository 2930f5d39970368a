"""Soft-Q networks: shapes, uint8 scaling inside forward, bf16 autocast, choice by obs space."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from iq_atari.networks import MLP, NatureCNN, make_q_network


def test_nature_cnn_shapes_and_flatten_size():
    net = NatureCNN((4, 84, 84), n_actions=6)
    assert net.hidden[0].in_features == 64 * 7 * 7  # from the dummy forward, not hard-coded
    out = net(torch.zeros(3, 4, 84, 84, dtype=torch.uint8))
    assert out.shape == (3, 6) and out.dtype == torch.float32
    other = NatureCNN((2, 64, 48), n_actions=3)  # other sizes work too
    assert other(torch.zeros(1, 2, 64, 48, dtype=torch.uint8)).shape == (1, 3)


def test_nature_cnn_divides_by_255_inside_forward():
    torch.manual_seed(0)
    net = NatureCNN((4, 84, 84), n_actions=4)
    frames = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    expected = net.forward_features(frames.float() / 255.0)
    torch.testing.assert_close(net(frames), expected)
    # Not the raw pixel scale: that would give different Q values.
    assert not torch.allclose(net(frames), net.forward_features(frames.float()))


def test_bf16_autocast_keeps_float32_q_values_close():
    torch.manual_seed(0)
    net = NatureCNN((4, 84, 84), n_actions=6)
    frames = torch.randint(0, 256, (8, 4, 84, 84), dtype=torch.uint8)
    reference = net(frames)
    net.bf16 = True
    fast = net(frames)
    assert fast.dtype == torch.float32
    assert not torch.equal(fast, reference)  # it really ran in lower precision
    torch.testing.assert_close(fast, reference, atol=5e-3, rtol=5e-2)
    fast.sum().backward()  # and trains
    assert net.body[0].weight.grad is not None


def test_mlp_activation_and_hidden_sizes():
    net = MLP(4, 2, hidden=(8, 16), activation="tanh")
    linears = [m for m in net.net if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(4, 8), (8, 16), (16, 2)]
    assert isinstance(net.net[1], torch.nn.Tanh)
    assert net(torch.zeros(5, 4)).shape == (5, 2)
    assert isinstance(MLP(4, 2).net[1], torch.nn.ELU)  # default: the official offline network's
    with pytest.raises(ValueError, match="activation"):
        MLP(4, 2, activation="swish")


def test_make_q_network_picks_by_observation_space():
    image = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    vector = gym.spaces.Box(-np.inf, np.inf, (6,), np.float32)
    assert isinstance(make_q_network(image, 6), NatureCNN)
    assert isinstance(make_q_network(image, 6, bf16=True), NatureCNN)
    mlp = make_q_network(vector, 3, hidden=(32,))
    assert isinstance(mlp, MLP) and mlp(torch.zeros(1, 6)).shape == (1, 3)
    with pytest.raises(ValueError, match="unsupported"):
        make_q_network(gym.spaces.Discrete(5), 2)


def test_fine_encoder_keeps_twice_the_resolution_and_the_layer_names():
    nature = NatureCNN((4, 84, 84), n_actions=6)
    fine = NatureCNN((4, 84, 84), n_actions=6, encoder="fine")
    assert fine.hidden[0].in_features == 64 * 9 * 9  # 84 -> 41 -> 19 -> 9
    assert [m.stride for m in fine.body if isinstance(m, torch.nn.Conv2d)] == [(2, 2)] * 3
    # Same module names: a checkpoint says which encoder, the keys do not change with it.
    assert list(fine.state_dict()) == list(nature.state_dict())
    assert fine(torch.zeros(2, 4, 84, 84, dtype=torch.uint8)).shape == (2, 6)
    image = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    assert make_q_network(image, 6, encoder="fine").hidden[0].in_features == 64 * 9 * 9
    with pytest.raises(ValueError, match="encoder: expected one of nature, fine"):
        NatureCNN((4, 84, 84), n_actions=6, encoder="impala")
