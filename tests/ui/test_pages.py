"""The web UI in headless Chromium: every page loads with its key elements and numbers, no console
errors, no payload executed, links the mlflow client prints land on their pages, and a screenshot
of each page is saved."""
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from conftest import ADMIN, PASSWORD

HERE = Path(__file__).parent
STEPS, RUNS = 10_000, 20


@pytest.fixture(scope="session")
def logged(server, tmp_path_factory):
    out = tmp_path_factory.mktemp("logged")
    started = time.time()
    done = subprocess.run([sys.executable, str(HERE / "log_runs.py"), str(out), str(STEPS), str(RUNS)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = done.stdout + done.stderr
    links = re.findall(r"View run [^\n]* at: (http://\S+)", printed)
    assert len(links) == RUNS, printed[-2000:]
    from mlflow import MlflowClient

    client = MlflowClient(server["url"])
    experiment = client.get_experiment_by_name('ui <script>alert("xss-script")</script>')
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    print(f"logged {RUNS} runs of {STEPS} steps in {time.time() - started:.1f} s")
    return {"links": links, "experiment": experiment, "runs": runs, "client": client}


def clean(browser):
    """No console error, exception, dialog or called alert; no script but ours; no `on…` attribute."""
    assert browser.problems() == []
    scripts = browser.eval("[...document.scripts].map(s => s.src || 'inline')")
    assert all(s.endswith("/ui/static/app.js") for s in scripts), scripts
    handlers = browser.eval("[...document.querySelectorAll('*')].flatMap(e => [...e.attributes].map(a => a.name)).filter(n => n.startsWith('on'))")
    assert handlers == []
    # Every control a keyboard reaches has a name a screen reader reads out.
    unlabelled = browser.eval("""[...document.querySelectorAll('input:not([type=hidden]), select, button')]
        .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
        .map(e => e.outerHTML)""")
    assert unlabelled == []
    # What a page weighs before its charts' data.
    weight = browser.eval("document.documentElement.outerHTML.length - [...document.querySelectorAll('svg')].reduce((n, s) => n + s.outerHTML.length, 0)")
    assert weight < 300_000, weight


def test_the_clients_printed_run_links_land_on_the_run(browser, server, logged, shots):
    link = logged["links"][0]
    run_id = link.rsplit("/", 1)[1]
    browser.goto(link)
    browser.wait_until(f"location.pathname === '/ui/runs/{run_id}'")
    clean(browser)
    assert 'run-' in browser.eval("document.querySelector('h1').textContent")
    experiment_link = link.split("/runs/")[0]
    browser.goto(experiment_link)
    browser.wait_until(f"location.pathname === '/ui/experiments/{logged['experiment'].experiment_id}'")


def test_experiments_list(browser, server, logged, shots):
    assert browser.goto(server["url"] + "/ui/experiments") == 200
    clean(browser)
    names = browser.eval("[...document.querySelectorAll('tbody tr td:first-child')].map(td => td.textContent)")
    assert 'ui <script>alert("xss-script")</script>' in names
    browser.screenshot(shots / "experiments.png")


def test_runs_table_filters_orders_chooses_columns_and_pages(browser, server, logged, shots):
    base = f"{server['url']}/ui/experiments/{logged['experiment'].experiment_id}"
    assert browser.goto(base) == 200
    clean(browser)
    rows = browser.eval("document.querySelectorAll('tbody input[name=run]').length")
    assert rows == RUNS
    headers = browser.eval("[...document.querySelectorAll('thead th')].map(th => th.textContent.trim())")
    assert "metrics.accuracy" in headers and "params.lr" in headers
    browser.screenshot(shots / "runs-table.png")
    # MLflow's filter syntax, typed into the search box and submitted.
    browser.eval("document.getElementById('filter').value = \"params.lr = '0.01' and metrics.accuracy > 0.7\"; document.querySelector('form[role=search]').submit()")
    browser.wait_until("location.search.includes('filter=')")
    clean(browser)
    assert browser.eval("document.querySelectorAll('tbody input[name=run]').length") == RUNS // 4
    # A filter that does not parse is said, not a broken page.
    assert browser.goto(base + "?filter=metrics.accuracy%20%3E%3E%3E%201") == 200
    assert "error" in browser.eval("document.querySelector('[role=alert]').className")
    # Ordered by a metric, descending: the first row has the highest accuracy.
    browser.goto(base + "?order_by=metrics.%60accuracy%60%20DESC&col=metrics.accuracy&col=params.lr")
    clean(browser)
    values = browser.eval("[...document.querySelectorAll('tbody tr')].map(tr => parseFloat(tr.cells[6].textContent))")
    assert values == sorted(values, reverse=True) and values[0] == pytest.approx(0.8)
    assert browser.eval("[...document.querySelectorAll('thead th')].length") == 8, "the two chosen columns"
    # Pages of 50: 20 runs fit in one, so there is no next page.
    assert browser.eval("document.querySelector('a[rel=next]')") is None


def test_run_page_shows_params_metrics_charts_artifacts_and_models(browser, server, logged, shots):
    run = logged["runs"][0]
    page = f"{server['url']}/ui/runs/{run.info.run_id}"
    assert browser.goto(page) == 200
    clean(browser)
    text = browser.eval("document.body.innerText")
    assert '"><img src=x onerror=alert("xss-img")>' in text, "a param shown as text"
    assert browser.eval("[...document.querySelectorAll('figure.chart h3')].map(h => h.textContent)") == ["loss"], \
        "a curve for the metric logged at many steps; accuracy, logged once, is in the table"
    points = browser.eval("document.querySelector('figure.chart svg path').getAttribute('d').split('L').length")
    assert 100 < points <= 802, f"{STEPS} steps cut down to {points} points (400 buckets, their two extremes, and both ends)"
    artifacts = browser.eval("[...document.querySelectorAll('#artifacts ~ table a')].map(a => a.textContent)")
    assert {"notes/", "tables/", "plot.png"} <= set(artifacts), artifacts
    browser.screenshot(shots / "run.png")
    # Previews: text (a payload shown as text), a CSV as a table, an image.
    browser.goto(page + "?path=notes/readme.txt")
    clean(browser)
    assert browser.eval("document.querySelector('pre.preview').textContent") == 'notes <script>alert("xss-script")</script>'
    browser.goto(page + "?path=tables/scores.csv")
    clean(browser)
    assert browser.eval("[...document.querySelectorAll('section table tbody td')].map(td => td.textContent)") == \
        ["1", "0.5", "2", '"><img src=x onerror=alert("xss-img")>']
    browser.goto(page + "?path=plot.png")
    clean(browser)
    assert browser.eval("document.querySelector('img.preview').naturalWidth") == 40


def test_the_run_that_logged_a_model_links_to_its_registered_version(browser, server, logged, shots):
    run = next(r for r in logged["runs"] if r.outputs and r.outputs.model_outputs)
    browser.goto(f"{server['url']}/ui/runs/{run.info.run_id}")
    clean(browser)
    assert run.outputs.model_outputs[0].model_id in browser.eval("document.body.innerText")
    links = browser.eval("[...document.querySelectorAll('a')].map(a => a.getAttribute('href'))")
    assert "/ui/models/ui-model/versions/1" in links


def test_compare_twenty_runs_with_long_histories(browser, server, logged, shots):
    ids = [r.info.run_id for r in logged["runs"]][:20]
    url = f"{server['url']}/ui/compare?" + "&".join(f"run={i}" for i in ids) + "&x=params.lr&y=metrics.accuracy"
    started = time.time()
    assert browser.goto(url) == 200
    elapsed = time.time() - started
    clean(browser)
    timing = browser.eval("performance.getEntriesByType('navigation')[0].loadEventEnd")
    assert timing < 1000, f"compare of 20 runs x {STEPS} steps loaded in {timing:.0f} ms (wall {elapsed:.2f} s)"
    assert browser.eval("[...document.querySelectorAll('figure.chart h3')].map(h => h.textContent)") == ["loss"]
    assert browser.eval("document.querySelectorAll('figure.chart svg path').length") == 20, "20 loss curves overlaid"
    assert browser.eval("document.querySelectorAll('figure.chart svg circle').length") == 20, "20 dots in the scatter"
    differs = browser.eval("[...document.querySelectorAll('tr.diff th')].map(th => th.textContent)")
    assert any(d.startswith("lr") for d in differs) and not any(d.startswith("note") for d in differs)
    browser.screenshot(shots / "compare.png")


def test_registry_pages(browser, server, logged, shots):
    assert browser.goto(server["url"] + "/ui/models") == 200
    clean(browser)
    assert "ui-model" in browser.eval("document.body.innerText")
    browser.goto(server["url"] + "/ui/models/ui-model")
    clean(browser)
    assert browser.eval("document.querySelectorAll('tbody a[href=\"/ui/models/ui-model/versions/1\"]').length") == 1
    # The link form the issue names: MLflow's registry route.
    browser.goto(server["url"] + "/#/models/ui-model/versions/1")
    browser.wait_until("location.pathname === '/ui/models/ui-model/versions/1'")
    clean(browser)
    text = browser.eval("document.body.innerText")
    assert "signature:" in text and "inputs:" in text, "the MLmodel file's signature"
    run = next(r for r in logged["runs"] if r.outputs and r.outputs.model_outputs)
    assert browser.eval(f"!!document.querySelector('a[href=\"/ui/runs/{run.info.run_id}\"]')"), "the source run, through the logged model"
    browser.screenshot(shots / "model-version.png")


def test_release_gates_show_on_version_and_model_pages(browser, server, logged, shots):
    admin = (ADMIN, PASSWORD)
    api = server["url"] + "/api/v1/models/ui-model"
    answer = requests.put(api + "/gates/production", auth=admin, timeout=30,
                          json={"requirements": ["evaluation.roc_auc >= 0.8"], "approvals": 1})
    assert answer.status_code == 200, answer.text
    browser.goto(server["url"] + "/ui/models/ui-model/versions/1")
    clean(browser)
    text = browser.eval("document.body.innerText")
    assert "Release gates" in text and "@production" in text and "would fail" in text
    assert "ui-model/1 has no evaluation" in text and "approvals" in text
    browser.screenshot(shots / "model-version-gate.png")
    # An admin's override is kept, and flagged on the model's page.
    moved = requests.post(api + "/aliases/production", auth=admin, timeout=30,
                          json={"version": "1", "override_reason": "UI test <b>override</b>"})
    assert moved.status_code == 200 and moved.json()["overridden"], moved.text
    browser.goto(server["url"] + "/ui/models/ui-model")
    clean(browser)
    text = browser.eval("document.body.innerText")
    assert "Gated moves" in text and "override" in text and "UI test <b>override</b>" in text
    digest = moved.json()["gate_report"]
    assert browser.eval(f"!!document.querySelector('a[href*=\"gate_report%3A{digest}\"], a[href*=\"gate_report:{digest}\"]')")
    requests.delete(api + "/gates/production", auth=admin, timeout=30).raise_for_status()


def test_the_model_card_renders_as_a_file_and_as_a_page(browser, server, logged, shots, tmp_path):
    from conftest import ROOT

    binary = os.environ.get("MLTRAIL_BIN", str(ROOT / "target" / "debug" / "mltrail"))
    card = tmp_path / "card.html"
    done = subprocess.run([binary, "models", "card", "ui-model/1", "--format", "html", "--output", str(card),
                           "--tracking-uri", server["url"]], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    # The file mltrail writes: self-contained, no script, every section.
    browser.goto(card.as_uri())
    clean(browser)
    text = browser.eval("document.body.innerText")
    for section in ["Model details", "Model parameters", "Quantitative analysis", "Considerations", "References"]:
        assert section in text, section
    assert "override" in text, "the override of the gate test above is in the card"
    browser.screenshot(shots / "model-card.png")
    # The UI's page of the same card.
    assert browser.goto(server["url"] + "/ui/models/ui-model/versions/1/card") == 200
    clean(browser)
    assert "Model card: ui-model version 1" in browser.eval("document.body.innerText")


def test_a_user_sees_only_what_they_may_read(server, logged):
    admin = (ADMIN, PASSWORD)
    url = server["url"]
    requests.post(f"{url}/api/2.0/mlflow/users/create", json={"username": "ui-viewer", "password": "viewer-password-1"},
                  auth=admin).raise_for_status()
    hidden = logged["experiment"].experiment_id
    requests.post(f"{url}/api/2.0/mlflow/experiments/permissions/create",
                  json={"experiment_id": hidden, "username": "ui-viewer", "permission": "NO_PERMISSIONS"},
                  auth=admin).raise_for_status()
    viewer = ("ui-viewer", "viewer-password-1")
    listed = requests.get(f"{url}/ui/experiments", auth=viewer)
    assert listed.status_code == 200 and "xss-script" not in listed.text
    assert requests.get(f"{url}/ui/experiments/{hidden}", auth=viewer).status_code == 404
    run_id = logged["runs"][0].info.run_id
    assert requests.get(f"{url}/ui/runs/{run_id}", auth=viewer).status_code == 404
    assert requests.get(f"{url}/ui/compare?run={run_id}", auth=viewer).status_code == 404
    assert requests.get(f"{url}/ui/experiments", auth=admin).text.count("xss-script") >= 1
    # Without credentials a browser is sent to sign in; the API answers 401 as before.
    anonymous = requests.get(f"{url}/ui/experiments", allow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["Location"].startswith("/ui/login?next=")
    api = requests.get(f"{url}/api/2.0/mlflow/experiments/search")
    assert api.status_code == 401 and api.headers["WWW-Authenticate"].startswith("Basic")


def test_audit_trail_filters_links_and_verifies(browser, server, logged, shots):
    url = server["url"]
    assert browser.goto(url + "/ui/audit") == 200
    clean(browser)
    assert "not verified" in browser.eval("document.querySelector('section.verification').innerText")
    assert browser.eval("document.querySelectorAll('tbody tr').length") == 100, "a page of 100, newest first"
    seqs = browser.eval("[...document.querySelectorAll('tbody tr')].map(tr => parseInt(tr.cells[0].textContent))")
    assert seqs == sorted(seqs, reverse=True)
    assert browser.eval("!!document.querySelector('a[rel=next]')")
    # Filtered by entity: the registered model's events, from its own page's link.
    browser.goto(url + "/ui/models/ui-model")
    href = browser.eval("[...document.querySelectorAll('a')].find(a => a.textContent === 'Audit trail of this model').href")
    browser.goto(href)
    clean(browser)
    entities = browser.eval("[...document.querySelectorAll('tbody tr')].map(tr => tr.cells[4].innerText)")
    assert entities and all(e.startswith("registered_model ui-model") for e in entities), entities
    actions = browser.eval("[...document.querySelectorAll('tbody tr')].map(tr => tr.cells[3].textContent)")
    assert "registered_model.create" in actions
    # By action prefix and actor: every run event, all by the admin.
    browser.goto(url + "/ui/audit?action=run.&actor=" + ADMIN)
    clean(browser)
    rows = browser.eval("[...document.querySelectorAll('tbody tr')].map(tr => [tr.cells[2].textContent, tr.cells[3].textContent])")
    assert rows and all(a.startswith("run.") and actor.endswith(ADMIN) for actor, a in rows), rows
    # A time filter that does not parse is said.
    browser.goto(url + "/ui/audit?since=yesterday-ish")
    assert "`since`" in browser.eval("document.querySelector('[role=alert]').textContent")
    # The verify button (an admin's), then the badge.
    browser.goto(url + "/ui/audit")
    browser.eval("document.querySelector('form[action=\"/ui/audit/verify\"]').submit()")
    browser.wait_until("document.querySelector('.badge.ok') !== null", timeout=60)
    clean(browser)
    assert "verified" in browser.eval("document.querySelector('section.verification').innerText")
    browser.screenshot(shots / "audit.png")


def test_the_verify_form_refuses_forged_posts_and_non_admins(server, logged):
    url = server["url"]
    admin = (ADMIN, PASSWORD)
    assert requests.post(f"{url}/ui/audit/verify", data={"csrf": "0" * 64}, auth=admin).status_code == 403
    page = requests.get(f"{url}/ui/audit", auth=admin).text
    token = re.search(r'name="csrf" value="([0-9a-f]{64})"', page).group(1)
    forged = requests.post(f"{url}/ui/audit/verify", data={"csrf": token}, auth=admin,
                           headers={"Origin": "http://evil.example"}, allow_redirects=False)
    assert forged.status_code == 403
    good = requests.post(f"{url}/ui/audit/verify", data={"csrf": token}, auth=admin,
                         headers={"Origin": url}, allow_redirects=False)
    assert good.status_code == 303 and good.headers["Location"] == "/ui/audit"
    requests.post(f"{url}/api/2.0/mlflow/users/create", json={"username": "ui-plain", "password": "plain-password-01"},
                  auth=admin).raise_for_status()
    plain = ("ui-plain", "plain-password-01")
    assert requests.get(f"{url}/ui/audit", auth=plain).status_code == 403, "the trail is for auditors"
    assert requests.post(f"{url}/ui/audit/verify", data={"csrf": token}, auth=plain).status_code == 403
    assert requests.get(f"{url}/ui/experiments", auth=plain).status_code == 200


def test_signing_in_with_a_session_cookie(server, logged, shots, tmp_path):
    from cdp import Browser

    url = server["url"]
    # A browser without credentials is sent to the sign-in page, and back afterwards.
    b = Browser(tmp_path / "fresh-profile")
    try:
        assert b.goto(url + "/ui/models") == 200
        b.wait_until("location.pathname === '/ui/login'")
        assert b.eval("new URLSearchParams(location.search).get('next')") == "/ui/models"
        b.screenshot(shots / "sign-in.png")
        b.eval(f"document.getElementById('username').value = '{ADMIN}'; document.getElementById('password').value = 'wrong-password-1'; document.querySelector('form.login').submit()")
        b.wait_until("document.querySelector('[role=alert]') !== null")
        assert "Wrong user name or password" in b.eval("document.querySelector('[role=alert]').textContent")
        b.events.clear()  # the refused try's 401, expected
        b.eval(f"document.getElementById('username').value = '{ADMIN}'; document.getElementById('password').value = '{PASSWORD}'; document.querySelector('form.login').submit()")
        b.wait_until("location.pathname === '/ui/models'")
        assert "ui-model" in b.eval("document.body.innerText")
        assert b.eval("document.cookie") == "", "the session cookie is HttpOnly: no script reads it"
        assert b.problems() == []
        # Signing out clears it: the next page asks to sign in again.
        b.eval("document.querySelector('form.who').submit()")
        b.wait_until("location.pathname === '/ui/login'")
        b.goto(url + "/ui/experiments")
        b.wait_until("location.pathname === '/ui/login'")
    finally:
        b.close()
    # The cookie's rules, with requests.
    s = requests.Session()
    first = s.get(f"{url}/ui/experiments", allow_redirects=False)
    assert first.status_code == 303 and first.headers["Location"] == "/ui/login?next=%2Fui%2Fexperiments"
    assert s.get(f"{url}/api/2.0/mlflow/experiments/search?max_results=5").status_code == 401, "the API still answers 401"
    for elsewhere in ["//evil.example/x", "/\t/evil.example", "/\\evil.example", "https://evil.example/"]:
        sent = requests.post(f"{url}/ui/login", data={"username": ADMIN, "password": PASSWORD, "next": elsewhere},
                             allow_redirects=False)
        assert sent.status_code == 303 and sent.headers["Location"] == "/", f"never sent to another site: {elsewhere!r}"
    signed = s.post(f"{url}/ui/login", data={"username": ADMIN, "password": PASSWORD, "next": "/ui/models"},
                    allow_redirects=False)
    assert signed.status_code == 303 and signed.headers["Location"] == "/ui/models"
    cookie = signed.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Secure" not in cookie, "plain HTTP here: a Secure cookie would never come back"
    assert s.get(f"{url}/ui/experiments").status_code == 200
    assert s.get(f"{url}/api/2.0/mlflow/experiments/search?max_results=5").status_code == 200, "reads"
    refused = s.post(f"{url}/api/2.0/mlflow/experiments/create", json={"name": "by-cookie"})
    assert refused.status_code == 401, "a write never rides on the cookie"
    value = s.cookies.get("mltrail_session")
    forged = value[:-1] + ("0" if value[-1] != "0" else "1")
    t = requests.get(f"{url}/ui/experiments", cookies={"mltrail_session": forged}, allow_redirects=False)
    assert t.status_code == 303, "a cookie whose hash does not hold signs nobody in"
    as_header = requests.post(f"{url}/api/2.0/mlflow/experiments/create", json={"name": "by-header"},
                              headers={"Authorization": f"Session {value}"})
    assert as_header.status_code == 401, "the cookie's value is not a credential a client may send"
    # Signing out ends the cookie itself: a copy kept elsewhere is refused too.
    page = s.get(f"{url}/ui/experiments").text
    token = re.search(r'name="csrf" value="([0-9a-f]{64})"', page).group(1)
    assert s.post(f"{url}/ui/logout", data={"csrf": token}, allow_redirects=False).status_code == 303
    copied = requests.get(f"{url}/ui/experiments", cookies={"mltrail_session": value}, allow_redirects=False)
    assert copied.status_code == 303, "a signed-out cookie signs nobody in"


def test_pages_that_show_data_read_without_javascript(browser, server, logged):
    browser.send("Emulation.setScriptExecutionDisabled", value=True)
    try:
        base = f"{server['url']}/ui/experiments/{logged['experiment'].experiment_id}"
        assert browser.goto(base) == 200
        assert browser.eval("document.querySelectorAll('tbody input[name=run]').length") == RUNS
        run = logged["runs"][0].info.run_id
        assert browser.goto(f"{server['url']}/ui/runs/{run}") == 200
        assert browser.eval("document.querySelectorAll('figure.chart svg path').length") >= 1, "charts are SVG from the server"
    finally:
        browser.send("Emulation.setScriptExecutionDisabled", value=False)
