"""The local web explorer (``python -m experiments.explore``): the reveal results, the annotation
rounds, localization and mitigation of one audit in the browser.

* :mod:`sources` — which audit a config names (an audit config, or the audit a pipeline ran) and the
  one-line error for a step that has not run;
* :mod:`data` — what the pages show, read from the steps' own files (store, reveal JSON, ...);
* :mod:`thumbnails` — sample images and heatmaps as small PNGs, rendered once and cached on disk;
* :mod:`decisions` — the review rounds of the browser, through the annotation state ``refine`` uses;
* :mod:`figures`, :mod:`pages` — the plotly figures and the Dash components of each tab;
* :mod:`app` — the Dash app, its callbacks and file routes; :mod:`server` — serving it;
* :mod:`browser` — headless Chromium (screenshots, render timing, the browser tests).
"""
