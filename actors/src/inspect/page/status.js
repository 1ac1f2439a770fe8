// The status page: reads /v1/queue and /v1/history every REFRESH_MS and redraws the figures,
// the two charts (inline SVG) and the table of waiting executions. Everything it shows is
// written with textContent, never as HTML: execution and user ids come from requests.
"use strict";

const REFRESH_MS = 2000;
const LISTED = 100;
const SAMPLES_KEPT = 600;
const LEVELS = ["critical", "high", "normal", "low", "background"];
const SVG = "http://www.w3.org/2000/svg";

const $ = (id) => document.getElementById(id);
let refreshes = 0;

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

async function getJSON(url) {
  const response = await fetch(url, { cache: "no-store" });
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    // Not JSON: say the status below.
  }
  if (!response.ok) {
    throw new Error(body && body.error ? body.error : `${url} answered HTTP ${response.status}`);
  }
  return body;
}

// ---- formatting -------------------------------------------------------------------------

function cores(millis) {
  const c = millis / 1000;
  return c >= 100 ? c.toFixed(0) : c >= 10 ? c.toFixed(1) : c.toFixed(2).replace(/\.?0+$/, "") || "0";
}

function mib(n) {
  if (n >= 1024) {
    const g = n / 1024;
    return `${g >= 100 ? g.toFixed(0) : g.toFixed(1).replace(/\.0$/, "")} GiB`;
  }
  return `${n} MiB`;
}

function amount(resource, n) {
  switch (resource) {
    case "cpu": return n >= 1000 ? `${cores(n)} CPU cores` : `${n}m CPU`;
    case "memory": return mib(n);
    case "gpu": return `${n} GPU${n === 1 ? "" : "s"}`;
    default: return `${n} ${resource}`;
  }
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  const whole = Math.round(seconds);
  if (whole < 60) return `${whole} s`;
  const m = Math.floor(whole / 60);
  if (m < 60) return `${m} m ${whole - m * 60} s`;
  const h = Math.floor(m / 60);
  return `${h} h ${m - h * 60} m`;
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function reasonText(reason) {
  switch (reason.kind) {
    case "starting": return ["starting", "fits; the next pass starts it"];
    case "pool_full": return ["pool full", `short of ${amount(reason.resource, reason.short_by)}`];
    case "behind_higher_priority": return ["behind higher priority", ""];
    case "behind_earlier_arrivals": return ["behind earlier arrivals", ""];
    case "reserved_for": return ["reserved", `the pool is held for ${reason.execution_id}`];
    default: return [reason.kind.replace(/_/g, " "), ""];
  }
}

function pct(part, whole) {
  return whole > 0 ? Math.min(100, (100 * part) / whole) : 0;
}

// ---- the figures now --------------------------------------------------------------------

function renderNow(queue) {
  $("policy").replaceChildren("policy ", el("b", {}, queue.scheduler.policy));
  const mode = $("mode");
  mode.replaceChildren("mode ", el("b", {}, queue.scheduler.mode));
  mode.classList.toggle("blocked", queue.scheduler.mode === "blocked");

  $("queued-total").textContent = queue.queued.toLocaleString();
  const bar = $("level-bar");
  const counts = $("level-counts");
  bar.replaceChildren();
  counts.replaceChildren();
  for (const level of LEVELS) {
    const n = queue.depth[level];
    if (n > 0) {
      bar.append(el("span", { style: `width:${pct(n, queue.queued)}%;background:var(--${level})`, title: `${level}: ${n}` }));
    }
    const item = el("li");
    item.append(el("i", { style: `background:var(--${level})` }), `${level} `, el("b", {}, String(n)));
    counts.append(item);
  }

  const pool = queue.pool;
  $("active-total").textContent = pool.active_allocations.toLocaleString();
  $("scheduling-total").textContent = String(queue.being_scheduled);

  const meter = (name, used, total, reserve, label) => {
    $(`${name}-used`).textContent = label(used);
    $(`${name}-total`).textContent = label(total);
    $(`${name}-fill`).style.width = `${pct(used, total)}%`;
    const r = $(`${name}-reserve`);
    if (r) r.style.width = `${pct(reserve, total)}%`;
  };
  meter("cpu", pool.used.cpu_millis, pool.total.cpu_millis, pool.reserve.cpu_millis, cores);
  $("cpu-unit").textContent = pool.total.cpu_millis === 1000 ? "core" : "cores";
  $("cpu-note").textContent = `${cores(pool.free.cpu_millis)} free · ${cores(pool.reserve.cpu_millis)} reserved`;
  // Used and total in the total's unit, the unit once: "35.3 / 76.8 GiB".
  const gib = pool.total.memory_mib >= 1024;
  const inUnit = (n) => (gib ? (n / 1024).toFixed(1).replace(/\.0$/, "") : String(n));
  meter("memory", pool.used.memory_mib, pool.total.memory_mib, pool.reserve.memory_mib, inUnit);
  $("memory-unit").textContent = gib ? "GiB" : "MiB";
  $("memory-note").textContent = `${mib(pool.free.memory_mib)} free · ${mib(pool.reserve.memory_mib)} reserved`;
  meter("gpu", pool.used.gpu, pool.total.gpu, 0, String);
  $("gpu-note").textContent = pool.total.gpu > 0 ? `${pool.free.gpu} free` : "no GPUs in the pool";
}

// ---- the table --------------------------------------------------------------------------

function renderWaiting(queue) {
  const rows = queue.executions.map((e) => {
    const row = el("tr", { "data-execution-id": e.execution_id });
    row.append(el("td", { class: "num" }, String(e.position)));
    row.append(el("td", { class: "id", title: e.execution_id }, e.execution_id));
    row.append(el("td", { class: "user", title: e.user_id }, e.user_id));
    const level = el("td");
    level.append(el("span", { class: `level ${e.level_now}` }, e.level_now));
    if (e.level_asked !== e.level_now) {
      level.append(el("span", { class: "asked", title: `the request asked for ${e.level_asked}; demoted while waiting` }, `↓ asked ${e.level_asked}`));
    }
    row.append(level);
    row.append(el("td", { class: "num" }, duration(e.waited_seconds)));
    const estimate = e.estimated_wait_seconds;
    const bound = e.estimated_wait_bound_seconds;
    const guess = el("td", {
      class: estimate === null ? "num muted" : "num",
      title: estimate === null
        ? "no estimate yet"
        : `half the executions in its place start within ${duration(estimate)}, nine in ten within ${duration(bound)}`,
    }, duration(estimate));
    if (estimate !== null && bound !== null && bound > estimate) {
      guess.append(el("span", { class: "bound" }, ` ≤ ${duration(bound)}`));
    }
    row.append(guess);
    const [tag, why] = reasonText(e.reason);
    const reason = el("span", { class: `reason ${e.reason.kind}` });
    reason.append(el("span", { class: "tag" }, tag));
    if (why) reason.append(el("span", { class: "why" }, why));
    const cell = el("td");
    cell.append(reason);
    row.append(cell);
    const r = e.resources;
    const reserves = `${cores(r.cpu_millis)} CPU · ${mib(r.memory_mib)}${r.gpu ? ` · ${r.gpu} GPU` : ""}`;
    row.append(el("td", { class: "num muted" }, reserves));
    return row;
  });
  $("waiting").replaceChildren(...rows);
  $("waiting-empty").hidden = rows.length > 0;
  const shown = queue.executions.length;
  // Mid-pass, the executions a scheduling pass holds are not listed: say why the positions
  // do not start at 0.
  const held = queue.being_scheduled > 0
    ? ` (the ${queue.being_scheduled.toLocaleString()} ahead are in a scheduling pass)`
    : "";
  $("waiting-hint").textContent = (queue.queued > shown
    ? `first ${shown} of ${queue.queued.toLocaleString()}, in dispatch order`
    : "in dispatch order") + held;
}

// ---- charts -----------------------------------------------------------------------------

const PLOT = { left: 40, right: 12, top: 10, bottom: 24 };

// The time the charts span: what the history holds, from one minute up to all of it (ten
// minutes), so a daemon that just started does not draw in a sliver at the right.
function windowOf(history) {
  const samples = history.samples;
  const held = samples[samples.length - 1].at_ms - samples[0].at_ms;
  const most = SAMPLES_KEPT * history.interval_seconds * 1000;
  const span = Math.min(most, Math.max(60000, Math.ceil(held / 60000) * 60000));
  const label = `last ${Math.round(span / 60000)} minute${span === 60000 ? "" : "s"}`;
  $("depth-span").textContent = label;
  $("pool-span").textContent = `share of capacity, ${label}`;
  return span;
}

function niceMax(value) {
  if (value <= 4) return 4;
  const step = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 2.5, 5, 10]) {
    if (m * step >= value) return m * step;
  }
  return 10 * step;
}

// A frame: gridlines, y labels, x labels; returns the scales.
function frame(root, samples, span, yMax, yLabel) {
  const width = root.clientWidth || 600;
  const height = root.clientHeight || 210;
  const w = width - PLOT.left - PLOT.right;
  const h = height - PLOT.top - PLOT.bottom;
  const end = samples[samples.length - 1].at_ms;
  const start = end - span;
  const x = (t) => PLOT.left + (w * (t - start)) / span;
  const y = (v) => PLOT.top + h - (h * v) / yMax;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none" });
  for (let i = 0; i <= 4; i++) {
    const v = (yMax * i) / 4;
    chart.append(svg("line", { class: i === 0 ? "baseline" : "gridline", x1: PLOT.left, x2: width - PLOT.right, y1: y(v), y2: y(v) }));
    chart.append(svg("text", { class: "axis", x: PLOT.left - 6, y: y(v) + 4, "text-anchor": "end" }, yLabel(v)));
  }
  // Ticks back from the newest sample, at a round step that gives at most six of them.
  const step = [10, 15, 30, 60, 120, 300].map((s) => s * 1000).find((s) => span / s <= 6) || 300000;
  for (let ago = 0; ago <= span; ago += step) {
    const anchor = ago === 0 ? "end" : ago + step > span ? "start" : "middle";
    const label = ago === 0 ? "now" : step < 60000 ? `−${ago / 1000} s` : `−${ago / 60000} min`;
    chart.append(svg("text", { class: "axis", x: x(end - ago), y: height - 6, "text-anchor": anchor }, label));
  }
  return { chart, x, y, start, width, height };
}

function waitingFor(root, text) {
  const width = root.clientWidth || 600;
  const height = root.clientHeight || 210;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}` });
  chart.append(svg("text", { class: "waiting", x: width / 2, y: height / 2, "text-anchor": "middle" }, text));
  root.replaceChildren(chart);
}

function renderDepth(history) {
  const root = $("depth-chart");
  const samples = history.samples;
  const legend = $("depth-legend");
  legend.replaceChildren(...LEVELS.map((level) => {
    const item = el("li");
    item.append(el("i", { style: `background:var(--${level})` }), level);
    return item;
  }));
  if (samples.length < 2) {
    waitingFor(root, "collecting samples…");
    return;
  }
  const span = windowOf(history);
  const totals = samples.map((s) => LEVELS.reduce((sum, l) => sum + s.depth[l], 0));
  const yMax = niceMax(Math.max(...totals));
  const { chart, x, y, start } = frame(root, samples, span, yMax, (v) => (Number.isInteger(v) ? String(v) : v.toFixed(1)));
  const shown = samples.filter((s) => s.at_ms >= start);
  // Stacked from the bottom: background lowest, critical on top.
  const base = shown.map(() => 0);
  for (const level of [...LEVELS].reverse()) {
    const top = shown.map((s, i) => base[i] + s.depth[level]);
    if (top.some((v, i) => v !== base[i])) {
      const upper = shown.map((s, i) => `${x(s.at_ms).toFixed(1)},${y(top[i]).toFixed(1)}`);
      const lower = shown.map((s, i) => `${x(s.at_ms).toFixed(1)},${y(base[i]).toFixed(1)}`).reverse();
      const color = cssVar(`--${level}`);
      chart.append(svg("polygon", { points: [...upper, ...lower].join(" "), fill: color, "fill-opacity": "0.78" }));
      chart.append(svg("polyline", { points: upper.join(" "), fill: "none", stroke: color, "stroke-width": "1.5" }));
    }
    top.forEach((v, i) => { base[i] = v; });
  }
  root.replaceChildren(chart);
}

function renderPool(history) {
  const root = $("pool-chart");
  const samples = history.samples;
  const total = history.total;
  const series = [
    { name: "cpu", label: "CPU", color: "--cpu", used: (s) => s.used.cpu_millis, total: total.cpu_millis },
    { name: "memory", label: "memory", color: "--memory", used: (s) => s.used.memory_mib, total: total.memory_mib },
    { name: "gpu", label: "GPU", color: "--gpu", used: (s) => s.used.gpu, total: total.gpu },
  ].filter((s) => s.total > 0);
  const last = samples[samples.length - 1];
  $("pool-legend").replaceChildren(...series.map((s) => {
    const item = el("li");
    item.append(el("i", { style: `background:var(${s.color})` }), `${s.label} `, el("b", {}, last ? `${pct(s.used(last), s.total).toFixed(0)}%` : "–"));
    return item;
  }));
  if (samples.length < 2) {
    waitingFor(root, "collecting samples…");
    return;
  }
  const span = windowOf(history);
  const { chart, x, y, start } = frame(root, samples, span, 100, (v) => `${v}%`);
  const shown = samples.filter((s) => s.at_ms >= start);
  for (const s of series) {
    const points = shown.map((sample) => `${x(sample.at_ms).toFixed(1)},${y(pct(s.used(sample), s.total)).toFixed(1)}`);
    const color = cssVar(s.color);
    const area = [...points, `${x(shown[shown.length - 1].at_ms).toFixed(1)},${y(0)}`, `${x(shown[0].at_ms).toFixed(1)},${y(0)}`];
    chart.append(svg("polygon", { points: area.join(" "), fill: color, "fill-opacity": "0.10" }));
    chart.append(svg("polyline", { points: points.join(" "), fill: "none", stroke: color, "stroke-width": "2", "stroke-linejoin": "round" }));
  }
  root.replaceChildren(chart);
}

// ---- the loop ---------------------------------------------------------------------------

function setLive(ok, text) {
  const live = $("live");
  live.classList.toggle("ok", ok);
  live.classList.toggle("down", !ok);
  $("live-text").textContent = text;
}

function setBanner(message) {
  const banner = $("banner");
  banner.hidden = !message;
  banner.textContent = message || "";
}

async function refresh() {
  const [queue, history] = await Promise.allSettled([
    getJSON(`/v1/queue?limit=${LISTED}`),
    getJSON("/v1/history"),
  ]);
  if (history.status === "fulfilled") {
    renderDepth(history.value);
    renderPool(history.value);
  }
  if (queue.status === "fulfilled") {
    renderNow(queue.value);
    renderWaiting(queue.value);
    setBanner(null);
    setLive(true, `live · ${clock(Date.now())}`);
    refreshes += 1;
    document.body.dataset.state = "ready";
    document.body.dataset.refreshes = String(refreshes);
  } else {
    const error = queue.reason && queue.reason.message ? queue.reason.message : String(queue.reason);
    const reached = history.status === "fulfilled";
    setBanner(reached ? error : `The coordinator does not answer: ${error}`);
    setLive(false, reached ? "not serving" : "unreachable");
    document.body.dataset.state = "error";
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
