"""Embedded synthetic 12-lead ECG: 10 s at 100 Hz (12 x 1000, mV), generated from (seed, split, index).

No files and no download. Each record is a train of beats from a moving heart dipole: every wave
(P, Q, R, S, T, and R' in bundle branch block) is a Gaussian bump in time along a 3-D direction,
and each lead sees its projection onto the lead's axis, so the 12 leads are consistent with each
other as in a real ECG. Heart rate, electrical axis, body habitus, wave amplitudes and timing
vary per record and beat; white noise and slow physiological drift are added.

Three classes differ by genuine morphology, with overlapping ranges:

* ``normal``: narrow QRS (~90 ms), normal voltage, T concordant with QRS;
* ``lvh`` (left ventricular hypertrophy): high QRS voltage pointing left-posterior (tall R in
  V5/V6, deep S in V1/V2), often a strain pattern (T inverted against the QRS);
* ``bbb`` (right bundle branch block): wide QRS (~140 ms) with a late R' (rSR' in V1, broad S
  in I and V6) and discordant T waves in V1-V3.

By default a defective lead (lead II stuck high) sits in a third of the LVH records (the
shortcut to reveal) and baseline wander bursts appear at equal rates in every class.

``multi_label: true`` makes a small multi-label task of the same records (multi-hot labels
``normal``, ``lvh``, ``bbb``, ``fast_rate``), as PTB-XL is: ``fast_rate`` marks a record whose heart
rate is at least ``FAST_RATE`` bpm (about half of them, in every class), read from the record's own
drawing. The artifacts stay tied to the diagnosis labels.
"""
import functools
import zlib

import numpy as np
import torch

from datasets.base import BaseDataset, flag_option, shared_render_cache
from datasets.registry import register_dataset
from datasets.signals import LEADS, SIGNAL_MEAN, SIGNAL_STD

CLASS_NAMES = ("normal", "lvh", "bbb")
SPLIT_SIZES = {"train": 2000, "val": 500, "test": 500}
FS, SECONDS = 100, 10
DEFAULT_ARTIFACTS = {"defective_lead": {"lvh": 0.33},
                     "baseline_wander": {"normal": 0.15, "lvh": 0.15, "bbb": 0.15}}
# Ranges (normal, lvh, bbb) of the properties that carry the diagnosis. They overlap on purpose:
# the genuine signal must be learnable but weaker than a defective lead, as in real data.
RANGES = {
    "voltage": ((0.85, 1.25), (1.1, 1.7), (0.85, 1.25)),  # QRS voltage factor (times body habitus)
    "qrs_width": ((0.9, 1.15), (1.0, 1.2), (1.2, 1.7)),  # QRS duration factor (1: ~90 ms)
    "late_r": ((0.0, 0.05), (0.0, 0.05), (0.1, 0.5)),  # amplitude of the late R' wave (mV)
}
MULTI_LABEL_NAMES = CLASS_NAMES + ("fast_rate",)
FAST_RATE = 80.0  # bpm; the drawn heart rates are uniform in 55-100
STRAIN = (0.05, 0.45, 0.0)  # probability of a T wave inverted against the QRS


def _lead_axes():
    """Unit vectors of the 12 leads in (left, inferior, anterior) body coordinates."""
    frontal = {"I": 0, "II": 60, "III": 120, "aVR": -150, "aVL": -30, "aVF": 90}
    horizontal = {"V1": 115, "V2": 94, "V3": 75, "V4": 60, "V5": 30, "V6": 0}  # from left towards anterior
    axes = []
    for lead in LEADS:
        if lead in frontal:
            angle = np.deg2rad(frontal[lead])
            axes.append([np.cos(angle), np.sin(angle), 0.0])
        else:
            angle = np.deg2rad(horizontal[lead])
            axes.append([np.cos(angle), 0.15, np.sin(angle)])
    axes = np.array(axes)
    return axes / np.linalg.norm(axes, axis=1, keepdims=True)


LEAD_AXES = _lead_axes()


def _rotation(frontal_deg, horizontal_deg):
    """Rotation of the heart's electrical axis in the frontal (x-y) and horizontal (x-z) planes."""
    a, b = np.deg2rad(frontal_deg), np.deg2rad(horizontal_deg)
    frontal = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    horizontal = np.array([[np.cos(b), 0, -np.sin(b)], [0, 1, 0], [np.sin(b), 0, np.cos(b)]])
    return horizontal @ frontal


def _waves(rng, label):
    """One record's waves: (offset to the R peak in s, width in s, 3-D amplitude vector in mV).

    The T wave's offset is ``None``: it follows each beat's RR interval (see :func:`render_ecg`).
    """
    draw = {key: rng.uniform(*ranges[label]) for key, ranges in RANGES.items()}
    habitus = rng.uniform(0.65, 1.35)  # body build scales the QRS voltage of every class alike
    voltage, width = draw["voltage"] * habitus, draw["qrs_width"]
    # LVH turns the QRS vector left and posterior; the shift grows with the hypertrophy
    shift = np.clip((draw["voltage"] - 1.0) / 0.7, 0.0, 1.0) if label == 1 else 0.0
    r_vec = (np.array([0.75, 0.55, -0.35]) + shift * np.array([0.1, -0.2, -0.2])) * 1.3 * voltage
    s_vec = np.array([-0.35, -0.25, -0.8]) * 0.5 * voltage
    t_vec = np.array([0.6, 0.5, 0.3]) * rng.uniform(0.25, 0.4)
    if rng.random() < STRAIN[label]:  # repolarisation against the QRS (strain)
        t_vec = -0.5 * r_vec / np.linalg.norm(r_vec) * rng.uniform(0.15, 0.3)
    elif label == 2 and rng.random() < 0.7:  # discordant T in the right precordial leads
        t_vec = t_vec * np.array([1.0, 1.0, -1.5])
    pr = rng.uniform(0.12, 0.2)
    return [(-pr, 0.02, np.array([0.5, 0.8, 0.1]) * rng.uniform(0.1, 0.2)),  # P
            (-0.025 * width, 0.008, np.array([-0.5, 0.2, 0.6]) * 0.15 * habitus),  # septal Q
            (0.0, 0.010 * width, r_vec),  # R
            (0.028 * width, 0.010 * width ** 1.5, s_vec),  # S (broad in BBB)
            (0.035 + 0.025 * width, 0.016 * width, np.array([-0.5, 0.0, 0.8]) * draw["late_r"] * habitus),  # R'
            (None, 0.045, t_vec)]  # T


def heart_rate(rng):
    """The record's mean heart rate in bpm: the first draw of its generator (so labels can read it
    without drawing the record)."""
    return rng.uniform(55, 100)


def render_ecg(rng, label, fs=FS, seconds=SECONDS):
    """One 12-lead record ``(12, fs * seconds)`` float32 in mV."""
    n = fs * seconds
    t = np.arange(n) / fs
    rr_mean = 60.0 / heart_rate(rng)
    rotation = _rotation(rng.uniform(-30, 30), rng.uniform(-15, 15))
    waves = _waves(rng, label)
    dipole = np.zeros((3, n))
    beat = rng.uniform(-rr_mean, 0) + 0.25
    while beat < seconds + 0.5:
        rr = rr_mean * rng.uniform(0.96, 1.04)
        for offset, width, vector in waves:
            offset = 0.3 * np.sqrt(rr) if offset is None else offset  # QT shortens as the heart rate rises
            bump = np.exp(-0.5 * ((t - beat - offset) / width) ** 2)
            dipole += np.outer(rotation @ vector * rng.uniform(0.95, 1.05), bump)
        beat += rr
    signal = LEAD_AXES @ dipole
    drift = 0.05 * np.sin(2 * np.pi * rng.uniform(0.05, 0.15) * t + rng.uniform(0, 2 * np.pi))
    noise = rng.uniform(0.01, 0.03) * rng.standard_normal((len(LEADS), n))
    return (signal + drift + noise).astype(np.float32)


def _record_rng(seed, split_code, idx):
    return np.random.default_rng([seed, split_code, idx, 1])


def _draw_record(seed, split_code, idx, label):
    return render_ecg(_record_rng(seed, split_code, idx), label)


@functools.lru_cache(maxsize=None)
def _drawn_records():
    """The process-wide memo of drawn records, created when first used (its budget is read from the
    environment then, so a bad value is a user error of the step, not of the import)."""
    return shared_render_cache(_draw_record, bytes_per_sample=4 * len(LEADS) * FS * SECONDS)


class SynthEcgSplit(BaseDataset):
    """One split of the synthetic ECG data set (no artifacts; see ``with_artifacts``)."""

    modality = "signal"

    def __init__(self, split, n_samples, seed=0, augment=False, multi_label=False):
        self.seed, self._split_code = seed, zlib.crc32(split.encode())
        self.diagnosis = np.array([int(np.random.default_rng([seed, self._split_code, i, 0]).integers(len(CLASS_NAMES)))
                                   for i in range(n_samples)])
        labels, names = self.diagnosis, CLASS_NAMES
        if multi_label:
            fast = [heart_rate(_record_rng(seed, self._split_code, i)) >= FAST_RATE for i in range(n_samples)]
            labels = np.concatenate([np.eye(len(CLASS_NAMES))[self.diagnosis], np.array(fast)[:, None]],
                                    axis=1).astype(np.float32)
            names = MULTI_LABEL_NAMES
        super().__init__(split, names, [f"{split}_{i:05d}" for i in range(n_samples)], labels,
                         SIGNAL_MEAN, SIGNAL_STD, augment=augment, multi_label=multi_label)

    def render_key(self, idx):
        return ("synth_ecg", self.seed, self._split_code, int(idx), int(self.diagnosis[idx]))

    def load_raw(self, idx):
        return torch.from_numpy(_drawn_records()(self.seed, self._split_code, int(idx), int(self.diagnosis[idx])))


@register_dataset("synth_ecg", modality="signal", default_artifacts=DEFAULT_ARTIFACTS,
                  attacked_default={"artifact_type": "defective_lead", "attacked_classes": ["lvh"],
                                    "p_artifact": 0.5})
def build_synth_ecg(img_size=None, seed=0, n_train=SPLIT_SIZES["train"], n_val=SPLIT_SIZES["val"],
                    n_test=SPLIT_SIZES["test"], multi_label=False):
    """``img_size`` is unused: records are always 12 x 1000."""
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    multi_label = flag_option("multi_label", multi_label)
    return {split: SynthEcgSplit(split, n, seed, augment=split == "train", multi_label=multi_label)
            for split, n in sizes.items()}
