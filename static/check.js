// One check's page: figures, the latency chart (uPlot), 90 daily segments, the status changes
// and recent results, kept live by the shared connection (live.js). Plain JavaScript, no build.
"use strict";

(function () {
  const config = window.CH_CONFIG;
  let data = JSON.parse(document.getElementById("check-data").textContent);
  // The server sends this page its own check only (its socket asks for ?check=<id>); the ids
  // are compared anyway, as a rename keeps the id.
  const id = data.id;
  let name = data.check.name;
  const RESULTS_SHOWN = 30;
  // The chart's hourly figures change slowly: fetched again at most this often while open.
  const REFRESH_MS = 60000;
  const $ = (id) => document.getElementById(id);
  let plot = null;
  let live = null;

  // ---- figures ------------------------------------------------------------------------------
  function formatPercent(value) {
    if (value == null) return "–";
    return value === 100 ? "100 %" : `${(Math.floor(value * 100) / 100).toFixed(2)} %`;
  }

  const formatMs = window.CHChart.formatMs;

  function renderFigures() {
    document.querySelectorAll("[data-uptime]").forEach((el) => {
      el.querySelector(".value").textContent = formatPercent(data.uptime[el.dataset.uptime]);
    });
    const latency = data.latency[data.range] || {};
    document.querySelectorAll("[data-latency]").forEach((el) => {
      el.querySelector(".value").textContent = formatMs(latency[el.dataset.latency]);
      el.querySelector(".label").textContent = `${el.dataset.latency} ${data.range}`;
    });
  }

  function renderHead(check) {
    const badge = $("status");
    badge.className = `badge badge-${check.status}`;
    badge.textContent = check.status.toUpperCase();
    $("flapping").hidden = !check.flapping;
    document.title = `${check.status === "up" ? "" : `(${check.status.toUpperCase()}) `}${name} · Connection Health`;
    if (check.since) {
      const at = new Date(check.since);
      $("since").textContent = `since ${at.toISOString().slice(0, 16).replace("T", " ")} UTC`;
    }
    const message = $("message");
    message.textContent = check.status === "up" ? "" : (check.error_message || "");
    message.hidden = !message.textContent;
  }

  // ---- chart (latency_chart.js) --------------------------------------------------------------
  function renderChart() {
    const el = $("chart");
    const empty = !data.series.some((p) => p.p50 != null);
    $("chart-empty").hidden = !empty;
    el.hidden = empty;
    if (plot) { plot.destroy(); plot = null; }
    if (!empty) plot = window.CHChart.draw(el, data.series, data.series_span);
  }

  // Light and dark follow the system: colours are read when the chart is made.
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", renderChart);

  // ---- 90 days --------------------------------------------------------------------------------
  function barClass(bar) {
    if (bar.uptime == null) return "none";
    if (bar.uptime >= 99.9) return "up";
    if (bar.uptime >= 95) return "degraded";
    return "down";
  }

  function renderBars() {
    const segments = data.bars.map((bar) => {
      const span = document.createElement("span");
      span.className = `bar bar-${barClass(bar)}`;
      span.title = bar.uptime == null ? `${bar.day}: no results`
        : `${bar.day}: ${formatPercent(bar.uptime)} (${bar.failures} of ${bar.results} failed)`;
      return span;
    });
    $("bars").replaceChildren(...segments);
    $("bars-uptime").textContent = data.uptime["90d"] == null ? "" : `${formatPercent(data.uptime["90d"])} uptime`;
  }

  // ---- changes and results --------------------------------------------------------------------
  function changeItem(change) {
    const li = document.createElement("li");
    const when = document.createElement("time");
    when.dateTime = change.at;
    when.textContent = stamp(change.at);
    const move = document.createElement("span");
    move.className = "move";
    const to = document.createElement("span");
    to.className = `badge badge-${change.to}`;
    to.textContent = change.to.toUpperCase();
    move.append(`${change.from.toUpperCase()} → `, to);
    if (change.during_maintenance) move.append(" (during maintenance)");
    li.append(when, move);
    if (change.reason_category || change.reason_message) {
      const why = document.createElement("p");
      why.className = "reason";
      why.textContent = [change.reason_category, change.reason_message].filter(Boolean).join(": ");
      li.append(why);
    }
    return li;
  }

  function renderChanges() {
    $("changes").replaceChildren(...data.changes.map(changeItem));
    $("changes-empty").hidden = data.changes.length > 0;
  }

  function resultRow(result) {
    const tr = document.createElement("tr");
    const cells = [
      stamp(result.checked_at),
      result.ok ? "OK" : "FAILED",
      formatMs(result.latency_ms),
      result.ok ? (result.http_status ? `HTTP ${result.http_status}` : "") :
        [result.error_category, result.error_message].filter(Boolean).join(": "),
    ];
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (i === 1) td.className = result.ok ? "ok" : "failed";
      if (i === 2) td.className = "num";
      if (i === 3) td.className = "error";
      tr.appendChild(td);
    });
    return tr;
  }

  function renderResults() {
    $("results").querySelector("tbody").replaceChildren(...data.results.map(resultRow));
    $("results-empty").hidden = data.results.length > 0;
  }

  function stamp(iso) {
    return new Date(iso).toISOString().slice(0, 19).replace("T", " ");
  }

  function renderAll() {
    renderHead(data.check);
    renderFigures();
    renderChart();
    renderBars();
    renderChanges();
    renderResults();
  }

  // ---- live -----------------------------------------------------------------------------------
  let lastFetch = Date.now();
  let fetching = false;
  let again = null;  // a refresh asked for while one runs: run after it, with the latest range
  let chosen = null;  // the range last clicked: a live refresh keeps it, even mid-fetch

  async function refresh(range) {
    if (range) chosen = range;
    const wanted = range || (again && again.range) || chosen || data.range;
    if (fetching) { again = { range: wanted }; return; }
    fetching = true;
    again = null;
    try {
      const response = await fetch(`${config.dataUrl}?range=${encodeURIComponent(wanted)}`,
        { credentials: "same-origin" });
      if (response.ok) { data = await response.json(); lastFetch = Date.now(); renderAll(); }
    } catch (e) {
      // The connection's own status line says when the server is away; the next event retries.
    } finally {
      fetching = false;
      if (again) refresh(again.range);
    }
  }

  function onResult(event) {
    if (!event.check || event.check.id !== id) return;
    name = event.check.name;
    data.check = { ...data.check, ...event.check };
    if (event.uptime) data.uptime = event.uptime;
    if (event.latency_24h) data.latency["24h"] = event.latency_24h;
    const known = data.results.some((r) => r.checked_at === event.result.checked_at);
    if (!known) data.results = [event.result, ...data.results].slice(0, RESULTS_SHOWN);
    const today = data.bars[data.bars.length - 1];
    if (!known && today && event.result.checked_at.slice(0, 10) === today.day) {
      today.results += 1;
      today.failures += event.result.ok ? 0 : 1;
      today.uptime = 100 * (today.results - today.failures) / today.results;
    }
    renderHead(data.check);
    renderFigures();
    renderBars();
    renderResults();
    if (Date.now() - lastFetch > REFRESH_MS) refresh();
  }

  function onStatus(event) {
    if (event.id !== id) return;
    data.check.flapping = Boolean(event.flapping);
    if (!(event.during_maintenance && event.to !== "maintenance")) data.check.status = event.to;
    // The change's reason and time are stored: read them back rather than guess.
    refresh();
  }

  // A snapshot comes in parts (docs/EVENTS.md): the check may be in any of them.
  let looking = null;
  function onSnapshot(snapshot) {
    looking = { parts: snapshot.parts || 0 };
    lookFor(snapshot.checks, 0);
  }
  function onSnapshotPart(part) {
    if (looking) lookFor(part.checks, part.part);
  }
  function lookFor(checks, part) {
    if ((checks || []).some((c) => c.id === id)) {
      looking = null;
      // After a reconnect events may have been missed: read the page's figures again.
      if (live && Date.now() - lastFetch > 1000) refresh();
    } else if (part >= looking.parts) {
      looking = null;
      showBanner("This check no longer exists.");
    }
  }

  function setConnection(kind, text) {
    $("connection").className = `conn conn-${kind}`;
    $("connection-text").textContent = text || kind;
  }
  function showBanner(text) { const b = $("banner"); b.textContent = text; b.hidden = false; }

  document.querySelector(".ranges").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-range]");
    if (!button) return;
    document.querySelectorAll(".ranges button").forEach((b) => {
      b.setAttribute("aria-pressed", String(b === button));
    });
    refresh(button.dataset.range);
  });

  renderAll();
  live = window.CHLive.start(config, {
    frame(frame) {
      const d = frame.data || {};
      if (frame.type === "updates") {
        // One frame a flush: every result, then every change of status (docs/EVENTS.md).
        (d.results || []).forEach(onResult);
        (d.statuses || []).forEach(onStatus);
      } else if (frame.type === "snapshot") onSnapshot(d);
      else if (frame.type === "snapshot.part") onSnapshotPart(d);
      else if (frame.type === "layer.status") {
        setConnection(d.ok ? "connected" : "reconnecting", d.ok ? "" : "live updates paused");
      }
    },
    connection: setConnection,
    banner: showBanner,
  });
})();
