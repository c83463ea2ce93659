"""NVIDIA's Philox 4x32-10 and the Box-Muller step of `torch.randn` on CUDA, on the CPU (A1111's "NV" source).

On an NVIDIA GPU `torch.manual_seed(s); torch.randn(shape, device="cuda")` gives element i the first number of
curand's Box-Muller pair built from Philox 4x32-10 with key = the 64-bit seed and counter = (call offset, 0, i, 0).
A1111 emulates exactly that in numpy (modules/rng_philox.py) so that an infotext made on NVIDIA hardware gives
the same noise anywhere; this module computes the same numbers, vectorised over all elements at once.

Reference: Salmon et al., "Parallel random numbers: as easy as 1, 2, 3" (SC'11), the Philox4x32 round and key
schedule, checked against Random123's published known-answer vectors.
"""

from __future__ import annotations

import numpy as np

MASK32 = np.uint64(0xFFFF_FFFF)
PHILOX_M = (np.uint64(0xD2511F53), np.uint64(0xCD9E8D57))  # round multipliers
PHILOX_W = (np.uint64(0x9E3779B9), np.uint64(0xBB67AE85))  # Weyl key increments (golden ratio, sqrt(3) - 1)
ROUNDS = 10

# curand's float32 constants (2^-32 and 2^-32 * 2pi, both rounded to float32). As in A1111, the transform
# itself runs in float64 and only its result is rounded to float32.
TWO_POW32_INV = float(np.float32(2.3283064e-10))
TWO_POW32_INV_2PI = float(np.float32(2.3283064e-10 * 6.2831855))


def philox4x32(counter: np.ndarray, key: tuple[int, int], rounds: int = ROUNDS) -> np.ndarray:
    """Philox 4x32 on a (4, n) array of uint32 counters with one 2-word key: returns (4, n) uint32.

    Each round multiplies words 0 and 2 by the round constants (64-bit products) and mixes the high halves
    with the other words and the key; the key is bumped by the Weyl constants between rounds.
    """
    c0, c1, c2, c3 = (np.asarray(word, dtype=np.uint64) for word in counter)
    k0, k1 = np.uint64(key[0]) & MASK32, np.uint64(key[1]) & MASK32
    for round_index in range(rounds):
        if round_index:
            k0, k1 = (k0 + PHILOX_W[0]) & MASK32, (k1 + PHILOX_W[1]) & MASK32
        p0, p1 = c0 * PHILOX_M[0], c2 * PHILOX_M[1]  # < 2^64: exact in uint64
        c0, c1, c2, c3 = (p1 >> np.uint64(32)) ^ c1 ^ k0, p1 & MASK32, (p0 >> np.uint64(32)) ^ c3 ^ k1, p0 & MASK32
    return np.stack([c0, c1, c2, c3]).astype(np.uint32)


def box_muller(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The first (sine) output of curand's Box-Muller transform of two uint32 words, as float32.

    u and v sit at the centres of 2^32 equal bins of (0, 1) and (0, 2pi), so u is never 0 and log(u) is finite.
    """
    u = x.astype(np.float64) * TWO_POW32_INV + TWO_POW32_INV / 2
    v = y.astype(np.float64) * TWO_POW32_INV_2PI + TWO_POW32_INV_2PI / 2
    return (np.sqrt(-2.0 * np.log(u)) * np.sin(v)).astype(np.float32)


class PhiloxGenerator:
    """A1111's NV generator: `randn` gives what `torch.randn(shape, device="cuda")` gives after
    `torch.manual_seed(seed)` on NVIDIA hardware; each call advances the offset by one, like CUDA's generator."""

    def __init__(self, seed: int):
        self.seed = int(seed) & 0xFFFF_FFFF_FFFF_FFFF
        self.offset = 0

    @property
    def key(self) -> tuple[int, int]:
        return self.seed & 0xFFFF_FFFF, self.seed >> 32

    def randn(self, shape: tuple[int, ...]) -> np.ndarray:
        n = int(np.prod(shape, dtype=np.int64))
        if n >= 2**32:  # the element index is counter word 2 only
            raise ValueError(f"{n} numbers in one call; at most 2^32 - 1")
        counter = np.zeros((4, n), dtype=np.uint32)
        counter[0] = self.offset & 0xFFFF_FFFF
        counter[2] = np.arange(n, dtype=np.uint32)
        self.offset += 1
        words = philox4x32(counter, self.key)
        return box_muller(words[0], words[1]).reshape(shape)  # words 2 and 3 are unused, as on CUDA
