// VaultMesh Mission Console: keeps the server-rendered page live.
//
// One EventSource on /events. Small, frequent changes (a heartbeat) are applied to the node's
// row in place; anything else swaps in the server-rendered fragment of the panel it touches
// (each panel carries its URL in data-fragment), so no HTML is built here and every string
// stays escaped by the server. The stream resumes after the newest event the page reflects;
// `resync` (it could not) refetches every panel. `?debug=1` logs
// each event to the console. The node panel's history range (`?range=`) is kept across node
// selections and put in the URL; the range links are plain links this script takes over. So is
// the node list's grouping (`?group=`): the "Group by" select applies at once, and rows that
// change group move to theirs live.
"use strict";

(function () {
  const body = document.body;
  const debug = body.dataset.debug === "1";
  let selected = body.dataset.selected || null;
  // The history range the URL names; null: the server's default.
  let range = new URL(location.href).searchParams.get("range");
  const rangeQuery = () => (range ? "?range=" + encodeURIComponent(range) : "");
  // The node list's grouping the URL names (`profile`, `label:site`); null: not grouped.
  let group = new URL(location.href).searchParams.get("group");
  if (group === "none") group = null;

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
  // swap(key, url, delay, find): fetch a fragment and replace the element `find()` returns (or
  // the element with id `key`). Bursts are coalesced per key (trailing, but at most 1 s late
  // under a steady stream); `url` may be a function, called when the fetch starts; a reply that
  // is no longer the newest for its key is dropped, so fragments never land out of order.
  const pending = new Map(); // key -> { timer, first }
  const generation = new Map(); // key -> newest fetch number
  const MAX_WAIT = 1000;
  function swap(key, url, delay, find) {
    const now = performance.now();
    const p = pending.get(key);
    if (p && now - p.first >= MAX_WAIT) return; // already due soon enough
    if (p) clearTimeout(p.timer);
    const first = p ? p.first : now;
    const timer = setTimeout(() => { pending.delete(key); load(key, url, find); }, delay);
    pending.set(key, { timer, first });
  }
  async function load(key, url, find) {
    const gen = (generation.get(key) || 0) + 1;
    generation.set(key, gen);
    const target = typeof url === "function" ? url() : url;
    if (!target) return;
    const grouping = group; // a row rendered for another grouping is dropped: the list follows
    try {
      const r = await fetch(target, { headers: { Accept: "text/html" } });
      if (!r.ok || generation.get(key) !== gen) return;
      const html = await r.text();
      if (generation.get(key) !== gen) return;
      const old = find ? find() : document.getElementById(key);
      if (!old) return;
      if ((key === "node" || key === "attention") && busy(old)) { swap(key, url, 1000, find); return; }
      const t0 = performance.now();
      const tpl = document.createElement("template");
      tpl.innerHTML = html.trim();
      const fresh = tpl.content.firstElementChild;
      if (!fresh) return;
      if (key === "node" && fresh.dataset.nodeId !== selected) return; // selection moved on
      if (find && grouping !== group) return;
      // Keyboard focus on a range link stays on the range links.
      const focused = document.activeElement;
      const refocus = key === "node" && focused && old.contains(focused) && focused.dataset.range;
      // A reason an admin opened in the attention panel stays open.
      const opened = key === "attention" ? new Set([...old.querySelectorAll("details[open]")].map(reasonKey)) : null;
      old.replaceWith(fresh);
      if (opened && opened.size) {
        for (const d of fresh.querySelectorAll("details")) if (opened.has(reasonKey(d))) d.open = true;
      }
      if (refocus) {
        const link = fresh.querySelector("a[data-range][aria-current]");
        if (link) link.focus();
      }
      if (debug && performance.now() - t0 > 20) console.warn("slow swap", key, (performance.now() - t0).toFixed(1) + " ms");
      if (key === "node-list") { rowIndex = null; groupIndex = null; applyFilter(); }
      // One fresh row: its entry in the row index is replaced, not the whole index (a burst of
      // 100 row swaps on 1,000 rows would otherwise rebuild it 100 times).
      if (find) {
        if (rowIndex && fresh.dataset.nodeId) rowIndex.set(fresh.dataset.nodeId, fresh); else rowIndex = null;
        applyFilter(fresh); moved.add(fresh); needSort = true; frame();
      }
      tick();
    } catch (e) {
      if (debug) console.warn("fragment", target, e);
    }
  }
  function reasonKey(details) {
    const li = details.closest("li[data-rule]");
    const node = details.closest("[data-node-id]");
    return (node ? node.dataset.nodeId : "") + " " + (li ? li.dataset.rule : "");
  }
  // An admin typing in the node panel's (or the attention panel's) forms keeps them: the swap
  // waits.
  function busy(panel) {
    const active = document.activeElement;
    if (active && panel.contains(active) && active.closest("form")) return true;
    for (const input of panel.querySelectorAll("form input:not([type=hidden])")) {
      if (input.value !== input.defaultValue) return true;
    }
    for (const select of panel.querySelectorAll("form select")) {
      for (const o of select.options) if (o.selected !== o.defaultSelected) return true;
    }
    return false;
  }
  // The list's and its rows' query: the selected node and the grouping.
  function sel() {
    const q = [];
    if (selected) q.push("selected=" + encodeURIComponent(selected));
    if (group) q.push("group=" + encodeURIComponent(group));
    return q.length ? "?" + q.join("&") : "";
  }
  function refreshList() {
    swap("node-list", () => "/console/nodes" + sel(), 300);
  }
  // Only this row's text changed: fetch it alone (a 1,000-node list is not refetched).
  function refreshRow(id, delay) {
    swap("row:" + id, () => "/console/nodes/" + encodeURIComponent(id) + "/row" + sel(), delay, () => row(id));
  }
  function refreshNode() {
    swap("node", () => (selected ? "/console/nodes/" + encodeURIComponent(selected) + rangeQuery() : null), 250);
  }
  function refreshNodeNow() {
    const p = pending.get("node");
    if (p) { clearTimeout(p.timer); pending.delete("node"); }
    load("node", () => "/console/nodes/" + encodeURIComponent(selected) + rangeQuery());
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
  // Moves only the rows that changed to their place (worst first, then by name): one DOM move
  // per changed row instead of reordering the whole list. The rows that did not change are
  // still in order, so each changed row's place is a binary search over their keys, read once
  // (a burst of 100 changes on 1,000 rows reads 1,100 keys, not 100,000).
  const moved = new Set();
  // The server's order: level, then the name shown (display name, else hostname) by code
  // point, then node id.
  // Ties between equal names go by node id (lowercase hex: the same order as the server's).
  function key(r) { return [RANK[r.dataset.level], r.dataset.name, r.dataset.nodeId]; }
  function cmpKey(x, y) {
    return x[0] - y[0] || byCodePoint(x[1], y[1]) || (x[2] < y[2] ? -1 : x[2] > y[2] ? 1 : 0);
  }
  // Strings compare by UTF-16 unit, which puts U+10000 and above before U+E000-U+FFFF; the
  // server compares code points. Only names with a surrogate pay for the slow path.
  function byCodePoint(a, b) {
    if (a === b) return 0;
    if (!/[\uD800-\uDFFF]/.test(a + b)) return a < b ? -1 : 1;
    const x = Array.from(a, (c) => c.codePointAt(0)), y = Array.from(b, (c) => c.codePointAt(0));
    for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] < y[i] ? -1 : 1;
    return x.length - y.length;
  }
  function sortList() {
    const list = document.getElementById("node-list");
    const grouped = list && list.hasAttribute("data-group-by");
    const movers = list ? [...moved].filter((r) => (grouped ? r.isConnected && list.contains(r) : r.parentNode === list)) : [];
    moved.clear();
    if (!movers.length) return;
    if (!grouped) { place(list, movers, new Set(movers)); return; }
    // Grouped: each changed row goes to its group's place (a group is made when it has none),
    // and only the groups rows left or joined are counted again.
    const touched = new Set();
    const into = new Map(); // group element -> its changed rows
    for (const r of movers) {
      const from = r.closest("li.group");
      if (from) touched.add(from);
      const v = rowGroup(r);
      const g = groupEl(list, v) || newGroup(list, v);
      if (!g) { refreshList(); return; }
      touched.add(g);
      if (!into.has(g)) into.set(g, []);
      into.get(g).push(r);
    }
    const skip = new Set(movers);
    for (const [g, rows] of into) place(g.querySelector("ul.group-rows"), rows, skip);
    for (const g of touched) countGroup(g);
  }
  // Puts `movers` in their places among the rows of `list` that are not in `skip`.
  function place(list, movers, skip) {
    const rest = [];
    for (const r of list.children) if (r.dataset.nodeId && !skip.has(r)) rest.push(r);
    const keys = rest.map(key);
    for (const r of movers) {
      const k = key(r);
      let lo = 0, hi = rest.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (cmpKey(k, keys[mid]) < 0) hi = mid; else lo = mid + 1;
      }
      const next = lo < rest.length ? rest[lo] : null;
      if (r.nextElementSibling !== next || (next === null && r !== list.lastElementChild)) {
        list.insertBefore(r, next);
      }
      rest.splice(lo, 0, r);
      keys.splice(lo, 0, k);
    }
  }

  // ---- groups (`?group=profile`, `?group=label:site`) ---------------------------------------
  // A grouped list is ul#node-list[data-group-by] > li.group > details > (summary, ul.group-rows
  // > rows). A group's and a row's data-group is the group's value; absent: the nodes without
  // the label, whose group is last. Groups are by value (code points, as the server orders).
  const rowGroup = (el) => (el.hasAttribute("data-group") ? el.dataset.group : null);
  function cmpGroup(a, b) {
    if (a === b) return 0;
    if (a === null) return 1;
    if (b === null) return -1;
    return a < b ? -1 : 1;
  }
  const groupKey = (v) => (v === null ? "" : "=" + v);
  // Groups by value; rebuilt when a looked-up group has left the document.
  let groupIndex = null;
  function groupEl(list, v) {
    const g = groupIndex && groupIndex.get(groupKey(v));
    if (g && g.isConnected) return g;
    groupIndex = new Map();
    for (const el of list.children) if (el.classList.contains("group")) groupIndex.set(groupKey(rowGroup(el)), el);
    return groupIndex.get(groupKey(v)) || null;
  }
  // A new group, made from another's header (no HTML is built here; its name is text), in its
  // place among the groups. None when there is no group to copy (the list is refetched).
  function newGroup(list, v) {
    const model = list.querySelector(":scope > li.group");
    if (!model) return null;
    const g = model.cloneNode(false);
    const details = model.firstElementChild.cloneNode(false);
    details.open = true;
    const head = model.querySelector("summary").cloneNode(true);
    head.querySelector(".group-name").textContent = v === null ? list.dataset.noneName : v;
    details.append(head, model.querySelector("ul.group-rows").cloneNode(false));
    g.append(details);
    if (v === null) g.removeAttribute("data-group"); else g.dataset.group = v;
    g.hidden = false;
    let next = null;
    for (const el of list.children) {
      if (el.classList.contains("group") && cmpGroup(v, rowGroup(el)) < 0) { next = el; break; }
    }
    list.insertBefore(g, next);
    groupIndex.set(groupKey(v), g);
    return g;
  }
  // Counts a group's rows by level into its header; an emptied group goes, a group the filter
  // hides every row of is hidden.
  function countGroup(g) {
    if (!g.isConnected) return;
    const rows = g.querySelector("ul.group-rows").children;
    if (!rows.length) { g.remove(); return; }
    const n = { total: 0, crit: 0, attn: 0, ok: 0 };
    let shown = false;
    for (const r of rows) {
      n.total += 1;
      n[r.dataset.level] = (n[r.dataset.level] || 0) + 1;
      if (!r.hidden) shown = true;
    }
    for (const el of g.querySelectorAll("summary [data-count]")) {
      const t = String(n[el.dataset.count] || 0);
      if (el.textContent !== t) el.textContent = t;
    }
    const word = g.querySelector("summary [data-plural]");
    if (word) word.textContent = n.total === 1 ? "node" : "nodes";
    if (g.hidden === shown) g.hidden = !shown;
  }
  // The group value of a heartbeat's node under the current grouping (undefined: none).
  function groupOf(s) {
    if (group === "profile") return s.os_profile;
    const v = s.labels && group && group.startsWith("label:") ? s.labels[group.slice(6)] : undefined;
    return typeof v === "string" ? v : undefined;
  }
  // Applies a grouping: the list is fetched grouped, and the URL names it (a reload keeps it).
  function setGroup(g, push) {
    group = g && g !== "none" ? g : null;
    if (groupSelect && groupSelect.value !== (group || "none")) groupSelect.value = group || "none";
    if (push) history.pushState({ node: selected }, "", consoleUrl());
    const p = pending.get("node-list");
    if (p) { clearTimeout(p.timer); pending.delete("node-list"); }
    load("node-list", () => "/console/nodes" + sel());
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
    // Its profile or the grouping's label changed: the row, fetched anew, moves to its group.
    if (group && r.dataset.group !== groupOf(s)) refreshRow(s.node_id, 200);
    beats.add(s.node_id);
    frame();
    if (s.node_id === selected) refreshNode();
  }
  function onAttention(env) {
    // The Command Center's own attention (its storage): the mission bar shows it.
    if (!env.node_id) { swap("kpis", "/console/kpis", 100); return; }
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
      refreshRow(env.node_id, 200);
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
    // Every word must match: "site:fra1 profile:archvault" narrows by label and profile.
    const words = (filter && filter.value || "").trim().toLowerCase().split(/\s+/).filter(Boolean);
    const rows = one ? [one] : document.querySelectorAll("#node-list li[data-node-id]");
    for (const r of rows) {
      const hide = words.some((w) => !r.dataset.search.includes(w));
      if (r.hidden !== hide) r.hidden = hide;
    }
    // A group the filter empties is hidden (one fresh row's group is counted when it moves).
    if (!one) for (const g of document.querySelectorAll("#node-list > li.group")) countGroup(g);
  }
  if (filter) filter.addEventListener("input", () => applyFilter());

  // ---- group by: the select applies at once (its button is for pages without script) ------
  const groupForm = document.querySelector("form[data-group-form]");
  const groupSelect = groupForm && groupForm.querySelector("select[name=group]");
  if (groupForm && groupSelect) {
    const button = groupForm.querySelector("button");
    if (button) button.hidden = true;
    groupSelect.addEventListener("change", () => setGroup(groupSelect.value, true));
    groupForm.addEventListener("submit", (e) => { e.preventDefault(); setGroup(groupSelect.value, true); });
  }

  // ---- selection (the URL names the node and the range, so a link can be shared) ------------
  // `r`: the range to show (null: the default), or undefined to keep the current one.
  function select(id, push, r) {
    if (r !== undefined) range = r;
    selected = id;
    body.dataset.selected = id;
    for (const r of document.querySelectorAll("#node-list li[data-node-id]")) {
      const on = r.dataset.nodeId === id;
      r.classList.toggle("selected", on);
      const a = r.querySelector("a");
      if (a) { if (on) a.setAttribute("aria-current", "true"); else a.removeAttribute("aria-current"); }
    }
    if (push) history.pushState({ node: id }, "", consoleUrl());
    refreshNodeNow();
  }
  // The page's URL: the node, the range, the grouping and debug mode.
  function consoleUrl() {
    const q = [];
    if (selected) q.push("node=" + encodeURIComponent(selected));
    if (range) q.push("range=" + encodeURIComponent(range));
    if (group) q.push("group=" + encodeURIComponent(group));
    if (debug) q.push("debug=1");
    return "/console" + (q.length ? "?" + q.join("&") : "");
  }
  document.addEventListener("click", (e) => {
    const a = e.target.closest && e.target.closest('a[href^="/console?node="]');
    if (!a || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
    const params = new URL(a.href).searchParams;
    const id = params.get("node");
    if (!id) return;
    e.preventDefault();
    // A range link names its range; a node's row keeps the current one.
    select(id, true, params.has("range") ? params.get("range") : undefined);
  });
  window.addEventListener("popstate", () => {
    const params = new URL(location.href).searchParams;
    const g = params.get("group");
    if ((g === "none" ? null : g) !== group) setGroup(g, false);
    const id = params.get("node");
    if (id) select(id, false, params.get("range"));
    else location.reload(); // back to /console: the server picks the worst node
  });

  // ---- forms: post without leaving the page -------------------------------------------------
  // A refusal shows under its form (as text), until the next post of that form.
  function say(form, text) {
    let p = form.nextElementSibling;
    if (!p || !p.classList.contains("form-error")) {
      if (!text) return;
      p = document.createElement("p");
      p.className = "form-error";
      p.setAttribute("role", "alert");
      form.after(p);
    }
    if (text) p.textContent = text; else p.remove();
  }
  document.addEventListener("submit", async (e) => {
    const form = e.target;
    if (!form.matches || !form.matches("form[data-console-form]")) return;
    e.preventDefault();
    const button = form.querySelector("button");
    if (button) button.disabled = true;
    try {
      // The attribute, not `form.action`: a field named "action" (the command form's) would
      // shadow the property.
      const r = await fetch(form.getAttribute("action"), {
        method: "POST",
        headers: { Accept: "application/json" },
        body: new URLSearchParams(new FormData(form)),
      });
      if (!r.ok) {
        const err = await r.json().catch(() => ({ error: r.statusText }));
        say(form, err.error || ("failed: " + r.status));
      } else {
        say(form, null);
        form.reset();
        // A decommissioned (or renamed) node's panel changes for good: let it be swapped (see busy()).
        if (form.matches("[data-decommission], [data-rename]") && form.contains(document.activeElement)) {
          document.activeElement.blur();
        }
      }
    } finally {
      if (button) button.disabled = false;
    }
  });

  // ---- the stream ---------------------------------------------------------------------------
  const state = document.getElementById("stream-state");
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

  // One EventSource, resuming after the newest event the page reflects (`data-since`, then
  // the last event received): the server replays what was missed, or says `resync` when it
  // cannot (a restart, a gap older than its window), and only then are the panels refetched.
  // The browser's own reconnects send Last-Event-ID. If the browser gives up on the stream (a
  // non-200 answer, e.g. a proxy's 502 during a restart), a new one is made after a backoff.
  let source = null;
  let backoff = 1000;
  let lastId = body.dataset.since || "";
  function connect() {
    source = new EventSource("/events" + (lastId ? "?since=" + encodeURIComponent(lastId) : ""));
    const resumed = Boolean(lastId);
    source.onopen = () => {
      backoff = 1000;
      setState("live", "live");
      if (!resumed) refreshAll();
    };
    source.onerror = () => {
      setState("disconnected — retrying", "down");
      if (source.readyState === EventSource.CLOSED) {
        setTimeout(connect, backoff);
        backoff = Math.min(backoff * 2, 30000);
      }
    };
    for (const [name, fn] of Object.entries(handlers)) {
      source.addEventListener(name, (ev) => {
        const t0 = performance.now();
        const data = parse(ev);
        if (ev.lastEventId) lastId = ev.lastEventId;
        if (debug) console.log("sse", name, ev.lastEventId, data);
        if (name !== "resync") lastEvent();
        fn(data || {});
        const ms = performance.now() - t0;
        if (debug && ms > 20) console.warn("slow handler", name, ms.toFixed(1) + " ms");
      });
    }
  }
  const handlers = {
    heartbeat: (d) => { onHeartbeat(d); },
    attention: (d) => { onAttention(d); swap("feed", "/console/feed", 500); },
    scan: (d) => { swap("findings", "/console/findings", 500); if (d.node_id === selected) refreshNode(); },
    command: (d) => { if (d.node_id === selected) refreshNode(); },
    resync: () => { refreshAll(); },
  };
  // A node revoked, decommissioned (it leaves the list) or re-admitted: every panel may change.
  for (const kind of ["node_revoked", "node_decommissioned", "node_readmitted"]) {
    handlers[kind] = () => { refreshAll(); };
  }
  // A node renamed: its row (which moves to its new place), and the panels that name it; the
  // 1,000-row list is not refetched.
  handlers.node_renamed = (d) => {
    if (d.node_id && row(d.node_id)) refreshRow(d.node_id, 100); else refreshList();
    swap("attention", "/console/attention", 200);
    swap("findings", "/console/findings", 300);
    swap("feed", "/console/feed", 300);
    if (d.node_id === selected) refreshNodeNow();
  };
  for (const kind of ["note", "incident", "ack", "tag", "resolve", "silence"]) {
    handlers[kind] = (d) => {
      swap("feed", "/console/feed", 300);
      // A tag may set a label: the row shows it, the filter matches it, it may change group.
      if (kind === "tag" && d.node_id && row(d.node_id)) refreshRow(d.node_id, 200);
      if (d.node_id === selected || !d.node_id) refreshNode();
    };
  }
  connect();
  // For tests and for admins in the devtools: what the console has seen.
  window.vaultmesh = { refreshAll, select, setGroup, range: () => range, group: () => group };
})();
