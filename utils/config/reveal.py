"""Config keys of preprocessing and the reveal step (SpRAy, DORA, CRP relevance patterns).

Method names (clusterings, embeddings, DORA reference kinds, robustness transforms) are validated
against the registries in ``utils.reveal`` so a typo fails before any work starts.
"""
from typing import Literal

from pydantic import Field, field_validator

from utils.config.schemas import StrictModel

FeatureKind = Literal["cavs_max", "cavs_mean", "rel", "rels_max", "rels_mean"]
Split = Literal["train", "val", "test"]


def _check_names(names, registry_getter, what):
    valid = registry_getter()
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ValueError(f"{what} from {', '.join(valid)} (unknown: {', '.join(unknown)})")
    return names


class RevealOptions(StrictModel):
    # --- preprocessing -----------------------------------------------------------------------
    splits: list[Split] = Field(["train", "val", "test"], description="splits preprocessing covers")
    relevance_target: Literal["label", "prediction"] = "label"
    heatmap_size: int | None = Field(None, ge=4, description="downsample stored input heatmaps to this size")

    # --- shared by the reveal methods --------------------------------------------------------
    reveal_split: Split = Field("train", description="split whose preprocessing store the reveal methods read")
    n_outliers: int = Field(16, ge=1, description="outliers shown in plots (all samples/neurons are ranked)")
    embedding_2d: str = Field("tsne", description="2-D view of an embedding: tsne or mds")
    lof_n_neighbors: int = Field(20, ge=2, description="neighbours of the Local Outlier Factor")
    neuron_layer_name: str | None = Field(
        None, description="layer whose neurons DORA and CRP rank; default: layer_name (latent SpRAy, CAVs and "
        "localization always use layer_name). Concept neurons of an artifact often sit deeper than the layer a "
        "CAV is best fitted on")

    # --- SpRAy -------------------------------------------------------------------------------
    spray_space: Literal["input", "latent"] = Field(
        "input", description="input: stored input heatmaps; latent: stored relevances of layer_name")
    spray_feature: FeatureKind = Field("rel", description="latent space: which stored feature of layer_name")
    spray_n_neighbors: int = Field(32, ge=2, description="k of the symmetrised kNN affinity graph")
    spray_n_eigval: int = Field(32, ge=2, description="eigenvectors of the normalised Laplacian kept")
    spray_diffusion_time: float = Field(
        1.0, ge=0, description="eigenvector i is scaled by (1 - eigenvalue_i) ** t (diffusion map); 0 = plain "
        "eigenvectors. Down-weights the high-frequency eigenvectors that describe within-cluster variation")
    spray_clusterings: list[str] = Field(["kmeans", "dbscan", "hdbscan", "agglomerative"],
                                         description="clustering methods run on the spectral embedding")
    spray_n_clusters: list[int] = Field([2, 3, 4, 5, 6, 8], description="cluster counts for kmeans/agglomerative")
    spray_min_cluster_size: int = Field(10, ge=2, description="HDBSCAN/DBSCAN minimum cluster size")
    spray_default_clustering: str = Field("kmeans_4", description="clustering shown in the plot")
    spray_sample_size: int = Field(
        2000, ge=50, description="a class with more samples: the 2-D view and the agglomerative, DBSCAN and HDBSCAN "
        "clusterings are fitted on a seeded sample of this many and every other sample takes its nearest sampled "
        "neighbours' position or cluster, and features wider than 64 columns are reduced to 64 principal "
        "components for the kNN graph (keeps SpRAy near-linear in the class's size); at or below it every method "
        "sees all samples as they are")
    spray_workers: int = Field(
        1, ge=1, description="classes analysed at once by SpRAy, each in its own worker process (the results do "
        "not depend on it)")

    # --- DORA --------------------------------------------------------------------------------
    dora_reference: str = Field("sams", description="reference signals per neuron: sams, real_act or real_rel")
    dora_aggregation: Literal["max", "mean"] = Field("max", description="spatial pooling of activations")
    dora_n_refs: int = Field(4, ge=1, description="reference signals per neuron")
    dora_sams_steps: int = Field(48, ge=1, description="gradient-ascent steps of a synthetic signal")
    dora_sams_lr: float = Field(0.05, gt=0)
    dora_sams_resolution: int | None = Field(
        None, ge=4, description="side of the optimised image (upsampled to img_size); default img_size // 2")
    dora_sams_transforms: list[str] = Field(["jitter", "scale", "rotate"],
                                            description="robustness transforms applied at every step")
    dora_neurons_batch: int = Field(64, ge=1, description="signals optimised together")

    # --- CRP relevance patterns --------------------------------------------------------------
    crp_n_refs: int = Field(8, ge=1, description="reference samples per neuron (RelMax)")
    crp_crop: bool = Field(True, description="crop references to the neuron's relevant region")
    crp_crop_fraction: float = Field(0.1, gt=0, lt=1, description="crop to pixels above this fraction of the max")
    crp_class_indices: list[int] | None = Field(None, description="classes to prepare references for; default all")

    @field_validator("spray_clusterings")
    @classmethod
    def _known_clusterings(cls, names):
        from utils.reveal.clustering import list_clusterings

        return _check_names(names, list_clusterings, "clustering methods")

    @field_validator("embedding_2d")
    @classmethod
    def _known_embedding(cls, name):
        from utils.reveal.embedding import list_embeddings

        return _check_names([name], list_embeddings, "one of")[0]

    @field_validator("dora_reference")
    @classmethod
    def _known_reference(cls, name):
        from utils.reveal.dora import list_reference_kinds

        return _check_names([name], list_reference_kinds, "one of")[0]

    @field_validator("dora_sams_transforms")
    @classmethod
    def _known_transforms(cls, names):
        from utils.reveal.sams import list_transforms

        return _check_names(names, list_transforms, "transforms")
