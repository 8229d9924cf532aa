"""Building blocks of the reveal step on hand-made data: embedding, clustering, outliers, DORA,
CRP, sAMS, config validation."""
import numpy as np
import pytest
import torch

from utils.config import AuditConfig, load_config
from utils.errors import ConfigError
from utils.reveal.clustering import list_clusterings, run_clusterings
from utils.reveal.crp import crop_box, relevance_pattern_outliers, relmax_references
from utils.reveal.dora import DoraContext, analyse, list_reference_kinds, reference_set
from utils.reveal.embedding import knn_affinity, spectral_embedding
from utils.reveal.outliers import cosine_distance_matrix, lof, ranking
from utils.reveal.spray import normalise_rows, spray


@pytest.fixture
def config(write_config):
    return load_config(write_config(lof_n_neighbors=5, spray_n_neighbors=8, spray_n_eigval=6,
                                    spray_n_clusters=[2, 3]), AuditConfig)


def _two_groups(seed=0, n=30):
    rng = np.random.default_rng(seed)
    a = rng.random((n, 16)) + np.r_[np.full(8, 3.0), np.zeros(8)]
    b = rng.random((n // 2, 16)) + np.r_[np.zeros(8), np.full(8, 3.0)]
    return np.vstack([a, b]), np.r_[np.zeros(n), np.ones(n // 2)]


def test_spectral_clusters_recover_two_groups(config):
    features, truth = _two_groups()
    embedding, eigenvalues, clusterings, view, scores, flags = spray(features, config)
    assert embedding.shape == (45, 6) and view.shape == (45, 2)
    assert eigenvalues[0] == pytest.approx(0, abs=1e-8)  # the normalised Laplacian's null space
    assert set(clusterings) >= {"kmeans_2", "agglomerative_2", "dbscan", "hdbscan"}
    labels = clusterings["kmeans_2"]
    assert abs(np.corrcoef(labels, truth)[0, 1]) == pytest.approx(1.0)
    # same seed, same ranking
    assert np.array_equal(ranking(spray(features, config)[4]), ranking(scores))


def test_normalise_and_affinity():
    rows = normalise_rows(np.array([[1.0, -3.0], [2.0, 2.0]]))
    np.testing.assert_allclose(np.abs(rows).sum(1), 1.0)
    graph = knn_affinity(np.random.default_rng(0).random((20, 3)), k=4)
    assert (graph != graph.T).nnz == 0 and graph.diagonal().sum() == 0
    embedding, _ = spectral_embedding(graph, n_eigval=5)
    assert embedding.shape == (20, 5)


def test_lof_ranks_the_planted_outlier_first():
    data = np.vstack([np.random.default_rng(1).normal(size=(40, 2)), [[12.0, 12.0]]])
    scores, flags = lof(data, n_neighbors=10)
    assert ranking(scores)[0] == 40 and flags[40]


def test_cosine_distances():
    rows = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    plain = cosine_distance_matrix(rows)
    half = cosine_distance_matrix(rows, half_angle=True)
    assert plain[0, 1] == pytest.approx(1.0) and plain[0, 2] == pytest.approx(2.0)
    assert half[0, 1] == pytest.approx(np.sqrt(0.5)) and half[0, 2] == pytest.approx(1.0)
    assert np.allclose(np.diag(half), 0) and np.allclose(half, half.T)


def test_dora_real_references_honour_the_aggregation(config):
    rng = np.random.default_rng(0)
    feats = {"cavs_max": rng.random((30, 6)), "cavs_mean": rng.random((30, 6)), "rels_max": rng.random((30, 6)),
             "rels_mean": rng.random((30, 6)), "sample_ids": np.array([f"s{i}" for i in range(30)])}
    for aggregation in ("max", "mean"):
        cfg = config.model_copy(update={"dora_reference": "real_act", "dora_aggregation": aggregation, "dora_n_refs": 3})
        refs = reference_set(DoraContext(cfg, "layer", None, {"store": lambda: feats}))
        acts = feats[f"cavs_{aggregation}"]
        top = np.argsort(-acts[:, 2])[:3]
        np.testing.assert_allclose(refs.activation_matrix[2], acts[top].mean(0))
        assert refs.references[2] == [f"s{i}" for i in top]
    assert list_reference_kinds() == ["real_act", "real_rel", "sams"]


def test_dora_finds_the_neuron_with_an_odd_pattern(config):
    rng = np.random.default_rng(0)
    matrix = np.abs(rng.normal(1.0, 0.05, size=(12, 12)))
    matrix[5] = np.r_[np.zeros(5), 4.0, np.zeros(6)]  # neuron 5's references activate only itself
    matrix[7] = 0.0  # a dead neuron is dropped, not ranked
    channels, distance, view, scores, flags = analyse(matrix, config)
    assert 7 not in channels
    assert channels[ranking(scores)[0]] == 5


def test_crp_relevance_patterns_and_references(config):
    rng = np.random.default_rng(0)
    rels = rng.random((40, 10)) + 1.0
    rels[:, 3] = 0.0  # never relevant
    rels[:, 6] = np.r_[np.full(8, 5.0), np.zeros(32)]  # relevant only on a few samples (a shortcut)
    active, view, scores, flags = relevance_pattern_outliers(rels, config)
    assert 3 not in active and active[ranking(scores)[0]] == 6
    refs = relmax_references(rels, 4)
    assert refs[6] == [0, 1, 2, 3] and refs[3] == []


def test_crop_box():
    heat = np.zeros((8, 8))
    heat[2:4, 5:7] = 1.0
    heat[0, 0] = 0.05  # below the fraction
    assert crop_box(heat, 0.1) == [2, 4, 5, 7]
    assert crop_box(-np.ones((4, 4))) == [0, 4, 0, 4]
    assert crop_box(np.r_[0.0, 1.0, 2.0, 0.0]) == [1, 3]


def test_sams_raise_their_neurons_activation():
    from models import get_model
    from utils.reveal.activations import pooled_activations
    from utils.reveal.sams import optimise_sams

    torch.manual_seed(0)
    model = get_model("tiny_vgg", 2)
    neurons = [0, 1, 2]
    start = pooled_activations(model, "features.6", 3 * torch.tanh(0.1 * torch.randn(3, 3, 16, 16)))
    signals = optimise_sams(model, "features.6", neurons, (3, 16, 16), steps=15, lr=0.1, resolution=8)
    after = pooled_activations(model, "features.6", signals)
    assert signals.shape == (3, 3, 16, 16)
    assert all(after[i, n] > start[i, n] for i, n in enumerate(neurons))
    assert all(p.requires_grad for p in model.parameters())  # parameter flags restored


def test_unknown_method_names_fail_in_the_config(write_config):
    with pytest.raises(ConfigError, match="spray_clusterings"):
        load_config(write_config(spray_clusterings=["kmeans", "spectral"]), AuditConfig)
    with pytest.raises(ConfigError, match="dora_reference"):
        load_config(write_config(dora_reference="synthetic"), AuditConfig)
    assert list_clusterings() == ["agglomerative", "dbscan", "hdbscan", "kmeans"]


def test_run_clusterings_skips_impossible_counts(config):
    cfg = config.model_copy(update={"spray_n_clusters": [2, 50]})
    result = run_clusterings(np.random.default_rng(0).random((10, 3)), ["kmeans"], cfg)
    assert list(result) == ["kmeans_2"]


def test_best_cluster_prefers_a_pure_cluster_with_the_most_coverage():
    from utils.reveal.evaluation import best_cluster

    flags = np.r_[np.ones(10), np.zeros(20)].astype(bool)
    labels = np.r_[np.zeros(6), np.ones(4), np.ones(20)]  # cluster 0: 6 of 10 artifacts, pure
    best = best_cluster(labels, flags)
    assert best["cluster"] == 0 and best["purity"] == 1.0 and best["coverage"] == pytest.approx(0.6)


def test_within_class_auroc_removes_the_class_confound():
    """The artifact lives in class 0 only: a neuron that merely prefers class 0 scores high on the
    whole split, but 0.5 inside the class; only the artifact neuron separates inside the class."""
    from sklearn.metrics import roc_auc_score

    from utils.reveal.evaluation import artifact_class_rows

    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(100), np.ones(100)].astype(int)
    flags = np.zeros(200, dtype=bool)
    flags[:40] = True
    class_neuron = (labels == 0) + 0.1 * rng.random(200)
    artifact_neuron = flags + 0.1 * rng.random(200)
    inside = artifact_class_rows(labels, flags)
    assert inside.sum() == 100 and inside[:100].all()
    assert roc_auc_score(flags, class_neuron) > 0.8
    assert roc_auc_score(flags[inside], class_neuron[inside]) == pytest.approx(0.5, abs=0.15)
    assert roc_auc_score(flags[inside], artifact_neuron[inside]) == 1.0
    multi = np.eye(2, dtype=int)[labels]  # multi-label form: same rows
    assert np.array_equal(artifact_class_rows(multi, flags), inside)
