"""The web UI in a real headless Chromium against a real `flowrun serve`: a failed run is found,
read and re-run from its failed iteration, and the new run shows up in the list and succeeds."""
from __future__ import annotations

import os
import shutil

import pytest

from ..conftest import ROOT as REPO
from .conftest import ADMIN, BATCH, FIXED, ITEMS, artifacts

expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')").expect
RED, GREEN, GREY = "rgb(198, 40, 40)", "rgb(46, 125, 50)", "rgb(123, 129, 144)"


def sign_in(page, url: str) -> None:
    page.goto(url + "/ui/runs")
    assert page.url.startswith(url + "/ui/login")  # the UI asks who you are first
    page.fill("#token", ADMIN)
    page.click("button[type=submit]")
    page.wait_for_url(url + "/ui/runs")


def stroke(page, action: str) -> str:
    return page.eval_on_selector(f'svg.dag a.node[data-action="{action}"] rect',
                                 "el => getComputedStyle(el).stroke")


def test_a_failed_run_is_found_read_and_rerun_from_its_failed_iteration(make_server, browser):
    server = make_server({"batch.yaml": BATCH})
    with server.client() as http:
        ok = http.post("/flows/batch/triggers/manual", json={"items": [1, 2]})
        bad = http.post("/flows/batch/triggers/manual", json=ITEMS)
    good_id, bad_id = ok.json()["runId"], bad.json()["runId"]
    assert server.wait_run(good_id)["status"] == "Succeeded"
    assert server.wait_run(bad_id)["status"] == "Failed"
    shots = artifacts()
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    sign_in(page, server.url)

    # the runs list, filtered to Failed: only the failed run is left
    assert page.locator("tr.run").count() == 2
    page.select_option("#status-filter", "Failed")
    page.click(".filters button[type=submit]")
    page.wait_for_url("**status=Failed**")
    assert page.locator("tr.run").count() == 1
    assert page.locator(f'tr.run[data-run="{bad_id}"] .badge').inner_text() == "Failed"
    page.screenshot(path=str(shots / "ui-runs-failed.png"), full_page=True)

    # the run page: the failed Scope is red, what succeeded green, what never ran grey
    page.click(f'tr.run[data-run="{bad_id}"] a.run-link')
    page.wait_for_url(f"**/ui/runs/{bad_id}")
    assert stroke(page, "work") == RED
    assert stroke(page, "each") == RED
    assert stroke(page, "start") == GREEN
    assert stroke(page, "report") == GREY
    assert page.locator("#run-status").inner_text() == "Failed"
    # the Foreach's iterations as a strip: 4 succeeded, iteration 2 failed
    cells = page.locator("ol.strip a.cell")
    assert cells.count() == 5
    assert page.locator("ol.strip a.cell.st-Failed").count() == 1
    page.click("a.only-failed")
    assert page.locator("ol.strip a.cell").count() == 1
    page.click('ol.strip a.cell[data-iteration="2"]')
    page.wait_for_url(lambda url: "it=work" in url and "each%5B2%5D" in url)
    failed_step = page.locator('details.step[id="step-work/each[2]/divide"]')
    assert failed_step.get_attribute("open") is not None
    assert "division by zero" in failed_step.locator(".error-text").inner_text()
    assert stroke(page, "divide") == RED  # the body of the loop, coloured for the chosen iteration
    page.screenshot(path=str(shots / "ui-run-failed.png"), full_page=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(shots / "ui-run.png"))
    if os.environ.get("FLOWRUN_UPDATE_SCREENSHOT"):
        shutil.copy(shots / "ui-run.png", REPO / "docs" / "ui-run.png")

    # a second tab watches the runs list while the rerun happens
    watcher = browser.new_page(viewport={"width": 1366, "height": 900})
    watcher.context.add_cookies(page.context.cookies())
    watcher.goto(server.url + "/ui/runs?flow=batch")
    assert watcher.locator("tr.run").count() == 2

    # fix the flow, then rerun iteration 2 with the file as it is now, after reading the plan
    (server.flows / "batch.yaml").write_text(FIXED)
    page.locator('details.step[id="step-work/each[2]"] button[type=submit]').click()
    page.wait_for_url(lambda url: "/rerun?from=each%5B2%5D" in url)
    assert "each" in page.locator("#plan-again").inner_text()
    assert "start" in page.locator("#plan-reused").inner_text()
    page.click("text=use the flow file as it is now instead")
    page.click("#confirm-rerun")
    page.wait_for_url(lambda url: "/ui/runs/" in url and bad_id not in url)
    new_id = page.url.rsplit("/", 1)[-1]
    page.wait_for_selector("#run-status.st-Succeeded", timeout=20_000)  # the page follows the run live
    assert stroke(page, "work") == GREEN and stroke(page, "report") == GREEN
    assert page.locator(f'a[href="/ui/runs/{bad_id}"]').count() >= 1  # "rerun of" the failed run

    # the watching tab saw the new run appear (server-sent events), Succeeded, without a reload
    expect(watcher.locator(f'tr.run[data-run="{new_id}"] .badge')).to_have_text("Succeeded", timeout=20_000)
    assert watcher.locator("tr.run").count() == 3
    watcher.screenshot(path=str(shots / "ui-runs-after-rerun.png"), full_page=True)
    assert server.wait_run(new_id)["status"] == "Succeeded"
    assert server.run(new_id)["rerun_of"] == bad_id


def test_the_flows_page_lists_a_broken_flow_with_its_problem_at_its_line(make_server, browser):
    server = make_server({"batch.yaml": BATCH, "broken.yaml": "name: broken\nactions:\n  a: {type: Nope}\n"})
    page = browser.new_page()
    sign_in(page, server.url)
    page.click("text=Flows")
    page.wait_for_url(server.url + "/ui/flows")  # the click navigates: read the new page, not the old one
    broken = page.locator("tr.flow.has-problems")
    expect(broken).to_have_count(1, timeout=20_000)
    expect(broken).to_contain_text("broken.yaml:3")
    expect(page.locator("tr.flow:not(.has-problems)")).to_contain_text("batch")
    page.screenshot(path=str(artifacts() / "ui-flows.png"), full_page=True)


def test_the_ui_is_usable_from_the_keyboard(make_server, browser):
    server = make_server({"batch.yaml": BATCH})
    with server.client() as http:
        run_id = http.post("/flows/batch/triggers/manual", json={"items": [1]}).json()["runId"]
    server.wait_run(run_id)
    page = browser.new_page()
    page.goto(server.url + "/ui/login")
    page.keyboard.type(ADMIN)  # the token field has the focus
    page.keyboard.press("Enter")
    page.wait_for_url(server.url + "/ui/runs")
    page.keyboard.press("j")  # the first run's link
    assert page.evaluate("document.activeElement.className") == "run-link mono"
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/ui/runs/{run_id}")
    page.keyboard.press("Tab")  # the skip link comes first
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
