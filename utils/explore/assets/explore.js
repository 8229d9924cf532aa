// The explorer's browser side: tab switching and hover images without a server round trip, and the
// keyboard shortcuts of the Review tab (they click the focused card's buttons, so a key and a click
// record the same decision through the same callback).
(function () {
    const PAGES = ["samples", "neurons", "review", "localization", "mitigation"];
    const ns = (window.dash_clientside = window.dash_clientside || {});

    ns.explore = {
        showPage: function (tab) {
            return PAGES.map(function (page) { return {display: page === tab ? "block" : "none"}; });
        },
        tabFromUrl: function (search) {
            const tab = new URLSearchParams(search || "").get("tab");
            return PAGES.indexOf(tab) >= 0 ? tab : ns.no_update;
        },
        hoverImages: function (hover, split) {
            const point = hover && hover.points && hover.points[0];
            if (!point || point.customdata === undefined || point.customdata === null) {
                return [ns.no_update, ns.no_update];
            }
            const base = "/explore/thumb/" + split + "/";
            return [base + "image/" + point.customdata + ".png", base + "heatmap/" + point.customdata + ".png"];
        }
    };

    let focus = 0;
    let advance = false;
    let lastRender = null;

    function cards() {
        return Array.prototype.slice.call(document.querySelectorAll("#review-cards .review-card"));
    }

    function paint() {
        const list = cards();
        if (!list.length) { return; }
        focus = Math.max(0, Math.min(focus, list.length - 1));
        list.forEach(function (card, i) { card.classList.toggle("focused", i === focus); });
    }

    function reviewShown() {
        const page = document.getElementById("page-review");
        return page && page.style.display !== "none";
    }

    document.addEventListener("keydown", function (event) {
        const tag = (event.target.tagName || "").toLowerCase();
        if (!reviewShown() || tag === "input" || tag === "textarea" || event.ctrlKey || event.metaKey || event.altKey) {
            return;
        }
        const list = cards();
        if (event.key === "n") {
            const next = document.getElementById("review-next");
            if (next) { focus = 0; next.click(); }
        } else if (!list.length) {
            return;
        } else if (event.key === "ArrowRight" || event.key === "j") {
            focus = Math.min(focus + 1, list.length - 1);
            paint();
        } else if (event.key === "ArrowLeft" || event.key === "k") {
            focus = Math.max(focus - 1, 0);
            paint();
        } else if (event.key === "a" || event.key === "r") {
            const button = list[focus].querySelector(event.key === "a" ? "button.accept" : "button.reject");
            if (button) { advance = true; button.click(); }
        } else {
            return;
        }
        event.preventDefault();
    });

    // after a decision the page is drawn again: move the focus on to the next undecided card then
    new MutationObserver(function () {
        const counts = document.getElementById("review-counts");
        const message = document.getElementById("review-message");
        const render = (counts ? counts.textContent : "") + "|" + (message ? message.textContent : "");
        if (render !== lastRender) {
            lastRender = render;
            if (advance) {
                advance = false;
                const next = cards().findIndex(function (card, i) {
                    return i > focus && card.classList.contains("undecided");
                });
                if (next >= 0) { focus = next; }
            }
        }
        paint();
    }).observe(document.body, {childList: true, subtree: true, characterData: true});
})();
