"""Embedded synthetic ECG, signal artifacts with exact time masks, and the ECG plot."""
import numpy as np
import pytest
import torch

from datasets import get_dataset
from datasets.artifacts import insert_artifact, list_artifacts
from datasets.synth_ecg import render_ecg
from utils.errors import UserError
from utils.plots import plot_ecg

SMALL = {"n_train": 30, "n_val": 9, "n_test": 9}


def _data(name="synth_ecg", **kwargs):
    return get_dataset(name, dataset_options=SMALL, **kwargs)


def test_deterministic_shapes_and_classes():
    a, b, c = _data(seed=1).train, _data(seed=1).train, _data(seed=2).train
    assert a.class_names == ["normal", "lvh", "bbb"] and a.modality == "signal"
    assert torch.equal(a.load_raw(3), b.load_raw(3)) and not torch.equal(a.load_raw(3), c.load_raw(3))
    x, y = a[0]
    assert x.shape == (12, 1000) and x.dtype == torch.float32 and y in (0, 1, 2)
    assert set(a.labels) == {0, 1, 2}


def test_classes_differ_in_morphology():
    rng = np.random.default_rng
    records = {label: np.stack([render_ecg(rng([label, i]), label) for i in range(20)]) for label in range(3)}
    voltage = {k: np.abs(v[:, [0, 10, 11]]).max(-1).mean() for k, v in records.items()}  # I, V5, V6
    assert voltage[1] > 1.3 * voltage[0]  # LVH: higher QRS voltage

    def qrs_width(record):  # samples above half the peak of the strongest lead's main deflection
        lead = np.abs(record).max(-1).argmax()
        trace = np.abs(record[lead] - np.median(record[lead]))
        return (trace > 0.35 * trace.max()).sum()

    width = {k: np.mean([qrs_width(r) for r in v]) for k, v in records.items()}
    assert width[2] > 1.3 * width[0]  # bundle branch block: wider QRS


@pytest.mark.parametrize("artifact", list_artifacts("signal"))
def test_signal_mask_is_exactly_the_changed_samples(artifact):
    signal = render_ecg(np.random.default_rng(0), 0)
    out, mask = insert_artifact(signal, artifact, np.random.default_rng(1))
    assert out.shape == signal.shape and mask.shape == signal.shape and mask.dtype == bool and mask.any()
    assert np.array_equal(mask, out != signal)


def test_defective_lead_is_the_published_setting():
    signal = render_ecg(np.random.default_rng(0), 1)
    out, mask = insert_artifact(signal, "defective_lead", np.random.default_rng(0))
    assert np.flatnonzero(mask.any(1)).tolist() == [1] and mask[1, :100].all() and mask.sum() == 100
    assert np.allclose(out[1, :100], 2 * signal.max())


def test_default_shortcut_attacked_subset_and_modality_check():
    data = _data()
    train = data.train
    assert train.artifact_names == ["defective_lead", "baseline_wander"]
    idx = int(np.flatnonzero(train.artifact_labels("baseline_wander"))[0])
    changed = train.load_raw(idx) != train.with_mode("clean").load_raw(idx)
    assert torch.equal(changed, train.get_mask(idx, "baseline_wander"))
    attacked = _data("synth_ecg_attacked", p_artifact=1.0).test
    assert np.array_equal(attacked.artifact_labels("defective_lead"), attacked.labels == 1)
    assert attacked.with_mode("attacked").get_mask(0, "defective_lead")[1, :100].all()
    with pytest.raises(UserError, match="artifact 'microscope' is for image data, not signal data"):
        _data("synth_ecg_attacked", artifact_type="microscope")


def test_plot_ecg_with_relevance(tmp_path):
    signal = render_ecg(np.random.default_rng(0), 0)
    relevance = np.zeros_like(signal)
    relevance[1, :100] = 1.0
    path = plot_ecg(signal, tmp_path / "ecg.png", relevance=relevance, lead_names=list("abcdefghijkl"), title="x")
    assert path.is_file() and path.stat().st_size > 1000


def test_multi_label_variant_adds_the_heart_rate_label_of_the_same_records():
    single = _data().train
    multi = get_dataset("synth_ecg", dataset_options={**SMALL, "multi_label": True}).train
    assert multi.multi_label and multi.class_names == ["normal", "lvh", "bbb", "fast_rate"]
    assert np.array_equal(multi.labels[:, :3].argmax(1), single.labels)  # the diagnosis stays one-hot
    assert torch.equal(multi.load_raw(4), single.load_raw(4))  # the same records
    fast = multi.labels[:, 3].astype(bool)
    assert 0 < fast.sum() < len(fast)

    def rate(record):  # beats per minute from the QRS peaks of the strongest lead (at least 0.6 s apart)
        from scipy.signal import find_peaks

        trace = np.abs(record - np.median(record, axis=1, keepdims=True))
        trace = trace[trace.max(1).argmax()]
        peaks, _ = find_peaks(trace, height=0.5 * trace.max(), distance=55)
        return 60 * 100 / np.median(np.diff(peaks))

    clean = single.with_mode("clean")  # no defective lead to mistake for a beat
    rates = np.array([rate(clean.load_raw(i).numpy()) for i in range(len(clean))])
    assert rates[fast].mean() > rates[~fast].mean() + 8  # the label is what the record shows
    assert get_dataset("synth_ecg_attacked", dataset_options={**SMALL, "multi_label": True}).train.artifact_labels(
        "defective_lead")[multi.labels[:, 1] > 0].any()
