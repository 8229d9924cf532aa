"""Drawing helpers shared by the procedurally generated data sets."""
import numpy as np


def smooth_field(rng, yy, xx, n_waves=6, max_freq=4.0):
    """A smooth random field in about [-1, 1] on the grid (yy, xx): a sum of random plane waves."""
    field = np.zeros_like(yy)
    for _ in range(n_waves):
        freq = rng.uniform(0.5, max_freq)
        angle, phase = rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi)
        field += np.cos(freq * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)
    return field / np.sqrt(n_waves / 2)
