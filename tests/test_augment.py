import numpy as np

from iq_atari.augment import random_shift, shift_batch
from iq_atari.buffers import Batch


def _naive_shift(stack: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Pixel (y, x) of the shifted stack is (y + dy, x + dx) of the original, clipped to it."""
    k, height, width = stack.shape
    out = np.empty_like(stack)
    for y in range(height):
        for x in range(width):
            out[:, y, x] = stack[:, min(max(y + dy, 0), height - 1), min(max(x + dx, 0), width - 1)]
    return out


def test_each_stack_is_one_edge_replicated_shift_of_itself():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(16, 3, 12, 10), dtype=np.uint8)
    shifted = random_shift(frames, 2, np.random.default_rng(1))
    assert shifted.dtype == np.uint8 and shifted.shape == frames.shape
    offsets = []
    for stack, out in zip(frames, shifted, strict=True):
        # Exactly one of the 25 shifts within +-2 pixels explains all k frames of the stack.
        matches = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if np.array_equal(out, _naive_shift(stack, dy, dx))
        ]
        assert len(matches) == 1
        offsets.append(matches[0])
    assert len(set(offsets)) > 5  # offsets are drawn per stack, not one for the batch


def test_shift_batch_draws_obs_and_next_obs_independently_and_pad_zero_is_identity():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(32, 4, 84, 84), dtype=np.uint8)
    batch = Batch(
        obs=frames,
        actions=np.zeros(32, np.int64),
        rewards=np.zeros(32, np.float32),
        next_obs=frames.copy(),
        terminated=np.zeros(32, bool),
        truncated=np.zeros(32, bool),
    )
    shifted = shift_batch(batch, 4, np.random.default_rng(2))
    assert not np.array_equal(shifted.obs, shifted.next_obs)
    assert shifted.actions is batch.actions and not np.array_equal(shifted.obs, frames)
    assert np.array_equal(random_shift(frames, 0, rng), frames)
    # The same seed gives the same shifts (runs stay reproducible).
    again = shift_batch(batch, 4, np.random.default_rng(2))
    assert np.array_equal(again.obs, shifted.obs) and np.array_equal(
        again.next_obs, shifted.next_obs
    )
