// Connection Health live dashboard: one WebSocket, a snapshot on every (re)connect, live events
// after it. Plain JavaScript, no build step. The frame schema is in docs/EVENTS.md.
"use strict";

(function () {
  const config = window.CH_CONFIG;
  const SPARK_POINTS = 30;
  const STATUS_ORDER = ["down", "degraded", "unknown", "up", "maintenance", "paused"];

  const state = {
    checks: new Map(),   // name -> check (summary fields + spark + uptime)
    errors: [],
    clients: null,
    failedAlerts: 0,
    filter: { status: "", tag: "", text: "" },
  };
  const $ = (id) => document.getElementById(id);

  // ---- connection: the shared one (live.js) ------------------------------------------------
  let live = null;
  function serverNow() { return live ? live.serverNow() : Date.now(); }

  // ---- frames -----------------------------------------------------------------------------
  function handle(frame) {
    const data = frame.data || {};
    switch (frame.type) {
      case "snapshot": return applySnapshot(data);
      case "snapshot.part": return applySnapshotPart(data);
      case "updates": return applyUpdates(data);
      case "errors.updated": state.errors = data.errors || state.errors; return render();
      case "clients": state.clients = data.count; return renderHeader();
      case "layer.status": return applyLayerStatus(data);
      case "alerts.failed": state.failedAlerts = data.count || 0; return renderHeader();
      default: return undefined;  // pong, error and frames of newer versions
    }
  }

  function applySnapshot(data) {
    state.checks = new Map((data.checks || []).map((c) => [c.name, normaliseCheck(c)]));
    // The rest of the checks follow in snapshot.part frames (docs/EVENTS.md).
    state.loading = data.parts ? { total: data.total, parts: data.parts } : null;
    renderLoading();
    state.errors = data.errors || [];
    if (typeof data.clients === "number") state.clients = data.clients;
    if (typeof data.failed_alerts === "number") state.failedAlerts = data.failed_alerts;
    // The server refreshes the page with snapshots while its layer is away: keep saying so.
    if (state.layerPaused) showBanner(state.layerPaused); else hideBanner();
    render();
  }

  // A snapshot's further checks: added to the ones the snapshot frame brought.
  function applySnapshotPart(data) {
    (data.checks || []).forEach((c) => state.checks.set(c.name, normaliseCheck(c)));
    if (state.loading && data.part >= data.of) state.loading = null;
    renderLoading();
    render();
  }

  function renderLoading() {
    const el = $("loading");
    if (!el) return;
    el.hidden = !state.loading;
    if (state.loading) el.textContent = `loading checks: ${state.checks.size} of ${state.loading.total}`;
  }

  // Every result and status change since the server's last flush, in one frame (about one a
  // second): the results in order, then the changes of status in order.
  function applyUpdates(data) {
    (data.results || []).forEach(applyResult);
    (data.statuses || []).forEach(applyStatus);
  }

  // The server's own word on its channel layer: while it cannot reach it, no event arrives,
  // and a green "connected" would be a lie.
  function applyLayerStatus(data) {
    state.layerPaused = data.ok ? null : (data.message || "live updates paused");
    if (state.layerPaused) {
      setConnection("reconnecting", "live updates paused");
      showBanner(state.layerPaused);
    } else {
      setConnection("connected");
      hideBanner();
    }
  }

  function normaliseCheck(c) {
    const spark = (c.recent || []).map(storedPoint);
    return { ...c, spark: spark.slice(-SPARK_POINTS), uptime: c.uptime_24h ?? null };
  }

  // A snapshot's points are [time in ms, 1 or 0, latency] (docs/EVENTS.md); results in
  // updates are whole objects.
  function storedPoint(p) {
    return { t: p[0], ok: p[1] === 1, ms: p[2] };
  }

  function point(result) {
    return { t: Date.parse(result.checked_at), ok: result.ok, ms: result.latency_ms };
  }

  function applyResult(data) {
    const summary = data.check;
    if (!summary) return;
    const old = state.checks.get(summary.name) || { spark: [], uptime: null };
    // Events may repeat what the snapshot already holds: add each result once.
    const at = Date.parse(data.result.checked_at);
    const known = old.spark.some((p) => p.t === at);
    const spark = known ? old.spark : old.spark.concat([point(data.result)]);
    const next = { ...old, ...summary, spark: spark.slice(-SPARK_POINTS) };
    if (data.uptime_24h !== undefined) next.uptime = data.uptime_24h;
    state.checks.set(summary.name, next);
    if (old.status && old.status !== next.status) announce(next.name, old.status, next.status);
    render(summary.name);
  }

  function applyStatus(data) {
    const old = state.checks.get(data.name);
    if (!old) return;
    const check = { ...old, flapping: Boolean(data.flapping) };  // a new object: see renderChecks
    state.checks.set(data.name, check);
    // Inside a maintenance window the results still change what they say, but the card keeps
    // showing MAINTENANCE until the window ends.
    if (data.during_maintenance && data.to !== "maintenance") return render(data.name);
    if (check.status !== data.to) announce(data.name, data.from, data.to);
    check.status = data.to;
    render(data.name);
  }

  function announce(name, from, to) {
    $("announcer").textContent = `${name}: ${from} to ${to}`;
  }

  // ---- rendering --------------------------------------------------------------------------
  let renderPending = false;
  const flashNames = new Set();

  function render(changedName) {
    if (changedName) flashNames.add(changedName);
    if (renderPending) return;
    renderPending = true;
    // In a background tab animation frames stop; a timeout still renders, so the page is
    // current the moment it is shown again.
    const run = () => { if (renderPending) { renderPending = false; draw(); } };
    requestAnimationFrame(run);
    setTimeout(run, 250);
  }

  function draw() {
    renderHeader();
    renderFilters();
    renderChecks();
    renderErrors();
    flashNames.clear();
  }

  function overall() {
    const statuses = new Set([...state.checks.values()].map((c) => c.status));
    return STATUS_ORDER.find((s) => statuses.has(s)) || "unknown";
  }

  function renderHeader() {
    const status = overall();
    const pill = $("overall");
    pill.className = `pill pill-${status}`;
    pill.textContent = status.toUpperCase();
    document.title = `${status === "up" ? "" : `(${status.toUpperCase()}) `}Connection Health`;
    $("clients").textContent = state.clients == null ? "" :
      `${state.clients} ${state.clients === 1 ? "viewer" : "viewers"}`;
    // Alerts nobody received: a link to them in the admin, shown only when there are some.
    const failed = $("failed-alerts");
    failed.hidden = !state.failedAlerts;
    failed.textContent = `${state.failedAlerts} failed ${state.failedAlerts === 1 ? "alert" : "alerts"}`;
  }

  function renderFilters() {
    const counts = { "": state.checks.size };
    const tags = new Set();
    for (const c of state.checks.values()) {
      counts[c.status] = (counts[c.status] || 0) + 1;
      (c.tags || []).forEach((t) => tags.add(t));
    }
    document.querySelectorAll("[data-count]").forEach((el) => {
      el.textContent = counts[el.dataset.count] || 0;
    });
    const select = $("tag-filter");
    const wanted = ["", ...[...tags].sort()];
    const have = [...select.options].map((o) => o.value);
    if (wanted.join("\u0000") !== have.join("\u0000")) {
      select.replaceChildren(...wanted.map((t) => new Option(t || "all tags", t)));
      select.value = tags.has(state.filter.tag) ? state.filter.tag : "";
    }
  }

  function visibleChecks() {
    const { status, tag, text } = state.filter;
    const needle = text.trim().toLowerCase();
    return [...state.checks.values()]
      .filter((c) => !status || c.status === status)
      .filter((c) => !tag || (c.tags || []).includes(tag))
      .filter((c) => !needle || `${c.name} ${c.kind}`.toLowerCase().includes(needle))
      .sort((a, b) => STATUS_ORDER.indexOf(a.status) - STATUS_ORDER.indexOf(b.status)
        || a.name.localeCompare(b.name));
  }

  function renderChecks() {
    const list = $("checks");
    const checks = visibleChecks();
    const existing = new Map([...list.children].map((li) => [li.dataset.name, li]));
    const items = checks.map((c) => {
      const li = existing.get(c.name) || createItem();
      // A check's object is replaced whenever it changes: with a thousand checks and a frame
      // a second, only the changed rows are filled again.
      if (li.shownCheck !== c || flashNames.has(c.name)) {
        fillItem(li, c);
        li.shownCheck = c;
      }
      return li;
    });
    const children = list.children;
    const same = items.length === children.length && items.every((li, i) => li === children[i]);
    if (!same) list.replaceChildren(...items);
    $("empty").hidden = items.length > 0 || state.checks.size === 0;
    // A fresh install has only its self-checks: say how to add one.
    $("first-steps").hidden = ![...state.checks.values()].every((c) => (c.tags || []).includes("self"));
  }

  function createItem() {
    return $("check-template").content.firstElementChild.cloneNode(true);
  }

  function fillItem(li, c) {
    li.dataset.name = c.name;
    li.dataset.status = c.status;
    li.className = `check status-${c.status}`;
    const badge = li.querySelector(".badge");
    badge.className = `badge badge-${c.status}`;
    badge.textContent = c.status.toUpperCase();
    const flapping = li.querySelector(".flapping");
    flapping.hidden = !c.flapping;
    li.setAttribute("aria-label", `${c.name}: ${c.status}${c.flapping ? ", flapping" : ""}`);
    // The name opens the check's page (history, changes, results) when its id is known.
    const heading = li.querySelector(".name");
    heading.title = c.name;
    if (c.id != null) {
      const link = document.createElement("a");
      link.href = `${config.checkPath}${c.id}/`;
      link.textContent = c.name;
      heading.replaceChildren(link);
    } else {
      heading.textContent = c.name;
    }
    li.querySelector(".kind").textContent = c.kind;
    li.querySelector(".latency").textContent = formatMs(c.latency_ms);
    li.querySelector(".uptime").textContent = formatUptime(c.uptime);
    const since = li.querySelector(".since");
    since.dataset.at = c.last_checked_at || "";
    since.dataset.staleAfter = c.status === "paused" ? "" : String(c.stale_after_s ?? "");
    showSince(since);
    li.querySelector(".error").textContent = PROBLEMS[c.error_category] || c.error_category || "–";
    // The message says what the category only names ("HTTP 503, expected 200-399").
    const message = li.querySelector(".message");
    message.textContent = c.status === "up" ? "" : (c.error_message || "");
    message.hidden = !message.textContent;
    li.querySelector(".tags").replaceChildren(...(c.tags || []).map((t) => {
      const span = document.createElement("span");
      span.textContent = t;
      return span;
    }));
    drawSpark(li.querySelector(".spark"), c.spark || [], c.name);
    if (flashNames.has(c.name)) {
      li.classList.remove("flash");
      void li.offsetWidth;  // restart the animation
      li.classList.add("flash");
    }
  }

  function formatMs(ms) {
    if (ms == null) return "–";
    return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
  }

  function formatUptime(share) {
    if (share == null) return "–";
    return share === 1 ? "100 %" : `${(Math.floor(share * 10000) / 100).toFixed(2)} %`;
  }

  function drawSpark(svg, points, name) {
    const ns = "http://www.w3.org/2000/svg";
    const values = points.map((p) => (p.ms == null ? 0 : p.ms));
    const max = Math.max(1, ...values);
    const step = points.length > 1 ? 120 / (points.length - 1) : 0;
    const xy = values.map((v, i) => [i * step, 26 - (v / max) * 24]);
    // A lone point is a line of length zero: draw it across, level, so it is visible.
    if (points.length === 1) xy.push([120, xy[0][1]]);
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", xy.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" "));
    const fails = points.map((p, i) => [p, xy[i]]).filter(([p]) => !p.ok).map(([, [x, y]]) => {
      const dot = document.createElementNS(ns, "circle");
      dot.setAttribute("class", "fail");
      dot.setAttribute("cx", x.toFixed(1));
      dot.setAttribute("cy", y.toFixed(1));
      dot.setAttribute("r", "2.2");
      return dot;
    });
    const dots = points.length < 3 ? xy.slice(0, points.length).map(([x, y]) => {
      const dot = document.createElementNS(ns, "circle");
      dot.setAttribute("cx", x.toFixed(1));
      dot.setAttribute("cy", y.toFixed(1));
      dot.setAttribute("r", "2");
      dot.setAttribute("class", "point");
      return dot;
    }) : [];
    svg.replaceChildren(line, ...dots, ...fails);
    const failed = points.filter((p) => !p.ok).length;
    svg.setAttribute("aria-label",
      `${name}: last ${points.length} results, ${failed} failed, slowest ${Math.round(max)} ms`);
  }

  // Error statistics in words: a check's failures by the check's name, the server's own
  // troubles by what it was doing (operation names are the code's, not the reader's).
  const PROBLEMS = {
    timeout: "no answer in time", refused: "connection refused", reset: "connection reset",
    dns: "host name not found", tls: "TLS or certificate problem", http_4xx: "HTTP 4xx answer",
    http_5xx: "HTTP 5xx answer", body_mismatch: "expected text missing",
    redirects: "too many redirects", db_locked: "database busy",
    db_disconnected: "database connection lost", missing_tables: "database not migrated",
    channel_full: "a browser fell behind", client_gone: "a browser left",
    answered: "answered, and must not", auth: "login refused", unknown: "unexpected error",
  };
  const OPERATIONS = {
    "ws.publish": "sending live updates", "ws.listen": "receiving live updates",
    "ws.snapshot": "preparing the dashboard", "ws.registry": "counting viewers",
    "ws.heartbeat": "dashboard upkeep", "ws.dispatch": "handing out live updates",
    "ws.receive": "reading a browser's message", "ws.send": "writing to a browser",
    "health": "answering /health/", "results.store": "storing results",
    "checks.claim": "picking due checks", "db.retry": "reaching its database",
    "error_stats.flush": "saving error counts", "maintenance.apply": "maintenance windows",
    "results.prune": "pruning old results", "rollups.prune": "pruning old hourly figures",
    "results.uptime": "reading uptime figures", "admin.run_now": "running checks from the admin",
  };

  function serverWhere(e) {
    const op = e.operation || "";
    const words = OPERATIONS[op] || (op.startsWith("channels_redis") ? "its channel layer (Redis)"
      : op.replace(/[._]/g, " "));
    return op === "health" || op.startsWith("db.") || op.startsWith("results.") ? words
      : `${words}${e.endpoint && !op.startsWith("ws.") ? ` (${e.endpoint})` : ""}`;
  }

  function errorRow(where, e) {
    const tr = document.createElement("tr");
    const problem = PROBLEMS[e.category] || e.category;
    [where, problem, Number(e.count).toLocaleString(), ago(e.last_seen)].forEach((text, i) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (i === 1 && e.last_message) td.title = e.last_message;
      if (i === 2) td.className = "num";
      tr.appendChild(td);
    });
    return tr;
  }

  function renderErrors() {
    const recent = state.errors.slice(0, 20);
    const ofChecks = recent.filter((e) => (e.operation || "").startsWith("check."));
    const ofServer = recent.filter((e) => !(e.operation || "").startsWith("check."));
    fillErrors("check-errors", ofChecks.map((e) => errorRow(e.endpoint || "a check", e)));
    fillErrors("errors", ofServer.map((e) => errorRow(serverWhere(e), e)));
  }

  function fillErrors(id, rows) {
    $(`${id}-table`).querySelector("tbody").replaceChildren(...rows);
    $(`${id}-table`).hidden = rows.length === 0;
    $(`${id}-empty`).hidden = rows.length > 0;
  }

  function ago(iso) {
    if (!iso) return "never";
    const seconds = Math.max(0, Math.round((serverNow() - Date.parse(iso)) / 1000));
    if (seconds < 60) return `${seconds} s ago`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
    if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
    return `${Math.floor(seconds / 86400)} d ago`;
  }

  // ---- status line and banner ---------------------------------------------------------------
  function setConnection(kind, text) {
    const el = $("connection");
    el.className = `conn conn-${kind}`;
    $("connection-text").textContent = text || kind;
  }

  function showBanner(text) { const b = $("banner"); b.textContent = text; b.hidden = false; }
  function hideBanner() { $("banner").hidden = true; }

  // ---- controls -----------------------------------------------------------------------------
  $("status-filters").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-status]");
    if (!button) return;
    state.filter.status = button.dataset.status;
    document.querySelectorAll("#status-filters button").forEach((b) => {
      b.setAttribute("aria-pressed", String(b === button));
    });
    render();
  });
  $("tag-filter").addEventListener("change", (event) => {
    // Filtered here rather than with the server's "filter" message: the page keeps every
    // check, so switching between tags needs no new snapshot.
    state.filter.tag = event.target.value;
    render();
  });
  $("search").addEventListener("input", (event) => { state.filter.text = event.target.value; render(); });

  // "3 s ago" keeps counting between events, and a result that gets too old says so.
  setInterval(() => { document.querySelectorAll(".since[data-at]").forEach(showSince); }, 1000);

  // Stale: older than the server's stale_after_s for this check (three intervals and then
  // some): nobody is running the checks, and the status shown is history.
  function showSince(el) {
    const limit = Number(el.dataset.staleAfter);
    const age = (serverNow() - Date.parse(el.dataset.at)) / 1000;
    const stale = el.dataset.at !== "" && el.dataset.staleAfter !== "" && age > limit;
    el.textContent = stale ? `stale: ${ago(el.dataset.at)}` : ago(el.dataset.at);
    el.title = stale ? "No new result for three intervals: is the check runner running?" : "";
    el.classList.toggle("stale", stale);
    el.closest("li.check")?.classList.toggle("is-stale", stale);
  }
  live = window.CHLive.start(config, {
    frame: handle,
    opened() { state.layerPaused = null; },  // a new connection hears again from its server
    connection: setConnection,
    banner: showBanner,
  });
})();
