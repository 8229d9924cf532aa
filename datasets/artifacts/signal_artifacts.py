"""ECG artifacts for 12-lead signals ``(C, T)`` in mV, each with an exact (lead, time) mask.

The inserters follow the image convention (``colour``, ``alpha``); additive artifacts return
``colour = x + disturbance`` with ``alpha = 1`` where the disturbance is non-zero, so the mask is
exactly the entries that changed. Leads follow the standard order I, II, III, aVR, aVL, aVF, V1-V6.
"""
import numpy as np

from datasets.artifacts.registry import register_artifact

LEAD_II = 1
DEFECT_SAMPLES = 100


@register_artifact("defective_lead", modality="signal")
def defective_lead(signal, rng, foreground=None):
    """Lead II's first 100 samples stuck at twice the record's maximum (the published setting)."""
    alpha = np.zeros(signal.shape, np.float32)
    alpha[LEAD_II, :DEFECT_SAMPLES] = 1.0
    # the record's max over all leads; a flat or all-negative record still gets a visible plateau
    level = 2.0 * float(signal.max()) if signal.max() > 0 else float(np.abs(signal).max()) + 1.0
    return np.full(signal.shape, level, dtype=signal.dtype), alpha


@register_artifact("baseline_wander", modality="signal")
def baseline_wander(signal, rng, foreground=None):
    """A burst of slow baseline drift (0.2-0.6 Hz at 100 Hz sampling) over 2-4 s, in every lead.

    The burst's envelope is strictly positive inside the window (a sine over half-sample
    offsets) and the drift never crosses zero, so every masked sample really changes.
    """
    n_leads, n_samples = signal.shape
    length = min(n_samples, int(rng.uniform(0.2, 0.4) * n_samples))
    start = int(rng.integers(0, n_samples - length + 1))
    k = np.arange(length)
    envelope = np.sin(np.pi * (k + 0.5) / length)
    freq = rng.uniform(0.002, 0.006)  # cycles per sample
    drift = 1.0 + 0.5 * np.sin(2 * np.pi * freq * k + rng.uniform(0, 2 * np.pi))
    amplitude = rng.choice([-1.0, 1.0]) * rng.uniform(0.4, 1.0) * rng.uniform(0.5, 1.0, (n_leads, 1))
    disturbance = np.zeros(signal.shape, np.float64)
    disturbance[:, start:start + length] = amplitude * envelope * drift
    alpha = (disturbance != 0).astype(np.float32)
    return (signal + disturbance).astype(signal.dtype), alpha


@register_artifact("pacemaker_spike", modality="signal")
def pacemaker_spike(signal, rng, foreground=None):
    """Narrow pacing spikes (1-2 samples, 1-3 mV) at a fixed pacing rate in every lead."""
    n_leads, n_samples = signal.shape
    period = int(rng.integers(60, 100))  # samples between spikes (60-100 bpm at 100 Hz)
    width = int(rng.integers(1, 3))
    polarity = rng.choice([-1.0, 1.0], size=(n_leads, 1)) * rng.uniform(0.5, 1.0, (n_leads, 1))
    disturbance = np.zeros(signal.shape, np.float64)
    for onset in range(int(rng.integers(0, period)), n_samples, period):
        disturbance[:, onset:onset + width] = polarity * rng.uniform(1.0, 3.0)
    alpha = (disturbance != 0).astype(np.float32)
    return (signal + disturbance).astype(signal.dtype), alpha
