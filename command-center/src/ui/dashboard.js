// VaultMesh overview: live over /events. On a heartbeat or an attention change it refetches the
// page and swaps in its server-rendered <main> and KPIs (coalesced to one fetch a second), so no
// HTML is built here. Shows "disconnected — retrying" while the stream is down.
"use strict";

(function () {
  let timer = null;
  function refresh() {
    if (timer) return;
    timer = setTimeout(async () => {
      timer = null;
      try {
        const r = await fetch("/", { headers: { Accept: "text/html" } });
        if (!r.ok) return;
        const doc = new DOMParser().parseFromString(await r.text(), "text/html");
        for (const id of ["overview", "kpis"]) {
          const fresh = doc.getElementById(id);
          const old = document.getElementById(id);
          if (fresh && old) old.replaceWith(document.importNode(fresh, true));
        }
      } catch (e) { /* the stream's error handler shows the state */ }
    }, 1000);
  }
  const state = document.getElementById("stream-state");
  function setState(text, cls) {
    if (state) { state.textContent = text; state.className = "stream-state " + cls; }
  }
  // Recreated after a backoff if the browser gives up on it; every (re)connect refreshes.
  let backoff = 1000;
  function connect() {
    const source = new EventSource("/events?kinds=heartbeat,attention");
    source.onopen = () => { backoff = 1000; setState("live", "live"); refresh(); };
    source.onerror = () => {
      setState("disconnected — retrying", "down");
      if (source.readyState === EventSource.CLOSED) {
        setTimeout(connect, backoff);
        backoff = Math.min(backoff * 2, 30000);
      }
    };
    for (const name of ["heartbeat", "attention", "resync"]) source.addEventListener(name, refresh);
  }
  connect();
})();
