"""The explorer's Dash app: pages, callbacks and the routes that serve thumbnails and figures.

:func:`open_audit` reads an audit (refusing one whose preprocessing or reveal step has not run, in one
line); :func:`create_app` builds the app. The Samples page is part of the first response, figure
included, so the embedding draws without waiting for a callback; the other pages are built when
their tab is first opened (Review and Localization each time, as their files change meanwhile).
"""
import functools
import sys
import traceback
from pathlib import Path

from dash import ALL, ClientsideFunction, Dash, Input, Output, State, ctx, no_update
from flask import abort, send_file
from werkzeug.exceptions import HTTPException

from utils.errors import UserError
from utils.explore import pages
from utils.explore.data import AuditData
from utils.explore.decisions import ReviewSession
from utils.explore.sources import require_outputs, resolve
from utils.explore.thumbnails import digest

ASSETS = Path(__file__).resolve().parent / "assets"


def open_audit(config_file, artifact=None, reviewer="user"):
    """``(AuditData, ReviewSession or None)`` of ``config_file``; builds the data set once."""
    from datasets import get_dataset_from_config
    from utils.bias.steps import prepare_step

    source = resolve(config_file)
    require_outputs(source)
    artifact = artifact or source.config.artifact
    session, problem = None, "no artifact to annotate: pass --artifact or set 'artifact' in the config"
    if artifact:  # the review's context, as refine prepares it (same folder, same resolved config)
        step = prepare_step(source.config, artifact, "sample_retrieval")
        splits = step.splits
        try:
            session = ReviewSession(step, reviewer)
        except UserError as err:  # e.g. the train split is not preprocessed: the other tabs still work
            problem = f"the review needs the train split's features: {err}"
    else:
        splits = get_dataset_from_config(source.config)
    data = AuditData(source, splits, artifact)
    data.review_problem = None if session else problem
    return data, session


def create_app(data: AuditData, session: ReviewSession | None) -> Dash:
    app = Dash(__name__, assets_folder=str(ASSETS), title="ShortcutLab explorer", update_title=None,
               suppress_callback_exceptions=True)  # pages are built by callbacks
    app.index_string = _preloading_plotly(app)
    # the first embedding is the same for every page load: drawn once, not per request
    app.layout = functools.partial(pages.layout, data, session, pages.samples_figure(data, "all", "cluster"))
    figures = FigureFiles()
    _routes(app.server, data, figures)
    _callbacks(app, data, session, figures)
    return app


def _preloading_plotly(app):
    """The page with plotly.js (the largest script by far) fetched from its start, where Dash asks for it
    only once the layout holds a graph; the graph still runs it. On the 25,000-sample page a first visit
    drew sooner this way than without the hint and than with ``eager_loading``, which also fetches and
    compiles as much again of components this app does not use (MathJax, Markdown, tables)."""
    # the address the graph loads plotly.js from when the app serves its scripts itself (Dash's renderer)
    url = f"{app.config.requests_pathname_prefix}_dash-component-suites/plotly/package_data/plotly.min.js"
    return app.index_string.replace("{%css%}", f'{{%css%}}\n        <link rel="preload" as="script" href="{url}">', 1)


class FigureFiles:
    """Files the Mitigation page shows, served by token: the route never takes a path from a request."""

    def __init__(self):
        self.paths = {}

    def url(self, path):
        token = digest(Path(path).resolve())
        self.paths[token] = Path(path).resolve()  # absolute: Flask resolves a relative file against its package
        return f"/explore/figure/{token}.png"


# --- routes ----------------------------------------------------------------------------------------
def _routes(server, data, figures):
    def png(make):
        try:
            path = make()
        except (KeyError, IndexError, ValueError):
            abort(404)
        except UserError as err:
            return html_error(err, 404)
        return send_file(path, mimetype="image/png", max_age=3600)

    @server.route("/explore/thumb/<split>/<kind>/<int:row>.png")
    def sample_thumbnail(split, kind, row):
        if split not in ("train", "val", "test"):
            abort(404)
        return png(lambda: data.sample_png(split, kind, row))

    @server.route("/explore/neuron/<source>/<int:channel>/<int:k>/<kind>.png")
    def neuron_thumbnail(source, channel, k, kind):
        return png(lambda: data.neuron_png(source, channel, k, kind))

    @server.route("/explore/localization/<int:position>/<kind>.png")
    def localization_thumbnail(position, kind):
        return png(lambda: data.localization_png(position, kind))

    @server.route("/explore/figure/<token>.png")
    def figure_file(token):
        path = figures.paths.get(token)
        if path is None or not path.is_file():
            abort(404)
        return send_file(path, mimetype="image/png")

    @server.errorhandler(Exception)
    def error_page(err):
        if isinstance(err, HTTPException):
            return err
        # the page says what went wrong in one line; the traceback goes to the server's terminal
        traceback.print_exception(err, file=sys.stderr)
        return html_error(err if isinstance(err, UserError) else f"{type(err).__name__}: {err}", 500)


def html_error(message, status):
    text = str(message).splitlines()[0] if str(message) else "error"
    body = (f"<!DOCTYPE html><html><head><title>ShortcutLab explorer: error</title></head><body>"
            f"<h1>ShortcutLab explorer</h1><p class='error-panel' id='error'>{_escape(text)}</p></body></html>")
    return body, status, {"Content-Type": "text/html; charset=utf-8"}


def _escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# --- callbacks --------------------------------------------------------------------------------------
def _callbacks(app, data, session, figures):
    names = [name for name, _ in pages.TABS]

    # tab switching and the hovered sample's images run in the browser: no round trip
    app.clientside_callback(ClientsideFunction("explore", "showPage"), [Output(f"page-{n}", "style") for n in names],
                            Input("tabs", "value"))
    app.clientside_callback(ClientsideFunction("explore", "tabFromUrl"), Output("tabs", "value"), Input("url", "search"))
    app.clientside_callback(ClientsideFunction("explore", "hoverImages"), Output("hover-image", "src"),
                            Output("hover-heatmap", "src"), Input("samples-graph", "hoverData"),
                            State("split-store", "data"), prevent_initial_call=True)

    @app.callback(Output("samples-graph", "figure"), Output("samples-note", "children"),
                  Input("samples-class", "value"), Input("samples-colour", "value"),
                  Input("samples-clustering", "value"), Input("neuron-store", "data"), prevent_initial_call=True)
    def update_samples(class_choice, colour, clustering, neuron):
        try:
            figure = pages.samples_figure(data, class_choice, colour, clustering, neuron)
        except UserError as err:
            return no_update, pages.error_panel(err)
        return figure, f"Coloured by {colour}; hover a point to see the sample, draw a lasso to list samples."

    @app.callback(Output("hover-details", "children"), Input("samples-graph", "hoverData"),
                  prevent_initial_call=True)
    def hover(hover_data):
        row = _first_row(hover_data)
        return no_update if row is None else pages.hover_details(data, row)

    @app.callback(Output("selection-store", "data"), Output("selection-grid", "children"),
                  Input("samples-graph", "selectedData"), prevent_initial_call=True)
    def select(selected):
        rows = list(dict.fromkeys(int(p["customdata"]) for p in (selected or {}).get("points", [])
                                  if p.get("customdata") is not None))
        return rows, pages.selection_grid(data, rows)

    # --- neurons
    @app.callback(Output("page-neurons", "children"), Input("tabs", "value"), State("page-neurons", "children"),
                  prevent_initial_call=True)
    def neurons_page(tab, current):
        return pages.neurons_page(data) if tab == "neurons" and not current else no_update

    @app.callback(Output("neuron-list", "children"), Input("neuron-source", "value"))
    def neuron_list(source):
        return pages.neuron_list(data, source)

    @app.callback(Output("neuron-store", "data"), Output("samples-colour", "value"),
                  Input({"type": "neuron-pick", "source": ALL, "channel": ALL}, "n_clicks"), prevent_initial_call=True)
    def pick_neuron(clicks):
        if not ctx.triggered_id or not any(clicks):
            return no_update, no_update
        source, channel = ctx.triggered_id["source"], int(ctx.triggered_id["channel"])
        layer, _, _ = data.neurons(source)
        return {"source": source, "layer": layer, "channel": channel}, "neuron"

    @app.callback(Output("neuron-graph", "figure"), Output("neuron-note", "children"), Input("neuron-store", "data"),
                  State("samples-class", "value"), prevent_initial_call=True)
    def neuron_graph(neuron, class_choice):
        try:
            figure = pages.samples_figure(data, class_choice, "neuron", neuron=neuron)
        except UserError as err:
            return no_update, pages.error_panel(err)
        return figure, (f"Samples coloured by the activation (spatial max) of {neuron['layer']} channel "
                        f"{neuron['channel']}; the Samples tab shows the same colouring.")

    # --- review: opening the tab draws the round; a decision or the next round draws it again
    @app.callback(Output("page-review", "children"), Input("tabs", "value"), prevent_initial_call=True)
    def review_page(tab):
        return pages.review_page(data, session) if tab == "review" else no_update

    # a callback of its own: its inputs exist only once the page is drawn
    @app.callback(Output("page-review", "children", allow_duplicate=True),
                  Input({"type": "decide", "action": ALL, "sid": ALL}, "n_clicks"), Input("review-next", "n_clicks"),
                  prevent_initial_call=True)
    def review_action(decisions, next_clicks):
        trigger = ctx.triggered_id
        if trigger is None or not ctx.triggered or not ctx.triggered[0]["value"]:
            return no_update  # a button that was just drawn, not clicked
        try:
            if trigger == "review-next":
                session.next_round()
                return pages.review_page(data, session, "Next round: ranked by a CAV fit on the decisions so far.")
            entry = session.decide(trigger["sid"], trigger["action"] == "accept")
        except UserError as err:
            return pages.review_page(data, session, f"not recorded: {err}")
        verb = "accepted" if entry["accepted"] else "rejected"
        return pages.review_page(data, session, f"{trigger['sid']} {verb} ({entry['time']}).")

    @app.callback(Output("page-localization", "children"), Input("tabs", "value"), State("selection-store", "data"),
                  prevent_initial_call=True)
    def localization(tab, rows):
        return pages.localization_page(data, rows or []) if tab == "localization" else no_update

    @app.callback(Output("page-mitigation", "children"), Input("tabs", "value"), State("page-mitigation", "children"),
                  prevent_initial_call=True)
    def mitigation(tab, current):
        return pages.mitigation_page(data) if tab == "mitigation" and not current else no_update

    @app.callback(Output("mitigation-body", "children"), Input("mitigation-table", "value"))
    def mitigation_table(name):
        return pages.mitigation_body(data, name, figures.url)


def _first_row(hover_data):
    points = (hover_data or {}).get("points") or []
    if not points or points[0].get("customdata") is None:
        return None
    return int(points[0]["customdata"])
