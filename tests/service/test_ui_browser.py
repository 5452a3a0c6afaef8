"""The relevance page in a real browser: headless Chromium loads ``/ui`` from a served test store
(weight-free sparse encoder + BM25), takes the API key, runs one judged query in both columns,
and must render the same hits as the library, bars that agree with the explanation, NDCG@10 equal
to trec_eval's, and request nothing outside the service.

Needs Debian's ``chromium`` and ``chromium-driver`` and ``selenium``; skipped without them, except
where ``SPARSEHYBRID_REQUIRE_BROWSER=1`` (``.ci/run``) makes that a failure.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import httpx
import pytest

from sparsehybrid import Document, HybridSearcher, Indexer
from sparsehybrid.connectors.qdrant_edge import QdrantEdgeStore
from sparsehybrid.service.app import create_app
from sparsehybrid.service.core import SearchService
from sparsehybrid.service.settings import ServiceSettings
from sparsehybrid.service.ui import Judgements
from tests.support import serving

pytestmark = pytest.mark.slow

REQUIRE_BROWSER = os.environ.get("SPARSEHYBRID_REQUIRE_BROWSER") == "1"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
API_KEY = "ui-test-key-0123456789"
CHROME_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1500,1300",
)
TEXTS = {
    "d1": ("Funded depreciation", "funded depreciation sets aside cash for replacing worn assets"),
    "d2": ("Straight-line depreciation", "straight line depreciation spreads an asset's cost evenly over its life"),
    "d3": ("Slipstream lift", "a wing in a propeller slipstream gains lift at low speed"),
    "d4": ("Currency", "depreciation of a currency against the dollar raises import prices"),
    "d5": ("Boundary layers", "boundary layer transition on a flat plate at high speed"),
    "d6": ("Tax rules", "tax rules allow accelerated depreciation of machinery and cash deductions"),
    "d7": ("Wing flutter", "wing flutter appears when aerodynamic and elastic forces couple"),
    "d8": ("Asset registers", "an asset register records cost, depreciation and disposal of each asset"),
    "d9": ("Propellers", "propeller efficiency falls as tip speed approaches the speed of sound"),
    "d10": ("Cash flow", "depreciation is a non-cash expense added back in the cash flow statement"),
}
QUERY_ID, QUERY = "q1", "depreciation of assets and cash"
QRELS = {"q1": {"d1": 2, "d8": 1, "d10": 1, "d3": 0}, "q2": {"d3": 1}}


def browser_or_skip():
    missing = [name for name, found in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)) if not found]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -e '.[dev]')")
    if missing:
        reason = f"the browser test needs {', '.join(missing)} (apt-get install -y chromium chromium-driver)"
        if REQUIRE_BROWSER:
            pytest.fail(f"{reason}; SPARSEHYBRID_REQUIRE_BROWSER=1 requires it")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def served(tmp_path_factory, tf_encoder):
    """A store with sparse + BM25, a searcher, judgements in a BEIR folder, and the service."""
    root = tmp_path_factory.mktemp("ui")
    (root / "beir" / "qrels").mkdir(parents=True)
    qrels_path = root / "beir" / "qrels" / "test.tsv"
    qrels_path.write_text(
        "query-id\tcorpus-id\tscore\n"
        + "".join(f"{q}\t{d}\t{g}\n" for q, docs in QRELS.items() for d, g in docs.items())
    )
    (root / "beir" / "queries.jsonl").write_text(
        json.dumps({"_id": "q1", "text": QUERY}) + "\n" + json.dumps({"_id": "q2", "text": "wing lift"}) + "\n"
    )
    store = QdrantEdgeStore(root / "idx")
    Indexer(store, sparse=tf_encoder, bm25=True).index([Document(k, t, title) for k, (title, t) in TEXTS.items()])
    searcher = HybridSearcher(store, sparse=tf_encoder)
    settings = ServiceSettings(api_key=API_KEY)
    service = SearchService(store, lambda _: searcher)
    app = create_app(service, settings, judgements=Judgements.load(qrels_path))
    try:
        with serving(app) as url:
            yield url, searcher
    finally:
        service.batcher.close()
        store.close()


@pytest.fixture(scope="module")
def chromium() -> None:
    """Skips (or fails, where required) before the test store is built."""
    browser_or_skip()


@pytest.fixture
def browser(chromium, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, condition, what: str, timeout: float = 30.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: condition(d), message=f"waiting for {what}")


def trec_ndcg10(ranking: list[str], judged: dict[str, int]) -> float:
    import pytrec_eval

    run = {QUERY_ID: {doc: float(len(ranking) - i) for i, doc in enumerate(ranking)}}
    return pytrec_eval.RelevanceEvaluator({QUERY_ID: judged}, {"ndcg_cut.10"}).evaluate(run)[QUERY_ID]["ndcg_cut_10"]


def artefact_dir(tmp_path: Path) -> Path:
    """Where the screenshot goes: $SPARSEHYBRID_TEST_ARTIFACTS (CI keeps it), else the test's tmp."""
    out = Path(os.environ.get("SPARSEHYBRID_TEST_ARTIFACTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    return out


def test_page_files_are_open_and_locked_to_the_service(served):
    url, _ = served
    page = httpx.get(f"{url}/ui")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert httpx.get(f"{url}/ui/ui.js").status_code == 200
    assert httpx.get(f"{url}/ui/config").status_code == 401  # the data needs the key
    config = httpx.get(f"{url}/ui/config", headers={"Authorization": f"Bearer {API_KEY}"}).json()
    assert config["retrievers"] == ["sparse", "bm25"] and config["judgements"]["qrels"] == QRELS
    assert config["judgements"]["queries"] == {"q1": QUERY, "q2": "wing lift"}


def test_compare_two_configurations_in_chromium(chromium, served, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    url, searcher = served
    browser.get(f"{url}/ui")
    # Without the key the page says so and puts the focus on the key field.
    wait_for(browser, lambda d: "API key" in d.find_element(By.ID, "status").text, "the key prompt")
    assert browser.switch_to.active_element.get_attribute("id") == "api-key"
    browser.switch_to.active_element.send_keys(API_KEY, Keys.ENTER)
    wait_for(browser, lambda d: d.find_element(By.ID, "status").text.startswith("Ready"), "the configuration")
    assert browser.find_element(By.ID, "api-key").get_attribute("value") == ""  # not left in the field
    assert browser.execute_script("return window.localStorage.length + window.sessionStorage.length") == 0
    assert API_KEY not in browser.current_url

    # Every control has a label (keyboard and screen-reader use).
    unlabelled = browser.execute_script(
        "return [...document.querySelectorAll('input, select, button')].filter(c => c.type !== 'submit' && "
        "!(c.labels && c.labels.length) && !c.getAttribute('aria-label')).map(c => c.id)"
    )
    assert unlabelled == []

    # Column B: BM25 with its own top choice; column A stays hybrid with RRF, sparse weighted 2.
    Select(browser.find_element(By.ID, "b-mode")).select_by_value("bm25")
    assert not browser.find_element(By.ID, "b-fusion").is_enabled()  # nothing to fuse in one retriever
    Select(browser.find_element(By.ID, "a-fusion")).select_by_value("rrf")
    browser.find_element(By.ID, "a-weight-sparse").send_keys("2")
    Select(browser.find_element(By.ID, "judged")).select_by_value(QUERY_ID)
    assert browser.find_element(By.ID, "query").get_attribute("value") == QUERY  # the judged query's text
    top_k = browser.find_element(By.ID, "top-k")
    top_k.clear()
    top_k.send_keys("6", Keys.ENTER)  # Enter submits
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#col-b .hit")) > 0, "column B's hits")
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#col-a .hit")) > 0, "column A's hits")

    expected = {
        "a": searcher.search(QUERY, top_k=6, mode="hybrid", fusion="rrf", weights={"sparse": 2, "bm25": 1}),
        "b": searcher.search(QUERY, top_k=6, mode="bm25"),
    }
    shown = {
        col: [h.get_attribute("data-doc-id") for h in browser.find_elements(By.CSS_SELECTOR, f"#col-{col} .hit")]
        for col in "ab"
    }
    assert shown == {col: [h.doc_id for h in hits] for col, hits in expected.items()}
    assert shown["a"] != shown["b"]  # the configurations differ, so the comparison shows something

    # Bars: one row per retriever that found the hit; RRF shares of the fused score add up to 100 %.
    for hit, element in zip(expected["a"], browser.find_elements(By.CSS_SELECTOR, "#col-a .hit")):
        rows = element.find_elements(By.CSS_SELECTOR, ".ev[data-retriever]")
        found = sorted(hit.explanation.retrievers, key=lambda e: searcher.retrievers.index(e.retriever))
        assert [r.get_attribute("data-retriever") for r in rows] == [e.retriever for e in found]
        shares = []
        for row, ev in zip(rows, found):
            rank_fill, contrib_fill = row.find_elements(By.CSS_SELECTOR, ".fill")
            assert rank_fill.value_of_css_property("width") != "0px"
            assert contrib_fill.value_of_css_property("width") != "0px"
            assert f"#{ev.rank}" in row.text
            weight = {"sparse": 2.0, "bm25": 1.0}[ev.retriever]
            contribution = weight / (searcher.rrf_k + ev.rank)
            assert math.isclose(float(row.get_attribute("data-contribution")), contribution, rel_tol=1e-9)
            assert f"{round(100 * contribution / hit.explanation.fused_score)}%" in row.text
            shares.append(contribution / hit.explanation.fused_score)
        assert math.isclose(sum(shares), 1.0, rel_tol=1e-6)
        if "sparse" in [e.retriever for e in hit.explanation.retrievers]:
            tokens = [t.text.split("\n")[0] for t in element.find_elements(By.CSS_SELECTOR, ".token")]
            assert tokens and tokens[0].startswith(hit.explanation.sparse_tokens[0][0])

    # Moves between the columns are marked against the other column's ranks.
    rank_b = {d: i + 1 for i, d in enumerate(shown["b"])}
    for i, element in enumerate(browser.find_elements(By.CSS_SELECTOR, "#col-a .hit")):
        doc = shown["a"][i]
        classes = element.get_attribute("class").split()
        if doc not in rank_b:
            assert "only-here" in classes and "not in B" in element.text
        elif rank_b[doc] != i + 1:
            assert "moved" in classes and f"{abs(rank_b[doc] - (i + 1))} vs B" in element.text

    # Judgements: relevant hits marked, NDCG@10 per column equal to trec_eval's.
    for col in "ab":
        for doc, element in zip(shown[col], browser.find_elements(By.CSS_SELECTOR, f"#col-{col} .hit")):
            assert ("relevant" in element.get_attribute("class").split()) == (QRELS[QUERY_ID].get(doc, 0) > 0)
        ndcg = float(browser.find_element(By.CSS_SELECTOR, f"#col-{col} .ndcg").get_attribute("data-ndcg"))
        assert math.isclose(ndcg, trec_ndcg10(shown[col], QRELS[QUERY_ID]), rel_tol=1e-9)

    shot = artefact_dir(tmp_path) / "ui-compare.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")

    # Judgements chosen in the page (TREC format) replace the service's, read by the browser.
    bad = tmp_path / "bad.qrels"
    bad.write_text("q1 0 d4\n")
    browser.find_element(By.ID, "qrels-file").send_keys(str(bad))
    wait_for(browser, lambda d: "line 1" in d.find_element(By.ID, "status").text, "the bad file's error")
    uploaded = {"d4": 3, "d2": 1, "d9": 0}
    trec = tmp_path / "mine.qrels"
    trec.write_text("".join(f"{QUERY_ID} 0 {d} {g}\n" for d, g in uploaded.items()))
    browser.find_element(By.ID, "qrels-file").send_keys(str(trec))
    wait_for(browser, lambda d: "mine.qrels" in d.find_element(By.ID, "judgement-source").text, "the uploaded qrels")
    assert Select(browser.find_element(By.ID, "judged")).first_selected_option.get_attribute("value") == QUERY_ID
    for col in "ab":
        ndcg = float(browser.find_element(By.CSS_SELECTOR, f"#col-{col} .ndcg").get_attribute("data-ndcg"))
        assert math.isclose(ndcg, trec_ndcg10(shown[col], uploaded), rel_tol=1e-9)

    # Nothing outside the service was requested: not by the page, and nothing on the network at
    # all but the service (the browser's own chrome:// pages are not network requests).
    sent = [
        json.loads(entry["message"])["message"]["params"]
        for entry in browser.get_log("performance")
        if '"Network.requestWillBeSent"' in entry["message"]
    ]
    by_page = [p["request"]["url"] for p in sent if p.get("documentURL", "").startswith(url + "/")]
    assert any(u == f"{url}/search" for u in by_page) and any(u == f"{url}/ui/ui.js" for u in by_page)
    assert [u for u in by_page if not u.startswith((url + "/", "data:"))] == []
    on_network = [
        p["request"]["url"] for p in sent if p["request"]["url"].startswith(("http:", "https:", "ws:", "wss:"))
    ]
    assert [u for u in on_network if not u.startswith(url + "/")] == []
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and "401" not in e["message"]] == []
