"""What the explorer's pages show, read from the files the audit steps wrote.

Nothing here computes a step: the store, the reveal JSON files, the annotation state, the
localization index and the comparison tables are read as their steps wrote them. Two things are
derived for display only: a CAV's scores over the embedded samples (the CAV ``refine`` last fit) and
the conditional heatmaps of CRP reference samples (CRP's own function, drawn once into a thumbnail).

Everything the sample pages need is read once, when the app starts (arrays of a few numbers per
sample: 25,000 samples are a few MB); images and heatmaps are read when a thumbnail is first drawn.
"""
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils.bias.annotation import AnnotationState, state_path
from utils.bias.cav import CAV
from utils.errors import UserError
from utils.explore import thumbnails as thumbs
from utils.feature_store import FeatureStore, store_path
from utils.io import read_json
from utils.paths import output_root, step_dir
from utils.reveal.results import read_result, result_path

NOISE = -1  # cluster label of points no cluster took (DBSCAN, HDBSCAN)


@dataclass
class SplitTable:
    """The rows of one split's preprocessing store: ids, positions in the data set, heatmaps' file."""

    split: str
    path: Path
    sample_ids: list
    positions: np.ndarray  # position of each row in the data set split (``sample_index``)
    key: str  # identity of the store's content, names its thumbnail folder

    def row_of(self, sample_id):
        if not hasattr(self, "_rows"):
            self._rows = {s: i for i, s in enumerate(self.sample_ids)}
        return self._rows.get(sample_id)


@dataclass
class ClassEmbedding:
    """One class's SpRAy result, by rows of the reveal split's store."""

    class_id: int
    name: str
    rows: np.ndarray
    xy: np.ndarray  # (n, 2) the 2-D view
    clusterings: dict  # name -> (n,) labels
    default_clustering: str
    outlier_score: np.ndarray  # LOF score of each point
    space: str


def _table(config, split) -> SplitTable:
    path = store_path(config, split)
    with FeatureStore(path) as store:
        ids = store.sample_ids
        positions = store.array("sample_index")
    return SplitTable(split, path, ids, np.asarray(positions, dtype=np.int64), thumbs.store_key(path))


class AuditData:
    """The files of one audit (``source``: :class:`utils.explore.sources.Source`), read for display.

    ``splits``: the data set (:class:`datasets.base.DataSplits`), for images.
    """

    def __init__(self, source, splits, artifact=None):
        self.source, self.config, self.splits = source, source.config, splits
        self.artifact = artifact or self.config.artifact
        self.class_names = list(splits.class_names)
        self.split = self.config.reveal_split
        self.table = _table(self.config, self.split)
        with FeatureStore(self.table.path) as store:
            self.labels = store.array("labels")
            outputs = store.array("outputs")
            self.layer_names = store.layer_names
        self.predictions = outputs > 0 if self.labels.ndim == 2 else outputs.argmax(1)
        self.embeddings = self._embeddings()
        self.thumbnails = thumbs.ThumbnailCache(step_dir(self.config, "explore", create=False) / "thumbnails")
        self._tables = {self.split: self.table}
        self._lock = threading.Lock()  # the lazily loaded model and other splits' tables
        self._model = None
        self.review_problem = None  # why there is no review, when there is none (set by who opens the audit)

    # --- samples ---------------------------------------------------------------------------------
    @property
    def n_samples(self):
        return len(self.table.sample_ids)

    def _embeddings(self):
        out = []
        folder = result_path(self.config, "spray", 0).parent
        for path in sorted(folder.glob("spray_class*.json"), key=_class_number):
            data = read_json(path)
            rows = np.array([self.table.row_of(s) for s in data["sample_ids"]], dtype=object)
            if any(r is None for r in rows):
                raise UserError(f"{path} lists samples that are not in {self.table.path}; run the reveal step again "
                                f"(`{self.source.command('spray')}`)")
            score = {o["sample_id"]: o["score"] for o in data["outlier_samples"]}
            class_id = int(data["class_id"])
            out.append(ClassEmbedding(
                class_id, self.class_name(class_id), rows.astype(np.int64), np.asarray(data["embedding_2d"], float),
                {k: np.asarray(v) for k, v in data["clusterings"].items()}, data["default_clustering"],
                np.array([score.get(s, np.nan) for s in data["sample_ids"]], dtype=float), data.get("space", "")))
        return out

    def locate(self, row):
        """``(class embedding, position in it)`` of a store row, or ``(None, None)`` if no SpRAy result has it."""
        if not hasattr(self, "_where"):
            self._where = {int(r): (e, k) for e in self.embeddings for k, r in enumerate(e.rows)}
        return self._where.get(int(row), (None, None))

    def class_name(self, class_id):
        return self.class_names[class_id] if 0 <= class_id < len(self.class_names) else f"class {class_id}"

    def clustering_names(self):
        names = []
        for embedding in self.embeddings:
            names += [n for n in embedding.clusterings if n not in names]
        return names

    def default_clustering(self):
        return self.embeddings[0].default_clustering if self.embeddings else None

    def label_text(self, rows):
        """The true label(s) of store rows as text."""
        return [self._names(self.labels[r]) for r in rows]

    def prediction_text(self, rows):
        return [self._names(self.predictions[r]) for r in rows]

    def _names(self, value):
        if np.ndim(value):  # multi-hot
            names = [self.class_name(k) for k in np.flatnonzero(value)]
            return "+".join(names) or "none"
        return self.class_name(int(value))

    def sample_id(self, row):
        return self.table.sample_ids[row]

    def feature_column(self, layer, kind, channel) -> np.ndarray:
        """One channel of a stored feature for every row of the reveal split's store."""
        with FeatureStore(self.table.path) as store:
            if f"layers/{layer}/{kind}" not in store.file:
                raise UserError(f"layer '{layer}' ({kind}) is not in {self.table.path}")
            return np.asarray(store.file[f"layers/{layer}/{kind}"][:, int(channel)], dtype=float)

    # --- annotations and the CAV -------------------------------------------------------------------
    def annotation_state(self):
        """The review state of the artifact (empty when nothing is decided yet), or ``None`` without an
        artifact."""
        if not self.artifact:
            return None
        return AnnotationState.load(state_path(self.config, self.artifact), self.artifact) or AnnotationState(self.artifact)

    def annotation_status(self, rows):
        state = self.annotation_state()
        if state is None:
            raise UserError("no artifact to annotate: pass --artifact or set 'artifact' in the config")
        accepted, rejected = set(state.accepted), set(state.rejected)
        ids = self.table.sample_ids
        return ["accepted" if ids[r] in accepted else "rejected" if ids[r] in rejected else "not reviewed"
                for r in rows]

    def cav_scores(self):
        """``(scores of every row, what the CAV is)`` of the CAV the last review round fit."""
        if not self.artifact:
            raise UserError("no artifact: pass --artifact or set 'artifact' in the config")
        path = step_dir(self.config, "sample_retrieval", create=False) / self.artifact / "cav_refined.json"
        if not path.is_file():
            raise UserError(f"no CAV of '{self.artifact}' yet ({path} is written once a sample is accepted): "
                            "accept a sample in the Review tab")
        data = read_json(path)
        with FeatureStore(self.table.path) as store:
            features = np.asarray(store.features(data["layer"], data["features"]), dtype=np.float64)
        cav = CAV.from_dict(data)
        return cav.score(features), f"CAV score ({data['method']}, {data['layer']} {data['features']})"

    # --- other splits --------------------------------------------------------------------------------
    def split_table(self, split) -> SplitTable:
        with self._lock:
            if split not in self._tables:
                self._tables[split] = _table(self.config, split)
            return self._tables[split]

    def sample_png(self, split, kind, row) -> Path:
        """Thumbnail of store row ``row`` of ``split``: ``image`` or ``heatmap`` (its stored input heatmap)."""
        table = self.split_table(split)
        if not 0 <= row < len(table.sample_ids):
            raise KeyError(row)
        sid = table.sample_ids[row]
        parts = (f"{split}-{table.key}", kind, thumbs.file_name(sid) + ".png")
        if kind == "image":
            return self.thumbnails.get(parts, lambda: thumbs.image_png(self._raw(split, table.positions[row])))
        if kind == "heatmap":
            return self.thumbnails.get(parts, lambda: thumbs.heatmap_png(self._stored_heatmap(table, row)))
        raise KeyError(kind)

    def _raw(self, split, position):
        return self.splits.get(split).load_raw(int(position)).numpy()

    @staticmethod
    def _stored_heatmap(table, row):
        with FeatureStore(table.path) as store:
            if "heatmaps" not in store.file:
                raise UserError(f"{table.path} holds no heatmaps")
            return store.file["heatmaps"][row]

    # --- outlier neurons -----------------------------------------------------------------------------
    def neuron_sources(self):
        """``[(key, title)]`` of the reveal results with outlier neurons: ``dora``, ``crp<k>``."""
        folder = result_path(self.config, "spray", 0).parent
        sources = []
        if result_path(self.config, "dora").is_file():
            sources.append(("dora", f"DORA ({self.config.dora_reference} references)"))
        for path in sorted(folder.glob("crp_class*.json"), key=_class_number):
            k = _class_number(path)
            sources.append((f"crp{k}", f"CRP relevance patterns, class {self.class_name(k)}"))
        return sources

    def neurons(self, source):
        """``(layer, outlier neuron rows, references per channel)`` of a neuron source."""
        if source == "dora":
            data = read_result(self.config, "dora")
            refs = {int(c): list(v) for c, v in data.get("references", {}).items()}
            return data["layer"], data["outlier_neurons"], refs
        class_id = _source_class(source)
        data = read_result(self.config, "crp", class_id)
        return data["layer"], data["outlier_neurons"], self._crp_references(class_id)

    def _crp_references(self, class_id):
        from utils.reveal.crp import references_path

        path = references_path(self.config, class_id)
        if not path.is_file():
            return {}
        return {int(c): v for c, v in read_json(path)["references"].items()}

    def neuron_png(self, source, channel, k, kind) -> Path:
        """Reference ``k`` of neuron ``channel``: the (cropped) sample, or for CRP its conditional heatmap
        (kind ``heatmap``); DORA's synthetic references are the signals themselves."""
        layer, _, refs = self.neurons(source)
        entries = refs.get(int(channel), [])
        if not 0 <= k < len(entries):
            raise KeyError(k)
        ckpt = thumbs.digest(self.config.ckpt_path, _mtime(self.config.ckpt_path))
        folder = f"neurons-{source}-{layer}-{self.config.dora_reference if source == 'dora' else 'crp'}-{ckpt}"
        parts = (folder, f"{channel}_{k}_{kind}.png")
        if source == "dora":
            if kind != "image":
                raise KeyError(kind)
            return self.thumbnails.get(parts, lambda: thumbs.image_png(self._dora_reference(entries[k])))
        class_id = _source_class(source)
        entry = entries[k]
        if kind == "image":
            raw = self._raw(self.split, entry["sample_index"])
            return self.thumbnails.get(parts, lambda: thumbs.crop_png(raw, entry["box"]))
        if kind == "heatmap":
            return self.thumbnails.get(parts, lambda: self._conditional_heatmap(class_id, layer, channel, entry))
        raise KeyError(kind)

    def _dora_reference(self, reference):
        if self.config.dora_reference != "sams":  # real samples, by id
            row = self.table.row_of(str(reference))
            if row is None:
                raise UserError(f"DORA reference {reference} is not in {self.table.path}")
            return self._raw(self.split, self.table.positions[row])
        import torch

        from utils.reveal.dora import reference_cache_path

        path = reference_cache_path(self.config)
        if not path.is_file():
            raise UserError(f"DORA's synthetic references are not at {path}; run `{self.source.command('dora')}`")
        signals = torch.load(path, weights_only=True)["signals"]
        return self.splits.get(self.split).denormalize(signals[int(reference)]).clamp(0, 1).numpy()

    def _conditional_heatmap(self, class_id, layer, channel, entry):
        """CRP's heatmap of ``class_id`` through ``layer``'s ``channel`` on a reference, cropped as it is."""
        from utils.reveal.crp import conditional_heatmaps

        attributor, device = self._attributor()
        dataset = self.splits.get(self.split)
        augment, dataset.augment = dataset.augment, False
        try:
            x = dataset[int(entry["sample_index"])][0][None].to(device)
        finally:
            dataset.augment = augment
        heatmap = conditional_heatmaps(attributor, x, class_id, layer, [int(channel)])[0].numpy()
        box = entry["box"]
        heatmap = heatmap[box[0]:box[1], box[2]:box[3]] if heatmap.ndim == 2 else heatmap[box[0]:box[1]]
        return thumbs.heatmap_png(heatmap)

    def _attributor(self):
        with self._lock:  # one model for the whole app, loaded the first time a heatmap is drawn
            if self._model is None:
                from utils.lrp.attribution import get_attributor
                from utils.reveal.dora import load_model_and_shape

                if not self.config.ckpt_path or not Path(self.config.ckpt_path).is_file():
                    raise UserError(f"the checkpoint of this audit is missing ({self.config.ckpt_path})")
                model, _, device = load_model_and_shape(self.config)
                self._model = (get_attributor(model, backend=self.config.lrp_backend), device)
            return self._model

    # --- localization --------------------------------------------------------------------------------
    def localization_dir(self):
        return step_dir(self.config, "localization", create=False) / (self.artifact or "")

    def localization(self):
        """The localization index (``index.json``) and, when evaluated, its summary."""
        if not self.artifact:
            raise UserError("no artifact: pass --artifact or set 'artifact' in the config")
        folder = self.localization_dir()
        if not (folder / "index.json").is_file():
            raise UserError(f"localization has not run for {self.source.config_file} (no {folder / 'index.json'}); "
                            f"run `{self.source.command('localization', self.artifact)}` first")
        index = read_json(folder / "index.json")
        summary = read_json(folder / "evaluation.json") if (folder / "evaluation.json").is_file() else None
        return index, summary

    def localization_png(self, position, kind) -> Path:
        """Thumbnail of the ``position``-th localized sample: ``image``, ``mask`` (over the image) or
        ``heatmap`` (the CAV-conditioned heatmap localization wrote)."""
        from utils.bias.data import positions
        from utils.bias.localization import read_mask

        folder = self.localization_dir()
        index, _ = self.localization()
        ids = list(index["samples"])
        if not 0 <= position < len(ids):
            raise KeyError(position)
        sid, entry = ids[position], index["samples"][ids[position]]
        dataset = self.splits.get(index["split"])
        where = positions(dataset, [sid], str(folder / "index.json"))[0]
        key = thumbs.digest((folder / "index.json").stat().st_mtime_ns, (folder / "index.json").stat().st_size)
        parts = (f"localization-{self.artifact}-{key}", kind, thumbs.file_name(sid) + ".png")
        if kind == "image":
            return self.thumbnails.get(parts, lambda: thumbs.image_png(self._raw(index["split"], where)))
        if kind == "mask":
            return self.thumbnails.get(parts, lambda: thumbs.overlay_png(
                self._raw(index["split"], where), read_mask(folder / entry["mask"]).numpy()))
        if kind == "heatmap":
            return self.thumbnails.get(parts, lambda: thumbs.heatmap_png(np.load(folder / entry["heatmap"])))
        raise KeyError(kind)

    # --- mitigation ----------------------------------------------------------------------------------
    def comparisons(self):
        """``[(name, markdown path)]`` of the comparison tables of this model (the pipeline's own first)."""
        folder = output_root(self.config) / "evaluation" / self.config.dataset_name / self.config.model_name
        tables = sorted(p for p in folder.glob("*.md") if not p.stem.endswith("_grid")) if folder.is_dir() else []
        if self.source.is_pipeline:
            own = f"pipeline_{self.source.pipeline_name}"
            tables.sort(key=lambda p: p.stem != own)
        return [(p.stem, p) for p in tables]

    def comparison(self, path):
        """The rows of a comparison table and, per corrected run, its heatmaps before/after (or None)."""
        rows = read_markdown_table(path)
        folder = Path(path).parent
        figures = []
        for row in rows:
            run = row.get("config", "-")
            if run in ("-", ""):
                continue
            figures.append((f"{row.get('method', '')} {row.get('strength', '')} ({run})".strip(),
                            heatmaps_figure(folder, run, row.get("strength", "-"))))
        return rows, figures


def heatmaps_figure(folder, run, strength):
    """``heatmaps.png`` of a comparison row's run: a sweep's runs are ``<config>-<key><value>``, seeds add
    ``-seed<n>`` (the first seed's figure is shown)."""
    name = run if strength in ("-", "", None) else f"{run}-{strength.replace('=', '')}"
    exact = Path(folder) / name / "heatmaps.png"
    if exact.is_file():
        return exact
    seeded = sorted(Path(folder).glob(f"{name}-seed*/heatmaps.png"))
    return seeded[0] if seeded else None


def read_markdown_table(path):
    """The rows of the first pipe table of a markdown file, as dicts of cell text."""
    lines = [line.strip() for line in Path(path).read_text().splitlines() if line.strip().startswith("|")]
    if len(lines) < 2:
        raise UserError(f"{path} holds no table")
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    header, body = cells[0], [c for c in cells[2:]]
    return [dict(zip(header, row)) for row in body]


def _class_number(path):
    match = re.search(r"_class(\d+)\.json$", str(path))
    return int(match.group(1)) if match else -1


def _source_class(source):
    match = re.fullmatch(r"crp(\d+)", source)
    if not match:
        raise KeyError(source)
    return int(match.group(1))


def _mtime(path):
    try:
        return Path(path).stat().st_mtime_ns
    except (OSError, TypeError):
        return None
