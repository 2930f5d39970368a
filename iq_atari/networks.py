"""Soft-Q networks: Q(s, .) over discrete actions, for uint8 frame stacks or vector observations.

Both networks split `forward` into `preprocess` (raw observation -> float features: `/ 255` for
frames, nothing else here) and `forward_features`, so the gradient penalty can interpolate between
observations in the network's own input scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import gymnasium as gym
import torch
from torch import nn

from iq_atari.envs import is_image_space

# Conv layers of the pixel soft-Q network, (out channels, kernel, stride) each, by encoder name.
CONV_LAYERS: dict[str, tuple[tuple[int, int, int], ...]] = {
    # Mnih et al. (2015): 84 -> 20 -> 9 -> 7.
    "nature": ((32, 8, 4), (64, 4, 2), (64, 3, 1)),
    # The same depth and widths at twice the first layer's resolution: 84 -> 41 -> 19 -> 9, for
    # games decided by a pixel or two (Pong's ball against the paddle); ~2x the compute.
    "fine": ((32, 4, 2), (64, 4, 2), (64, 3, 2)),
}
Encoder = Literal["nature", "fine"]
# The default conv layers; also what anything saved before --encoder existed was built with.
DEFAULT_ENCODER: Encoder = "nature"
# Help texts of the two network options, shared by runners.train and runners.distill.
ENCODER_HELP = (
    "Atari: conv layers of the network: nature (Mnih et al. 2015) or fine (4x4 stride-2 first "
    "layer: twice the resolution, ~2x the compute)"
)
BF16_HELP = "bfloat16 autocast on the CNN body (faster on CPUs with bf16)"


class NatureCNN(nn.Module):
    """The DQN network of Mnih et al. (2015) on (k, H, W) uint8 stacks; outputs (B, n_actions).

    `encoder` names its conv layers (CONV_LAYERS): "nature" is the paper's. With `bf16=True` the
    conv body and the 512-unit layer run under bfloat16 autocast; the last layer (Q values) stays
    float32, since V = alpha * logsumexp(Q / alpha) with a small alpha magnifies rounding in Q.
    """

    def __init__(
        self,
        obs_shape: Sequence[int],
        n_actions: int,
        bf16: bool = False,
        encoder: Encoder = DEFAULT_ENCODER,
    ):
        super().__init__()
        if encoder not in CONV_LAYERS:
            raise ValueError(f"encoder: expected one of {', '.join(CONV_LAYERS)}, got {encoder!r}")
        n_frames, height, width = obs_shape
        layers: list[nn.Module] = []
        channels = n_frames
        for out, kernel, stride in CONV_LAYERS[encoder]:
            layers += [nn.Conv2d(channels, out, kernel_size=kernel, stride=stride), nn.ReLU()]
            channels = out
        self.body = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            n_flat = self.body(torch.zeros(1, n_frames, height, width)).shape[1]
        self.hidden = nn.Sequential(nn.Linear(n_flat, 512), nn.ReLU())
        self.out = nn.Linear(512, n_actions)
        self.bf16 = bf16
        self.encoder = encoder

    def preprocess(self, obs: torch.Tensor) -> torch.Tensor:
        """uint8 pixels -> float in [0, 1]."""
        return obs.float() / 255.0

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Q values from preprocessed input."""
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            h = self.hidden(self.body(x))
        return self.out(h.float())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.forward_features(self.preprocess(obs))


ACTIVATIONS: dict[str, type[nn.Module]] = {"elu": nn.ELU, "relu": nn.ReLU, "tanh": nn.Tanh}
Activation = Literal["elu", "relu", "tanh"]


class MLP(nn.Module):
    """A fully connected soft-Q network for flat vector observations; outputs (B, n_actions).

    ELU by default, as the official code's offline network (docs/RESULTS.md compares it with
    ReLU on CartPole).
    """

    def __init__(
        self,
        obs_dim: int,
        n_actions: int,
        hidden: Sequence[int] = (64, 64),
        activation: Activation = "elu",
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation: expected one of {', '.join(ACTIVATIONS)}, got {activation!r}"
            )
        layers: list[nn.Module] = []
        size = obs_dim
        for width in hidden:
            layers += [nn.Linear(size, width), ACTIVATIONS[activation]()]
            size = width
        layers.append(nn.Linear(size, n_actions))
        self.net = nn.Sequential(*layers)

    def preprocess(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.float()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.forward_features(self.preprocess(obs))


def make_q_network(
    obs_space: gym.Space,
    n_actions: int,
    hidden: Sequence[int] = (64, 64),
    activation: Activation = "elu",
    bf16: bool = False,
    encoder: Encoder = DEFAULT_ENCODER,
) -> nn.Module:
    """NatureCNN (`encoder`'s conv layers) for uint8 image stacks, MLP (`hidden` widths,
    `activation`) for flat vectors."""
    if is_image_space(obs_space):
        return NatureCNN(obs_space.shape, n_actions, bf16=bf16, encoder=encoder)
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        raise ValueError(f"unsupported observation space for a soft-Q network: {obs_space}")
    return MLP(obs_space.shape[0], n_actions, hidden, activation)
