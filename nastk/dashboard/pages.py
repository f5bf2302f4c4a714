"""The dashboard's HTML: one page skeleton per view, filled in the browser from the JSON
endpoints (every string from a store is set as text, never as markup: an architecture or an
error text holding ``<script>`` shows as those characters). The skeletons themselves carry
only escaped values."""

from __future__ import annotations

import json
from html import escape
from typing import Any

__all__ = ["compare_page", "page", "run_page", "runs_page", "study_page", "supernet_page",
           "trial_page"]

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.2rem 2rem;color:#222}
a{color:#1a5fb4;text-decoration:none} a:hover{text-decoration:underline}
table{border-collapse:collapse;font-size:.9rem;margin:.5rem 0}
th,td{border-bottom:1px solid #ddd;padding:.25rem .6rem;text-align:left;vertical-align:top}
th{background:#f4f4f4;cursor:pointer;user-select:none} td.num{text-align:right}
.status-failed{color:#b00} .status-running{color:#1a5fb4} .muted{color:#777}
.plots{display:flex;flex-wrap:wrap;gap:1rem} pre{background:#f6f6f6;padding:.5rem;
white-space:pre-wrap;max-width:70rem} .bar{margin:.5rem 0} input,select{margin-right:.5rem}
"""

#: helpers every page's script shares: text-only cells, number formatting, polling
_COMMON_JS = r"""
const $ = (s) => document.querySelector(s);
function cell(tr, text, cls) { const td = document.createElement('td');
  td.textContent = text === null || text === undefined ? '-' : String(text);
  if (cls) td.className = cls; tr.appendChild(td); return td; }
function link(td, href, text) { td.textContent = ''; const a = document.createElement('a');
  a.href = href; a.textContent = String(text); td.appendChild(a); }
function fmt(v) { if (v === null || v === undefined) return '-';
  if (typeof v !== 'number') return String(v);
  const a = Math.abs(v); if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(3);
  return Number(v.toPrecision(5)).toString(); }
async function getJSON(url) { const r = await fetch(url, {cache: 'no-store'});
  if (!r.ok) throw new Error(url + ': ' + r.status); return r.json(); }
function every(ms, fn) { fn(); return setInterval(fn, ms); }
"""


def page(title: str, body: str, script: str = "", data: dict[str, Any] | None = None,
         plots: bool = False) -> str:
    """A whole HTML page: ``title`` escaped; ``body`` and ``script`` are the dashboard's own
    markup; ``data`` is passed to the script as JSON inside a non-executable block."""
    blob = "" if data is None else (
        '<script type="application/json" id="page-data">'
        + json.dumps(data).replace("<", "\\u003c").replace(">", "\\u003e")
        .replace("&", "\\u0026") + "</script>")
    libs = ('<script src="/static/js/bokeh.min.js"></script>'
            '<script src="/static/js/bokeh-api.min.js"></script>') if plots else ""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}"
            f"</title><style>{_STYLE}</style>{libs}</head><body>"
            f"<p class='muted'><a href='/'>nastk dashboard</a></p>{body}{blob}"
            f"<script>{_COMMON_JS}{script}</script></body></html>")


def runs_page() -> str:
    """Every folder found: runs (sortable, filterable), studies and supernet trainings."""
    body = """<h1>Runs</h1>
<div class="bar"><input id="filter" placeholder="filter (task, space, strategy, name)">
<a id="compare" href="/compare">compare the runs ticked</a>
<span class="muted" id="count"></span></div>
<table id="runs"><thead><tr><th></th>
<th data-k="name">run</th><th data-k="task">task</th><th data-k="space">space</th>
<th data-k="strategy">strategy</th><th data-k="status">status</th>
<th data-k="complete">done</th><th data-k="failed">failed</th><th data-k="budget">budget</th>
<th data-k="best">best</th><th data-k="last_activity">last activity</th>
</tr></thead><tbody></tbody></table>
<h2>Studies</h2><ul id="studies"></ul><h2>Supernet trainings</h2><ul id="supernets"></ul>"""
    script = r"""
let runs = [], key = 'last_activity', desc = true;
const ticked = new Set(), tickedStudies = new Set();
function compareLink() {
  const q = [];
  if (ticked.size) q.push('runs=' + [...ticked].map(encodeURIComponent).join(','));
  if (tickedStudies.size) q.push('studies=' + [...tickedStudies].map(encodeURIComponent)
    .join(','));
  $('#compare').href = '/compare?' + q.join('&'); }
document.querySelectorAll('#runs th').forEach(th => th.onclick = () => {
  desc = key === th.dataset.k ? !desc : false; key = th.dataset.k; draw(); });
$('#filter').oninput = draw;
function draw() {
  const q = $('#filter').value.toLowerCase();
  const rows = runs.filter(r => !q || [r.name, r.task, r.space, r.strategy, r.path]
    .some(v => String(v || '').toLowerCase().includes(q)));
  rows.sort((a, b) => { const x = a[key], y = b[key];
    const c = x === y ? 0 : (x === null || x === undefined) ? 1 : (y === null ||
      y === undefined) ? -1 : x < y ? -1 : 1; return desc ? -c : c; });
  const tb = $('#runs tbody'); tb.textContent = '';
  for (const r of rows) { const tr = document.createElement('tr');
    const box = document.createElement('input'); box.type = 'checkbox';
    box.checked = ticked.has(r.id); box.onchange = () => { box.checked ? ticked.add(r.id) :
      ticked.delete(r.id); compareLink(); }; cell(tr, '').appendChild(box);
    link(cell(tr, ''), '/run/' + encodeURIComponent(r.id), r.path);
    cell(tr, r.task); cell(tr, r.space); cell(tr, r.strategy);
    cell(tr, r.status, 'status-' + r.status); cell(tr, r.complete, 'num');
    cell(tr, r.failed, 'num'); cell(tr, r.budget, 'num'); cell(tr, fmt(r.best), 'num');
    cell(tr, r.last_activity ? new Date(r.last_activity * 1000).toLocaleString() : '-');
    tb.appendChild(tr); }
  $('#count').textContent = rows.length + ' of ' + runs.length + ' runs';
}
every(3000, async () => { const d = await getJSON('/api/runs'); runs = d.runs;
  for (const [sel, list, base] of [['#studies', d.studies, '/study/'],
                                   ['#supernets', d.supernets, '/supernet/']]) {
    const ul = $(sel); ul.textContent = '';
    for (const s of list) { const li = document.createElement('li');
      if (base === '/study/') { const box = document.createElement('input');
        box.type = 'checkbox'; box.checked = tickedStudies.has(s.id);
        box.onchange = () => { box.checked ? tickedStudies.add(s.id) :
          tickedStudies.delete(s.id); compareLink(); }; li.appendChild(box); }
      const a = document.createElement('a'); a.href = base + encodeURIComponent(s.id);
      a.textContent = s.path; li.appendChild(a); ul.appendChild(li); } }
  draw(); });
"""
    return page("nastk dashboard", body, script)


def run_page(run_id: str, name: str) -> str:
    """One run: summary, best-so-far curve, front in two objectives, the trial table."""
    body = f"""<h1>{escape(name)}</h1>
<table id="summary"><tbody></tbody></table>
<div class="plots"><div id="curve"></div><div><div class="bar">front:
<select id="fx"></select><select id="fy"></select></div><div id="front"></div></div></div>
<h2>Plots from the report</h2><div class="plots" id="report-plots"></div>
<h2>Trials</h2><div class="bar">status <select id="status"><option value="">all</option>
<option>complete</option><option>failed</option><option>running</option>
<option>interrupted</option><option>paused</option></select>
<button id="prev">&larr;</button><span id="page"></span><button id="next">&rarr;</button></div>
<table id="trials"><thead><tr><th data-k="id">trial</th><th data-k="status">status</th>
<th data-k="value" id="metric-head">value</th><th data-k="resource">resource</th>
<th>costs</th><th data-k="duration_s">time (s)</th><th>architecture</th><th>error</th>
</tr></thead><tbody></tbody></table>"""
    script = r"""
const RUN = JSON.parse($('#page-data').textContent).run;
const api = (p) => '/api/run/' + encodeURIComponent(RUN) + p;
let offset = 0, limit = 50, sort = 'id', desc = false, total = 0;
document.querySelectorAll('#trials th[data-k]').forEach(th => th.onclick = () => {
  desc = sort === th.dataset.k ? !desc : false; sort = th.dataset.k; offset = 0; trials(); });
$('#status').onchange = () => { offset = 0; trials(); };
$('#prev').onclick = () => { offset = Math.max(0, offset - limit); trials(); };
$('#next').onclick = () => { if (offset + limit < total) { offset += limit; trials(); } };
async function trials() {
  const st = $('#status').value;
  const d = await getJSON(api('/trials?offset=' + offset + '&limit=' + limit + '&sort=' +
    sort + '&desc=' + (desc ? 1 : 0) + (st ? '&status=' + st : '')));
  total = d.total; $('#metric-head').textContent = d.metric;
  $('#page').textContent = ' ' + (total ? offset + 1 : 0) + '-' +
    Math.min(offset + limit, total) + ' of ' + total + ' ';
  const tb = $('#trials tbody'); tb.textContent = '';
  for (const r of d.rows) { const tr = document.createElement('tr'); tr.dataset.trial = r.id;
    link(cell(tr, ''), '/run/' + encodeURIComponent(RUN) + '/trial/' + r.id, r.id);
    cell(tr, r.status, 'status-' + r.status); cell(tr, fmt(r.value), 'num');
    cell(tr, r.resource, 'num');
    cell(tr, Object.entries(r.costs).map(([k, v]) => k + '=' + fmt(v)).join(' '));
    cell(tr, fmt(r.duration_s), 'num'); cell(tr, JSON.stringify(r.arch));
    cell(tr, r.error); tb.appendChild(tr); }
}
async function summary() {
  const s = await getJSON(api('/summary')); const tb = $('#summary tbody'); tb.textContent = '';
  for (const [k, v] of [['task', s.task], ['space', s.space], ['strategy', s.strategy],
      ['status', s.status], ['trials done', s.complete + s.failed], ['failed', s.failed],
      ['running', s.running], ['budget (trials)', s.budget],
      ['best ' + s.metric + ' (' + s.direction + ')', fmt(s.best) +
       (s.best_trial ? ' (trial ' + s.best_trial + ')' : '')]]) {
    const tr = document.createElement('tr'); cell(tr, k); cell(tr, v); tb.appendChild(tr); }
  const shown = $('#report-plots');
  if (shown.dataset.plots !== (s.plots || []).join()) { shown.dataset.plots =
      (s.plots || []).join(); shown.textContent = '';
    for (const n of s.plots || []) { const img = document.createElement('img');
      img.src = '/run/' + encodeURIComponent(RUN) + '/plot/' + encodeURIComponent(n) +
        '?t=' + Date.now(); img.alt = n; img.style.maxWidth = '600px'; shown.appendChild(img); }
    if (!(s.plots || []).length) shown.textContent = 'none yet (written when the run ends)'; }
  return s;
}
let curveSrc = null, frontSrc = null, otherSrc = null, names = null, frontPlot = null;
function plot(el, title, xl, yl) {
  const p = Bokeh.Plotting.figure({title: title, width: 460, height: 320,
    x_axis_label: xl, y_axis_label: yl, tools: 'pan,wheel_zoom,box_zoom,reset,hover'});
  $(el).textContent = ''; Bokeh.Plotting.show(p, $(el)); return p; }
async function curve() {
  const c = await getJSON(api('/curve'));
  const stairs = {x: [], y: []};  // best so far holds until the next improvement
  c.x.forEach((x, i) => { if (i) { stairs.x.push(x); stairs.y.push(c.y[i - 1]); }
    stairs.x.push(x); stairs.y.push(c.y[i]); });
  if (!curveSrc) { curveSrc = new Bokeh.ColumnDataSource({data: stairs});
    const p = plot('#curve', 'best so far', 'trials finished', c.metric);
    p.line({field: 'x'}, {field: 'y'}, {source: curveSrc, line_width: 2});
  }
  else { curveSrc.data = stairs; }
}
async function front() {
  const fx = $('#fx').value, fy = $('#fy').value;
  const f = await getJSON(api('/front' + (fx ? '?x=' + encodeURIComponent(fx) + '&y=' +
    encodeURIComponent(fy) : '')));
  if (!names || names.join() !== f.names.join()) { names = f.names;
    for (const [sel, v] of [['#fx', f.x], ['#fy', f.y]]) { const s = $(sel); s.textContent = '';
      for (const n of names) { const o = document.createElement('option'); o.value = n;
        o.textContent = n; o.selected = n === v; s.appendChild(o); } s.onchange = () => {
        frontSrc = null; front(); }; } }
  const col = (pts) => ({x: pts.map(p => p[1]), y: pts.map(p => p[2]),
                         trial: pts.map(p => p[0]), arch: pts.map(p => p[3])});
  if (!frontSrc) {
    frontSrc = new Bokeh.ColumnDataSource({data: col(f.front)});
    otherSrc = new Bokeh.ColumnDataSource({data: col(f.others)});
    const p = plot('#front', '', f.x, f.y); frontPlot = p;
    p.scatter({field: 'x'}, {field: 'y'}, {source: otherSrc, size: 4, fill_alpha: 0.3,
      color: 'grey'});
    p.scatter({field: 'x'}, {field: 'y'}, {source: frontSrc, size: 7, color: 'red'});
    const hover = p.toolbar.tools.find(t => t.type === 'HoverTool');
    if (hover) hover.tooltips = [['trial', '@trial'], [f.x, '@x'], [f.y, '@y'],
                                 ['architecture', '@arch']];
  } else { frontSrc.data = col(f.front); otherSrc.data = col(f.others); }
  frontPlot.title.text = 'Pareto front: ' + f.front.length + ' of ' + f.n + ' trials';
  $('#front').dataset.frontPoints = f.front.length;
}
every(2000, async () => { await summary(); await trials(); await curve(); await front(); });
"""
    return page(f"run {name}", body, script, {"run": run_id}, plots=True)


def trial_page(run_id: str, name: str, trial_id: int) -> str:
    """One trial: architecture, metrics, costs, loss terms, rungs, per-epoch curve, error."""
    body = f"""<h1>{escape(name)}: trial {int(trial_id)}</h1>
<p><a href="/run/{escape(run_id)}">back to the run</a></p>
<table id="fields"><tbody></tbody></table><h2>Architecture</h2><pre id="arch"></pre>
<h2>Rungs</h2><div id="rung-curve"></div><table id="rungs"><thead><tr><th>rung</th>
<th>resource</th><th>cost</th><th>status</th><th>metrics</th></tr></thead><tbody></tbody></table>
<h2>Error</h2><pre id="error"></pre><h2>Info</h2><pre id="info"></pre>"""
    script = r"""
const D = JSON.parse($('#page-data').textContent);
every(3000, async () => {
  const t = await getJSON('/api/run/' + encodeURIComponent(D.run) + '/trial/' + D.trial);
  const tb = $('#fields tbody'); tb.textContent = '';
  const rows = [['status', t.status], ['duration (s)', fmt(t.duration_s)]];
  for (const [k, v] of Object.entries(t.metrics)) rows.push([k, fmt(v)]);
  for (const [k, v] of Object.entries(t.costs)) rows.push([k + ' (cost)', fmt(v)]);
  for (const [k, v] of rows) { const tr = document.createElement('tr'); cell(tr, k);
    cell(tr, v); tb.appendChild(tr); }
  $('#arch').textContent = JSON.stringify(t.arch, null, 1);
  $('#error').textContent = t.error || '-';
  $('#info').textContent = JSON.stringify(t.info, null, 1);
  const rb = $('#rungs tbody'); rb.textContent = '';
  for (const r of t.rungs) { const tr = document.createElement('tr'); cell(tr, r.rung);
    cell(tr, r.resource); cell(tr, r.cost); cell(tr, r.status);
    cell(tr, Object.entries(r.metrics).map(([k, v]) => k + '=' + fmt(v)).join(' '));
    rb.appendChild(tr); }
  const m = t.objective.metric, div = $('#rung-curve');
  if (t.rungs.length > 1 && div.dataset.n !== String(t.rungs.length)) {
    div.dataset.n = String(t.rungs.length); div.textContent = '';
    const p = Bokeh.Plotting.figure({title: m + ' at each rung', width: 460, height: 280,
      x_axis_label: 'resource', y_axis_label: m, tools: 'pan,wheel_zoom,reset,hover'});
    const xs = t.rungs.map(r => r.resource), ys = t.rungs.map(r => r.metrics[m]);
    p.line({x: xs, y: ys, line_width: 2}); p.scatter({x: xs, y: ys, size: 6});
    Bokeh.Plotting.show(p, div); }
});
"""
    return page(f"trial {trial_id}", body, script, {"run": run_id, "trial": int(trial_id)},
                plots=True)


def study_page(study_id: str, name: str) -> str:
    """A study: its cross-task leaderboard and, per task, each strategy's final value."""
    body = f"""<h1>study {escape(name)}</h1><h2>Cross-task leaderboard</h2>
<table id="board"><thead><tr><th>strategy</th><th>average rank</th>
<th>mean normalised regret</th></tr></thead><tbody></tbody></table>
<div id="hv"></div><h2>Tasks</h2><div id="tasks"></div>"""
    script = r"""
const D = JSON.parse($('#page-data').textContent);
every(30000, async () => {
  const s = await getJSON('/api/study/' + encodeURIComponent(D.study));
  const tb = $('#board tbody'); tb.textContent = '';
  for (const r of s.leaderboard) { const tr = document.createElement('tr');
    cell(tr, r.strategy); cell(tr, fmt(r.average_rank), 'num');
    cell(tr, fmt(r.mean_normalised_regret), 'num'); tb.appendChild(tr); }
  const hv = $('#hv'); hv.textContent = '';
  if (s.hypervolume_leaderboard) { const h = document.createElement('h2');
    h.textContent = 'Hypervolume leaderboard (' + s.hypervolume_tasks.join(', ') + ')';
    hv.appendChild(h); const table = document.createElement('table');
    const head = document.createElement('tr'); cell(head, 'strategy');
    cell(head, 'average rank'); cell(head, 'mean hypervolume'); table.appendChild(head);
    for (const r of s.hypervolume_leaderboard) { const tr = document.createElement('tr');
      cell(tr, r.strategy); cell(tr, fmt(r.average_rank), 'num');
      cell(tr, fmt(r.mean_hypervolume), 'num'); table.appendChild(tr); }
    hv.appendChild(table); }
  const box = $('#tasks'); box.textContent = '';
  for (const [task, t] of Object.entries(s.tasks)) {
    const h = document.createElement('h3'); h.textContent = task + ' (budget ' + t.budget +
      ', target ' + fmt(t.target) + ')'; box.appendChild(h);
    const table = document.createElement('table'); const head = document.createElement('tr');
    for (const k of ['strategy', 'mean', 'std', 'median queries to target', 'reached',
                     'hypervolume', 'hypervolume std']) { const th = document.createElement('th');
      th.textContent = k; head.appendChild(th); } table.appendChild(head);
    for (const [st, r] of Object.entries(t.strategies)) { const tr = document.createElement('tr');
      cell(tr, st); cell(tr, fmt(r.mean), 'num'); cell(tr, fmt(r.std), 'num');
      cell(tr, fmt(r.median_queries_to_target), 'num');
      cell(tr, r.reached + '/' + r.seeds, 'num'); cell(tr, fmt(r.hypervolume), 'num');
      cell(tr, fmt(r.hypervolume_std), 'num');
      table.appendChild(tr); }
    box.appendChild(table);
    const plotDiv = document.createElement('div'); plotDiv.className = 'curve';
    plotDiv.dataset.task = task; box.appendChild(plotDiv); }
  const c = await getJSON('/api/study/' + encodeURIComponent(D.study) + '/curves');
  const palette = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b',
                   '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
  for (const div of document.querySelectorAll('#tasks .curve')) {
    const t = c[div.dataset.task]; if (!t) continue;
    const p = Bokeh.Plotting.figure({title: div.dataset.task + ': mean over seeds, band: ' +
      'min to max', width: 620, height: 320, x_axis_label: 'queries',
      y_axis_label: t.ylabel, tools: 'pan,wheel_zoom,box_zoom,reset,hover'});
    Object.entries(t.strategies).forEach(([st, d], i) => {
      const xs = d.mean.map((_, k) => k + 1), color = palette[i % palette.length];
      p.varea({x: xs, y1: d.low, y2: d.high, fill_color: color, fill_alpha: 0.12});
      p.line({x: xs, y: d.mean, line_color: color, line_width: 2,
              legend_label: st + ' (' + d.seeds + ')'}); });
    p.legend.location = 'bottom_right'; p.legend.click_policy = 'hide';
    Bokeh.Plotting.show(p, div); }
});
"""
    return page(f"study {name}", body, script, {"study": study_id}, plots=True)


def supernet_page(supernet_id: str, name: str) -> str:
    """A supernet training: every numeric field of its history against the epoch."""
    body = f"""<h1>supernet training {escape(name)}</h1><div class="plots" id="plots"></div>"""
    script = r"""
const D = JSON.parse($('#page-data').textContent);
let sources = {};
every(5000, async () => {
  const h = await getJSON('/api/supernet/' + encodeURIComponent(D.supernet));
  for (const [k, ys] of Object.entries(h.series)) {
    const data = {x: h.epochs, y: ys};
    if (sources[k]) { sources[k].data = data; continue; }
    sources[k] = new Bokeh.ColumnDataSource({data: data});
    const div = document.createElement('div'); $('#plots').appendChild(div);
    const p = Bokeh.Plotting.figure({title: k, width: 380, height: 260,
      x_axis_label: 'epoch', tools: 'pan,wheel_zoom,reset,hover'});
    p.line({field: 'x'}, {field: 'y'}, {source: sources[k], line_width: 2});
    p.scatter({field: 'x'}, {field: 'y'}, {source: sources[k], size: 4});
    Bokeh.Plotting.show(p, div); }
});
"""
    return page(f"supernet {name}", body, script, {"supernet": supernet_id}, plots=True)


def compare_page() -> str:
    """Runs (``?runs=ID,ID``) on one best-so-far plot and one front, with their summaries
    side by side; studies (``?studies=ID,ID``) with their leaderboards side by side and each
    task's curves of every study on one plot."""
    body = """<h1>Compare</h1><table id="side"><thead></thead><tbody></tbody></table>
<div class="plots"><div id="curves"></div><div id="fronts"></div></div>
<div id="studies"></div>"""
    script = r"""
const params = new URLSearchParams(location.search);
const ids = (k) => (params.get(k) || '').split(',').filter(Boolean);
const palette = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b',
                 '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
(async () => {
  const runs = ids('runs'), studies = ids('studies');
  if (runs.length) {
    const all = (await getJSON('/api/runs')).runs;
    const name = (id) => (all.find(r => r.id === id) || {path: id}).path;
    const sums = await Promise.all(runs.map(id => getJSON('/api/run/' +
      encodeURIComponent(id) + '/summary').catch(() => null)));
    const head = document.createElement('tr'); cell(head, '');
    runs.forEach(id => cell(head, name(id))); $('#side thead').appendChild(head);
    for (const k of ['task', 'space', 'strategy', 'status', 'complete', 'failed', 'metric',
                     'best']) { const tr = document.createElement('tr'); cell(tr, k);
      sums.forEach(s => cell(tr, s ? fmt(s[k]) : 'no such run')); $('#side tbody')
        .appendChild(tr); }
    const metric = (sums.find(Boolean) || {}).metric || 'value';
    const pc = Bokeh.Plotting.figure({title: 'best so far', width: 560, height: 360,
      x_axis_label: 'trials finished', y_axis_label: metric,
      tools: 'pan,wheel_zoom,box_zoom,reset,hover'});
    const pf = Bokeh.Plotting.figure({title: 'fronts', width: 560, height: 360,
      tools: 'pan,wheel_zoom,box_zoom,reset,hover'});
    for (const [i, id] of runs.entries()) { if (!sums[i]) continue;
      const color = palette[i % palette.length], label = name(id);
      const c = await getJSON('/api/run/' + encodeURIComponent(id) + '/curve');
      const xs = [], ys = []; c.x.forEach((x, k) => { if (k) { xs.push(x); ys.push(c.y[k - 1]); }
        xs.push(x); ys.push(c.y[k]); });
      pc.line({x: xs, y: ys, line_color: color, line_width: 2, legend_label: label});
      const f = await getJSON('/api/run/' + encodeURIComponent(id) + '/front');
      pf.xaxis.axis_label = f.x; pf.yaxis.axis_label = f.y;
      pf.scatter({x: f.front.map(p => p[1]), y: f.front.map(p => p[2]), size: 7,
                  color: color, legend_label: label});
      pf.line({x: f.front.map(p => p[1]), y: f.front.map(p => p[2]), line_color: color}); }
    pc.legend.location = 'bottom_right'; pc.legend.click_policy = 'hide';
    pf.legend.click_policy = 'hide';
    Bokeh.Plotting.show(pc, $('#curves')); Bokeh.Plotting.show(pf, $('#fronts'));
  }
  if (studies.length) {
    const data = await Promise.all(studies.map(id => Promise.all([
      getJSON('/api/study/' + encodeURIComponent(id)),
      getJSON('/api/study/' + encodeURIComponent(id) + '/curves')])));
    const box = $('#studies');
    const h = document.createElement('h2'); h.textContent = 'Leaderboards'; box.appendChild(h);
    const table = document.createElement('table'); const head = document.createElement('tr');
    cell(head, 'study'); cell(head, 'strategy'); cell(head, 'average rank');
    cell(head, 'mean normalised regret'); table.appendChild(head);
    data.forEach(([s]) => s.leaderboard.forEach(r => { const tr = document.createElement('tr');
      cell(tr, s.name); cell(tr, r.strategy); cell(tr, fmt(r.average_rank), 'num');
      cell(tr, fmt(r.mean_normalised_regret), 'num'); table.appendChild(tr); }));
    box.appendChild(table);
    const tasks = new Set(); data.forEach(([, c]) => Object.keys(c).forEach(t => tasks.add(t)));
    for (const task of tasks) { const div = document.createElement('div'); box.appendChild(div);
      const p = Bokeh.Plotting.figure({title: task, width: 620, height: 320,
        x_axis_label: 'queries', tools: 'pan,wheel_zoom,box_zoom,reset,hover'});
      let i = 0;
      data.forEach(([s, c]) => Object.entries((c[task] || {strategies: {}}).strategies)
        .forEach(([st, d]) => { const color = palette[i++ % palette.length];
          p.line({x: d.mean.map((_, k) => k + 1), y: d.mean, line_color: color,
                  line_width: 2, legend_label: s.name + ': ' + st}); }));
      p.legend.location = 'bottom_right'; p.legend.click_policy = 'hide';
      Bokeh.Plotting.show(p, div); }
  }
})();
"""
    return page("compare", body, script, plots=True)
