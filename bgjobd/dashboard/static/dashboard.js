// bgjobs dashboard: live updates and in-page actions.
//
// The daemon renders every page in full (it works without this script, reloading itself
// every few seconds). This script listens to the daemon's server-sent events and, when jobs
// change, reads the JSON API and redraws the parts that changed, building every node with
// textContent/setAttribute: job data (params, errors, output) is attacker-controlled and is
// never parsed as HTML. The cell markup mirrors templates/_macros.html.
"use strict";

(() => {
  const SVG = "http://www.w3.org/2000/svg";
  const body = document.body;
  const page = body.dataset.page;
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";
  // The browser's clock may differ from the daemon's: tick times by the daemon's.
  const skew = Number(body.dataset.now || 0) * 1000 - Date.now();
  const serverNow = () => Date.now() + skew;

  // building nodes --------------------------------------------------------------------------

  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function s(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    setAttrs(node, attrs);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function setAttrs(node, attrs) {
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      node.setAttribute(key, value === true ? "" : String(value));
    }
  }

  function append(node, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }

  // Redraw a part of the page only when its data changed (the server signs what it rendered
  // the same way: present.signature).
  function redraw(node, sig, build) {
    if (!node || node.dataset.sig === sig) return;
    node.dataset.sig = sig;
    build(node);
  }

  const jobUrl = (job) => `/dashboard/jobs/${Number(job.id)}`;
  const here = () => location.pathname + location.search;

  // times (twins of present.fmt_age and present.relative) -----------------------------------

  function fmtAge(seconds) {
    let whole = Math.max(Math.floor(seconds), 0);
    if (whole < 60) return `${whole}s`;
    let minutes = Math.floor(whole / 60);
    const secs = whole % 60;
    if (minutes < 60) return `${minutes}m ${String(secs).padStart(2, "0")}s`;
    let hours = Math.floor(minutes / 60);
    minutes %= 60;
    if (hours < 24) return `${hours}h ${String(minutes).padStart(2, "0")}m`;
    const days = Math.floor(hours / 24);
    hours %= 24;
    return `${days}d ${String(hours).padStart(2, "0")}h`;
  }

  function relative(kind, iso) {
    const offset = (serverNow() - Date.parse(iso)) / 1000;
    if (kind === "until") return offset < 0 ? `in ${fmtAge(-offset)}` : "due now";
    if (kind === "ago") return `${fmtAge(offset)} ago`;
    return fmtAge(offset);
  }

  function tick() {
    for (const node of document.querySelectorAll("time[data-tick]")) {
      const text = relative(node.dataset.tick, node.getAttribute("datetime"));
      if (node.textContent !== text) node.textContent = text;
    }
  }

  // cells -------------------------------------------------------------------------------------

  const badge = (state) => h("span", { class: `badge s-${state}` }, state.replace("_", " "));
  const ticking = (w) => h("time", { "data-tick": w.tick, datetime: w.at, title: w.title }, w.text);

  function actionForm(job, verb, label, style) {
    return h(
      "form",
      { class: "act", method: "post", action: `/api/jobs/${Number(job.id)}/${verb}` },
      h("input", { type: "hidden", name: "csrf_token", value: csrf }),
      h("input", { type: "hidden", name: "next", value: here() }),
      h("button", { type: "submit", class: `btn btn-sm ${style}`, "data-verb": verb, "data-job": job.id }, label),
    );
  }

  function actions(job) {
    return h(
      "div",
      { class: "acts" },
      job.can_cancel ? actionForm(job, "cancel", "Cancel", "btn-danger") : null,
      job.can_retry ? actionForm(job, "retry", "Retry", "btn-primary") : null,
    );
  }

  const CELLS = {
    id: (j) => h("td", { class: "c-id" }, h("a", { href: jobUrl(j) }, `#${j.id}`)),
    job: (j) =>
      h(
        "td",
        { class: "c-job" },
        h("a", { class: "job-label", href: jobUrl(j) }, h("span", { class: "cls" }, j.class_name), h("span", { class: "meth" }, `::${j.method}`)),
        j.chain_text ? [" ", h("span", { class: "chip", title: "link of a chain" }, `chain ${j.chain_text}`)] : null,
        j.batch_text ? [" ", h("span", { class: "chip", title: "in a batch" }, `batch ${j.batch_text}`)] : null,
        j.queue && j.queue !== "default" ? [" ", h("span", { class: "chip", title: "its named queue" }, `queue ${j.queue}`)] : null,
      ),
    params: (j) => h("td", { class: "c-params" }, h("code", { title: j.params_text }, j.params_text)),
    progress: (j) =>
      h(
        "td",
        { class: "c-progress" },
        j.progress === null || j.progress === undefined
          ? "—"
          : [h("progress", { max: 1, value: j.progress }), " ", h("span", { class: "progress-text", title: j.progress_text }, j.progress_text)],
      ),
    attempt: (j) => h("td", { class: "c-attempt" }, j.attempt_text),
    when: (j) => h("td", { class: "c-when" }, ticking(j.when)),
    worker: (j) => h("td", { class: "c-worker" }, j.worker_pid || "—"),
    node: (j) => h("td", { class: "c-node" }, j.node || "—"),
    position: (j) =>
      h(
        "td",
        { class: "c-position" },
        j.position,
        j.held ? [" ", h("span", { class: "chip", title: "its class is at its concurrency limit" }, "held")] : null,
      ),
    priority: (j) => h("td", { class: "c-priority" }, h("span", { class: `prio p-${j.priority}` }, j.priority)),
    state: (j) => h("td", { class: "c-state" }, badge(j.state)),
    duration: (j) => h("td", { class: "c-duration" }, j.duration_text),
    error: (j) => h("td", { class: "c-error" }, h("span", { title: j.error_text }, j.error_text || "—")),
    actions: (j) => h("td", { class: "c-actions" }, actions(j)),
  };

  // What a row shows apart from ticking times: a table is redrawn only when this changes,
  // so a button is never replaced under the pointer for nothing. The twin of
  // present.table_signature, whose value the server puts on the tables it renders.
  const signature = (jobs) =>
    JSON.stringify(
      jobs.map((j) => [j.id, j.state, j.attempts, j.worker_pid, j.error_text, j.position ?? null, j.held ?? null, j.progress_text ?? null, j.node ?? null, j.when.tick, j.when.at, j.duration_text]),
    );

  function fillTable(table, jobs) {
    redraw(table, signature(jobs), () => drawTable(table, jobs));
  }

  function drawTable(table, jobs) {
    const kinds = table.dataset.columns.split(" ");
    const tbody = table.tBodies[0];
    const before = new Set([...tbody.rows].map((row) => row.dataset.job));
    const rows = jobs.map((job) => {
      const row = h("tr", { "data-job": job.id, "data-state": job.state }, kinds.map((kind) => CELLS[kind](job)));
      if (!before.has(String(job.id))) row.classList.add("fresh");
      return row;
    });
    if (!rows.length) rows.push(h("tr", { class: "empty" }, h("td", { colspan: kinds.length }, table.dataset.empty)));
    tbody.replaceChildren(...rows);
  }

  // the jobs page -------------------------------------------------------------------------------

  function drawChart(box, c) {
    const group = (cls, nodes) => {
      const g = s("g", { class: cls });
      g.append(...nodes);
      return g;
    };
    const yAxis = s("svg", { class: "chart-y", width: 30, height: c.height, "aria-hidden": "true" });
    yAxis.append(...c.grid.map((m) => s("text", { x: 24, y: m.y, "text-anchor": "end", "dominant-baseline": "middle" }, m.label)));
    const plot = s("svg", {
      class: "chart-plot",
      viewBox: `0 0 ${c.minutes} ${c.height}`,
      preserveAspectRatio: "none",
      height: c.height,
      role: "img",
      "aria-label": "Jobs finished per minute over the last hour",
    });
    const slots = c.slots.map((slot) => {
      const rect = s("rect", { x: slot.x, y: 0, width: 1, height: c.height });
      rect.append(s("title", {}, slot.title));
      return rect;
    });
    plot.append(
      group("grid", c.grid.map((m) => s("line", { x1: 0, x2: c.minutes, y1: m.y, y2: m.y, "vector-effect": "non-scaling-stroke" }))),
      group("bars", c.rects.map((r) => s("rect", { class: r.cls, x: r.x, y: r.y, width: r.w, height: r.h }))),
      group("slots", slots),
    );
    const main = h(
      "div",
      { class: "chart-main" },
      plot,
      h("div", { class: "chart-x" }, c.xlabels.map((label) => h("span", {}, label))),
      h("p", { class: "chart-empty", hidden: !c.empty }, "No job finished in the last hour"),
    );
    box.replaceChildren(yAxis, main);
  }

  function showStats(stats) {
    for (const [state, count] of Object.entries(stats.counts)) {
      const node = document.querySelector(`[data-count="${CSS.escape(state)}"]`);
      if (node) node.textContent = count;
    }
    for (const node of document.querySelectorAll("[data-stat]")) {
      const value = stats[node.dataset.stat];
      if (value !== undefined) node.textContent = value;
    }
    redraw(document.getElementById("chart"), JSON.stringify(stats.chart), (box) => drawChart(box, stats.chart));
    for (const rate of stats.rates || []) {
      const row = document.querySelector(`[data-rate="${CSS.escape(rate.class_name)}"]`);
      if (!row) continue;
      for (const cell of row.querySelectorAll("[data-field]")) {
        const value = rate[cell.dataset.field];
        if (value !== undefined) cell.textContent = String(value);
      }
    }
    const nodes = document.getElementById("nodes");
    if (nodes && stats.nodes) {
      setText("node-count", String(stats.nodes.length));
      redraw(nodes, nodesSignature(stats.nodes), () => nodes.replaceChildren(...stats.nodes.map(nodeRow)));
    }
  }

  // The twin of columns.nodes_signature: the heartbeat ages tick by themselves.
  const nodesSignature = (nodes) => JSON.stringify(nodes.map((n) => [n.name, n.host, n.pid, n.this, n.expired, n.busy_text, n.heartbeat.at]));

  function nodeRow(n) {
    return h(
      "tr",
      { "data-node": n.name, class: n.expired ? "expired" : null },
      h(
        "td",
        { class: "c-node" },
        n.name,
        n.this ? [" ", h("span", { class: "chip", title: "the node serving this dashboard" }, "this node")] : null,
        n.expired ? [" ", h("span", { class: "chip", title: "past its lease: a live node reclaims its running jobs" }, "lease expired")] : null,
      ),
      h("td", {}, n.host),
      h("td", { class: "c-when" }, ticking(n.heartbeat)),
      h("td", { class: "c-busy" }, n.busy_text),
    );
  }

  function showLog(list, lines) {
    redraw(list, JSON.stringify(lines), () => drawLog(list, lines));
  }

  function drawLog(list, lines) {
    const items = lines.map((line) =>
      h(
        "li",
        { class: `log-line lvl-${(line.status || "raw").toLowerCase()}` },
        line.time ? h("time", {}, line.time) : null,
        line.status ? h("span", { class: "lvl" }, line.status) : null,
        line.label ? h("span", { class: "label" }, line.label) : null,
        h("span", { class: "msg" }, line.message),
      ),
    );
    if (!items.length) items.push(h("li", { class: "log-line empty" }, list.dataset.empty));
    list.replaceChildren(...items);
  }

  function showOverview(overview) {
    for (const [key, section] of Object.entries(overview)) {
      const card = document.querySelector(`[data-section="${CSS.escape(key)}"]`);
      if (!card) continue;
      const total = card.querySelector("[data-total]");
      if (total) total.textContent = section.total;
      const retryAll = card.querySelector('[data-verb="retry-failed"]');
      if (retryAll) retryAll.disabled = section.total === 0;
      fillTable(card.querySelector("table.jobs"), section.jobs);
    }
  }

  function pageLink(page, rel, label) {
    const params = new URLSearchParams(location.search);
    if (page > 1) params.set("page", page);
    else params.delete("page");
    return h("a", { class: "btn btn-sm btn-ghost", rel, id: `pager-${rel}`, href: `/dashboard/jobs?${params}` }, label);
  }

  function showListing(listing) {
    fillTable(document.querySelector('[data-section="listing"] table.jobs'), listing.jobs);
    const order = listing.order === "dispatch" ? "in dispatch order" : "newest first";
    setText("listing-summary", `${listing.total} ${listing.total === 1 ? "match" : "matches"}, ${order}`);
    const sig = JSON.stringify([listing.total, listing.page, listing.pages, listing.per_page, listing.order]);
    redraw(document.getElementById("pager"), sig, (pager) => drawPager(pager, listing));
  }

  function drawPager(pager, listing) {
    const first = (listing.page - 1) * listing.per_page;
    const shown = listing.total ? `${first + 1}–${Math.min(first + listing.per_page, listing.total)} of ${listing.total}` : "0 of 0";
    pager.replaceChildren(
      h("span", { class: "muted", id: "pager-text" }, `${shown} · page ${listing.page} of ${listing.pages}`),
      h("span", { class: "spacer" }),
      listing.page > 1 ? pageLink(listing.page - 1, "prev", "← Newer") : null,
      listing.page < listing.pages ? pageLink(listing.page + 1, "next", `${listing.order === "dispatch" ? "Later" : "Older"} →`) : null,
    );
  }

  async function refreshJobs() {
    const board = document.getElementById("board");
    const listing = board?.dataset.mode === "listing";
    const [stats, jobs, logs] = await Promise.all([
      getJson("/api/stats"),
      getJson(listing ? `/api/jobs${location.search}` : "/api/overview"),
      getJson("/api/logs"),
    ]);
    showStats(stats);
    if (listing) showListing(jobs);
    else showOverview(jobs);
    showLog(document.getElementById("log-main"), logs.main);
    showLog(document.getElementById("log-errors"), logs.errors);
  }

  // the job page ------------------------------------------------------------------------------

  function setHidden(id, hidden) {
    const node = document.getElementById(id);
    if (node) node.hidden = hidden;
  }

  function setText(id, text) {
    const node = document.getElementById(id);
    if (node && node.textContent !== text) node.textContent = text;
  }

  function linkItem(link, job) {
    return h(
      "li",
      { class: link.id === job.id ? "current" : null },
      h("a", { href: jobUrl(link) }, `#${link.id}`),
      " ",
      h("span", { class: "cls" }, link.class_name),
      h("span", { class: "meth" }, `::${link.method}`),
      " ",
      badge(link.state),
      " ",
      h("code", {}, link.params_text),
    );
  }

  function showDetail(detail) {
    const job = detail.job;
    document.getElementById("job-state").replaceChildren(badge(job.state));
    const acts = document.getElementById("job-actions");
    const actsSig = `${job.can_cancel}${job.can_retry}`;
    if (acts.dataset.sig !== actsSig) {
      acts.dataset.sig = actsSig;
      acts.replaceChildren(actions(job));
    }
    redraw(document.getElementById("fields"), JSON.stringify(detail.fields), (node) =>
      node.replaceChildren(...detail.fields.map(([label, text]) => h("div", {}, h("dt", {}, label), h("dd", {}, text)))),
    );
    showProgress(job);
    setText("params", detail.params_json);
    setHidden("result-box", detail.result_json === null);
    setText("result", detail.result_json ?? "");
    setHidden("error-box", detail.error === null);
    setText("error-summary", detail.error ? detail.error.summary : "");
    setHidden("error-trace-box", !detail.error?.traceback);
    setText("error-trace", detail.error?.traceback ?? "");
    setText("attempt-count", String(detail.attempts.length));
    showAttempts(detail.attempts);
    const output = detail.output;
    setText("output", output.text);
    setHidden("output", !output.text);
    setHidden("output-none", Boolean(output.text));
    setHidden("output-skipped", !output.skipped_bytes);
    setText("output-skipped", `Showing the end: ${output.skipped_bytes} earlier bytes are not shown.`);
    if (detail.batch) {
      setText("batch-counts", detail.batch.counts_text);
      redraw(document.getElementById("batch"), signature(detail.batch.members), (list) =>
        list.replaceChildren(...detail.batch.members.map((member) => linkItem(member, job))),
      );
    }
    redraw(document.getElementById("chain"), signature(detail.chain), (chain) =>
      chain.replaceChildren(
        ...detail.chain.map((link) => linkItem(link, job)),
      ),
    );
    document.getElementById("detail").dataset.state = job.state;
  }

  function showProgress(job) {
    const shown = job.progress !== null && job.progress !== undefined;
    setHidden("progress-box", !shown);
    const bar = document.getElementById("job-progress");
    if (bar && shown) bar.value = job.progress;
    setText("progress-text", job.progress_text ?? "");
  }

  function showAttempts(attempts) {
    const tbody = document.getElementById("attempts");
    redraw(tbody, JSON.stringify(attempts), () => drawAttempts(tbody, attempts));
  }

  function drawAttempts(tbody, attempts) {
    // Keep open tracebacks open across redraws.
    const open = new Set([...tbody.querySelectorAll("details[open]")].map((node) => node.dataset.n));
    const rows = attempts.map((a) =>
      h(
        "tr",
        {},
        h("td", { class: "c-position" }, a.number),
        h("td", {}, badge(a.outcome)),
        h("td", { class: "c-when" }, a.started_at_text),
        h("td", { class: "c-when" }, a.finished_at_text),
        h("td", { class: "c-duration" }, a.duration_text),
        h("td", { class: "c-node" }, a.node || "—"),
        h("td", { class: "c-worker" }, a.worker_pid || "—"),
        h(
          "td",
          { class: "c-error-full" },
          a.error_text ? h("span", { class: "err-summary" }, a.error_text) : "—",
          a.traceback
            ? h("details", { "data-n": a.number, open: open.has(String(a.number)) }, h("summary", {}, "traceback"), h("pre", { class: "trace" }, a.traceback))
            : null,
        ),
      ),
    );
    if (!rows.length) rows.push(h("tr", { class: "empty" }, h("td", { colspan: 8 }, "No attempt has started yet.")));
    tbody.replaceChildren(...rows);
  }

  async function refreshJob() {
    const id = Number(document.getElementById("detail").dataset.job);
    showDetail(await getJson(`/api/jobs/${id}`));
  }

  // talking to the daemon -----------------------------------------------------------------------

  async function getJson(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" });
    if (response.status === 401) {
      location.assign(`/login?next=${encodeURIComponent(here())}`);
      throw new Error("logged out");
    }
    if (!response.ok) throw new Error(`${url}: ${response.status}`);
    return response.json();
  }

  const refresh = page === "jobs" ? refreshJobs : page === "job" ? refreshJob : null;
  // A busy daemon sends events all the time: refresh at most this often, so that watching
  // it does not load it. Still well within a second of any change.
  const MIN_INTERVAL_MS = 400;
  let timer = null;
  let running = false;
  let again = false;
  let lastRun = 0;

  // Bursts of events become one refresh; a change during a refresh causes one more.
  function schedule(delay = 60) {
    if (!refresh || timer !== null) return;
    const wait = Math.max(delay, lastRun + MIN_INTERVAL_MS - Date.now());
    timer = setTimeout(run, wait);
  }

  async function run() {
    timer = null;
    if (running) {
      again = true;
      return;
    }
    running = true;
    lastRun = Date.now();
    try {
      await refresh();
    } catch (error) {
      console.warn("bgjobs: refresh failed", error);
    } finally {
      running = false;
      if (again) {
        again = false;
        schedule(0);
      }
    }
  }

  function setLive(state, text) {
    const live = document.getElementById("live");
    if (!live) return;
    live.dataset.state = state;
    live.querySelector(".live-text").textContent = text;
  }

  function connect() {
    const detail = document.getElementById("detail");
    const watch = detail ? detail.dataset.watch.split(" ").filter(Boolean) : [];
    const query = watch.length ? `?${watch.map((id) => `job=${Number(id)}`).join("&")}` : "";
    const source = new EventSource(`/api/events${query}`);
    setLive("connecting", "connecting…");
    // Whatever changed before the stream opened is read right away.
    source.addEventListener("hello", () => {
      setLive("live", "live");
      schedule(0);
    });
    source.addEventListener("jobs", () => schedule());
    source.addEventListener("reset", () => schedule());
    source.addEventListener("error", () => {
      setLive("connecting", "reconnecting…");
      // Refused (a 401 once the session ended: a logout elsewhere, a daemon restart), the
      // stream gives up; a refresh then finds out and goes to the login page.
      if (source.readyState === EventSource.CLOSED) {
        schedule(0);
        setTimeout(connect, 3000);
      }
    });
  }

  // actions ---------------------------------------------------------------------------------

  let toastTimer = null;
  function toast(message, bad) {
    const node = document.getElementById("toast");
    if (!node) return;
    node.textContent = message;
    node.classList.toggle("bad", Boolean(bad));
    node.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => {
      node.hidden = true;
    }, 4000);
  }

  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.classList.contains("act")) return;
    event.preventDefault();
    const button = form.querySelector("button");
    if (button) button.disabled = true;
    try {
      const response = await fetch(form.getAttribute("action"), {
        method: "POST",
        headers: { "X-CSRF-Token": csrf, Accept: "application/json" },
        body: new URLSearchParams(new FormData(form)),
        credentials: "same-origin",
      });
      const answer = await response.json().catch(() => ({}));
      toast(answer.message || (response.ok ? "Done." : `Refused (${response.status}).`), !response.ok);
    } catch (error) {
      toast("The daemon did not answer.", true);
    } finally {
      if (button && button.isConnected) button.disabled = false;
      schedule(0);
    }
  });

  // Choosing a state or class filters at once.
  document.getElementById("filters")?.addEventListener("change", (event) => {
    if (event.target instanceof HTMLSelectElement) event.currentTarget.requestSubmit();
  });

  if (refresh) {
    connect();
    setInterval(tick, 1000);
    // Log lines of the daemon itself and the chart's minutes change without job events.
    setInterval(() => schedule(0), 30000);
    // A running job's output grows without events.
    setInterval(() => {
      if (page === "job" && document.getElementById("detail")?.dataset.state === "running") schedule(0);
    }, 2000);
  }
})();
