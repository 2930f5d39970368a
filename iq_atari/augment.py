"""Random-shift augmentation of frame-stack batches (DrQ, Kostrikov et al. 2020; RAD).

Each stack is padded by `pad` pixels on every side with its edge pixels and cropped back to its
size at a random offset, the same offset for the k frames of one stack (motion is kept) and an
independent one per sample, for observations and next observations alike. The networks then
see the same game at slightly different places on the screen, which they must not tell apart:
in imitation from a few demos this fights memorising where things were in the expert's frames.
Frames stay uint8; shifting is integer indexing, no interpolation.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from iq_atari.buffers import Batch


def random_shift(frames: np.ndarray, pad: int, rng: np.random.Generator) -> np.ndarray:
    """(B, k, H, W) uint8 stacks shifted by up to `pad` pixels in each direction, edges
    replicated; one offset per stack."""
    if frames.ndim != 4:
        raise ValueError(f"random_shift expects (B, k, H, W) frame stacks, got {frames.shape}")
    size, _, height, width = frames.shape
    padded = np.pad(frames, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="edge")
    top = rng.integers(0, 2 * pad + 1, size=size)
    left = rng.integers(0, 2 * pad + 1, size=size)
    shifted = np.empty_like(frames)
    for i in range(size):  # a slice copy per stack: cheaper than one fancy-indexed gather
        shifted[i] = padded[i, :, top[i] : top[i] + height, left[i] : left[i] + width]
    return shifted


def shift_batch(batch: Batch, pad: int, rng: np.random.Generator) -> Batch:
    """The batch with its observations and next observations randomly shifted (independently)."""
    return dataclasses.replace(
        batch,
        obs=random_shift(batch.obs, pad, rng),
        next_obs=random_shift(batch.next_obs, pad, rng),
    )
