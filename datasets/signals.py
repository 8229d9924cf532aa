"""What the ECG data sets share: lead order, normalisation, and reading WFDB records.

Signals are ``(leads, time)`` float32 tensors in mV (not scaled to [0, 1]: amplitudes carry the
diagnosis, e.g. the voltage criteria of hypertrophy).
"""
from pathlib import Path

import numpy as np
import torch

LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
# A fixed scale, not statistics of the training split: the networks start with BatchNorm, so the
# exact scale matters little, and a fixed one keeps every build free of a pass over the data.
SIGNAL_MEAN, SIGNAL_STD = (0.0,) * len(LEADS), (0.25,) * len(LEADS)


class WfdbReader:
    """Reads one WFDB record (``<path>.hea`` + ``<path>.dat``) as a ``(leads, time)`` tensor."""

    modality = "signal"

    def __init__(self, n_leads=len(LEADS), n_samples=None):
        self.n_leads, self.n_samples = n_leads, n_samples

    def __call__(self, path):
        import wfdb  # imported here: only the ECG loaders need it

        signal, fields = wfdb.rdsamp(str(path))
        if signal.shape[1] != self.n_leads:
            raise ValueError(f"{signal.shape[1]} leads, expected {self.n_leads}")
        if self.n_samples is not None and signal.shape[0] != self.n_samples:
            raise ValueError(f"{signal.shape[0]} samples, expected {self.n_samples} (truncated record?)")
        if not np.isfinite(signal).all():
            raise ValueError("non-finite values")
        return torch.from_numpy(np.ascontiguousarray(signal.T, dtype=np.float32))

    @staticmethod
    def exists(path):
        return Path(f"{path}.hea").is_file() and Path(f"{path}.dat").is_file()
