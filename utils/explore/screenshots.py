"""A screenshot of each tab of the explorer, taken by headless Chromium (the README's figures)."""
from pathlib import Path

from utils.explore.browser import IMAGES_LOADED, Browser, screenshot, wait_for
from utils.explore.server import BackgroundServer

# what each tab shows once it is drawn (a CSS selector), and what to do first to make it telling
READY = {"samples": "#samples-graph canvas", "neurons": ".neuron-card", "review": ".review-card",
         "localization": "#page-localization .card, #page-localization .error-panel",
         "mitigation": "#comparison-table, #page-mitigation .error-panel"}

# the events a hover and a lasso send (a screenshot cannot move a mouse over a WebGL canvas reliably)
SAMPLES_DEMO = """
const gd = document.querySelector('#samples-graph .js-plotly-plot');
const trace = gd._fullData.findIndex(t => t._length > 0);
const full = gd._fullData[trace];
const point = i => ({curveNumber: trace, pointNumber: i, pointIndex: i, customdata: full.customdata[i],
                     x: full.x[i], y: full.y[i]});
gd.emit('plotly_hover', {points: [point(0)]});
const points = [];
for (let i = 0; i < Math.min(12, full._length); i++) { points.push(point(i)); }
gd.emit('plotly_selected', {points: points});
return true;
"""


def take_screenshots(app, out_dir, tabs=tuple(READY)):
    """One PNG per tab in ``out_dir`` (``explore_<tab>.png``); returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    with BackgroundServer(app) as url, Browser() as driver:
        for tab in tabs:
            driver.set_window_size(1440, 1000)
            driver.get(f"{url}/?tab={tab}")
            wait_for(driver, f"return document.querySelector({READY[tab]!r})", 120, what=f"the {tab} tab")
            if tab == "samples":
                driver.execute_script(SAMPLES_DEMO)
                wait_for(driver, "return document.querySelector('#selection-title')", 60, what="the selection")
            if tab == "neurons":
                driver.execute_script("document.querySelector('.neuron-card').click()")
                wait_for(driver, "return document.querySelector('#neuron-graph canvas')", 60, what="the neuron colouring")
            wait_for(driver, IMAGES_LOADED, 120, what=f"the images of the {tab} tab")
            paths.append(screenshot(driver, out_dir / f"explore_{tab}.png"))
    return paths
