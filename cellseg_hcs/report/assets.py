"""The page's own style and script: layout, the field viewer (lightbox), figure drawing.

Kept as plain strings so the page carries them inline; nothing here loads anything.
"""

STYLE = """
:root { --ink: #1d2430; --muted: #5b6677; --line: #e3e7ee; --bad: #c62828; --warn: #b26a00;
        --ok: #2e7d32; --bg: #f6f7f9; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--ink); background: var(--bg); }
header { background: #1d2430; color: white; padding: 18px 28px 14px; }
header h1 { margin: 0 0 4px; font-size: 22px; font-weight: 600; }
header .sub { color: #b9c3d3; font-size: 13px; }
nav { position: sticky; top: 0; z-index: 5; background: white; border-bottom: 1px solid var(--line);
      padding: 8px 28px; display: flex; gap: 18px; flex-wrap: wrap; }
nav a { color: var(--ink); text-decoration: none; font-weight: 500; }
nav a:hover { text-decoration: underline; }
main { padding: 8px 28px 40px; max-width: 1500px; }
section { background: white; border: 1px solid var(--line); border-radius: 8px;
          padding: 14px 18px 18px; margin: 16px 0; }
section h2 { margin: 0 0 10px; font-size: 17px; }
.hint { color: var(--muted); font-size: 12.5px; margin: 2px 0 10px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(190px, 1fr)); gap: 10px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 9px 12px; background: #fbfcfd; }
.card .label { color: var(--muted); font-size: 12px;
  text-transform: uppercase; letter-spacing: .03em; }
.card .value { font-size: 20px; font-weight: 600; margin-top: 2px; overflow-wrap: anywhere; }
.card .detail { color: var(--muted); font-size: 12.5px; overflow-wrap: anywhere; }
.card.bad .value { color: var(--bad); }
.card.warn .value { color: var(--warn); }
.note { border-left: 4px solid var(--warn); background: #fff8e6; padding: 8px 12px; margin: 8px 0; }
.note.bad { border-color: var(--bad); background: #fdecea; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 5px 8px;
  border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 600; background: #fafbfc; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td { overflow-wrap: anywhere; }
td.error { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; }
.status-failed { color: var(--bad); font-weight: 600; }
.status-empty { color: var(--warn); font-weight: 600; }
.twocol { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.twocol > div { flex: 1 1 420px; min-width: 0; }
details summary { cursor: pointer; font-weight: 600; margin: 6px 0; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 10px; }
.gallery.small { grid-template-columns: repeat(auto-fill, minmax(118px, 1fr)); }
.tile { margin: 0; border: 1px solid var(--line);
  border-radius: 6px; overflow: hidden; background: white; }
.tile button { display: block; width: 100%; padding: 0;
  border: 0; background: black; cursor: zoom-in; }
.tile.failed { border-color: var(--bad); }
.tile.empty { border-color: var(--warn); }
.stack { display: block; position: relative; line-height: 0; }
.stack img { width: 100%; height: auto; display: block; }
.stack img.outlines { position: absolute; left: 0; top: 0; }
body.no-outlines .stack img.outlines { display: none; }
.tile figcaption { padding: 4px 7px 6px; font-size: 12px; line-height: 1.3; }
.tile figcaption b { font-size: 13px; }
.tile .missing { aspect-ratio: 1; display: flex; align-items: center; justify-content: center;
                 text-align: center; padding: 8px; color: #ccd; font-size: 12px; line-height: 1.3;
                 background: #2a2f38; }
.legend { display: inline-flex; gap: 14px; flex-wrap: wrap; margin-left: 6px; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px;
          vertical-align: -1px; margin-right: 4px; }
.lightbox { position: fixed; inset: 0; z-index: 20; background: rgba(10, 12, 16, .88);
            display: flex; align-items: center; justify-content: center; }
.lightbox[hidden] { display: none; }
.lightbox .panel { max-width: 96vw; max-height: 96vh;
  display: flex; flex-direction: column; gap: 8px; }
.lightbox .bar { color: white; display: flex; gap: 12px; align-items: center; flex-wrap: wrap; }
.lightbox .bar .title { font-weight: 600; font-size: 16px; margin-right: auto; }
.lightbox button { background: #3a4252; color: white; border: 0; border-radius: 4px;
                   padding: 4px 10px; font-size: 14px; cursor: pointer; }
.lightbox .stack { max-height: 84vh; }
/* Small pictures are enlarged to fill the view. */
.lightbox .stack img { width: auto; height: min(84vh, 94vw); margin: 0 auto; }
/* Enlarged, outlines stay crisp lines; shrunk (the tiles), they are smoothed, not dropped. */
.lightbox .stack img.outlines { left: 50%; transform: translateX(-50%);
  image-rendering: pixelated; }
.lightbox .caption { color: #cdd4df; font-size: 13px; }
.figure { width: 100%; }
"""

SCRIPT = """
(function () {
  const box = document.getElementById('lightbox');
  const tiles = Array.from(document.querySelectorAll('.tile[data-well]'));
  let current = -1;
  function show(index) {
    if (!tiles.length) return;
    current = (index + tiles.length) % tiles.length;
    const tile = tiles[current];
    const image = tile.querySelector('img.image');
    const outlines = tile.querySelector('img.outlines');
    document.getElementById('lb-title').textContent = tile.dataset.title;
    document.getElementById('lb-caption').textContent = tile.dataset.caption;
    const big = document.getElementById('lb-image');
    const bigOutlines = document.getElementById('lb-outlines');
    big.hidden = !image;
    if (image) big.src = image.src;
    bigOutlines.hidden = !outlines;
    if (outlines) bigOutlines.src = outlines.src;
    box.hidden = false;
  }
  function close() { box.hidden = true; current = -1; }
  window.openWell = function (well) {
    const index = tiles.findIndex(t => t.dataset.well === well);
    if (index >= 0) show(index);
  };
  tiles.forEach((tile, index) => {
    const button = tile.querySelector('button');
    if (button) button.addEventListener('click', () => show(index));
  });
  document.getElementById('lb-close').addEventListener('click', close);
  document.getElementById('lb-prev').addEventListener('click', () => show(current - 1));
  document.getElementById('lb-next').addEventListener('click', () => show(current + 1));
  box.addEventListener('click', event => { if (event.target === box) close(); });
  function toggleOutlines(on) {
    document.body.classList.toggle('no-outlines', !on);
    document.querySelectorAll('input.outline-toggle').forEach(i => { i.checked = on; });
  }
  document.querySelectorAll('input.outline-toggle').forEach(input => {
    input.addEventListener('change', () => toggleOutlines(input.checked));
  });
  document.addEventListener('keydown', event => {
    if (event.key === 'o' || event.key === 'O') {
      toggleOutlines(document.body.classList.contains('no-outlines'));
    }
    if (box.hidden) return;
    if (event.key === 'Escape') close();
    if (event.key === 'ArrowLeft') show(current - 1);
    if (event.key === 'ArrowRight') show(current + 1);
  });

  function drawFigures() {
    const figures = JSON.parse(document.getElementById('report-figures').textContent);
    const config = {displaylogo: false, responsive: true,
                    modeBarButtonsToRemove: ['lasso2d', 'select2d', 'autoScale2d'],
                    toImageButtonOptions: {format: 'png', scale: 2}};
    for (const [id, figure] of Object.entries(figures)) {
      const element = document.getElementById(id);
      if (element) Plotly.newPlot(element, figure.data, figure.layout, config);
    }
    const map = document.getElementById('plate-map');
    if (map && map.on) {
      map.on('plotly_click', event => {
        const point = event.points && event.points[0];
        if (point && typeof point.customdata === 'string') window.openWell(point.customdata);
      });
    }
  }

  // plotly.js travels gzip-compressed (a third of its 4.8 MB); the browser inflates it.
  async function loadPlotly() {
    const packed = document.getElementById('plotly-gzip');
    if (!packed) return;
    if (typeof DecompressionStream === 'undefined') {
      throw new Error('this browser cannot draw the charts (it lacks DecompressionStream: ' +
                      'use Chrome/Edge 80+, Firefox 113+ or Safari 16.4+)');
    }
    const text = atob(packed.textContent.trim());
    const bytes = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
    (0, eval)(await new Response(stream).text());  // global scope: defines window.Plotly
  }
  loadPlotly().then(drawFigures).catch(error => {
    document.querySelectorAll('.figure').forEach(element => {
      element.textContent = 'Charts not drawn: ' + error.message;
    });
    throw error;
  });
})();
"""
