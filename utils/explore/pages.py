"""The Dash components of the explorer's pages, built from :class:`utils.explore.data.AuditData`.

Each page function returns components only; the callbacks that fill and update them are in
:mod:`utils.explore.app`. A page whose step has not run shows :func:`error_panel` with the step's
one-line message (what is missing and the command that writes it), never a traceback.
"""
import functools
import math

import numpy as np
from dash import dcc, html

from utils.errors import UserError
from utils.explore.decisions import annotation_curve
from utils.explore.figures import Colouring, annotation_curve_figure, embedding_figure

TABS = (("samples", "Samples"), ("neurons", "Neurons"), ("review", "Review"), ("localization", "Localization"),
        ("mitigation", "Mitigation"))
COLOURINGS = (("cluster", "cluster"), ("label", "label"), ("prediction", "prediction"),
              ("annotation", "annotated artifact"), ("cav", "CAV score"), ("outlier", "outlier score (LOF)"),
              ("neuron", "activation of the chosen neuron"))
MAX_SELECTION_SHOWN = 60
MAX_LOCALIZED_SHOWN = 48
REFS_SHOWN = 4
COMPARISON_COLUMNS = ("method", "strength", "status", "clean", "attacked", "gap_closed", "clean_change",
                      "p_attacked", "artifact_relevance")


def error_panel(message):
    return html.Div([html.Strong("Not available. "), html.Span(str(message))], className="error-panel")


def guarded(render):
    """A page renderer whose step-level errors (:class:`UserError`) become an error panel."""

    @functools.wraps(render)
    def wrapper(*args, **kwargs):
        try:
            return render(*args, **kwargs)
        except UserError as err:
            return error_panel(err)

    return wrapper


def thumb(src, title="", cls="thumb"):
    return html.Img(src=src, title=title, alt=title, className=cls)


# --- the frame -------------------------------------------------------------------------------------
def layout(data, session, first_figure=None):
    """The whole page; ``first_figure``: the Samples embedding as first drawn (computed once per app)."""
    config = data.config
    header = html.Header([
        html.H1("ShortcutLab explorer"),
        html.Span(f"{config.dataset_name} / {config.model_name} / {config.config_name} — "
                  f"{data.n_samples} samples of the {data.split} split"
                  + (f" — artifact '{data.artifact}'" if data.artifact else ""), className="subtitle"),
        html.Span(f"config: {data.source.config_file}", className="source")])
    pages = [html.Div(id=f"page-{name}", className="page", style={"display": "block" if name == "samples" else "none"},
                      children=samples_page(data, first_figure) if name == "samples" else None) for name, _ in TABS]
    return html.Div([
        dcc.Location(id="url"), header,
        dcc.Store(id="neuron-store"), dcc.Store(id="selection-store", data=[]),
        dcc.Store(id="split-store", data=data.split),
        dcc.Tabs(id="tabs", value="samples", children=[dcc.Tab(label=label, value=name, id=f"tab-{name}")
                                                       for name, label in TABS]),
        *pages])


# --- samples -----------------------------------------------------------------------------------------
def colouring(data, kind, clustering=None, neuron=None) -> Colouring:
    """The values of one colouring for every store row (a clustering: per class)."""
    all_rows = np.arange(data.n_samples)
    if kind == "cluster":
        name = clustering or data.default_clustering()

        def per_class(embedding):
            labels = embedding.clusterings.get(name)
            if labels is None:
                return np.array(["not computed"] * len(embedding.rows), dtype=object)
            return np.array(["noise" if v == -1 else f"cluster {v}" for v in labels.tolist()], dtype=object)

        return Colouring(name, per_class, True)
    if kind == "label":
        return Colouring("label", np.array(data.label_text(all_rows), dtype=object), True)
    if kind == "prediction":
        return Colouring("prediction", np.array(data.prediction_text(all_rows), dtype=object), True)
    if kind == "annotation":
        return Colouring(f"'{data.artifact}'", np.array(data.annotation_status(all_rows), dtype=object), True)
    if kind == "cav":
        scores, title = data.cav_scores()
        return Colouring(title, scores, False)
    if kind == "outlier":
        return Colouring("LOF score", lambda embedding: embedding.outlier_score, False)
    if kind == "neuron":
        if not neuron:
            raise UserError("no neuron chosen yet: click a neuron in the Neurons tab")
        values = data.feature_column(neuron["layer"], "cavs_max", neuron["channel"])
        return Colouring(f"{neuron['layer']} #{neuron['channel']} activation", values, False)
    raise UserError(f"unknown colouring '{kind}'")


def samples_figure(data, class_choice, kind, clustering=None, neuron=None):
    embeddings = data.embeddings if class_choice in (None, "all") else [
        e for e in data.embeddings if e.class_id == int(class_choice)]
    return embedding_figure(embeddings, colouring(data, kind, clustering, neuron))


def samples_page(data, figure=None):
    classes = [{"label": "all classes", "value": "all"}] + [
        {"label": f"class {e.name}", "value": str(e.class_id)} for e in data.embeddings]
    clusterings = [{"label": n, "value": n} for n in data.clustering_names()]
    controls = html.Div([
        _control("class", dcc.Dropdown(id="samples-class", options=classes, value="all", clearable=False)),
        _control("clustering", dcc.Dropdown(id="samples-clustering", options=clusterings,
                                            value=data.default_clustering(), clearable=False)),
        _control("colour by", dcc.Dropdown(id="samples-colour", clearable=False, value="cluster",
                                           options=[{"label": label, "value": v} for v, label in COLOURINGS])),
    ], className="controls")
    space = data.embeddings[0].space if data.embeddings else ""
    return html.Div([
        controls,
        html.Div(f"SpRAy embedding ({space} space) of each class, from the reveal step; hover a point to see the "
                 "sample, draw a lasso to list samples.", className="note", id="samples-note"),
        html.Div([
            dcc.Graph(id="samples-graph", figure=figure or samples_figure(data, "all", "cluster"), className="embedding",
                      config={"displaylogo": False, "scrollZoom": True}),
            html.Div([html.Div("Hover a point", id="hover-details", className="details"),
                      html.Img(id="hover-image", className="hover-img"), html.Img(id="hover-heatmap", className="hover-img")],
                     className="hover-panel")], className="samples-row"),
        html.Div(id="selection-grid")])


def _control(label, component):
    return html.Div([html.Label(label), component], className="control")


def hover_details(data, row):
    embedding, k = data.locate(row)
    items = [("sample", data.sample_id(row)), ("label", data.label_text([row])[0]),
             ("prediction", data.prediction_text([row])[0])]
    if embedding is not None:
        labels = embedding.clusterings.get(embedding.default_clustering)
        if labels is not None:
            items.append((embedding.default_clustering, "noise" if labels[k] == -1 else f"cluster {labels[k]}"))
        items.append(("LOF score", f"{embedding.outlier_score[k]:.3f}"))
    if data.artifact:
        items.append((f"'{data.artifact}'", data.annotation_status([row])[0]))
    return html.Dl([part for key, value in items for part in (html.Dt(key), html.Dd(value))])


def selection_grid(data, rows):
    if not rows:
        return None
    ids = [data.sample_id(r) for r in rows]
    shown = rows[:MAX_SELECTION_SHOWN]
    cards = [html.Div([thumb(f"/explore/thumb/{data.split}/image/{r}.png"),
                       thumb(f"/explore/thumb/{data.split}/heatmap/{r}.png"),
                       html.Div(data.sample_id(r), className="caption"),
                       html.Div(f"{data.label_text([r])[0]} → {data.prediction_text([r])[0]}", className="caption")],
                      className="card", **{"data-sid": data.sample_id(r)}) for r in shown]
    more = f" (the first {len(shown)} shown)" if len(rows) > len(shown) else ""
    return html.Div([
        html.H3(f"{len(rows)} selected samples{more}", id="selection-title"),
        html.Div(cards, className="grid"),
        html.Details([html.Summary("sample ids"), html.Pre(" ".join(ids), id="selection-ids")])])


# --- neurons --------------------------------------------------------------------------------------
@guarded
def neurons_page(data):
    sources = data.neuron_sources()
    if not sources:
        raise UserError(f"the reveal step found no outlier neurons for {data.source.config_file} (no dora.json or "
                        f"crp_class<k>.json); run `{data.source.command('dora')}` or "
                        f"`{data.source.command('crp')}` first")
    return html.Div([
        html.Div([_control("outlier neurons of", dcc.Dropdown(id="neuron-source", clearable=False, value=sources[0][0],
                                                            options=[{"label": t, "value": k} for k, t in sources]))],
                 className="controls"),
        html.Div([html.Div(id="neuron-list", className="neuron-list"),
                  html.Div([html.Div("Click a neuron to colour the samples by its activation.", id="neuron-note",
                                     className="note"),
                            dcc.Graph(id="neuron-graph", config={"displaylogo": False})], className="neuron-side")],
                 className="neurons-row")])


@guarded
def neuron_list(data, source):
    layer, neurons, refs = data.neurons(source)
    crp = source != "dora"
    shown = neurons[:data.config.n_outliers]
    cards = []
    for rank, neuron in enumerate(shown, 1):
        channel = int(neuron["channel"])
        images = []
        for k in range(min(REFS_SHOWN, len(refs.get(channel, [])))):
            images.append(thumb(f"/explore/neuron/{source}/{channel}/{k}/image.png", "reference"))
            if crp:
                images.append(thumb(f"/explore/neuron/{source}/{channel}/{k}/heatmap.png", "conditional heatmap",
                                    cls="thumb heat"))
        flag = " · LOF outlier" if neuron.get("is_outlier") else ""
        cards.append(html.Div([html.Div(f"#{rank} {layer} channel {channel} · score {neuron['score']:.2f}{flag}",
                                        className="neuron-title"),
                               html.Div(images or "no reference samples", className="refs")],
                              id={"type": "neuron-pick", "source": source, "channel": channel},
                              className="neuron-card", n_clicks=0, **{"data-channel": str(channel)}))
    what = ("reference samples (RelMax) with the neuron's conditional heatmap (CRP)" if crp else
            f"reference signals ({data.config.dora_reference})")
    return [html.Div(f"The {len(shown)} highest-scoring of {len(neurons)} neurons of {layer}; {what}.",
                     className="note"), *cards]


# --- review ----------------------------------------------------------------------------------------
@guarded
def review_page(data, session, message=None):
    if session is None:
        raise UserError(data.review_problem)
    state = session.state()
    frame = session.current_round()
    accepted, rejected = set(state.accepted), set(state.rejected)
    cards = [_review_card(data, session, i, row, accepted, rejected) for i, row in enumerate(frame.itertuples())]
    candidates = len(frame) and frame["source"].iloc[0] != "cav"
    what = ("Candidates (no sample accepted yet): the config's annotation_seeds and what the reveal step shows "
            "(its top outliers, the most central samples of each SpRAy cluster)." if candidates else
            "The unreviewed samples a CAV fit on the accepted ones ranks highest." if len(frame) else
            "Nothing left in this round.")
    undecided = sum(1 for s in frame["sample_id"] if s not in state.reviewed)
    inspected, found = annotation_curve(state.history)
    return html.Div([
        html.Div([
            html.Span(f"'{session.artifact}': {len(accepted)} accepted, {len(rejected)} rejected, "
                      f"{len(state.history)} rounds recorded, a click being one (reviewer: {session.reviewer}).",
                      id="review-counts"),
            html.Button("Next round (n)", id="review-next", n_clicks=0, className="next")], className="review-head"),
        html.Div([what, f" {undecided} of {len(frame)} undecided. Keys: ← → move, a accept, r reject, n next round."],
                 className="note"),
        html.Div(message or "", id="review-message", className="message"),
        html.Div(cards, id="review-cards", className="grid"),
        html.Div([dcc.Graph(id="review-curve", figure=annotation_curve_figure(inspected, found),
                            config={"displaylogo": False}, className="curve"),
                  _decision_log(state.history)], className="review-foot")])


def _review_card(data, session, i, row, accepted, rejected):
    sid = row.sample_id
    status = "accepted" if sid in accepted else "rejected" if sid in rejected else "undecided"
    table_row = data.split_table("train").row_of(sid)
    images = [thumb(f"/explore/thumb/train/image/{table_row}.png", sid),
              thumb(f"/explore/thumb/train/heatmap/{table_row}.png", "heatmap", cls="thumb heat")]
    score = row.source if isinstance(row.score, float) and math.isnan(row.score) else f"{row.score:.3f}"
    return html.Div([
        html.Div(images, className="refs"),
        html.Div(f"#{row.rank} {sid}", className="caption"), html.Div(score, className="caption"),
        html.Div(status, className=f"badge {status}"),
        html.Div([html.Button("Accept (a)", id={"type": "decide", "action": "accept", "sid": sid}, className="accept"),
                  html.Button("Reject (r)", id={"type": "decide", "action": "reject", "sid": sid}, className="reject")],
                 className="buttons")],
        className=f"card review-card {status}", **{"data-sid": sid, "data-index": str(i)})


def _decision_log(history, n=10, ids_shown=4):
    items = []
    for entry in reversed(history[-n:]):
        decided = [f"{verb} {_some(entry[key], ids_shown)}" for verb, key in (("accepted", "accepted"),
                                                                             ("rejected", "rejected")) if entry[key]]
        items.append(html.Li(f"{entry['time']} {entry['source']}: {'; '.join(decided) or 'nothing'}"))
    return html.Div([html.H4("latest decisions"), html.Ul(items, id="review-log")], className="log")


def _some(ids, n):
    return ", ".join(ids[:n]) + (f" and {len(ids) - n} more" if len(ids) > n else "")


# --- localization and mitigation -------------------------------------------------------------------------
@guarded
def localization_page(data, selected_rows):
    index, summary = data.localization()
    ids = list(index["samples"])
    chosen = []
    if selected_rows and index["split"] == data.split:
        wanted = {data.sample_id(r) for r in selected_rows}
        chosen = [p for p, s in enumerate(ids) if s in wanted]
    note = (f"{len(chosen)} of the samples selected in the Samples tab are localized." if chosen else
            f"The first {min(len(ids), MAX_LOCALIZED_SHOWN)} of {len(ids)} localized samples of the {index['split']} "
            "split (select samples with the lasso in the Samples tab to see theirs, when localization ran on that split).")
    positions = (chosen or list(range(len(ids))))[:MAX_LOCALIZED_SHOWN]
    cards = [html.Div([html.Div([thumb(f"/explore/localization/{p}/image.png", "image"),
                                 thumb(f"/explore/localization/{p}/mask.png", "mask"),
                                 thumb(f"/explore/localization/{p}/heatmap.png", "heatmap", cls="thumb heat")],
                                className="refs"),
                       html.Div(ids[p], className="caption")], className="card", **{"data-sid": ids[p]})
             for p in positions]
    facts = [f"artifact '{index['artifact']}'", f"layer {index.get('layer')}", f"threshold {index.get('threshold')}"]
    if summary:
        facts += [f"IoU against ground truth {summary['iou_mean']:.3f} (n={summary['n']})",
                  f"artifact relevance {summary['artifact_relevance_mean']:.3f}"]
    return html.Div([html.Div(" · ".join(facts), className="summary"),
                     html.Div(note + " Each: image, predicted mask over it, CAV-conditioned heatmap.", className="note"),
                     html.Div(cards, className="grid")])


@guarded
def mitigation_page(data):
    tables = data.comparisons()
    if not tables:
        command = (f"python -m experiments.run_pipeline --config_file {data.source.config_file}"
                   if data.source.is_pipeline else
                   "python -m experiments.evaluation.compare_methods --config_dir <folder of mitigation configs> --run")
        raise UserError(f"mitigation and re-evaluation have not run for {data.config.dataset_name}/"
                        f"{data.config.model_name} (no comparison table); run `{command}` first")
    return html.Div([
        html.Div([_control("comparison", dcc.Dropdown(id="mitigation-table", clearable=False, value=tables[0][0],
                                                      options=[{"label": n, "value": n} for n, _ in tables]))],
                 className="controls"),
        html.Div(id="mitigation-body")])


@guarded
def mitigation_body(data, name, figure_url):
    """The comparison table ``name`` (one of :meth:`AuditData.comparisons`, never a path from the page)."""
    path = dict(data.comparisons()).get(name)
    if path is None:
        raise UserError(f"no comparison table '{name}'")
    rows, figures = data.comparison(path)
    columns = [c for c in COMPARISON_COLUMNS if rows and c in rows[0]]
    table = html.Table([html.Thead(html.Tr([html.Th(c) for c in columns])),
                        html.Tbody([html.Tr([html.Td(row.get(c, "")) for c in columns]) for row in rows])],
                       className="comparison", id="comparison-table")
    panels = [html.Div([html.H4(title), html.Img(src=figure_url(figure), className="figure") if figure else
                        html.Div("no heatmaps.png for this run", className="note")], className="figure-panel")
              for title, figure in figures]
    return html.Div([table, html.H3("Heatmaps before and after each correction (test images)"),
                     html.Div(panels, className="figures")])
