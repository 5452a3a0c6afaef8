// The relevance page: two configurations of one query side by side. No framework, no network
// beyond this service; the API key lives in this closure only (never in storage or the URL).
"use strict";

(function () {
  const NDCG_DEPTH = 10;
  const state = {
    key: null, // the API key, in memory only
    config: null, // /ui/config: retrievers, default fusion, judgements
    qrels: {}, // query id -> doc id -> gain
    queries: {}, // query id -> text (when known)
    results: { a: null, b: null }, // last hits per column
  };
  const $ = (sel, root) => (root || document).querySelector(sel);

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function setStatus(text, kind) {
    const status = $("#status");
    status.textContent = text;
    status.dataset.kind = kind || "info";
  }

  async function api(path, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (state.key) headers.Authorization = "Bearer " + state.key;
    const response = await fetch(path, {
      method: body === undefined ? "GET" : "POST",
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
    });
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      const detail = data && data.detail ? data.detail : response.statusText;
      const error = new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
      error.status = response.status;
      throw error;
    }
    return data;
  }

  // ---- columns -----------------------------------------------------------------------------

  function buildColumn(section, name, defaults) {
    const template = $("#column-template").content.cloneNode(true);
    section.appendChild(template);
    const title = $(".column-title", section);
    title.id = "col-" + name + "-title";
    title.textContent = "Configuration " + name.toUpperCase();
    for (const control of section.querySelectorAll("[data-id]")) {
      control.id = name + "-" + control.dataset.id;
    }
    for (const label of section.querySelectorAll("label[data-for]")) {
      label.htmlFor = name + "-" + label.dataset.for;
    }
    const fusion = $("#" + name + "-fusion");
    for (const method of state.config.fusions) fusion.appendChild(new Option(method, method));
    $("#" + name + "-mode").value = defaults.mode;
    fusion.value = defaults.fusion;
    $("#" + name + "-rerank").disabled = !state.config.reranker;
    const mode = $("#" + name + "-mode");
    const fusionControls = () => {
      // Fusion, its k and the weights only apply when several retrievers are fused.
      const fused = mode.value === "hybrid";
      for (const control of section.querySelectorAll(".fusion-control")) control.disabled = !fused;
    };
    mode.addEventListener("change", fusionControls);
    const weights = $(".weights", section);
    weights.setAttribute("aria-label", "Weights for configuration " + name.toUpperCase());
    for (const retriever of state.config.retrievers) {
      const field = el("div", "field narrow");
      const input = el("input");
      input.id = name + "-weight-" + retriever;
      input.type = "number";
      input.min = "0";
      input.step = "0.1";
      input.placeholder = String(state.config.weights[retriever] ?? 1);
      input.dataset.retriever = retriever;
      input.className = "fusion-control";
      const label = el("label", null, retriever + " weight");
      label.htmlFor = input.id;
      field.append(label, input);
      weights.appendChild(field);
    }
    fusionControls();
  }

  function columnRequest(name, query, topK) {
    const body = { query, top_k: topK, mode: $("#" + name + "-mode").value, explain: true };
    const fusion = $("#" + name + "-fusion").value;
    if (fusion) body.fusion = fusion;
    const rrfK = $("#" + name + "-rrf-k").value;
    if (rrfK !== "") body.rrf_k = parseInt(rrfK, 10);
    if ($("#" + name + "-rerank").checked) body.rerank = true;
    const weights = {};
    for (const input of document.querySelectorAll("#col-" + name + " .weights input")) {
      if (input.value !== "") weights[input.dataset.retriever] = parseFloat(input.value);
    }
    if (Object.keys(weights).length) {
      // A weight left empty keeps the service's value for that retriever.
      for (const retriever of state.config.retrievers) {
        if (!(retriever in weights)) weights[retriever] = state.config.weights[retriever] ?? 1;
      }
      body.weights = weights;
    }
    return body;
  }

  /** The fusion a column's hits were fused with, with the k and weights RRF needs. */
  function effectiveFusion(request) {
    return {
      method: request.fusion || state.config.fusion,
      k: request.rrf_k ?? state.config.rrf_k,
      weights: request.weights || state.config.weights,
    };
  }

  // ---- judgements --------------------------------------------------------------------------

  /** NDCG@10 with linear gains and log2 discounts (trec_eval's ndcg_cut_10). */
  function ndcgAt(docIds, judged, depth) {
    let dcg = 0;
    docIds.slice(0, depth).forEach((doc, i) => {
      const gain = judged[doc] || 0;
      if (gain > 0) dcg += gain / Math.log2(i + 2);
    });
    const ideal = Object.values(judged)
      .filter((g) => g > 0)
      .sort((x, y) => y - x)
      .slice(0, depth);
    let idcg = 0;
    ideal.forEach((gain, i) => {
      idcg += gain / Math.log2(i + 2);
    });
    return idcg > 0 ? dcg / idcg : null;
  }

  /** BEIR qrels (header ``query-id corpus-id score``) or TREC qrels (``qid 0 doc gain``). */
  function parseQrels(text) {
    const qrels = {};
    const lines = text.split(/\r?\n/);
    lines.forEach((line, index) => {
      const fields = line.trim().split(/\s+/);
      if (!line.trim() || (index === 0 && fields[0] === "query-id")) return;
      let qid, doc, gain;
      if (fields.length === 3) [qid, doc, gain] = fields;
      else if (fields.length === 4) [qid, , doc, gain] = fields;
      else throw new Error("line " + (index + 1) + ": expected 3 (BEIR) or 4 (TREC) fields, got " + fields.length);
      const value = Number(gain);
      if (!Number.isFinite(value)) throw new Error("line " + (index + 1) + " (query " + qid + "): score is not a number: " + gain);
      (qrels[qid] = qrels[qid] || {})[doc] = Math.trunc(value);
    });
    return qrels;
  }

  function useJudgements(qrels, queries, source) {
    state.qrels = qrels;
    state.queries = queries;
    const select = $("#judged");
    const previous = select.value; // kept when the new judgements have that query too
    select.replaceChildren(new Option("no judgements", ""));
    const ids = Object.keys(qrels).sort((x, y) => x.localeCompare(y, undefined, { numeric: true }));
    for (const qid of ids) {
      const text = queries[qid];
      select.appendChild(new Option(text ? qid + " · " + text.slice(0, 80) : qid, qid));
    }
    if (previous && previous in qrels) select.value = previous;
    $("#judgement-source").textContent = ids.length ? ids.length + " judged queries from " + source : "";
  }

  function selectedJudgements() {
    const qid = $("#judged").value;
    return qid ? state.qrels[qid] || {} : null;
  }

  // ---- rendering ---------------------------------------------------------------------------

  function bar(className, fraction, label) {
    const track = el("span", "bar " + className);
    track.setAttribute("role", "img");
    track.setAttribute("aria-label", label);
    const fill = el("span", "fill");
    fill.style.width = (Math.max(0, Math.min(1, fraction)) * 100).toFixed(1) + "%";
    track.appendChild(fill);
    return track;
  }

  function evidenceRows(hit, fusion, candidates, bestScores) {
    const rows = el("div", "evidence");
    const explanation = hit.explanation || {};
    const fused = explanation.fused_score;
    const order = state.config.retrievers;
    const evidence = [...(explanation.retrievers || [])].sort((x, y) => order.indexOf(x.retriever) - order.indexOf(y.retriever));
    for (const ev of evidence) {
      const row = el("div", "ev");
      row.dataset.retriever = ev.retriever;
      row.appendChild(el("span", "ev-name", ev.retriever));
      const rankFraction = (candidates - ev.rank + 1) / candidates;
      row.appendChild(bar("rank", rankFraction, ev.retriever + " rank " + ev.rank));
      row.appendChild(el("span", "ev-value", "#" + ev.rank));
      if (fusion.method === "rrf" && fused) {
        const weight = fusion.weights[ev.retriever] ?? 1;
        const contribution = weight / (fusion.k + ev.rank);
        row.dataset.contribution = String(contribution);
        row.appendChild(bar("contrib", contribution / fused, ev.retriever + " contributes " + contribution.toFixed(4)));
        row.appendChild(el("span", "ev-value", contribution.toFixed(4) + " (" + Math.round((100 * contribution) / fused) + "%)"));
      } else {
        const best = bestScores[ev.retriever] || 1;
        row.appendChild(bar("contrib", ev.score / best, ev.retriever + " score " + ev.score.toFixed(3)));
        row.appendChild(el("span", "ev-value", "score " + ev.score.toFixed(3)));
      }
      rows.appendChild(row);
    }
    if (explanation.rerank_score !== null && explanation.rerank_score !== undefined) {
      rows.appendChild(el("div", "ev rerank", "rerank score " + explanation.rerank_score.toFixed(3)));
    }
    const tokens = explanation.sparse_tokens || [];
    if (tokens.length) {
      const line = el("div", "tokens");
      const label = el("span", "muted", "sparse match");
      label.title = "query tokens the document shares, by query weight × document weight (the sparse retriever's evidence)";
      line.appendChild(label);
      for (const [token, weight] of tokens) {
        const chip = el("span", "token", token);
        chip.title = "query weight × document weight = " + weight.toFixed(3);
        chip.appendChild(el("small", null, weight.toFixed(2)));
        line.appendChild(chip);
      }
      rows.appendChild(line);
    }
    return rows;
  }

  function renderColumn(name) {
    const section = $("#col-" + name);
    const list = $(".hits", section);
    const summary = $(".column-summary", section);
    const result = state.results[name];
    list.replaceChildren();
    if (!result) return;
    const other = state.results[name === "a" ? "b" : "a"];
    const otherRanks = new Map((other ? other.hits : []).map((h, i) => [h.doc_id, i + 1]));
    const otherName = name === "a" ? "B" : "A";
    const judged = selectedJudgements();
    const fusion = effectiveFusion(result.request);
    const candidates = result.request.candidates || 100;
    const bestScores = {};
    for (const hit of result.hits) {
      for (const ev of (hit.explanation || {}).retrievers || []) {
        bestScores[ev.retriever] = Math.max(bestScores[ev.retriever] || 0, ev.score);
      }
    }
    result.hits.forEach((hit, i) => {
      const rank = i + 1;
      const item = el("li", "hit");
      item.dataset.docId = hit.doc_id;
      const head = el("div", "hit-head");
      head.appendChild(el("span", "hit-rank", rank));
      const title = el("span", "hit-title", hit.title || hit.doc_id);
      head.appendChild(title);
      head.appendChild(el("span", "hit-id", hit.doc_id));
      head.appendChild(el("span", "hit-score", hit.score.toFixed(4)));
      if (other) {
        const otherRank = otherRanks.get(hit.doc_id);
        let badge;
        if (otherRank === undefined) {
          item.classList.add("only-here");
          badge = el("span", "badge only", "not in " + otherName);
        } else if (otherRank !== rank) {
          item.classList.add("moved");
          const up = otherRank > rank;
          badge = el("span", "badge moved " + (up ? "up" : "down"), (up ? "▲ " : "▼ ") + Math.abs(otherRank - rank) + " vs " + otherName);
          badge.title = "rank " + otherRank + " in " + otherName;
        } else {
          badge = el("span", "badge same", "= " + otherName);
        }
        head.appendChild(badge);
      }
      if (judged) {
        const gain = judged[hit.doc_id];
        if (gain > 0) {
          item.classList.add("relevant");
          head.appendChild(el("span", "badge relevant", "relevant" + (gain > 1 ? " (" + gain + ")" : "")));
        } else if (gain !== undefined) {
          head.appendChild(el("span", "badge judged", "judged not relevant"));
        }
      }
      item.appendChild(head);
      const text = hit.text || "";
      item.appendChild(el("p", "snippet", text.length > 280 ? text.slice(0, 277) + "…" : text));
      item.appendChild(evidenceRows(hit, fusion, candidates, bestScores));
      list.appendChild(item);
    });
    const parts = [result.hits.length + " hits", result.took_ms.toFixed(1) + " ms"];
    if (result.request.mode === "hybrid") parts.push(fusion.method + (fusion.method === "rrf" ? " k=" + fusion.k : ""));
    if (judged) {
      const ndcg = ndcgAt(result.hits.map((h) => h.doc_id), judged, NDCG_DEPTH);
      const node = el("span", "ndcg", ndcg === null ? "NDCG@10 —" : "NDCG@10 " + ndcg.toFixed(4));
      node.dataset.ndcg = ndcg === null ? "" : String(ndcg);
      if (ndcg === null) node.title = "no relevant document judged for this query";
      summary.replaceChildren(el("span", null, parts.join(" · ") + " · "), node);
    } else {
      summary.replaceChildren(el("span", null, parts.join(" · ")));
    }
  }

  function renderAll() {
    renderColumn("a");
    renderColumn("b");
  }

  // ---- actions -----------------------------------------------------------------------------

  async function searchColumn(name, query, topK) {
    const section = $("#col-" + name);
    const error = $(".column-error", section);
    const request = columnRequest(name, query, topK);
    try {
      const data = await api("/search", request);
      error.hidden = true;
      state.results[name] = { hits: data.hits, took_ms: data.took_ms, request };
    } catch (exc) {
      state.results[name] = null;
      error.textContent = exc.message;
      error.hidden = false;
      if (exc.status === 401) throw exc;
    }
  }

  async function searchBoth(event) {
    event.preventDefault();
    if (!state.config && !(await loadConfig())) return;
    const query = $("#query").value.trim();
    if (!query) {
      $("#query").focus();
      return;
    }
    const topK = Math.max(1, parseInt($("#top-k").value, 10) || 10);
    setStatus("Searching…", "busy");
    document.body.setAttribute("aria-busy", "true");
    try {
      await Promise.all([searchColumn("a", query, topK), searchColumn("b", query, topK)]);
      setStatus("Searched “" + query + "”", "ok");
    } catch (exc) {
      needKey(exc.message);
    } finally {
      document.body.removeAttribute("aria-busy");
      renderAll();
    }
  }

  function needKey(message) {
    setStatus(message + " — enter the API key", "error");
    $("#api-key").focus();
  }

  async function loadConfig() {
    try {
      state.config = await api("/ui/config");
    } catch (exc) {
      if (exc.status === 401) needKey(exc.message);
      else setStatus("Could not load the service's configuration: " + exc.message, "error");
      return false;
    }
    if (!$("#col-a").childElementCount) {
      buildColumn($("#col-a"), "a", { mode: "hybrid", fusion: "" });
      buildColumn($("#col-b"), "b", { mode: state.config.retrievers.includes("sparse") ? "sparse" : "hybrid", fusion: "" });
    }
    const j = state.config.judgements;
    useJudgements(j.qrels, j.queries, j.source || "the service");
    const ready = state.config.retrievers.length
      ? "Ready: " + state.config.retrievers.join(", ") + " · default fusion " + state.config.fusion
      : "The service has no collection yet";
    setStatus(ready, "ok");
    return true;
  }

  function init() {
    $("#key-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const input = $("#api-key");
      state.key = input.value || null;
      input.value = "";
      input.placeholder = state.key ? "key set (kept in this page only)" : "only if the service needs one";
      if (await loadConfig()) $("#query").focus();
    });
    $("#search-form").addEventListener("submit", searchBoth);
    $("#judged").addEventListener("change", () => {
      const qid = $("#judged").value;
      if (qid && state.queries[qid]) $("#query").value = state.queries[qid];
      renderAll();
    });
    $("#qrels-file").addEventListener("change", async () => {
      const file = $("#qrels-file").files[0];
      if (!file) return;
      try {
        const qrels = parseQrels(await file.text());
        useJudgements(qrels, state.queries, file.name);
        setStatus("Loaded " + Object.keys(qrels).length + " judged queries from " + file.name, "ok");
      } catch (exc) {
        setStatus(file.name + ": " + exc.message, "error");
      }
      renderAll();
    });
    loadConfig().then((ok) => {
      if (ok) $("#query").focus();
    });
  }

  document.addEventListener("DOMContentLoaded", init);
})();
