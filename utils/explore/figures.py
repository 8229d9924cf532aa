"""The explorer's plotly figures: the SpRAy embedding of each class and the annotation curve.

The embedding uses WebGL (``scattergl``): tens of thousands of points draw in one frame, where SVG
markers would take seconds. Each point carries its store row as ``customdata``, so hover and lasso
selections name samples without shipping their ids (25,000 ids would double the page).
"""
import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#7f7f7f")
FIXED_COLOURS = {"noise": "#c8c8c8", "not reviewed": "#c8c8c8", "accepted": "#d62728", "rejected": "#1f77b4"}
MAX_COLUMNS = 3


class Colouring:
    """Per-point values of one colouring: categories (text) or numbers, for every store row."""

    def __init__(self, title, values, categorical):
        self.title, self.values, self.categorical = title, values, categorical


def embedding_figure(embeddings, colouring, selected_rows=()):
    """One panel per class (``embeddings``: :class:`utils.explore.data.ClassEmbedding`), points coloured
    by ``colouring`` (values indexed by store row)."""
    n = max(1, len(embeddings))
    cols = min(n, MAX_COLUMNS)
    rows = math.ceil(n / cols)
    figure = make_subplots(rows=rows, cols=cols, subplot_titles=[f"class {e.name} ({len(e.rows)} samples)"
                                                                 for e in embeddings],
                           horizontal_spacing=0.04, vertical_spacing=0.08)
    categories = _categories(embeddings, colouring) if colouring.categorical else []
    colours = {c: FIXED_COLOURS.get(c, PALETTE[i % len(PALETTE)]) for i, c in enumerate(categories)}
    for i, embedding in enumerate(embeddings):
        where = dict(row=i // cols + 1, col=i % cols + 1)
        values = _values(colouring, embedding)
        if colouring.categorical:
            for category in categories:
                pick = np.flatnonzero(values == category)
                if len(pick):
                    figure.add_trace(_points(embedding, pick, name=str(category), legendgroup=str(category),
                                             showlegend=category not in _shown(figure),
                                             marker=dict(size=5, color=colours[category])), **where)
        else:
            figure.add_trace(_points(embedding, np.arange(len(embedding.rows)), name=colouring.title, showlegend=False,
                                     marker=dict(size=5, color=values, coloraxis="coloraxis")), **where)
    figure.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    figure.update_yaxes(showticklabels=False, showgrid=False, zeroline=False)
    figure.update_layout(margin=dict(l=10, r=10, t=40, b=10), dragmode="lasso", hovermode="closest",
                         legend=dict(title=colouring.title, itemsizing="constant"), uirevision="embedding",
                         height=max(420, 380 * rows), plot_bgcolor="white")
    if not colouring.categorical:
        figure.update_layout(coloraxis=dict(colorscale="Viridis", colorbar=dict(title=colouring.title)))
    return figure


def _points(embedding, pick, **style):
    # customdata as a plain list: Dash reads a hovered or selected point's customdata from the figure's
    # data, where a numpy array would arrive base64-encoded and unreadable to it (x, y stay encoded).
    # hoverinfo none: the side panel shows the hovered sample (image, heatmap, details)
    xy = embedding.xy[pick].astype(np.float32)  # half the bytes of float64, and a screen needs no more
    return go.Scattergl(x=xy[:, 0], y=xy[:, 1], mode="markers",
                        customdata=embedding.rows[pick].tolist(), hoverinfo="none", **style)


def _values(colouring, embedding):
    values = colouring.values
    if callable(values):  # per-class values (the cluster of a clustering)
        return values(embedding)
    return np.asarray(values)[embedding.rows]


def _categories(embeddings, colouring):
    seen = []
    for embedding in embeddings:
        for value in _values(colouring, embedding).tolist():
            if value not in seen:
                seen.append(value)
    return sorted(seen, key=_natural)


def _natural(value):
    text = str(value)
    number = text.rsplit(" ", 1)[-1]
    return (0, int(number), text) if number.lstrip("-").isdigit() else (1, 0, text)


def _shown(figure):
    return {trace.name for trace in figure.data if trace.showlegend is not False}


def annotation_curve_figure(inspected, found):
    """Samples accepted vs samples decided, after each decision; the diagonal is "every one accepted"."""
    figure = go.Figure()
    top = int(inspected[-1]) if len(inspected) else 1
    figure.add_trace(go.Scatter(x=[0, top], y=[0, top], mode="lines", name="every sample accepted",
                                line=dict(color="#c8c8c8", dash="dot")))
    figure.add_trace(go.Scatter(x=np.concatenate([[0], inspected]), y=np.concatenate([[0], found]),
                                mode="lines+markers", name="accepted", line=dict(color="#d62728"),
                                marker=dict(size=4)))
    figure.update_layout(margin=dict(l=50, r=10, t=30, b=40), height=300, xaxis_title="samples decided",
                         yaxis_title="artifact samples accepted", title="annotation curve",
                         legend=dict(x=0.01, y=0.99), plot_bgcolor="white")
    return figure
