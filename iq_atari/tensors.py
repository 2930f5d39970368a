"""The two tensor helpers every learner shares: numpy -> torch, and sampling from a softmax."""

from __future__ import annotations

import numpy as np
import torch


def to_tensor(array: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """numpy -> torch on `device`, keeping the dtype (uint8 frames stay uint8)."""
    return torch.from_numpy(np.ascontiguousarray(array)).to(device, non_blocking=True)


def sample_softmax(
    logits: torch.Tensor, generator: torch.Generator | None, temperature: torch.Tensor | float = 1.0
) -> torch.Tensor:
    """One action per row drawn from softmax(logits / temperature): (B,) int64 on logits' device.

    The draw runs on the CPU with `generator` (a CPU generator), so a seed gives the same actions
    whatever the device.
    """
    probs = torch.softmax(logits.detach().float() / temperature, dim=-1).cpu()
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1).to(logits.device)
