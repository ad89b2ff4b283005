// VaultMesh Mission Console: keeps the server-rendered page live.
//
// One EventSource on /events. Small, frequent changes (a heartbeat) are applied to the node's
// row in place; anything else swaps in the server-rendered fragment of the panel it touches
// (each panel carries its URL in data-fragment), so no HTML is built here and every string
// stays escaped by the server. `resync` and reconnects refetch every panel. `?debug=1` logs
// each event to the console.
"use strict";

(function () {
  const body = document.body;
  const debug = body.dataset.debug === "1";
  let selected = body.dataset.selected || null;

  // ---- time ---------------------------------------------------------------------------------
  function age(ms) {
    const s = Math.round(ms / 1000);
    if (s <= 1) return "just now";
    if (s < 60) return s + "s ago";
    if (s < 3600) return Math.floor(s / 60) + "m ago";
    if (s < 86400) return Math.floor(s / 3600) + "h ago";
    return Math.floor(s / 86400) + "d ago";
  }
  function tick() {
    const now = Date.now();
    for (const t of document.querySelectorAll("time[data-ago]")) {
      const when = Date.parse(t.getAttribute("datetime"));
      if (Number.isNaN(when)) continue;
      const text = age(now - when);
      if (t.textContent !== text) t.textContent = text; // untouched text costs no layout
    }
  }
  setInterval(tick, 1000);

  // ---- fragments ----------------------------------------------------------------------------
  const timers = new Map();
  // Fetches `url` and replaces the element `id` (or the element `find()` returns) with it;
  // coalesces bursts per id.
  function swap(id, url, delay, find) {
    if (!url) return;
    clearTimeout(timers.get(id));
    timers.set(id, setTimeout(async () => {
      timers.delete(id);
      try {
        const r = await fetch(url, { headers: { Accept: "text/html" } });
        if (!r.ok) return;
        const html = await r.text();
        const old = find ? find() : document.getElementById(id);
        if (!old) return;
        const t0 = performance.now();
        const tpl = document.createElement("template");
        tpl.innerHTML = html.trim();
        const fresh = tpl.content.firstElementChild;
        if (fresh) {
          old.replaceWith(fresh);
          if (debug && performance.now() - t0 > 20) console.warn("slow swap", id, (performance.now() - t0).toFixed(1) + " ms");
          if (id === "node-list") { rowIndex = null; applyFilter(); }
          if (find) { rowIndex = null; applyFilter(fresh); moved.add(fresh); needSort = true; frame(); }
          tick();
        }
      } catch (e) {
        if (debug) console.warn("fragment", url, e);
      }
    }, delay));
  }
  function refreshList() {
    swap("node-list", "/console/nodes" + (selected ? "?selected=" + encodeURIComponent(selected) : ""), 300);
  }
  function refreshNode() {
    if (selected) swap("node", "/console/nodes/" + encodeURIComponent(selected), 250);
  }
  function refreshAll() {
    refreshList();
    refreshNode();
    swap("kpis", "/console/kpis", 300);
    swap("attention", "/console/attention", 300);
    swap("findings", "/console/findings", 300);
    swap("feed", "/console/feed", 300);
  }

  // ---- the node list ------------------------------------------------------------------------
  const RANK = { crit: 0, attn: 1, ok: 2 };
  // Rows by node id; rebuilt whenever a looked-up row has left the document (list swapped).
  let rowIndex = null;
  function row(id) {
    let r = rowIndex && rowIndex.get(id);
    if (r && r.isConnected) return r;
    rowIndex = new Map();
    for (const li of document.querySelectorAll("#node-list li[data-node-id]")) rowIndex.set(li.dataset.nodeId, li);
    r = rowIndex.get(id);
    return r || null;
  }
  function updateKpis() {
    const rows = document.querySelectorAll("#node-list li[data-node-id]");
    const n = { total: rows.length, ok: 0, attn: 0, crit: 0 };
    for (const r of rows) n[r.dataset.level] = (n[r.dataset.level] || 0) + 1;
    for (const k of Object.keys(n)) {
      const el = document.querySelector('[data-kpi="' + k + '"]');
      if (el) el.textContent = String(n[k]);
    }
  }
  function before(a, b) {
    return (RANK[a.dataset.level] - RANK[b.dataset.level]) ||
      a.querySelector(".name").textContent.localeCompare(b.querySelector(".name").textContent);
  }
  // Moves only the rows that changed to their place (worst first, then by name): one DOM move
  // per changed row instead of reordering the whole list.
  const moved = new Set();
  function sortList() {
    const list = document.getElementById("node-list");
    if (!list) return;
    for (const r of moved) {
      if (!r.isConnected) continue;
      const rows = list.querySelectorAll("li[data-node-id]");
      let next = null;
      for (const other of rows) {
        if (other !== r && before(r, other) < 0) { next = other; break; }
      }
      if (next !== r.nextElementSibling || (next === null && r !== list.lastElementChild)) {
        list.insertBefore(r, next);
      }
    }
    moved.clear();
  }
  // DOM work for bursts of events is batched into one animation frame: a fleet reporting at
  // once must not force a layout per heartbeat.
  const beats = new Set();
  let needSort = false;
  let frameQueued = false;
  function frame() {
    if (frameQueued) return;
    frameQueued = true;
    requestAnimationFrame(() => {
      frameQueued = false;
      const glowing = [];
      for (const id of beats) {
        const r = row(id);
        if (r) { r.classList.remove("beat"); glowing.push(r); }
      }
      beats.clear();
      if (needSort) { needSort = false; sortList(); updateKpis(); }
      // Re-adding the class on the next frame restarts the glow without a forced layout.
      requestAnimationFrame(() => { for (const r of glowing) r.classList.add("beat"); });
    });
  }
  function onHeartbeat(s) {
    const r = row(s.node_id);
    if (!r) { refreshList(); swap("kpis", "/console/kpis", 300); return; }
    const t = r.querySelector("time[data-ago]");
    if (t) { t.setAttribute("datetime", s.last_seen); t.textContent = "just now"; }
    beats.add(s.node_id);
    frame();
    if (s.node_id === selected) refreshNode();
  }
  function onAttention(env) {
    const r = env.node_id && row(env.node_id);
    const level = env.body && env.body.level;
    if (r && level) {
      r.dataset.level = level;
      const p = r.querySelector("[data-pill]");
      if (p) { p.className = "pill " + level; p.textContent = level.toUpperCase(); }
      moved.add(r);
      needSort = true;
      frame();
    }
    if (r) {
      // Only this row's text changed: fetch it alone (a 1,000-node list is not refetched).
      swap("row:" + env.node_id,
        "/console/nodes/" + encodeURIComponent(env.node_id) + "/row" + (selected ? "?selected=" + encodeURIComponent(selected) : ""),
        200, () => row(env.node_id));
    } else {
      refreshList();
    }
    swap("attention", "/console/attention", 200);
    if (env.node_id === selected) refreshNode();
  }

  // ---- filter -------------------------------------------------------------------------------
  const filter = document.getElementById("filter");
  // Applies the filter to every row, or to one fresh row.
  function applyFilter(one) {
    const q = (filter && filter.value || "").trim().toLowerCase();
    const rows = one ? [one] : document.querySelectorAll("#node-list li[data-node-id]");
    for (const r of rows) {
      const hide = q !== "" && !r.dataset.search.includes(q);
      if (r.hidden !== hide) r.hidden = hide;
    }
  }
  if (filter) filter.addEventListener("input", () => applyFilter());

  // ---- selection (the URL names the node, so a link can be shared) --------------------------
  function select(id, push) {
    selected = id;
    body.dataset.selected = id;
    for (const r of document.querySelectorAll("#node-list li[data-node-id]")) {
      const on = r.dataset.nodeId === id;
      r.classList.toggle("selected", on);
      const a = r.querySelector("a");
      if (a) { if (on) a.setAttribute("aria-current", "true"); else a.removeAttribute("aria-current"); }
    }
    if (push) history.pushState({ node: id }, "", "/console?node=" + encodeURIComponent(id) + (debug ? "&debug=1" : ""));
    swap("node", "/console/nodes/" + encodeURIComponent(id), 0);
  }
  document.addEventListener("click", (e) => {
    const a = e.target.closest && e.target.closest('a[href^="/console?node="]');
    if (!a || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
    const id = new URL(a.href).searchParams.get("node");
    if (!id) return;
    e.preventDefault();
    select(id, true);
  });
  window.addEventListener("popstate", () => {
    const id = new URL(location.href).searchParams.get("node");
    if (id) select(id, false);
  });

  // ---- forms: post without leaving the page -------------------------------------------------
  document.addEventListener("submit", async (e) => {
    const form = e.target;
    if (!form.matches || !form.matches("form[data-console-form]")) return;
    e.preventDefault();
    const button = form.querySelector("button");
    if (button) button.disabled = true;
    try {
      const r = await fetch(form.action, {
        method: "POST",
        headers: { Accept: "application/json" },
        body: new URLSearchParams(new FormData(form)),
      });
      if (!r.ok) {
        const err = await r.json().catch(() => ({ error: r.statusText }));
        alert(err.error || ("failed: " + r.status));
      } else {
        form.reset();
      }
    } finally {
      if (button) button.disabled = false;
    }
  });

  // ---- the stream ---------------------------------------------------------------------------
  const state = document.getElementById("stream-state");
  let wasDown = false;
  function setState(text, cls) {
    if (!state) return;
    state.textContent = text;
    state.className = "stream-state " + cls;
    body.classList.toggle("disconnected", cls === "down");
  }
  function lastEvent() {
    const el = document.getElementById("last-event");
    if (!el) return;
    const t = document.createElement("time");
    t.setAttribute("datetime", new Date().toISOString());
    t.dataset.ago = "";
    t.textContent = "just now";
    el.replaceChildren(t);
  }
  function parse(ev) {
    try { return JSON.parse(ev.data); } catch (e) { return null; }
  }

  const source = new EventSource("/events");
  source.onopen = () => {
    setState("live", "live");
    if (wasDown) { wasDown = false; refreshAll(); }
  };
  source.onerror = () => {
    wasDown = true;
    setState("disconnected — retrying", "down");
  };
  const handlers = {
    heartbeat: (d) => { onHeartbeat(d); },
    attention: (d) => { onAttention(d); swap("feed", "/console/feed", 500); },
    scan: (d) => { swap("findings", "/console/findings", 500); if (d.node_id === selected) refreshNode(); },
    command: (d) => { if (d.node_id === selected) refreshNode(); },
    resync: () => { refreshAll(); },
  };
  for (const kind of ["note", "incident", "ack", "tag", "resolve", "silence"]) {
    handlers[kind] = (d) => {
      swap("feed", "/console/feed", 300);
      if (d.node_id === selected || !d.node_id) refreshNode();
    };
  }
  for (const [name, fn] of Object.entries(handlers)) {
    source.addEventListener(name, (ev) => {
      const t0 = performance.now();
      const data = parse(ev);
      if (debug) console.log("sse", name, ev.lastEventId, data);
      if (name !== "resync") lastEvent();
      fn(data || {});
      const ms = performance.now() - t0;
      if (debug && ms > 20) console.warn("slow handler", name, ms.toFixed(1) + " ms");
    });
  }
  // For tests and for admins in the devtools: what the console has seen.
  window.vaultmesh = { refreshAll, select };
})();
