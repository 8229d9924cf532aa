"""The explorer in a real headless Chromium (Debian's chromium and chromium-driver through Selenium;
nothing is downloaded): the page loads with one point per sample, hover and lasso show samples, a click
on accept writes exactly that decision to the annotation state and a reload shows it, the keyboard
decides too, a neuron colours the samples, localization masks load, a step that has not run gives an
error page, and a full round in the browser ranks the next round exactly as ``refine`` does.

One app server and one browser serve the module. Without chromium the tests are skipped with the
reason (``make test`` installs it when it can); ``SHORTCUTLAB_REQUIRE_BROWSER=1`` (CI) fails instead.
"""
import datetime
import json
import os
import urllib.error
import urllib.request

import numpy as np
import pytest

import explore_audit
from experiments.sample_retrieval import refine
from utils.config import AuditConfig, load_config
from utils.explore.browser import IMAGES_LOADED, Browser, time_to_first_render, unavailable, wait_for
from utils.paths import step_dir

REVIEWER = "browser-test"


@pytest.fixture(scope="module")
def driver():
    reason = unavailable()
    if reason:
        if os.environ.get("SHORTCUTLAB_REQUIRE_BROWSER"):
            pytest.fail(f"the browser tests must run here (SHORTCUTLAB_REQUIRE_BROWSER is set): {reason}")
        pytest.skip(f"browser tests skipped: {reason}")
    with Browser() as chromium:
        yield chromium


@pytest.fixture(scope="session")
def audit(tmp_path_factory):
    return explore_audit.build(tmp_path_factory.getbasetemp() / "explore_audit")


class Served:
    """An audit copy with its app served from a thread."""

    def __init__(self, config_path):
        from utils.explore.app import create_app, open_audit
        from utils.explore.server import BackgroundServer

        self.config_path = config_path
        self.config = load_config(config_path, AuditConfig)
        self.data, self.session = open_audit(config_path, reviewer=REVIEWER)
        self.server = BackgroundServer(create_app(self.data, self.session))
        self.url = self.server.__enter__()

    def close(self):
        self.server.__exit__(None, None, None)

    def state(self):
        path = step_dir(self.config, "sample_retrieval", create=False) / "band_aid" / "annotation_state.json"
        return json.loads(path.read_text()) if path.is_file() else {"accepted": [], "rejected": [], "history": []}


@pytest.fixture(scope="module")
def served(audit, tmp_path_factory):
    app = Served(explore_audit.copy(audit, tmp_path_factory.mktemp("explore_served")))
    yield app
    app.close()


def _open(driver, url, ready, timeout=60):
    driver.get(url)
    return wait_for(driver, f"return document.querySelector({ready!r})", timeout, what=ready)


GRAPH = "document.querySelector('#samples-graph .js-plotly-plot')"


def test_page_loads_with_one_point_per_sample(driver, served):
    ms, points = time_to_first_render(driver, served.url + "/")
    assert points == served.data.n_samples == 96
    rows = driver.execute_script(f"return {GRAPH}._fullData.flatMap(t => Array.from(t.customdata))")
    assert sorted(rows) == list(range(served.data.n_samples))  # every sample once
    assert driver.execute_script(f"return {GRAPH}._fullData.every(t => t.type === 'scattergl')")
    assert ms > 0
    assert driver.find_element("id", "tab-samples") and "Traceback" not in driver.page_source
    severe = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe


def _point_on_screen(driver):
    """A point with no other within 6 px: ``(row, x, y)`` in page pixels."""
    return driver.execute_script(f"""
      const gd = {GRAPH}; const box = gd.getBoundingClientRect(); const all = [];
      for (const t of gd._fullData) {{
        const xa = gd._fullLayout[t.xaxis.replace('x', 'xaxis')], ya = gd._fullLayout[t.yaxis.replace('y', 'yaxis')];
        for (let i = 0; i < t._length; i++) {{
          all.push([t.customdata[i], box.left + xa._offset + xa.l2p(t.x[i]), box.top + ya._offset + ya.l2p(t.y[i])]);
        }}
      }}
      return all.find(p => all.every(q => q === p || Math.hypot(p[1] - q[1], p[2] - q[2]) > 6));""")


def _move_to(driver, x, y):
    """The mouse to page pixel (x, y) (Selenium's offsets count from the body's centre)."""
    from selenium.webdriver.common.action_chains import ActionChains

    body = driver.find_element("tag name", "body")
    rect = body.rect
    # short moves: the default 250 ms per move makes a lasso of 25 moves take seconds
    return ActionChains(driver, duration=20).move_to_element_with_offset(body, int(x - rect["width"] / 2),
                                                            int(y - rect["height"] / 2))


def test_hover_shows_the_image_and_heatmap(driver, served):
    _open(driver, served.url + "/", "#samples-graph canvas")
    row, x, y = _point_on_screen(driver)
    _move_to(driver, x, y).perform()
    sid = served.data.sample_id(row)
    wait_for(driver, f"return document.getElementById('hover-details').innerText.includes({sid!r})", 30,
             what=f"details of {sid}")
    sources = driver.execute_script("return ['hover-image', 'hover-heatmap'].map(i => document.getElementById(i).src)")
    assert sources[0].endswith(f"/explore/thumb/train/image/{row}.png")
    assert sources[1].endswith(f"/explore/thumb/train/heatmap/{row}.png")
    wait_for(driver, IMAGES_LOADED, 30, what="the hovered sample's thumbnails")


def test_lasso_lists_the_selected_samples(driver, served):
    """A lasso drawn around the whole first panel selects exactly that class's samples."""
    _open(driver, served.url + "/", "#samples-graph canvas")
    left, top, width, height = driver.execute_script(f"""
      const gd = {GRAPH}; const box = gd.getBoundingClientRect();
      const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
      return [box.left + xa._offset, box.top + ya._offset, xa._length, ya._length];""")
    corners = [(left + 2, top + 2), (left + width - 2, top + 2), (left + width - 2, top + height - 2),
               (left + 2, top + height - 2), (left + 2, top + 4)]
    chain = _move_to(driver, *corners[0]).click_and_hold()
    for (x0, y0), (x1, y1) in zip(corners, corners[1:]):
        for step in range(1, 6):  # the lasso follows the mouse's path: several moves per side
            chain = chain.move_by_offset(int(round((x1 - x0) / 5)), int(round((y1 - y0) / 5)))
    chain.release().perform()
    first = served.data.embeddings[0]
    title = wait_for(driver, "const t = document.getElementById('selection-title'); return t && t.innerText", 30,
                     what="the selection")
    assert title.startswith(f"{len(first.rows)} selected samples")
    shown = driver.execute_script("return Array.from(document.querySelectorAll('#selection-grid .card'))"
                                  ".map(c => c.dataset.sid)")
    assert sorted(shown) == sorted(served.data.sample_id(r) for r in first.rows)


def _review_cards(driver):
    return driver.execute_script("return Array.from(document.querySelectorAll('#review-cards .review-card'))"
                                 ".map(c => [c.dataset.sid, c.classList.contains('undecided'), "
                                 "c.classList.contains('focused')])")


def _card(sid, inside=""):
    """JS for the review card of ``sid`` (or the element ``inside`` it)."""
    selector = f'.review-card[data-sid="{sid}"] {inside}'.strip()
    return f"document.querySelector({json.dumps(selector)})"


def test_accept_writes_that_decision_and_a_reload_shows_it(driver, served):
    _open(driver, served.url + "/?tab=review", ".review-card")
    sid = next(s for s, undecided, _ in _review_cards(driver) if undecided)
    before = served.state()
    driver.execute_script(f"{_card(sid, 'button.accept')}.click()")
    wait_for(driver, lambda_badge(sid, "accepted"), 30, what=f"{sid} shown as accepted")
    after = served.state()
    assert after["accepted"] == before["accepted"] + [sid] and after["rejected"] == before["rejected"]
    entry = after["history"][-1]
    assert (entry["accepted"], entry["rejected"], entry["source"]) == ([sid], [], REVIEWER)
    assert len(after["history"]) == len(before["history"]) + 1
    age = datetime.datetime.now() - datetime.datetime.fromisoformat(entry["time"])
    assert datetime.timedelta(0) <= age < datetime.timedelta(minutes=2)
    annotations = step_dir(served.config, "sample_retrieval", create=False) / "annotations.json"
    assert json.loads(annotations.read_text())["band_aid"] == after["accepted"]  # exported, as refine does
    driver.refresh()
    wait_for(driver, lambda_badge(sid, "accepted"), 60, what=f"{sid} still accepted after a reload")
    assert f"{len(after['accepted'])} accepted" in driver.find_element("id", "review-counts").text


def lambda_badge(sid, text):
    return f"const c = {_card(sid)}; return c && c.querySelector('.badge').innerText === {json.dumps(text)}"


def test_keys_move_and_reject(driver, served):
    _open(driver, served.url + "/?tab=review", ".review-card.focused")
    cards = _review_cards(driver)
    target = next(i for i, (_, undecided, _) in enumerate(cards) if undecided and i > 0)
    body = driver.find_element("tag name", "body")
    for _ in range(target):
        body.send_keys("\ue014")  # arrow right
    assert _review_cards(driver)[target][2]  # focused
    before = served.state()
    body.send_keys("r")
    sid = cards[target][0]
    wait_for(driver, lambda_badge(sid, "rejected"), 30, what=f"{sid} rejected by the key")
    entry = served.state()["history"][-1]
    assert (entry["accepted"], entry["rejected"]) == ([], [sid])
    assert len(served.state()["history"]) == len(before["history"]) + 1
    later = [i for i, (_, undecided, _) in enumerate(_review_cards(driver)) if undecided and i > target]
    if later:  # the focus moved on to the next undecided card
        wait_for(driver, f"return document.querySelectorAll('#review-cards .review-card')[{later[0]}]"
                         ".classList.contains('focused')", 10, what="the focus on the next undecided card")


def test_neuron_click_colours_the_samples(driver, served):
    _open(driver, served.url + "/?tab=neurons", ".neuron-card")
    channel = int(driver.execute_script("return document.querySelector('.neuron-card').dataset.channel"))
    driver.execute_script("document.querySelector('.neuron-card').click()")
    script = ("const gd = document.querySelector('#{} .js-plotly-plot');"
              "return gd && gd._fullData.length && gd._fullData[0].marker.coloraxis"
              " ? gd._fullData.map(t => [Array.from(t.customdata), Array.from(t.marker.color)]) : null")
    layer = served.data.neurons("dora")[0]
    expected = served.data.feature_column(layer, "cavs_max", channel)
    for graph in ("neuron-graph", "samples-graph"):  # both show the chosen neuron's activation
        traces = wait_for(driver, script.format(graph), 30, what=f"{graph} coloured by channel {channel}")
        rows = np.concatenate([t[0] for t in traces]).astype(int)
        np.testing.assert_allclose(np.concatenate([t[1] for t in traces]), expected[rows], rtol=1e-5)
        assert len(rows) == served.data.n_samples
    wait_for(driver, IMAGES_LOADED, 60, what="the reference samples")
    # CRP's conditional heatmap of a reference sample, drawn with the model on first request
    layer, neurons, refs = served.data.neurons("crp0")
    with_refs = next(int(n["channel"]) for n in neurons if refs.get(int(n["channel"])))
    with urllib.request.urlopen(f"{served.url}/explore/neuron/crp0/{with_refs}/0/heatmap.png") as response:
        assert response.headers["Content-Type"] == "image/png" and response.read(8) == b"\x89PNG\r\n\x1a\n"


def test_localization_masks_load(driver, served):
    _open(driver, served.url + "/?tab=localization", "#page-localization .card")
    index = json.loads((served.data.localization_dir() / "index.json").read_text())
    shown = driver.execute_script("return Array.from(document.querySelectorAll('#page-localization .card'))"
                                  ".map(c => c.dataset.sid)")
    assert shown == list(index["samples"])[:48] and shown
    wait_for(driver, IMAGES_LOADED, 60, what="images, masks and heatmaps")


def test_missing_step_is_an_error_page_not_a_traceback(driver, served):
    _open(driver, served.url + "/?tab=mitigation", "#page-mitigation .error-panel")
    text = driver.find_element("css selector", "#page-mitigation .error-panel").text
    assert "mitigation and re-evaluation have not run" in text
    assert "python -m experiments.evaluation.compare_methods" in text and "Traceback" not in driver.page_source
    # a file route of a result that does not exist: a one-line page, status 404
    driver.get(served.url + "/explore/neuron/crp1/0/0/image.png")
    message = driver.find_element("id", "error").text
    assert "no crp results at" in message and "run the crp reveal step" in message
    assert "Traceback" not in driver.page_source
    with pytest.raises(urllib.error.HTTPError) as status:
        urllib.request.urlopen(served.url + "/explore/neuron/crp1/0/0/image.png")
    assert status.value.code == 404


def _decide_round(driver, truth):
    """Decide every card of the shown round by clicking, as a reviewer who sees the artifact would
    (the first card accepted if none carries it, so that the next round has a CAV)."""
    shown = [s for s, _, _ in _review_cards(driver)]
    accept = [s for s in shown if truth[s]] or shown[:1]
    for sid in shown:
        verdict = "accept" if sid in accept else "reject"
        driver.execute_script(f"{_card(sid, 'button.' + verdict)}.click()")
        wait_for(driver, lambda_badge(sid, verdict + "ed"), 30, what=f"{sid} {verdict}ed")
    return accept, [s for s in shown if s not in accept]


def test_a_round_in_the_browser_ranks_as_refine(driver, audit, tmp_path):
    """Two full rounds decided by clicks in the browser on one copy of the audit and given to refine on
    another: each next round has the same samples in the same order with the same CAV scores, and both
    annotation states hold the same decisions."""
    browser_side = Served(explore_audit.copy(audit, tmp_path / "browser"))
    cli_config = explore_audit.copy(audit, tmp_path / "cli")
    try:
        train = browser_side.data.splits.train
        truth = dict(zip(train.sample_ids, train.artifact_labels("band_aid")))
        _open(driver, browser_side.url + "/?tab=review", ".review-card")
        first = refine.main(["--config_file", str(cli_config)])["to_review"]
        assert [s for s, _, _ in _review_cards(driver)] == list(first["sample_id"])
        for round_number in range(2):
            accept, reject = _decide_round(driver, truth)
            driver.execute_script("document.getElementById('review-next').click()")
            wait_for(driver, "return document.getElementById('review-message').innerText.startsWith('Next round')",
                     60, what="the next round")
            expected = refine.main(["--config_file", str(cli_config), "--accept", *accept, "--reject", *reject])
            expected = expected["to_review"]
            assert [s for s, _, _ in _review_cards(driver)] == list(expected["sample_id"]), round_number
            shown = driver.execute_script("return Array.from(document.querySelectorAll('.review-card'))"
                                          ".map(c => parseFloat(c.querySelectorAll('.caption')[1].innerText))")
            np.testing.assert_allclose(shown, expected["score"], atol=5e-4)  # the page shows 3 decimals
            mine = browser_side.state()
            theirs = json.loads((step_dir(load_config(cli_config, AuditConfig), "sample_retrieval", create=False)
                                 / "band_aid" / "annotation_state.json").read_text())
            assert set(mine["accepted"]) == set(theirs["accepted"]) and set(mine["rejected"]) == set(theirs["rejected"])
        # the browser's round file is the one refine writes, scores exact
        ours = browser_side.session.current_round()
        np.testing.assert_allclose(ours["score"], expected["score"], rtol=1e-12)
    finally:
        browser_side.close()
