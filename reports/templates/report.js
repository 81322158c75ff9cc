// The heatmap and the drill-down, drawn from the embedded JSON. Text from results files only ever goes through
// textContent/title (never innerHTML), so a hostile message stays inert. All view state lives in the URL hash
// (e.g. #subject=greenlight&category=context&q=lazy&cell=py3.12-sa2.1-pa1), so any view can be linked.
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("report-data").textContent);
  const PLUGIN = document.body.dataset.plugin;
  const FILTERS = ["subject", "category", "database", "driver", "python", "sqlalchemy", "pytest_asyncio", "verdict"];
  const SYMBOLS = { works: "✓", broken: "✗", skipped: "–", "not-run": "○" };
  const MAX_COLUMNS = 400;
  const form = document.getElementById("filters");
  const natural = (a, b) => String(a).localeCompare(String(b), undefined, { numeric: true });

  const entries = [];
  for (const r of DATA.results) for (const s of r.scenarios) entries.push({ r: r, s: s });
  const axis = {
    subject: (e) => e.r.subject.name, category: (e) => e.s.category, database: (e) => e.s.database,
    driver: (e) => e.s.driver, python: (e) => e.r.cell.python, sqlalchemy: (e) => e.r.cell.sqlalchemy,
    pytest_asyncio: (e) => e.r.cell.pytest_asyncio, verdict: (e) => e.s.verdict,
  };

  // The data stores each scenario's "checks" sentence once (see reports/loading.py to_data).
  const checksOf = (s) => s.checks || DATA.checks[s.id] || "";

  function el(tag, text, attrs) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    return node;
  }

  for (const name of FILTERS) {
    const select = form.elements[name];
    select.append(el("option", "all", { value: "" }));
    for (const v of [...new Set(entries.map(axis[name]))].sort(natural)) select.append(el("option", v, { value: v }));
  }

  function readState() {
    const raw = location.hash.slice(1);
    const params = new URLSearchParams(raw.includes("=") ? raw : "");
    if (!params.has("subject") && entries.some((e) => axis.subject(e) === PLUGIN)) params.set("subject", PLUGIN);
    return params;
  }

  function writeState(params, navigate) {
    const hash = "#" + params.toString();
    if (navigate) location.hash = hash; else { history.replaceState(null, "", hash); render(false); }
  }

  function formToState() {
    const params = readState();
    for (const name of [...FILTERS, "q"]) {
      const value = form.elements[name].value;
      if (value) params.set(name, value); else params.delete(name);
    }
    if (!form.elements.subject.value) params.set("subject", "");
    return params;
  }

  function matches(e, params) {
    for (const name of FILTERS) {
      const want = params.get(name);
      if (want && axis[name](e) !== want) return false;
    }
    const q = (params.get("q") || "").toLowerCase();
    if (!q) return true;
    const hay = [e.s.id, e.s.category, checksOf(e.s), e.s.message, e.s.exception, e.s.database, e.s.driver, e.r.cell.id,
      e.r.subject.name, e.s.outcome].join("\n").toLowerCase();
    return hay.includes(q);
  }

  function renderHeatmap(params) {
    const table = document.getElementById("heatmap-table");
    table.replaceChildren();
    const shown = entries.filter((e) => matches(e, params));
    const allSubjects = !params.get("subject");
    const colKey = (e) =>
      [e.r.cell.id, e.s.database, e.s.driver, ...(allSubjects ? [e.r.subject.name] : [])].join(" · ");
    let columns = [...new Set(shown.map(colKey))].sort(natural);
    // Rows are scenario ids, grouped by category (ids are unique across categories).
    const category = new Map(shown.map((e) => [e.s.id, e.s.category]));
    const rows = [...category.keys()].sort((a, b) => natural(category.get(a), category.get(b)) || natural(a, b));
    const status = document.getElementById("heatmap-status");
    const counts = {};
    for (const e of shown) counts[e.s.verdict] = (counts[e.s.verdict] || 0) + 1;
    const total = columns.length;
    if (columns.length > MAX_COLUMNS) columns = columns.slice(0, MAX_COLUMNS);
    status.textContent = `${rows.length} scenarios × ${total} cells` +
      (total > columns.length ? ` (showing the first ${columns.length}: narrow the filters)` : "") + " · " +
      Object.keys(counts).sort().map((k) => `${counts[k]} ${k}`).join(" · ");
    if (!shown.length) { status.textContent = "Nothing matches these filters."; return; }
    const byKey = new Map();
    for (const e of shown) byKey.set(colKey(e) + "\u0000" + e.s.id, e);
    const head = el("tr");
    head.append(el("th", "scenario"));
    for (const c of columns) head.append(el("th", c, { class: "col", scope: "col" }));
    const thead = el("thead");
    thead.append(head);
    table.append(thead);
    const body = el("tbody");
    for (const row of rows) {
      const tr = el("tr");
      tr.append(el("th", row, { class: "row", scope: "row" }));
      for (const c of columns) {
        const e = byKey.get(c + "\u0000" + row);
        if (!e) { tr.append(el("td", "", { class: "empty" })); continue; }
        const td = el("td", SYMBOLS[e.s.verdict] || "?", {
          class: "v-" + e.s.verdict, tabindex: 0, "data-verdict": e.s.verdict, "data-cell": e.r.cell.id,
          "data-subject": e.r.subject.name, "data-database": e.s.database, "data-driver": e.s.driver,
          "data-scenario": e.s.id,
          title: `${e.s.verdict}: ${e.s.outcome}` + (e.s.message ? ` — ${e.s.message.slice(0, 300)}` : ""),
          "aria-label": `${row} in ${c}: ${e.s.verdict}`,
        });
        tr.append(td);
      }
      body.append(tr);
    }
    table.append(body);
  }

  function table(headers, rows) {
    const t = el("table");
    const tr = el("tr");
    for (const h of headers) tr.append(el("th", h));
    const thead = el("thead");
    thead.append(tr);
    t.append(thead);
    const body = el("tbody");
    for (const row of rows) {
      const r = el("tr");
      for (const cell of row) {
        const td = el("td");
        if (cell instanceof Node) td.append(cell);
        else td.textContent = cell === null || cell === undefined ? "—" : String(cell);
        r.append(td);
      }
      body.append(r);
    }
    t.append(body);
    return t;
  }

  function renderDrilldown(params, scroll) {
    const section = document.getElementById("drilldown");
    const cellId = params.get("cell");
    if (!cellId) { section.hidden = true; return; }
    const subject = params.get("subject") || PLUGIN;
    const database = params.get("database");
    const focus = params.get("scenario");
    const focusAt = params.get("at");
    const result = DATA.results.find((r) => r.cell.id === cellId && r.subject.name === subject);
    const body = document.getElementById("dd-body");
    body.replaceChildren();
    document.getElementById("dd-title").textContent = `${cellId} · ${subject}` + (database ? ` · ${database}` : "");
    section.hidden = false;
    if (!result) {
      body.append(el("p", `No results file for cell ${cellId} with subject ${subject}.`));
    } else {
      const c = result.cell;
      body.append(el("p", `Python ${c.python} · SQLAlchemy ${c.sqlalchemy} · pytest-asyncio ${c.pytest_asyncio} · ` +
        `status ${result.status}` + (result.reason ? ` (${result.reason})` : "") +
        ` · requirement ${result.subject.requirement || "none"} · file ${result.file} · run ${result.run_id}`,
      { class: "msg", id: "dd-status" }));
      body.append(el("h3", "Resolved versions"));
      const versions = Object.entries(result.versions).sort((a, b) => natural(a[0], b[0]));
      body.append(versions.length ? table(["package", "version"], versions)
        : el("p", "No versions recorded: the environment was never built."));
      body.lastChild.id = "dd-versions";
      body.append(el("h3", "Databases"));
      body.append(table(["database", "driver", "status", "server version", "reason"],
        result.databases.map((d) => [d.name, d.driver, d.status, d.server_version, d.reason])));
      body.lastChild.id = "dd-databases";
      const scenarios = result.scenarios.filter((s) => !database || s.database === database);
      body.append(el("h3", `Scenarios (${scenarios.length}` + (database ? ` on ${database}` : "") + ")"));
      const rows = scenarios.map((s) => {
        const verdict = el("span", `${SYMBOLS[s.verdict] || "?"} ${s.verdict}`, { class: "v v-" + s.verdict });
        const message = s.message ? el("pre", s.message, { class: "msg" }) : "—";
        let trace = "—";
        if (s.traceback) {
          trace = el("details");
          trace.append(el("summary", "traceback"), el("pre", s.traceback));
        }
        const duration = typeof s.duration === "number" ? s.duration.toFixed(3) + " s" : null;
        const name = el("span", s.id);
        name.append(el("small", checksOf(s), { class: "reason" }));
        // A scenario that does not depend on the database ran once per cell; its result stands for every database.
        // One that depends on neither pytest-asyncio nor pytest ran once across the cells that differ only there
        // (ran_in): its verdict is still judged against this cell's expectation.
        let where = s.ran_on ? `${s.database} / ${s.driver} (result of the run on ${s.ran_on}: ` +
          "this scenario does not depend on the database)" : `${s.database} / ${s.driver}`;
        if (s.ran_in) {
          where += ` (result of the run in cell ${s.ran_in}: this scenario does not depend on pytest-asyncio ` +
            "or pytest)";
        }
        return [name, s.category, where, s.expected, s.outcome, s.exception, verdict,
          s.ran_on || s.ran_in ? null : duration, message, trace];
      });
      const t = table(["scenario", "category", "database / driver", "expected", "outcome", "exception", "verdict",
        "duration", "message", "traceback"], rows);
      t.id = "dd-scenarios";
      scenarios.forEach((s, i) => {
        if (s.id === focus && (!focusAt || `${s.database}/${s.driver}` === focusAt)) {
          t.tBodies[0].rows[i].classList.add("focus");
        }
      });
      body.append(t);
    }
    if (scroll) section.scrollIntoView();
  }

  function render(scroll) {
    const params = readState();
    for (const name of [...FILTERS, "q"]) form.elements[name].value = params.get(name) || "";
    renderHeatmap(params);
    renderDrilldown(params, scroll);
  }

  form.addEventListener("input", () => writeState(formToState(), false));
  document.getElementById("reset").addEventListener("click", () => writeState(new URLSearchParams(), false));
  document.getElementById("dd-close").addEventListener("click", () => {
    const params = readState();
    for (const key of ["cell", "scenario", "at"]) params.delete(key);
    writeState(params, false);
  });
  function openCell(td) {
    if (!td || !td.dataset.cell) return;
    const params = readState();
    params.set("cell", td.dataset.cell); params.set("subject", td.dataset.subject);
    params.set("scenario", td.dataset.scenario);
    params.set("at", `${td.dataset.database}/${td.dataset.driver}`);
    writeState(params, true);
  }
  const heat = document.getElementById("heatmap-table");
  heat.addEventListener("click", (ev) => openCell(ev.target.closest("td")));
  heat.addEventListener("keydown", (ev) => { if (ev.key === "Enter") openCell(ev.target.closest("td")); });
  document.getElementById("download").addEventListener("click", () => {
    const blob = new Blob([document.getElementById("report-data").textContent], { type: "application/json" });
    const link = el("a", "", { href: URL.createObjectURL(blob), download: "greenlight-report-data.json" });
    document.body.append(link); link.click(); link.remove();
  });
  window.addEventListener("hashchange", () => render(true));
  render(location.hash.includes("cell="));
})();
