"""Headless Chromium for the explorer: the browser tests, the README screenshots and the render timing.

The system's Chromium and ChromeDriver are used (found on ``PATH``, or named by
``$SHORTCUTLAB_CHROMIUM`` / ``$SHORTCUTLAB_CHROMEDRIVER``), and the driver is passed to Selenium
explicitly, so Selenium never looks for or downloads one. Each browser gets a fresh profile folder
and the flags that keep Chromium from opening background connections (updates, sync, field trials):
on a machine without internet those would stall or fail.
"""
import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage",
         # WebGL without a GPU: the embedding is a scattergl plot, drawn by the software renderer
         "--enable-unsafe-swiftshader", "--use-angle=swiftshader")
ENV_CHROMIUM, ENV_DRIVER = "SHORTCUTLAB_CHROMIUM", "SHORTCUTLAB_CHROMEDRIVER"

# Installed before any page script runs: notes the time (ms since navigation start) of the first
# animation frame at which the embedding has points and its WebGL canvas, and how many points.
RENDER_PROBE = """
(function () {
  function points(gd) {
    let n = 0;
    for (const trace of gd._fullData || []) { n += trace._length || 0; }
    return n;
  }
  function tick() {
    const gd = document.querySelector('#samples-graph .js-plotly-plot');
    if (gd && gd.querySelector('canvas') && points(gd) > 0) {
      window.__exploreFirstRender = {ms: performance.now(), points: points(gd)};
      return;
    }
    requestAnimationFrame(tick);
  }
  requestAnimationFrame(tick);
})();
"""


def executables():
    """``(chromium, chromedriver)`` paths, or ``None`` for one that is not installed."""
    chromium = os.environ.get(ENV_CHROMIUM) or shutil.which("chromium") or shutil.which("chromium-browser")
    driver = os.environ.get(ENV_DRIVER) or shutil.which("chromedriver")
    return chromium, driver


def unavailable():
    """Why no browser test can run here (one line), or ``None`` when everything is installed."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -r requirements.txt)"
    chromium, driver = executables()
    missing = [name for name, path in (("chromium", chromium), ("chromium-driver", driver)) if not path]
    if missing:
        return (f"{' and '.join(missing)} not installed (as root: apt-get install -y chromium chromium-driver, "
                "or bash tests/browser/install.sh)")
    return None


class Browser:
    """A headless Chromium driven by Selenium: ``with Browser() as driver:``."""

    def __init__(self, width=1440, height=1000):
        self.width, self.height = width, height
        self.profile = None
        self.driver = None

    def __enter__(self):
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service

        reason = unavailable()
        if reason:
            from utils.errors import UserError

            raise UserError(f"no headless browser: {reason}")
        chromium, driver = executables()
        self.profile = tempfile.mkdtemp(prefix="explore-chromium-")
        options = Options()
        options.binary_location = chromium
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self.profile}")
        options.add_argument(f"--window-size={self.width},{self.height}")
        try:
            self.driver = webdriver.Chrome(options=options, service=Service(executable_path=driver))
        except BaseException:
            shutil.rmtree(self.profile, ignore_errors=True)
            raise
        self.driver.set_page_load_timeout(60)
        return self.driver

    def __exit__(self, *exc):
        with contextlib.suppress(Exception):
            self.driver.quit()
        shutil.rmtree(self.profile, ignore_errors=True)


def wait_for(driver, script, timeout=30, poll=0.05, what=None):
    """Run ``script`` (JS returning a value) until it returns something truthy; returns that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(script)
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what or script}")
        time.sleep(poll)


def time_to_first_render(driver, url, timeout=60):
    """Open ``url`` in a fresh document and return ``(ms from navigation start to the embedding's first
    drawn frame, number of points drawn)``."""
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RENDER_PROBE})
    driver.get(url)
    found = wait_for(driver, "return window.__exploreFirstRender || null", timeout, what="the embedding's first frame")
    return float(found["ms"]), int(found["points"])


IMAGES_LOADED = ("return Array.from(document.images).filter(i => i.offsetParent !== null)"
                 ".every(i => i.complete && i.naturalWidth > 0)")


def screenshot(driver, path, max_height=2000):
    """Save the page (its whole height, up to ``max_height`` px) as PNG at ``path``, atomically."""
    import base64
    import io

    from PIL import Image

    from utils.io import atomic_path

    width = int(driver.execute_script("return document.documentElement.clientWidth"))
    height = min(max_height, int(driver.execute_script("return document.documentElement.scrollHeight")))
    # a headless window cannot grow past the screen: capture the region beyond the viewport instead
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
    picture = Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("RGB")
    with atomic_path(path) as tmp:
        # 256 colours: a quarter of the bytes, and nothing visible lost on a page of flat colours
        picture.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(tmp, format="PNG", optimize=True)
    return Path(path)
