"""Issue #30, item 8: every page the project renders shows hostile values as text and runs none of them.

Each value below would, if a page interpreted it, set `window.__xss`, change `document.title`, add an
element (an `<img>` whose `onerror` fires, an `<svg onload>`) or a live `javascript:` link. They reach the
pages the ways a person or system can put them there: a snapshot's category values through `extract` and
`validate` (the validation report and GX's Data Docs), the service's form, monitoring days in the bucket,
and the decision and manifest values (reason, comment, run id, versions, excluded features, a slice's
group) through the report functions. Each page is opened in headless Chromium (Playwright): nothing ran,
nothing was injected, no error reached the console, and the hostile text is shown as text where the page
shows the value. Screenshots are written under the test's tmp_path (printed) to be looked at.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

import browser
from cross_sell.data import schema, synthetic
from cross_sell.data.validation import DataValidationError
from cross_sell.model import report
from cross_sell.monitoring import daily as monitoring
from cross_sell.operations import training as stages
from cross_sell.storage.artifacts import RunArtifacts
from support import skip_unless_available

SCRIPT = "<script>window.__xss = 'script'; document.title = 'XSS'</script>"
IMG = "<img src=x onerror=\"window.__xss = 'img'; document.title = 'XSS'\">"
ATTRIBUTE = "\"'><svg onload=\"window.__xss = 'svg'\">"
LINK = "[click me](javascript:window.__xss='link')"
GENDER = "<img src=x onerror=\"window.__xss = 'gender'\">"
EVERYTHING = f"{SCRIPT} {IMG} {ATTRIBUTE} {LINK}"
SECRET_ID = -987_654  # an out-of-range customer id: validation counts it, never quotes it

INJECTED = """(() => ({
  xss: window.__xss === undefined ? null : String(window.__xss),
  title: document.title,
  elements: document.querySelectorAll('img[src="x"], [onerror], [onload]').length,
  scripts: Array.from(document.scripts).filter(s => s.textContent.includes('__xss')).length,
  links: Array.from(document.querySelectorAll('a')).filter(
    a => /^\\s*javascript:/i.test(a.getAttribute('href') || '') || a.textContent.includes('click me')).length,
}))()"""


@pytest.fixture(scope="module")
def chromium():
    skip_unless_available(browser.missing())
    with browser.page() as page:
        yield page


def _open_inert(page, path: Path, shot: Path, shown: tuple[str, ...] = (), offline_cdn: bool = False) -> str:
    """Open `path`, wait until every image has loaded or failed (an injected `onerror` would have fired
    by then), check nothing was injected or ran and (`offline_cdn`: unless the page needs scripts from a
    CDN, as GX's Data Docs do, unreachable here) that no error reached the console; the page's text."""
    page.errors.clear()
    page.goto(path.as_uri())
    page.wait_for_function("Array.from(document.images).every(image => image.complete)")
    found = page.evaluate(INJECTED)
    page.screenshot(path=shot, full_page=True)
    print(f"screenshot: {shot}")
    assert found["xss"] is None and found["title"] != "XSS", (path.name, found)  # set by script, not shown as text
    assert found["elements"] == found["scripts"] == found["links"] == 0, (path.name, found)
    assert offline_cdn or page.errors == [], (path.name, page.errors)
    text = browser.text(page)
    for fragment in shown:
        assert fragment in text, (path.name, fragment)
    return text


def test_a_hostile_snapshot_runs_nothing_in_the_validation_report_or_the_data_docs(chromium, s3, bucket, tmp_path):
    """Category values from the data (any string before validation fails) and the run id."""
    documents = synthetic.generate(2_000, seed=7).to_dict("records")
    documents[0]["Gender"] = GENDER  # a personal column: counted, never shown
    documents[1]["Vehicle_Age"] = SCRIPT
    documents[2]["Vehicle_Age"] = LINK
    documents[3]["Vehicle_Damage"] = ATTRIBUTE
    documents[4]["id"] = SECRET_ID
    artifacts = RunArtifacts(s3, bucket, "vi", "manual__" + IMG)
    extracted = stages.extract(documents, artifacts)
    with pytest.raises(DataValidationError) as failed:
        stages.validate(artifacts, extracted["snapshot"], min_rows=100)
    message = str(failed.value)  # the validate task's log line and its alert
    assert "<" not in message.replace("< 1 Year", "") and str(-SECRET_ID) not in message
    assert "in_set(Gender): 1 of 2000 rows unexpected" in message and "values not shown" in message

    summary = artifacts.get_json(artifacts.key("validation", "summary.json"))
    page = tmp_path / "validation.html"
    page.write_bytes(s3.get_object(Bucket=bucket, Key=summary["report_key"])["Body"].read())
    _open_inert(chromium, page, tmp_path / "validation.png",
                shown=(repr(SCRIPT)[:30], repr(LINK)[:30], repr(ATTRIBUTE)[:25], "manual__" + IMG,
                       "not shown: personal or identifying"))
    html = page.read_text()
    assert str(-SECRET_ID) not in html and str(-SECRET_ID) not in json.dumps(summary)
    assert "'gender'" not in html  # the Gender value is not on the page, not even escaped

    docs = tmp_path / "data_docs"
    prefix = summary["data_docs_key"].rsplit("/", 1)[0] + "/"
    for item in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]:
        target = docs / item["Key"][len(prefix):]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
    [validation_page] = (docs / "validations").rglob("*.html")
    for path in docs.rglob("*.html"):  # no value of the data reaches GX's pages, escaped or not
        assert "__xss" not in path.read_text() and str(-SECRET_ID) not in path.read_text(), path
    assert "cross_sell_raw_snapshot" in validation_page.read_text()
    _open_inert(chromium, validation_page, tmp_path / "data_docs_validation.png", offline_cdn=True)
    _open_inert(chromium, docs / "index.html", tmp_path / "data_docs_index.png", offline_cdn=True)


@pytest.fixture(scope="module")
def small_facts():
    """A small model's facts on its test split (the evaluation report's figures), public and with arrays."""
    from cross_sell.model import features, training

    parts = features.split(synthetic.generate(3_000, seed=5), seed=5)
    model = training.train(parts["train"], parts["validation"], seed=5)
    return report.model_facts(model, parts["test"])


def _hostile_facts(facts: dict) -> dict:
    facts = json.loads(json.dumps(report.public(facts)))
    facts["slices"][0]["value"] = SCRIPT + " | extra |"  # a slice's group is a value from the data
    facts["fairness"]["Gender"]["groups"][0]["group"] = IMG
    return facts


def test_hostile_decision_and_run_values_run_nothing_in_the_evaluation_report(chromium, small_facts, tmp_path):
    facts = {"candidate": {**_hostile_facts(small_facts), "_y": small_facts["_y"],
                           "_probability": small_facts["_probability"]}}
    decision = {"bless": True, "reason": EVERYTHING, "primary_metric": "roc_auc", "min_roc_auc": 0.7,
                "margin": 0.002, "candidate_version": ATTRIBUTE, "champion_version": SCRIPT, "onnx_parity": None,
                "max_equalized_odds_difference": 0.1, "fairness_gated": ["Gender", IMG],
                "excluded_features": [LINK]}
    run = {"run_id": IMG, "validation": None, "validation_href": "../validation/report.html",
           "validation_uri": SCRIPT}
    page = tmp_path / "evaluation.html"
    page.write_text(report.evaluation_report(decision, facts, run))
    _open_inert(chromium, page, tmp_path / "evaluation.png", shown=(SCRIPT, IMG, LINK, ATTRIBUTE.strip()))


def _hostile_manifest() -> dict:
    return {"version": "v-hostile", "threshold": 0.31, "trained_at": "2026-11-22T00:00:00+00:00",
            "run_id": IMG, "run_artifacts": SCRIPT, "code_version": LINK, "seed": 3,
            "excluded_features": [ATTRIBUTE], "rows": 3_000, "data_fingerprint": "f" * 64,
            "library_versions": {"numpy": "2.4 " + SCRIPT},
            "approval": {"approved_by": IMG, "approved_at": "2026-11-23T08:00:00+00:00", "comment": EVERYTHING},
            "metrics": {name: 0.5 for name in ("roc_auc", "pr_auc", "f1", "precision", "recall", "log_loss")},
            "decision_reason": LINK + " | fake | cell |\n# Heading\n" + SCRIPT, "replaced_champion": ATTRIBUTE}


def test_the_model_card_keeps_every_value_literal_in_markdown_and_html(chromium, small_facts, tmp_path):
    manifest, facts = _hostile_manifest(), _hostile_facts(small_facts)
    card = report.model_card(manifest, facts)
    # A permissive markdown renderer (raw HTML on, as CommonMark's default) still finds no tag, link or heading
    # from a value: only the template's own.
    rendered = MarkdownIt("commonmark").enable("table").render(card)
    assert "<script" not in rendered and "<img" not in rendered and "<svg" not in rendered and "<a " not in rendered
    assert "<h1>Heading" not in rendered and rendered.count("<h1>") == 1
    assert "<td>fake" not in rendered and "<td>extra" not in rendered  # no table cell from a value's pipes
    page = tmp_path / "model_card.html"
    page.write_text(report.model_card_html(manifest, facts))
    text = _open_inert(chromium, page, tmp_path / "model_card.png",
                       shown=(SCRIPT, IMG, LINK, "Approved by", "Fairness", SCRIPT + " | extra |"))
    assert f'"{EVERYTHING}"' in text and "| fake | cell | # Heading" in text


def test_hostile_monitoring_days_run_nothing_in_the_trend_page(chromium, s3, bucket, tmp_path):
    """Monitoring days are files in the bucket: whoever can write it decides what they hold."""
    day = {"day": "2026-11-30", "champion": SCRIPT, "realized": {"roc_auc": 0.8}, "prediction_psi": 0.01,
           "skew": {"distances": {"Age": 0.1}, "drifted": [IMG, LINK]}, "missing": {ATTRIBUTE: SCRIPT}}
    key = "vi/monitoring/daily/2026-11-30.json"
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(day).encode())
    page = tmp_path / "monitoring.html"
    page.write_bytes(s3.get_object(Bucket=bucket, Key=monitoring.build_report(s3, bucket, "vi"))["Body"].read())
    _open_inert(chromium, page, tmp_path / "monitoring.png", shown=(SCRIPT, IMG, LINK, ATTRIBUTE.strip()))


def test_hostile_form_values_run_nothing_in_the_service_page(chromium, s3_server, signer, verifier, tmp_path):
    from cross_sell.storage.registry import ModelRegistry
    from devstack import local_services
    from serving.app import create_app
    from serving.champion import ChampionHolder
    from serving.config import ServingConfig
    from serving_support import PREFIX, promote, publish, train_model

    local_services.create_bucket(s3_server, "pages-form")
    registry = ModelRegistry(local_services.s3_client_for(s3_server), "pages-form", PREFIX, verifier)
    publish(registry, "v1", train_model(5, rows=3_000), signer)
    promote(registry, "v1")
    app = create_app(ServingConfig(s3_bucket="pages-form", s3_prefix=PREFIX), holder=ChampionHolder(registry, 3600),
                     start_poller=False)
    form = {**{k: str(v) for k, v in schema.example_record().items()},
            "Gender": IMG, "Age": ATTRIBUTE, "Annual_Premium": SCRIPT, "Vintage": LINK}
    response = app.test_client().post("/", data=form)
    assert response.status_code == 422
    page = tmp_path / "form.html"
    page.write_bytes(response.get_data())
    _open_inert(chromium, page, tmp_path / "form.png", shown=("<img src=x onerror=", "<script>window.__xss"))
    values = chromium.evaluate("Array.from(document.querySelectorAll('input')).map(i => i.value)")
    assert ATTRIBUTE in values and SCRIPT in values  # the fields hold what was typed, as values


def test_markdown_values_are_escaped_whatever_they_hold():
    from cross_sell.pages import markdown_text

    for value in (EVERYTHING, "![x](http://e/x.png)", "<http://e>", "`code`", "a\nb\r\n# c", "**b** _i_ ~s~",
                  "&lt;script&gt;", "\\[x](y)"):
        rendered = MarkdownIt("commonmark").render(markdown_text(value))
        plain = re.sub(r"\s+", " ", value)
        assert rendered == MarkdownIt("commonmark").render("x").replace("x", _escape_html(plain), 1), value


def _escape_html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
