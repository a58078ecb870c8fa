"""Readable at every width (issue 16 §4-§7), in real Chromium on the demo fleet: at 390x844 (a phone)
and 1440x900 the overview and CoreDNS pages draw no text over other text. Checked on element boxes:
a chart's legend against its title, axis titles and tick labels of the same axis against each other,
subplot titles against each other; on a phone the overview starts with the ranking and each chart
shows its phone variant. Also: a row click opens the details panel, and the Rules page opens on the
rule a link names. Screenshots go to artifacts/screenshots/ (readable-*.png)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1440, "height": 900}

# Per visible plotly chart: the title (the markdown element just before the chart), the legend, axis
# titles, subplot titles (annotations) and tick labels, as client rectangles.
BOXES_JS = """
() => {
  const box = e => { const r = e.getBoundingClientRect();
                     return {x: r.left, y: r.top, w: r.width, h: r.height}; };
  const visible = e => e.getBoundingClientRect().width > 0 && e.getBoundingClientRect().height > 0;
  const out = [];
  for (const chart of document.querySelectorAll('[data-testid="stPlotlyChart"]')) {
    if (!visible(chart)) continue;
    // the chart's title: the stMarkdown in the element container right before the chart's
    let holder = chart.closest('[data-testid="stElementContainer"]');
    let prev = holder ? holder.previousElementSibling : null;
    const title = prev ? prev.querySelector('[data-testid="stMarkdown"]') : null;
    const ticks = {};
    for (const g of chart.querySelectorAll('g.xtick, g.ytick, g.x2tick, g.y2tick, g.x3tick, g.x4tick, g.y3tick, g.y4tick')) {
      const t = g.querySelector('text'); if (!t || !t.textContent) continue;
      const k = [...g.classList].find(c => c.endsWith('tick')) + ':' + (g.closest('g[class*="axis"]')?.getAttribute('class') || '');
      (ticks[k] = ticks[k] || []).push({...box(t), text: t.textContent});
    }
    out.push({
      key: chart.closest('[class*="st-key-"]')?.className.match(/st-key-[^ ]+/)?.[0] || '',
      chart: box(chart),
      title: title ? {...box(title), text: title.innerText} : null,
      legend: [...chart.querySelectorAll('g.legend')].filter(visible).map(box),
      axisTitles: [...chart.querySelectorAll('.g-xtitle text, .g-ytitle text, [class*="g-x"][class*="title"] text, [class*="g-y"][class*="title"] text')]
                   .filter(visible).map(t => ({...box(t), text: t.textContent})),
      annotations: [...chart.querySelectorAll('g.annotation-text-g')].filter(visible).map(box),
      ticks,
    });
  }
  return out;
}
"""


def overlap(a: dict, b: dict, slack: float = 1.0) -> bool:
    """Two rectangles share more than ``slack`` pixels each way."""
    return (
        min(a["x"] + a["w"], b["x"] + b["w"]) - max(a["x"], b["x"]) > slack
        and min(a["y"] + a["h"], b["y"] + b["h"]) - max(a["y"], b["y"]) > slack
    )


def check_charts(d, where: str) -> list[dict]:
    charts = d.page.evaluate(BOXES_JS)
    assert charts, f"{where}: no chart drawn"
    for c in charts:
        name = f"{where} {c['key'] or (c['title'] and c['title']['text'])}"
        assert c["chart"]["w"] <= d.page.viewport_size["width"], f"{name}: wider than the screen"
        if c["title"]:
            assert c["title"]["y"] + c["title"]["h"] <= c["chart"]["y"] + 1, f"{name}: title over the chart"
            for lg in c["legend"]:
                assert not overlap(lg, c["title"]), f"{name}: legend over the title"
        for lg in c["legend"]:
            for t in c["axisTitles"]:
                assert not overlap(lg, t), f"{name}: legend over the axis title {t['text']!r}"
        for i, a in enumerate(c["annotations"]):
            for b in c["annotations"][i + 1 :]:
                assert not overlap(a, b), f"{name}: subplot titles overlap"
        for axis, labels in c["ticks"].items():
            for i, a in enumerate(labels):
                for b in labels[i + 1 :]:
                    assert not overlap(a, b), (
                        f"{name}: tick labels {a['text']!r} and {b['text']!r} overlap ({axis})"
                    )
    return charts


def open_at(new_page, server, size: dict, path: str = ""):
    d = new_page(server)
    d.page.set_viewport_size(size)
    d.goto(path)
    settle(d)
    return d


def settle(d) -> None:
    """Wait until plotly has drawn (it draws after the script run) and nothing failed to load."""
    expect(d.page.locator("[data-testid='stPlotlyChart'] .main-svg >> visible=true").first).to_be_visible()
    d.page.wait_for_timeout(1200)
    d.assert_no_exception()
    body = d.page.inner_text("body")
    assert "Failed to fetch dynamically imported module" not in body, body[:500]


def test_phone_overview_starts_with_the_ranking_and_nothing_overlaps(start_dashboard, new_page):
    server = start_dashboard(name="phone")
    d = open_at(new_page, server, PHONE)
    top = {
        name: d.page.locator(f".st-key-phone-order-{n}").bounding_box()["y"]
        for name, n in (("ranking", 1), ("numbers", 2), ("table", 3))
    }
    assert top["ranking"] < top["numbers"] < top["table"], top
    ranking = d.page.get_by_text("Clusters ranked by DNS-race risk", exact=True)
    assert ranking.bounding_box()["y"] < d.page.get_by_test_id("stMetric").first.bounding_box()["y"]
    expect(d.page.locator(".st-key-wide-only-heatmap")).to_be_hidden()
    expect(d.page.locator(".st-key-phone-only-heatmap")).to_be_visible()
    charts = check_charts(d, "phone overview")
    heat = next(c for c in charts if c["key"] == "st-key-heatmap_phone")
    rows = next(v for k, v in heat["ticks"].items() if k.startswith("ytick"))
    assert len(rows) == 7, [r["text"] for r in rows]  # every cluster of the demo fleet labelled
    width = d.page.evaluate("() => document.querySelector('[data-testid=stMain]').scrollWidth")
    assert width <= PHONE["width"], f"the page scrolls sideways on a phone ({width} px)"
    d.screenshot("readable-phone-overview")


def test_phone_coredns_stacks_the_comparison_and_nothing_overlaps(start_dashboard, new_page):
    server = start_dashboard(name="phone-coredns")
    d = open_at(new_page, server, PHONE, "coredns")
    expect(d.page.locator(".st-key-wide-only-compare")).to_be_hidden()
    expect(d.page.locator(".st-key-phone-only-compare")).to_be_visible()
    charts = check_charts(d, "phone coredns")
    stacked = next(c for c in charts if c["key"] == "st-key-compare_phone")
    assert len(stacked["annotations"]) == 4  # one title per stacked panel
    latency = next(c for c in charts if c["title"] and c["title"]["text"].startswith("CoreDNS latency"))
    assert latency["legend"], "the latency chart has a legend"
    d.screenshot("readable-phone-coredns")


def test_desktop_overview_and_coredns_nothing_overlaps(start_dashboard, new_page):
    server = start_dashboard(name="desktop")
    d = open_at(new_page, server, DESKTOP)
    expect(d.page.locator(".st-key-phone-only-heatmap")).to_be_hidden()
    charts = check_charts(d, "desktop overview")
    heat = next(c for c in charts if c["key"] == "st-key-heatmap")
    assert len(next(v for k, v in heat["ticks"].items() if k.startswith("ytick"))) == 7
    top = {n: d.page.locator(f".st-key-phone-order-{n}").bounding_box()["y"] for n in (1, 2)}
    assert top[2] < top[1], "on a desktop the headline numbers stay above the charts"
    d.screenshot("readable-desktop-overview")
    d.goto("coredns")
    settle(d)
    check_charts(d, "desktop coredns")
    d.screenshot("readable-desktop-coredns")


def test_a_row_click_opens_its_details_and_rule_links_explain(start_dashboard, new_page):
    server = start_dashboard(name="details")
    d = open_at(new_page, server, DESKTOP, "workloads")
    grid = d.page.get_by_test_id("stDataFrame").first
    expect(grid).to_be_visible()
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    d.page.mouse.click(box["x"] + 18, box["y"] + 35 + 17)  # the first row's selection cell
    d.wait()
    panel = d.page.locator(".st-key-workloads-details")
    expect(panel).to_be_visible()
    expect(panel.get_by_text("Why:", exact=False)).to_be_visible()
    link = panel.get_by_role("link").filter(has_text="R").first
    href = link.get_attribute("href")
    assert href and href.startswith("rules?rule="), href
    d.screenshot("readable-desktop-workload-details")
    rule = href.split("=", 1)[1]
    d.goto(f"rules?rule={rule}")
    expect(d.page.get_by_role("heading", name=f"You followed a link to {rule}", exact=False)).to_be_visible()
    first = d.page.get_by_test_id("stExpander").first
    expect(first).to_contain_text(rule)
    expect(first.get_by_text("Source:", exact=False).first).to_be_visible()  # opened, not collapsed
    d.assert_no_exception()
