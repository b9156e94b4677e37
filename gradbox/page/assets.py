"""The CSS and JavaScript both pages inline (no CDN, no network: the page works offline).

The script is plain ES5-style JavaScript with no libraries. It:

* collects script errors into ``#gb-errors`` (browser tests read it from the DOM);
* steps through ``.gb-step`` sections with the buttons, the arrow keys and the
  URL fragment (``#layer=2&phase=backward``, ``#step=3``);
* draws heatmaps on ``canvas.gb-heat`` from the numbers in ``#gb-data``;
* on the graph page, reveals the gradients up to the current gate
  (``[data-reveal]``) and highlights the current gate (``[data-cur]``);
* writes ``ready`` into ``#gb-status`` when it has drawn everything.
"""

CSS = """
:root { --fg:#1d1d1f; --muted:#666; --line:#d9d9de; --accent:#2364aa; --grad:#c0392b; --bg:#fafafa; }
* { box-sizing: border-box; }
body { margin:0; font-family: system-ui, -apple-system, "Segoe UI", "Noto Sans", "Noto Sans CJK KR",
       "NanumGothic", "Apple SD Gothic Neo", "Malgun Gothic", sans-serif; color:var(--fg); background:var(--bg);
       line-height:1.45; }
header { padding:14px 22px 8px; background:#fff; border-bottom:1px solid var(--line); position:sticky; top:0; z-index:2; }
h1 { font-size:20px; margin:0 0 2px; }
h2 { font-size:18px; margin:0 0 10px; }
h3 { font-size:14px; margin:14px 0 6px; color:#333; }
.sub { color:var(--muted); font-size:13px; margin:0 0 8px; }
nav.gb-chips { display:flex; flex-wrap:wrap; gap:4px; align-items:center; margin:6px 0; }
.gb-chip { display:inline-block; padding:3px 8px; border:1px solid var(--line); border-radius:6px; font-size:12px;
           color:var(--fg); text-decoration:none; background:#f4f4f6; }
.gb-chip.fwd { border-color:#9bb7d9; } .gb-chip.bwd { border-color:#e0a39b; }
.gb-chip.active { background:var(--accent); color:#fff; border-color:var(--accent); }
.gb-arrow { color:#aaa; font-size:12px; }
.gb-controls { display:flex; gap:8px; align-items:center; font-size:12px; color:var(--muted); }
button { font:inherit; font-size:13px; padding:4px 12px; border:1px solid var(--line); border-radius:6px; background:#fff; cursor:pointer; }
main { padding:16px 22px 40px; max-width:1240px; }
.gb-step { display:none; }
.gb-step.active { display:block; }
.formula { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size:15px; background:#fff;
           border:1px solid var(--line); border-left:4px solid var(--accent); padding:8px 12px; margin:6px 0; white-space:pre-wrap; }
.bwd .formula { border-left-color:var(--grad); }
table { border-collapse:collapse; font-size:13px; background:#fff; margin:4px 0 8px; }
td, th { border:1px solid var(--line); padding:3px 8px; text-align:left; }
th { background:#f0f0f3; font-weight:600; }
td.num { text-align:right; font-family: "DejaVu Sans Mono", Menlo, monospace; }
.grid { display:flex; flex-wrap:wrap; gap:18px; align-items:flex-start; }
figure { margin:0; background:#fff; border:1px solid var(--line); padding:6px; }
figcaption { font-size:12px; color:var(--muted); margin-top:4px; max-width:360px; }
canvas.gb-heat { image-rendering: pixelated; display:block; }
.small-multiples { display:flex; flex-wrap:wrap; gap:4px; max-width:420px; }
.small-multiples canvas { outline:1px solid #ccc; }
.warn { color:#a05a00; font-size:13px; }
.ok { color:#1b7f3b; } .fail { color:var(--grad); font-weight:600; }
.note { color:var(--muted); font-size:12px; }
.gc { font-family: "DejaVu Sans Mono", Menlo, monospace; font-size:14px; }
#gb-errors { white-space:pre-wrap; color:var(--grad); }
svg text { font-family: inherit; }
svg.gb-graph { max-width: 100%; height: auto; }
.gb-g { visibility:hidden; }
.gb-g.shown { visibility:visible; }
.gb-node.cur circle, .gb-node.cur rect { stroke:var(--grad); stroke-width:3; }
.eq { font-family: "DejaVu Sans Mono", Menlo, monospace; font-size:16px; }
"""

# NOTE: the error collector runs first, in <head>, so that errors in the main script are caught too.
ERRORS_JS = """
window.__gbErrors = [];
window.onerror = function (msg, src, line, col) {
  window.__gbErrors.push(String(msg) + ' (line ' + line + ':' + col + ')');
  var el = document.getElementById('gb-errors');
  if (el) { el.textContent = window.__gbErrors.join('\\n'); el.hidden = false; }
};
"""

MAIN_JS = """
(function () {
  'use strict';
  var D = JSON.parse(document.getElementById('gb-data').textContent);
  var steps = Array.prototype.slice.call(document.querySelectorAll('.gb-step'));
  var chips = Array.prototype.slice.call(document.querySelectorAll('.gb-chip'));
  var reveal = Array.prototype.slice.call(document.querySelectorAll('[data-reveal]'));
  var curMarks = Array.prototype.slice.call(document.querySelectorAll('[data-cur]'));
  var current = -1;

  function parseFrag(text) {
    var out = {};
    text.replace(/^#/, '').split('&').forEach(function (kv) {
      if (!kv) { return; }
      var i = kv.indexOf('=');
      if (i > 0) { out[decodeURIComponent(kv.slice(0, i))] = decodeURIComponent(kv.slice(i + 1)); }
    });
    return out;
  }
  function findStep(want) {
    var keys = Object.keys(want);
    if (!keys.length) { return -1; }
    for (var i = 0; i < steps.length; i++) {
      var have = parseFrag(steps[i].getAttribute('data-frag'));
      if (keys.every(function (k) { return have[k] === want[k]; })) { return i; }
    }
    return -1;
  }
  function show(i, fromHash) {
    if (i < 0 || i >= steps.length) { return; }
    current = i;
    var frag = steps[i].getAttribute('data-frag');
    steps.forEach(function (s, k) { s.classList.toggle('active', k === i); });
    chips.forEach(function (c) { c.classList.toggle('active', c.getAttribute('data-frag') === frag); });
    var k = Number(steps[i].getAttribute('data-index') || i);
    reveal.forEach(function (el) { el.classList.toggle('shown', Number(el.getAttribute('data-reveal')) <= k); });
    curMarks.forEach(function (el) { el.classList.toggle('cur', Number(el.getAttribute('data-cur')) === k); });
    document.querySelector('main').setAttribute('data-active', frag);
    var pos = document.getElementById('gb-pos');
    if (pos) { pos.textContent = (i + 1) + ' / ' + steps.length; }
    if (!fromHash && location.hash !== '#' + frag) {
      // NOTE: inside a notebook's sandboxed frame changing the address may be refused; the page still works.
      try { location.hash = frag; } catch (e) { /* stay on this box */ }
    }
  }
  function fromHash() {
    var i = findStep(parseFrag(location.hash));
    show(i >= 0 ? i : (current >= 0 ? current : 0), true);
  }
  document.getElementById('gb-prev').addEventListener('click', function () { show(current - 1); });
  document.getElementById('gb-next').addEventListener('click', function () { show(current + 1); });
  document.addEventListener('keydown', function (e) {
    if (e.key === 'ArrowRight' || e.key === 'PageDown') { show(current + 1); e.preventDefault(); }
    if (e.key === 'ArrowLeft' || e.key === 'PageUp') { show(current - 1); e.preventDefault(); }
  });
  chips.forEach(function (c) {
    c.addEventListener('click', function (e) { e.preventDefault(); show(findStep(parseFrag(c.getAttribute('data-frag')))); });
  });
  window.addEventListener('hashchange', fromHash);

  // Heatmaps: a diverging blue-white-red scale around 0, one pixel per number, scaled up by CSS.
  function colour(v, vmax) {
    if (v === null) { return [200, 200, 200]; }
    var t = vmax > 0 ? Math.max(-1, Math.min(1, v / vmax)) : 0;
    if (t >= 0) { return [255, Math.round(255 * (1 - 0.8 * t)), Math.round(255 * (1 - 0.85 * t))]; }
    t = -t;
    return [Math.round(255 * (1 - 0.85 * t)), Math.round(255 * (1 - 0.6 * t)), 255];
  }
  function drawHeat(cv) {
    var h = D.heat[cv.getAttribute('data-key')];
    if (!h) { throw new Error('no heatmap data for ' + cv.getAttribute('data-key')); }
    cv.width = h.cols; cv.height = h.rows;
    var ctx = cv.getContext('2d');
    var img = ctx.createImageData(h.cols, h.rows);
    for (var i = 0; i < h.v.length; i++) {
      var c = colour(h.v[i], h.vmax);
      img.data[4 * i] = c[0]; img.data[4 * i + 1] = c[1]; img.data[4 * i + 2] = c[2]; img.data[4 * i + 3] = 255;
    }
    (h.marked || []).forEach(function (r) {  // dead or saturated units: a dark first pixel on their row
      var i = r * h.cols;
      img.data[4 * i] = 0; img.data[4 * i + 1] = 0; img.data[4 * i + 2] = 0;
    });
    ctx.putImageData(img, 0, 0);
    // Each axis scaled on its own (cells need not be square), so a (256, 16) slice is still readable.
    var px = Number(cv.getAttribute('data-px') || 360);
    var sx = Math.max(1, Math.min(Math.floor(px / h.cols), 24));
    var sy = cv.hasAttribute('data-square') ? sx : Math.max(1, Math.min(Math.floor(0.75 * px / h.rows), 24));
    cv.style.width = (h.cols * sx) + 'px';
    cv.style.height = (h.rows * sy) + 'px';
  }
  Array.prototype.slice.call(document.querySelectorAll('canvas.gb-heat')).forEach(drawHeat);
  fromHash();
  document.getElementById('gb-status').textContent = 'ready';
})();
"""
