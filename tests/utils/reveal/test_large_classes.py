"""The reveal on classes larger than ``spray_sample_size``: sampled clusterings and 2-D views, the
Lanczos eigenvectors, the PCA-reduced kNN graph and the linear top-k keep what the exact methods
find, and change nothing at or below the threshold."""
import numpy as np
import pytest

from utils.config import AuditConfig, load_config
from utils.reveal import embedding
from utils.reveal.clustering import run_clusterings
from utils.reveal.embedding import embed_2d, knn_affinity, spectral_embedding
from utils.reveal.spray import spray
from utils.reveal.subsample import nearest_rows, one_thread, sample_rows, top_rows


@pytest.fixture
def config(write_config):
    return load_config(write_config(lof_n_neighbors=5, spray_n_neighbors=8, spray_n_eigval=6,
                                    spray_n_clusters=[2, 3], spray_min_cluster_size=5), AuditConfig)


def _groups(n_big, n_small, dim=16, seed=0):
    """A large group and a small, separate one (a shortcut group) of noisy feature vectors."""
    rng = np.random.default_rng(seed)
    big = rng.random((n_big, dim)) + np.r_[np.full(dim // 2, 3.0), np.zeros(dim - dim // 2)]
    small = rng.random((n_small, dim)) + np.r_[np.zeros(dim // 2), np.full(dim - dim // 2, 3.0)]
    return np.vstack([big, small]), np.r_[np.zeros(n_big), np.ones(n_small)].astype(bool)


def _agrees(labels, truth):
    """Whether a clustering puts the two groups into different clusters and each group into one."""
    labels = np.asarray(labels)
    return len(set(labels[truth])) == 1 and len(set(labels[~truth])) == 1 and labels[truth][0] != labels[~truth][0]


def test_top_rows_is_a_stable_argsort():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 5, size=(500, 7)).astype(float)  # many ties
    for n in (1, 3, 20, 200, 600):
        np.testing.assert_array_equal(top_rows(values, n), np.argsort(-values, axis=0, kind="stable")[:n])
    values[3, 2] = np.nan
    np.testing.assert_array_equal(top_rows(values, 4), np.argsort(-values, axis=0, kind="stable")[:4])


def test_sample_and_nearest_rows():
    data = np.random.default_rng(1).random((300, 5))
    rows = sample_rows(300, 40, seed=3)
    assert len(set(rows.tolist())) == 40 and np.array_equal(rows, np.sort(rows))
    assert np.array_equal(sample_rows(30, 40), np.arange(30))
    distances, positions = nearest_rows(data, rows, k=3)
    full = np.linalg.norm(data[:, None] - data[rows][None], axis=2)
    np.testing.assert_allclose(distances, np.sort(full, axis=1)[:, :3], atol=1e-6)
    assert np.array_equal(positions[rows, 0], np.arange(40))  # a sampled row's nearest is itself
    square = np.linalg.norm(data[:, None] - data[None], axis=2)
    _, from_matrix = nearest_rows(square, rows, k=1, precomputed=True)
    assert np.array_equal(from_matrix[:, 0], positions[:, 0])


def test_sampled_clusterings_find_the_groups_and_leave_small_classes_alone(config):
    features, truth = _groups(500, 60)
    large = config.model_copy(update={"spray_sample_size": 100})
    names = ["agglomerative", "dbscan", "hdbscan", "kmeans"]
    with one_thread():  # as SpRAy runs them
        sampled = run_clusterings(features, names, large)
    for name in ("agglomerative_2", "kmeans_2"):
        assert _agrees(sampled[name], truth), name
    for name in ("dbscan", "hdbscan"):  # density methods may call a few points noise
        labels = sampled[name]
        assert (labels[truth] == np.bincount(labels[truth] + 1).argmax() - 1).mean() > 0.9, name
        assert not set(labels[truth] - 0) & set(labels[~truth][labels[~truth] >= 0]) - {-1}, name
    small = features[::5]  # 112 samples: at or below the threshold nothing is sampled
    exact = config.model_copy(update={"spray_sample_size": 2000})
    with one_thread():
        at_threshold = run_clusterings(small, names, config.model_copy(update={"spray_sample_size": 112}))
        plain = run_clusterings(small, names, exact)
    for name, labels in at_threshold.items():
        np.testing.assert_array_equal(labels, plain[name])


def test_sampled_view_keeps_the_sample_and_places_the_rest_near_it():
    features, truth = _groups(300, 40, dim=8)
    view = embed_2d(features, "tsne", seed=0, max_samples=120)
    assert view.shape == (340, 2) and np.isfinite(view).all()
    rows = sample_rows(340, 120, 0)
    np.testing.assert_allclose(view[rows], embed_2d(features[rows], "tsne", seed=0))
    # every point lands closer to its own group's centre than to the other group's
    centres = [view[truth].mean(0), view[~truth].mean(0)]
    own = np.where(truth, np.linalg.norm(view - centres[0], axis=1), np.linalg.norm(view - centres[1], axis=1))
    other = np.where(truth, np.linalg.norm(view - centres[1], axis=1), np.linalg.norm(view - centres[0], axis=1))
    assert (own < other).all()
    np.testing.assert_array_equal(embed_2d(features[:100], "tsne", max_samples=120), embed_2d(features[:100], "tsne"))


def test_lanczos_eigenvectors_match_the_dense_solver(monkeypatch):
    features, _ = _groups(260, 40, dim=6, seed=2)
    graph = knn_affinity(features, k=8)
    dense_vectors, dense_values = spectral_embedding(graph, n_eigval=6)
    monkeypatch.setattr(embedding, "DENSE_EIGEN_MAX", 50)
    vectors, values = spectral_embedding(graph, n_eigval=6)
    np.testing.assert_allclose(values, dense_values, atol=1e-8)
    # the same invariant subspace: each dense eigenvector is (up to sign) a combination of the Lanczos ones
    projection = vectors @ (vectors.T @ dense_vectors)
    np.testing.assert_allclose(np.abs(projection), np.abs(dense_vectors), atol=1e-6)


def test_wide_features_keep_their_neighbours_on_leading_components():
    rng = np.random.default_rng(4)
    low = rng.normal(size=(400, 10)) @ rng.normal(size=(10, 500))  # 500 columns, rank 10
    wide = low + 0.01 * rng.normal(size=low.shape)
    exact = knn_affinity(wide, k=8)
    reduced = knn_affinity(wide, k=8, max_dim=20)
    overlap = exact.multiply(reduced).sum() / exact.sum()
    assert overlap > 0.95


def test_spray_on_a_large_class_finds_the_planted_group(config):
    """SpRAy with every approximation of a large class on (sample of 150 of 900 samples, 64 principal
    components of 200 columns): k-means still separates the planted group exactly."""
    rng = np.random.default_rng(5)
    features, truth = _groups(780, 120, dim=200, seed=5)
    features = features + 0.1 * rng.random(features.shape)
    large = config.model_copy(update={"spray_sample_size": 150})
    embedding_, eigenvalues, clusterings, view, scores, flags = spray(features, large)
    assert embedding_.shape == (900, 6) and view.shape == (900, 2) and scores.shape == (900,)
    assert _agrees(clusterings["kmeans_2"], truth) and _agrees(clusterings["agglomerative_2"], truth)


@pytest.mark.slow  # starting two worker processes takes about 20 s
def test_spray_workers_give_the_same_results(tmp_path, write_config):
    """Classes analysed in two worker processes write the same results as one after the other."""
    from utils.feature_store import StoreWriter, store_path
    from utils.reveal.results import read_result
    from utils.reveal.steps import spray_step

    features, truth = _groups(90, 30, dim=64, seed=6)
    labels = np.r_[np.zeros(60), np.ones(60)].astype(int)
    results = {}
    for workers in (1, 2):
        config = load_config(write_config(f"w{workers}", layer_name="features.10", spray_space="latent",
                                          spray_n_neighbors=8, spray_n_eigval=6, spray_n_clusters=[2, 3],
                                          lof_n_neighbors=5, spray_workers=workers), AuditConfig)
        writer = StoreWriter(store_path(config, "train"), 120, {"layer_names": ["features.10"]})
        writer.append({"labels": labels, "outputs": np.zeros((120, 2), np.float32),
                       "sample_index": np.arange(120), "sample_ids": np.array([f"s{i}" for i in range(120)]),
                       "layers/features.10/rel": features.astype(np.float32)})
        writer.finish()
        writer.close()
        spray_step(config)
        results[workers] = [read_result(config, "spray", k) for k in (0, 1)]
    assert results[1] == results[2]
