// The stats page (GET /): one self-contained document — inline CSS and JS, no external
// assets — that renders /stats.json into tables and re-fetches it on a timer, updating
// the DOM in place (no full page reload). The first paint uses the JSON embedded in the
// page, so it reads well even before (or without) the first fetch.
import type { StatsJson } from './json.js';

const CSS = `
:root { --up:#2e9e44; --up-bg:#e3f6e6; --down:#d0312d; --down-bg:#fde4e3; --drain:#2f6fd1; --drain-bg:#e2ecfb;
  --maint:#8a6d3b; --maint-bg:#f1ead9; --line:#d8dde3; --muted:#6b7480; --head:#2b3a4a; }
* { box-sizing: border-box; }
body { margin: 0; font: 13px/1.35 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2329; background: #f6f8fa; }
header { position: sticky; top: 0; z-index: 2; display: flex; gap: 16px; align-items: center; padding: 8px 16px;
  background: var(--head); color: #fff; }
header h1 { font-size: 16px; margin: 0; font-weight: 600; }
header .meta { color: #c9d3dd; }
header .grow { flex: 1; }
header select, header button { font: inherit; }
#status.err { color: #ffb3b0; font-weight: 600; }
main { padding: 12px 16px 24px; }
h2 { font-size: 14px; margin: 18px 0 6px; color: var(--head); }
section.pool, section.listener { margin: 0 0 14px; background: #fff; border: 1px solid var(--line); border-radius: 6px; overflow-x: auto; }
.caption { display: flex; flex-wrap: wrap; gap: 6px 16px; align-items: baseline; padding: 7px 10px; border-bottom: 1px solid var(--line); background: #eef2f6; }
.caption .name { font-weight: 700; font-size: 14px; }
.caption .tag { color: var(--muted); }
.caption .tag b { color: #1d2329; font-weight: 600; }
table { border-collapse: collapse; width: 100%; white-space: nowrap; }
th, td { padding: 4px 8px; text-align: right; border-bottom: 1px solid #eef0f2; }
th { font-weight: 600; color: var(--muted); background: #fafbfc; font-size: 12px; }
th.l, td.l { text-align: left; }
tr.total td { font-weight: 600; background: #fafbfc; border-top: 1px solid var(--line); }
tr.srv td:first-child { border-left: 5px solid transparent; }
tr.st-up td:first-child { border-left-color: var(--up); }
tr.st-down { background: var(--down-bg); } tr.st-down td:first-child { border-left-color: var(--down); }
tr.st-drain { background: var(--drain-bg); } tr.st-drain td:first-child { border-left-color: var(--drain); }
tr.st-maint { background: var(--maint-bg); color: #5d5140; } tr.st-maint td:first-child { border-left-color: var(--maint); }
.badge { display: inline-block; min-width: 52px; padding: 1px 7px; border-radius: 10px; color: #fff; font-weight: 700;
  font-size: 11px; text-align: center; text-transform: uppercase; letter-spacing: .03em; }
.badge.up { background: var(--up); } .badge.down { background: var(--down); }
.badge.drain { background: var(--drain); } .badge.maint { background: var(--maint); }
.ok { color: var(--up); } .bad { color: var(--down); font-weight: 600; } .muted { color: var(--muted); }
.errs span { margin-left: 6px; } .errs span:first-child { margin-left: 0; }
.chk { max-width: 260px; overflow: hidden; text-overflow: ellipsis; display: inline-block; vertical-align: bottom; }
.legend { color: var(--muted); margin-top: 8px; }
.legend .badge { margin: 0 4px 0 10px; }
.empty { padding: 10px; color: var(--muted); }
`;

// Client script. Plain ES2017, DOM built with textContent only (server names come from
// config, but the page must never interpret them as markup).
const JS = String.raw`
(function () {
  'use strict';
  var data = JSON.parse(document.getElementById('initial').textContent);
  var GRPC = ['OK','CANCELLED','UNKNOWN','INVALID_ARGUMENT','DEADLINE_EXCEEDED','NOT_FOUND','ALREADY_EXISTS',
    'PERMISSION_DENIED','RESOURCE_EXHAUSTED','FAILED_PRECONDITION','ABORTED','OUT_OF_RANGE','UNIMPLEMENTED',
    'INTERNAL','UNAVAILABLE','DATA_LOSS','UNAUTHENTICATED'];
  var timer = null, inFlight = false, updates = 0;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function td(text, cls) { return el('td', cls, text); }
  function row(cells, cls) { var tr = el('tr', cls); cells.forEach(function (c) { tr.appendChild(c); }); return tr; }
  function num(n) { return n === null || n === undefined ? '–' : Number(n).toLocaleString('en-US'); }
  function rate(n) { return !n ? '0' : n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(1); }
  function bytes(n) {
    if (!n) return '0';
    var u = ['B','KiB','MiB','GiB','TiB'], i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n : n.toFixed(n >= 100 ? 0 : 1)) + ' ' + u[i];
  }
  function ms(v) {
    if (v === null || v === undefined) return '–';
    if (v >= 1000) return (v / 1000).toFixed(v >= 10000 ? 0 : 1) + ' s';
    return (v >= 10 ? Math.round(v) : v.toFixed(v >= 1 ? 1 : 2)) + ' ms';
  }
  function ago(iso) {
    if (!iso) return '–';
    var s = Math.max(0, Math.round((Date.parse(data.time) - Date.parse(iso)) / 1000));
    if (s < 60) return s + 's ago';
    if (s < 3600) return Math.floor(s / 60) + 'm' + (s % 60 ? ' ' + (s % 60) + 's' : '') + ' ago';
    if (s < 86400) return Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm ago';
    return Math.floor(s / 86400) + 'd ' + Math.floor((s % 86400) / 3600) + 'h ago';
  }
  // Non-ok outcomes ("errors by kind") as red chips; '0' when there are none.
  function errs(req) {
    var c = el('td', 'errs');
    var keys = Object.keys(req.outcomes).filter(function (k) { return k !== 'ok'; })
      .sort(function (a, b) { return req.outcomes[b] - req.outcomes[a]; });
    if (!keys.length) { c.appendChild(el('span', 'muted', '0')); return c; }
    keys.forEach(function (k) { c.appendChild(el('span', 'bad', k + ' ' + num(req.outcomes[k]))); });
    c.title = keys.map(function (k) { return k + ': ' + req.outcomes[k]; }).join('\n');
    return c;
  }
  function codes(req) {
    var c = el('td', 'l errs'), parts = [];
    var h = req.codes.http || {}, g = req.codes.grpc || {}, t = req.codes.thrift || {};
    Object.keys(h).forEach(function (k) { parts.push([k, h[k], k[0] === '5' || k[0] === '4']); });
    Object.keys(g).forEach(function (k) { parts.push([GRPC[+k] || k, g[k], k !== '0']); });
    Object.keys(t).forEach(function (k) { parts.push([k, t[k], k === 'exception']); });
    if (!parts.length) { c.appendChild(el('span', 'muted', '–')); return c; }
    parts.forEach(function (p) { c.appendChild(el('span', p[2] ? 'bad' : 'ok', p[0] + ' ' + num(p[1]))); });
    return c;
  }
  function badge(state) { var c = el('td', 'l'); c.appendChild(el('span', 'badge ' + state, state)); return c; }
  function check(s) {
    var c = el('td', 'l'), l = s.health.last;
    if (s.health.type === 'none') { c.appendChild(el('span', 'muted', 'no check')); return c; }
    if (s.health.ejected_until) {
      c.appendChild(el('span', 'bad', 'ejected until ' + new Date(s.health.ejected_until).toLocaleTimeString()));
      c.title = 'passive health (outlier detection)';
      if (!l) return c;
      c.appendChild(document.createTextNode(' · '));
    }
    if (!l) { c.appendChild(el('span', 'muted', s.health.type + ': pending')); return c; }
    var span = el('span', 'chk ' + (l.ok ? 'ok' : 'bad'), s.health.type + ' ' + (l.ok ? 'OK' : 'FAIL') +
      (l.detail ? ' · ' + l.detail : '') + ' · ' + ms(l.duration_ms));
    span.title = 'last check ' + l.at + (l.detail ? '\n' + l.detail : '');
    c.appendChild(span);
    return c;
  }
  function caption(parts) {
    var d = el('div', 'caption');
    parts.forEach(function (p) {
      if (typeof p === 'string') { d.appendChild(el('span', 'name', p)); return; }
      var t = el('span', 'tag', p[0] + ' '); t.appendChild(el('b', '', p[1])); d.appendChild(t);
    });
    return d;
  }
  function head(cols) {
    var thead = el('thead'), tr = el('tr');
    cols.forEach(function (c) { tr.appendChild(el('th', c[1] ? 'l' : '', c[0])); });
    thead.appendChild(tr);
    return thead;
  }

  function renderListeners(box) {
    var frag = document.createDocumentFragment();
    if (!data.listeners.length) frag.appendChild(el('div', 'empty', 'No listeners.'));
    data.listeners.forEach(function (l) {
      var sec = el('section', 'listener');
      sec.dataset.listener = l.name;
      sec.appendChild(caption([l.name, ['bind', l.bind.join(', ')], ['accepts', l.protocols.join(' ')],
        ['connections', num(l.connections.active) + ' open / ' + num(l.connections.total) + ' total'],
        ['conn/s', rate(l.connections.rate)], ['refused', num(l.connections.refused)],
        ['sniff timeouts', num(l.connections.sniff_timeouts)]]));
      var t = el('table');
      t.appendChild(head([['Route', 1], ['Pool', 1], ['Requests'], ['Req/s'], ['Errors'], ['Codes', 1],
        ['Bytes in'], ['Bytes out']]));
      var tb = el('tbody');
      l.routes.forEach(function (r) {
        tb.appendChild(row([td(r.name, 'l'), td(r.deny ? 'deny' : (r.pool || '–'), 'l' + (r.deny ? ' bad' : '')),
          td(num(r.requests.total)), td(rate(r.requests.rate)), errs(r.requests), codes(r.requests),
          td(bytes(r.requests.bytes_in)), td(bytes(r.requests.bytes_out))], 'route'));
      });
      var q = l.requests;
      tb.appendChild(row([td('Total', 'l'), td('', 'l'), td(num(q.total)), td(rate(q.rate)), errs(q), codes(q),
        td(bytes(q.bytes_in)), td(bytes(q.bytes_out))], 'total'));
      t.appendChild(tb);
      sec.appendChild(t);
      frag.appendChild(sec);
    });
    box.replaceChildren(frag);
  }

  function renderPools(box) {
    var frag = document.createDocumentFragment();
    var names = Object.keys(data.pools);
    if (!names.length) frag.appendChild(el('div', 'empty', 'No pools.'));
    names.forEach(function (name) {
      var p = data.pools[name], s = p.summary;
      var sec = el('section', 'pool');
      sec.dataset.pool = name;
      var usable = s.up + ' / ' + s.servers + ' up';
      sec.appendChild(caption([name, ['protocol', p.protocol], ['balance', p.balance],
        ['health', p.health.type + (p.health.type === 'none' ? '' : ' every ' + ms(p.health.interval_ms))],
        ['servers', usable], ['queue', s.queue === null ? '–' : num(s.queue)],
        ['latency', 'p50 ' + ms(p.latency_ms.p50) + ' · p99 ' + ms(p.latency_ms.p99)]]));
      var t = el('table');
      t.appendChild(head([['Server', 1], ['Address', 1], ['State', 1], ['Weight'], ['Health check', 1],
        ['Last change', 1], ['Active'], ['Total'], ['Req/s'], ['Fails'], ['Errors'], ['Codes', 1], ['Bytes in'],
        ['Bytes out'], ['p50'], ['p90'], ['p99']]));
      var tb = el('tbody');
      p.servers.forEach(function (v) {
        var nameCell = td(v.name + (v.backup ? ' (backup)' : ''), 'l');
        var tr = row([nameCell, td(v.address, 'l muted'), badge(v.state), td(v.weight), check(v),
          td(ago(v.health.changed_at), 'l'), td(num(v.active)), td(num(v.total)), td(rate(v.rate)),
          td(num(v.errors), v.errors ? 'bad' : 'muted'), errs(v.requests), codes(v.requests), td(bytes(v.bytes_in)), td(bytes(v.bytes_out)),
          td(ms(v.latency_ms.p50)), td(ms(v.latency_ms.p90)), td(ms(v.latency_ms.p99))], 'srv st-' + v.state);
        tr.dataset.server = v.name;
        tr.dataset.state = v.state;
        tr.title = 'health ' + v.health.status + ', admin ' + v.admin +
          (v.health.ejected_until ? ', ejected until ' + v.health.ejected_until : '') +
          (v.maxconn ? ', maxconn ' + v.maxconn : '');
        tb.appendChild(tr);
      });
      tb.appendChild(row([td('Total', 'l'), td('', 'l'), td(usable, 'l'), td(''), td('', 'l'), td('', 'l'),
        td(num(s.active)), td(num(s.total)), td(rate(s.rate)), td(num(s.errors), s.errors ? 'bad' : 'muted'),
        errs(p.requests), codes(p.requests),
        td(bytes(s.bytes_in)), td(bytes(s.bytes_out)), td(ms(p.latency_ms.p50)), td(ms(p.latency_ms.p90)),
        td(ms(p.latency_ms.p99))], 'total'));
      t.appendChild(tb);
      sec.appendChild(t);
      frag.appendChild(sec);
    });
    box.replaceChildren(frag);
  }

  function render() {
    renderListeners(document.getElementById('listeners'));
    renderPools(document.getElementById('pools'));
    document.getElementById('uptime').textContent = 'up ' + ago(data.started_at).replace(' ago', '');
    document.body.dataset.updates = String(updates);
  }

  function setStatus(text, bad) {
    var s = document.getElementById('status');
    s.textContent = text;
    s.className = bad ? 'err' : '';
  }

  function refresh() {
    if (inFlight) return;
    inFlight = true;
    fetch('stats.json', { cache: 'no-store', credentials: 'same-origin' })
      .then(function (r) { if (!r.ok) throw new Error('HTTP ' + r.status); return r.json(); })
      .then(function (j) {
        data = j; updates++; render();
        setStatus('updated ' + new Date(data.time).toLocaleTimeString(), false);
      })
      .catch(function (e) { setStatus('refresh failed: ' + e.message, true); })
      .then(function () { inFlight = false; });
  }

  function schedule() {
    if (timer) clearInterval(timer);
    timer = null;
    var every = Number(document.getElementById('every').value);
    if (every > 0) timer = setInterval(refresh, every);
  }

  document.getElementById('every').addEventListener('change', function () { schedule(); refresh(); });
  document.getElementById('now').addEventListener('click', refresh);
  render();
  setStatus('as of ' + new Date(data.time).toLocaleTimeString(), false);
  schedule();
})();
`;

/** JSON that is safe inside a <script> element: no "</script>", no "<!--". */
function scriptJson(v: unknown): string {
  return JSON.stringify(v)
    .replace(/</g, '\\u003c')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

export interface HtmlOptions {
  /** Refresh interval selected at first, in ms (default 2000). */
  refreshMs?: number;
}

export function renderHtml(stats: StatsJson, opts: HtmlOptions = {}): string {
  const every = opts.refreshMs ?? 2000;
  const choices = [1000, 2000, 5000, 10000, 0];
  if (!choices.includes(every)) choices.unshift(every);
  const options = choices
    .map(
      (v) =>
        `<option value="${v}"${v === every ? ' selected' : ''}>${v === 0 ? 'paused' : `every ${v / 1000}s`}</option>`,
    )
    .join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Switchyard stats</title>
<style>${CSS}</style></head>
<body>
<header><h1>Switchyard</h1><span class="meta" id="uptime"></span><span class="grow"></span>
<span class="meta" id="status"></span>
<label class="meta">refresh <select id="every">${options}</select></label>
<button id="now" type="button">refresh now</button></header>
<main>
<h2>Listeners</h2><div id="listeners"></div>
<h2>Pools</h2><div id="pools"></div>
<div class="legend">State:<span class="badge up">up</span>serving
<span class="badge down">down</span>failed health checks or ejected
<span class="badge drain">drain</span>no new work, in-flight finishes
<span class="badge maint">maint</span>out of service.
Fails: units that failed on the server (what passive health counts); Errors: units by how they ended, when not ok.
Rates and percentiles over the last ${stats.window_s}s; totals since start.
JSON at <a href="stats.json">stats.json</a>, Prometheus at <a href="metrics">metrics</a>.</div>
</main>
<script id="initial" type="application/json">${scriptJson(stats)}</script>
<script>${JS}</script>
</body></html>
`;
}
