// The live connection every Connection Health page shares (the dashboard, a check's page): one
// WebSocket, reconnects with full-jitter backoff, pings, acks, and the schema version check.
// Frames are handed to the page; the page says what they mean. docs/EVENTS.md has the schema.
"use strict";

window.CHLive = (function () {
  const BACKOFF = { base: 500, factor: 2, cap: 30000 };
  const PING_EVERY = 20000;
  // Acks go from the message handler itself (timers are throttled in background tabs): after
  // ACK_EVERY frames, 5 s after the last ack, or with a pong (docs/EVENTS.md, "Acks"). With
  // one updates frame a second, acking each would cost the server a read per frame written.
  const ACK_EVERY = 20;
  const ACK_AFTER_MS = 5000;

  // page: { frame(frame), opened(), connection(kind, text), banner(text) }
  function start(config, page) {
    let socket = null;
    let attempt = 0;
    let reconnectTimer = null;
    let pingTimer = null;
    let everConnected = false;
    let outOfDate = false;
    let lastSeq = 0;
    let lastFrameAt = 0;
    let acked = { seq: 0, at: 0 };
    // Ages ("3 s ago", stale) are measured on the server's clock: a browser whose clock is a
    // few minutes off would otherwise mark every check stale, or none. Each frame's "at"
    // resets the offset (its delivery delay, milliseconds, is noise here).
    let clockOffset = 0;

    function wsUrl() {
      const scheme = location.protocol === "https:" ? "wss:" : "ws:";
      return `${scheme}//${location.host}${config.wsPath}`;
    }

    function connect() {
      if (outOfDate) return;  // only a reload helps: the server speaks another version
      clearTimeout(reconnectTimer);
      page.connection(everConnected ? "reconnecting" : "connecting");
      socket = new WebSocket(wsUrl());
      socket.addEventListener("open", onOpen);
      socket.addEventListener("message", onMessage);
      socket.addEventListener("close", onClose);
    }

    function onOpen() {
      // attempt is reset by the first snapshot, not here: a server that accepts and closes
      // at once (database down, 4000) must still see the backoff grow.
      lastSeq = 0;
      lastFrameAt = Date.now();
      acked = { seq: 0, at: 0 };
      everConnected = true;
      if (page.opened) page.opened();
      page.connection("connected");
      clearInterval(pingTimer);
      pingTimer = setInterval(keepAlive, PING_EVERY);
    }

    function onClose(event) {
      clearInterval(pingTimer);
      socket = null;
      if (event.code === 4401) {
        page.connection("offline", "signed out");
        page.banner("Your session has ended. Log in to the admin again, then reload this page.");
        return;
      }
      if (event.code === 4403) {
        page.connection("offline", "not allowed");
        page.banner(
          "This account may not view checks: the dashboard is for active staff with the " +
          "permission to view health checks."
        );
        return;
      }
      // A check's page asked for a check that does not exist (any more), or asked wrongly: a
      // reconnect would get the same answer.
      if (event.code === 4404 || event.code === 4400) {
        page.connection("offline", event.code === 4404 ? "no such check" : "bad request");
        page.banner(event.code === 4404 ? "This check no longer exists." : `The server refused this page's request: ${event.reason}`);
        return;
      }
      // The server says what is wrong when it knows (a database never migrated): show it,
      // and keep trying (someone may be running migrate right now).
      if (event.reason && event.reason.includes("manage.py migrate")) page.banner(event.reason);
      scheduleReconnect();
    }

    // A half-open connection (laptop sleep, a dropped NAT entry) looks open for minutes: when
    // not even a pong came back for two ping periods, close it and reconnect.
    function keepAlive() {
      if (Date.now() - lastFrameAt > 2 * PING_EVERY + 5000 && socket) {
        // Its close event may never come on a dead link: detach it and reconnect now.
        const dead = socket;
        socket = null;
        dead.removeEventListener("message", onMessage);
        dead.removeEventListener("close", onClose);
        dead.close(4000, "no answer");
        clearInterval(pingTimer);
        scheduleReconnect();
        return;
      }
      send({ type: "ping" });
    }

    // The server was updated while this page stayed open and now speaks another schema
    // version: its frames would be misread, and a reconnect reaches the same server. Stop.
    function outdated(version) {
      outOfDate = true;
      const old = socket;
      socket = null;
      if (old) {
        old.removeEventListener("message", onMessage);
        old.removeEventListener("close", onClose);
        old.close(1000, "page out of date");
      }
      clearInterval(pingTimer);
      clearTimeout(reconnectTimer);
      page.connection("offline", "page out of date");
      page.banner(
        `The server was updated (it sends version ${version} of the dashboard's frames; this ` +
        `page reads version ${config.schemaVersion}). Reload the page to continue.`
      );
    }

    function scheduleReconnect() {
      // Full jitter: many browsers that lost the same server do not come back in lockstep.
      const ceiling = Math.min(BACKOFF.cap, BACKOFF.base * BACKOFF.factor ** attempt);
      const wait = Math.round(Math.random() * ceiling);
      attempt += 1;
      page.connection("reconnecting", `reconnecting in ${Math.ceil(wait / 1000)} s (attempt ${attempt})`);
      reconnectTimer = setTimeout(connect, wait);
    }

    function send(message) {
      if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
    }

    function onMessage(event) {
      lastFrameAt = Date.now();
      let frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      if (frame.v !== config.schemaVersion) return outdated(frame.v);
      const sentAt = Date.parse(frame.at);
      if (!Number.isNaN(sentAt)) clockOffset = sentAt - Date.now();
      if (typeof frame.seq === "number") {
        lastSeq = frame.seq;
        maybeAck(frame.type === "pong");
      }
      // The server is really back: the next loss starts the backoff afresh.
      if (frame.type === "snapshot") attempt = 0;
      page.frame(frame);
    }

    function maybeAck(force) {
      const now = Date.now();
      const behind = lastSeq - acked.seq;
      if (behind > 0 && (force || behind >= ACK_EVERY || now - acked.at >= ACK_AFTER_MS)) {
        send({ type: "ack", seq: lastSeq });
        acked = { seq: lastSeq, at: now };
      }
    }

    // A tab that comes back from the background reconnects at once instead of waiting out a
    // long backoff.
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible" && !socket) { attempt = 0; connect(); }
    });

    connect();
    return { send, serverNow: () => Date.now() + clockOffset };
  }

  return { start };
})();
