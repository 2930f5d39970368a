"""Weight averaging (SWA, Izmailov et al. 2018): the uniform mean of weight snapshots taken along
one run at a constant learning rate. The training loop snapshots the policy at each evaluation
from `TrainConfig.average_from` on, and evaluates, keeps and ships the mean instead of the last
weights; training itself goes on with the last weights and is unchanged.
"""

from __future__ import annotations

import torch


class WeightAverage:
    """The running uniform mean of `add`ed weight dicts (a learner's `policy_state()`).

    Floating-point tensors are averaged in fp32; other entries (integer buffers) take the last
    snapshot's value. `state_dict`/`load_state_dict` carry it through checkpoints."""

    def __init__(self) -> None:
        self.count = 0
        self.weights: dict[str, torch.Tensor] = {}

    def add(self, weights: dict[str, torch.Tensor]) -> None:
        """Take one more snapshot into the mean."""
        if self.count and weights.keys() != self.weights.keys():
            raise ValueError("a snapshot with other weights than the average's")
        self.count += 1
        for name, value in weights.items():
            value = value.detach().cpu()
            if not torch.is_floating_point(value):
                self.weights[name] = value.clone()
            elif self.count == 1:
                self.weights[name] = value.float().clone()
            else:
                self.weights[name] += (value.float() - self.weights[name]) / self.count

    def state_dict(self) -> dict:
        return {"count": self.count, "weights": dict(self.weights)}

    def load_state_dict(self, state: dict) -> None:
        count, weights = int(state["count"]), state["weights"]
        if count < 0 or not isinstance(weights, dict) or (count > 0) != bool(weights):
            raise ValueError(f"an average of {count} snapshots with {len(weights)} weights")
        self.count, self.weights = count, dict(weights)
