// memvisor dashboard page: plain JS module, served as is (no build step).
// Listens to /api/events (SSE: one JSON event per round), fetches the heatmap
// frame (/api/heatmap, binary; format in src/adapters/dashboard/heatmap-frame.ts)
// once per round, and draws charts and the heatmap on canvases by hand.

const $ = (id) => document.getElementById(id);
const HISTORY = 90; // rounds kept on the charts

const EXIT_COLORS = {
  ept_violation: '#d9822b', ept_misconfig: '#6b46c1', pml_full: '#2b6cb0', npf: '#2f855a',
  stage2_abort: '#c53030', shadow_pf: '#718096', dirty_ring_full: '#2c7a7b', guest_pf: '#b7791f',
};

const ui = {
  state: 'idle',
  run: 0,
  rounds: [], // RoundSample, the last HISTORY
  migRounds: [],
  heatRound: -1, // heat round of the frame on screen
  wantHeat: 0, // latest heat round announced
  heatBusy: false,
  frame: null,
};

// ---------- heatmap ----------

const HM_MAGIC = 0x4d48564d;
const HM_HEADER = 28;

function decodeHeatmap(buf) {
  const dv = new DataView(buf);
  if (buf.byteLength < HM_HEADER || dv.getUint32(0, true) !== HM_MAGIC || dv.getUint16(4, true) !== 1) throw new Error('not a heatmap frame');
  const width = dv.getUint32(20, true);
  const height = dv.getUint32(24, true);
  return {
    round: dv.getUint32(8, true), pageCount: dv.getUint32(12, true), pagesPerPixel: dv.getUint32(16, true),
    width, height, ages: new Uint8Array(buf, HM_HEADER, width * height),
  };
}

// Colours as little-endian RGBA u32 (what a Uint32Array view of ImageData holds).
const rgba = (hex) => {
  const n = parseInt(hex.slice(1), 16);
  return (0xff << 24 | (n & 0xff) << 16 | (n >> 8 & 0xff) << 8 | n >> 16) >>> 0;
};
const NEVER = rgba('#1b1f24');

const LUTS = (() => {
  const recency = new Uint32Array(256).fill(rgba('#3d7ea6'));
  recency[0] = NEVER;
  recency[1] = rgba('#ff6b35');
  const age = new Uint32Array(256);
  age[0] = NEVER;
  // New writes bright yellow, ageing through orange and magenta to deep blue.
  const stops = [[255, 240, 80], [250, 140, 30], [210, 40, 110], [110, 30, 160], [35, 40, 120]];
  for (let k = 1; k < 256; k++) {
    const t = Math.log(k) / Math.log(255) * (stops.length - 1);
    const i = Math.min(stops.length - 2, Math.floor(t));
    const f = t - i;
    const c = stops[i].map((v, j) => Math.round(v + (stops[i + 1][j] - v) * f));
    age[k] = (0xff << 24 | c[2] << 16 | c[1] << 8 | c[0]) >>> 0;
  }
  return { recency, age };
})();

function drawHeatmap() {
  const f = ui.frame;
  const cv = $('heatmap');
  if (f === null) return;
  if (cv.width !== f.width || cv.height !== f.height) {
    cv.width = f.width;
    cv.height = f.height;
    cv.style.aspectRatio = `${f.width} / ${f.height}`;
  }
  const ctx = cv.getContext('2d');
  const img = ctx.createImageData(f.width, f.height);
  const px = new Uint32Array(img.data.buffer);
  const lut = LUTS[$('heatMode').value] ?? LUTS.recency;
  const ages = f.ages;
  for (let i = 0; i < ages.length; i++) px[i] = lut[ages[i]];
  ctx.putImageData(img, 0, 0);
  const per = f.pagesPerPixel > 1 ? `, ${f.pagesPerPixel} pages per pixel` : '';
  $('heatInfo').textContent = `${f.pageCount.toLocaleString('en-US')} pages, ${f.width}×${f.height}${per}, round ${f.round}`;
}

function drawAgeBar() {
  const cv = $('ageBar');
  const ctx = cv.getContext('2d');
  const img = ctx.createImageData(160, 1);
  const px = new Uint32Array(img.data.buffer);
  for (let x = 0; x < 160; x++) px[x] = LUTS.age[1 + Math.round(x / 159 * 254)];
  ctx.putImageData(img, 0, 0);
}

async function fetchHeatmap() {
  if (ui.heatBusy) return;
  ui.heatBusy = true;
  try {
    while (ui.heatRound < ui.wantHeat) {
      const want = ui.wantHeat;
      const r = await fetch(`/api/heatmap?r=${want}`, { cache: 'no-store' });
      if (r.status !== 200) break;
      ui.frame = decodeHeatmap(await r.arrayBuffer());
      ui.heatRound = Math.max(want, ui.frame.round);
      drawHeatmap();
    }
  } catch (e) {
    console.warn('heatmap', e);
  } finally {
    ui.heatBusy = false;
  }
}

// ---------- charts ----------

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** Grid lines for an axis from 0 to a niceMax value: steps of 1, 2 or 5 × 10^k. */
function ticksOf(max) {
  const lead = Math.round(max / 10 ** Math.floor(Math.log10(max)));
  return lead === 2 ? 4 : 5;
}

function fmt(n) {
  if (n >= 1e9) return `${(n / 1e9).toFixed(n >= 1e10 ? 0 : 1)}G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(n >= 1e7 ? 0 : 1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(n >= 1e4 ? 0 : 1)}k`;
  return String(Math.round(n * 10) / 10);
}

/** A canvas sized to its CSS box at the device pixel ratio; returns [ctx, width, height] in CSS px. */
function prepare(cv) {
  const dpr = window.devicePixelRatio || 1;
  const w = cv.clientWidth, h = cv.clientHeight;
  if (cv.width !== Math.round(w * dpr) || cv.height !== Math.round(h * dpr)) {
    cv.width = Math.round(w * dpr);
    cv.height = Math.round(h * dpr);
  }
  const ctx = cv.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  return [ctx, w, h];
}

/**
 * Bars per label: `series` [{name, color, values}]; stacked or grouped.
 * Draws axes, grid and y labels; `xLabel(i)` names every label shown.
 */
function barChart(cv, labels, series, { stacked = false, xLabel = (i) => labels[i], empty = 'waiting for rounds…' } = {}) {
  const [ctx, W, H] = prepare(cv);
  const L = 52, R = 8, T = 8, B = 22;
  const pw = W - L - R, ph = H - T - B;
  ctx.font = '11px system-ui, sans-serif';
  if (labels.length === 0) {
    ctx.fillStyle = '#9aa5b1';
    ctx.fillText(empty, L + 8, T + ph / 2);
    return;
  }
  let max = 0;
  for (let i = 0; i < labels.length; i++) {
    if (stacked) max = Math.max(max, series.reduce((a, s) => a + (s.values[i] || 0), 0));
    else for (const s of series) max = Math.max(max, s.values[i] || 0);
  }
  max = niceMax(max);
  const y = (v) => T + ph - (v / max) * ph;
  ctx.strokeStyle = '#e3e7eb';
  ctx.fillStyle = '#4b5560';
  ctx.textAlign = 'right';
  const ticks = ticksOf(max);
  for (let k = 0; k <= ticks; k++) {
    const v = (max * k) / ticks;
    ctx.beginPath();
    ctx.moveTo(L, Math.round(y(v)) + 0.5);
    ctx.lineTo(W - R, Math.round(y(v)) + 0.5);
    ctx.stroke();
    ctx.fillText(fmt(v), L - 6, y(v) + 4);
  }
  const slot = pw / Math.max(labels.length, 12);
  const groups = stacked ? 1 : series.length;
  const bw = Math.max(1, (slot * 0.8) / groups);
  for (let i = 0; i < labels.length; i++) {
    const x0 = L + i * slot + slot * 0.1;
    let base = 0;
    series.forEach((s, k) => {
      const v = s.values[i] || 0;
      if (v <= 0) return;
      ctx.fillStyle = s.color;
      if (stacked) {
        ctx.fillRect(x0, y(base + v), bw, y(base) - y(base + v));
        base += v;
      } else {
        ctx.fillRect(x0 + k * bw, y(v), Math.max(1, bw - 1), T + ph - y(v));
      }
    });
  }
  ctx.fillStyle = '#4b5560';
  ctx.textAlign = 'center';
  const every = Math.ceil(labels.length / Math.max(1, Math.floor(pw / 40)));
  for (let i = 0; i < labels.length; i += every) ctx.fillText(xLabel(i), L + i * slot + slot / 2, H - 6);
}

/** Lines: series [{color, values}] over the same x. */
function lineChart(cv, n, series) {
  const [ctx, W, H] = prepare(cv);
  const L = 52, R = 8, T = 8, B = 22;
  const pw = W - L - R, ph = H - T - B;
  ctx.font = '11px system-ui, sans-serif';
  if (n === 0) {
    ctx.fillStyle = '#9aa5b1';
    ctx.fillText('waiting for rounds…', L + 8, T + ph / 2);
    return;
  }
  const max = niceMax(Math.max(0, ...series.flatMap((s) => s.values)));
  const y = (v) => T + ph - (v / max) * ph;
  const x = (i) => L + (n === 1 ? pw / 2 : (i / (Math.max(n, 12) - 1)) * pw);
  ctx.strokeStyle = '#e3e7eb';
  ctx.fillStyle = '#4b5560';
  ctx.textAlign = 'right';
  const ticks = ticksOf(max);
  for (let k = 0; k <= ticks; k++) {
    const v = (max * k) / ticks;
    ctx.beginPath();
    ctx.moveTo(L, Math.round(y(v)) + 0.5);
    ctx.lineTo(W - R, Math.round(y(v)) + 0.5);
    ctx.stroke();
    ctx.fillText(fmt(v), L - 6, y(v) + 4);
  }
  ctx.lineWidth = 2;
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.beginPath();
    s.values.forEach((v, i) => (i === 0 ? ctx.moveTo(x(i), y(v)) : ctx.lineTo(x(i), y(v))));
    ctx.stroke();
    if (n === 1) {
      ctx.fillStyle = s.color;
      ctx.fillRect(x(0) - 2, y(s.values[0]) - 2, 4, 4);
    }
  }
  ctx.lineWidth = 1;
}

function drawCharts() {
  const rs = ui.rounds;
  const labels = rs.map((r) => String(r.round));
  barChart($('chartDirty'), labels, [{ name: 'dirty', color: '#d9822b', values: rs.map((r) => r.dirty) }]);
  const reasons = Object.keys(EXIT_COLORS).filter((k) => rs.some((r) => r.exits[k]));
  barChart($('chartExits'), labels, reasons.map((k) => ({ name: k, color: EXIT_COLORS[k], values: rs.map((r) => r.exits[k] || 0) })), { stacked: true, empty: rs.length ? 'no exits' : 'waiting for rounds…' });
  $('exitLegend').innerHTML = reasons.map((k) => `<span><i class="sw" style="background:${EXIT_COLORS[k]}"></i>${k}</span>`).join('');
  lineChart($('chartCycles'), rs.length, [
    { color: '#2b6cb0', values: rs.map((r) => r.cycles) },
    { color: '#d9822b', values: rs.map((r) => r.harvest_cycles) },
  ]);
  const last = rs[rs.length - 1];
  if (last) {
    $('kRound').textContent = String(last.round);
    $('kDirty').textContent = last.dirty.toLocaleString('en-US');
    $('kEver').textContent = `${(100 * last.ever_dirty / last.page_count).toFixed(1)}%`;
    $('kTrack').textContent = last.tracking_bytes >= 1048576 ? `${(last.tracking_bytes / 1048576).toFixed(1)} MiB` : `${(last.tracking_bytes / 1024).toFixed(1)} KiB`;
  }
}

function drawMigration() {
  const ms = ui.migRounds;
  barChart($('chartMig'), ms.map((r) => (r.stop_and_copy ? 'S' : String(r.round))), [
    { name: 'dirty', color: '#d9822b', values: ms.map((r) => r.dirty) },
    { name: 'sent', color: '#2b6cb0', values: ms.map((r) => r.pages_sent) },
    { name: 'skipped', color: '#9aa5b1', values: ms.map((r) => r.skipped) },
  ], { empty: 'no migration yet' });
}


// ---------- walk view ----------
// The server explains one translation with the engine's own walker (POST /api/walk,
// src/core/explain/walk-explainer.ts); the page only places its references in the
// classic 2-D figure and steps through them. Nothing is walked here.

const walkUi = { walk: null, step: 0 };

const GUEST_TABLES = ['guest L4 table', 'guest L3 table', 'guest L2 table', 'guest L1 table', 'data gpa'];

/** Grid shape: [rows, columns, row headers, column headers]. */
function walkShape(w) {
  const second = w.format === 'arm' ? ['stage-2 L0', 'stage-2 L1', 'stage-2 L2', 'stage-2 L3'] : [`${w.format.toUpperCase()} L4`, `${w.format.toUpperCase()} L3`, `${w.format.toUpperCase()} L2`, `${w.format.toUpperCase()} L1`];
  if (w.walk === '2-d') return [5, 5, [...second, 'guest entry'], GUEST_TABLES];
  if (w.walk === 'shadow') return [1, 4, ['shadow'], ['L4', 'L3', 'L2', 'L1']];
  return [4, 1, second, ['gpa (1-D walk)']];
}

/** [row, column] of a memory reference in the figure. */
function walkCell(w, r) {
  const secondRow = w.format === 'arm' ? r.level : 4 - r.level;
  if (w.walk === '2-d') return r.stage === 'guest' ? [4, r.column] : [secondRow, r.column];
  if (w.walk === 'shadow') return [0, 4 - r.level];
  return [secondRow, 0];
}

function describeRef(w, r, k) {
  if (r.cached_by) return `${k + 1}. ${r.name}: answered by the ${{ tlb: 'TLB', nested_tlb: 'nested TLB', pde_cache: 'PDE cache' }[r.cached_by]}${r.gpa ? ` (gpa ${r.gpa})` : ''} — no memory reference`;
  const fields = Object.entries(r.fields).map(([f, v]) => (v === true ? f : v === false ? `-${f}` : `${f}=${v}`)).join(' ');
  return `${k + 1}. ${r.name} (${r.purpose})${r.gpa && r.stage === 'second' ? `, translating gpa ${r.gpa}` : ''}\n` +
    `   table ${r.stage === 'guest' ? 'gpa' : 'hpa'} ${r.table} [${r.index}]\n   entry ${r.entry}\n   ${fields}` +
    (r.set.length ? `\n   set by this walk: ${r.set.join(' ')}` : '');
}

function outcomeText(w) {
  const refs = `${w.memory_references} memory reference${w.memory_references === 1 ? '' : 's'}${w.cold ? ' (cold)' : ''}`;
  if (w.exit === null) {
    const path = w.walk === '1-d' ? `gpa ${w.gpa} → hpa ${w.hpa}` : `gva ${w.gva} → ${w.gpa ? `gpa ${w.gpa}` : 'gpa (the TLB maps gva to host frame)'} → hpa ${w.hpa}`;
    return `${refs}; ${path}`;
  }
  const e = w.exit;
  const code = e.code ? `, ${e.code_name} ${e.code}: ${Object.entries(e.decoded).map(([f, v]) => (v === true ? f : v === false ? `-${f}` : `${f}=${v}`)).join(' ')}` : '';
  const who = e.to === 'guest' ? 'guest page fault (#PF, handled by the guest)' : `VM exit ${e.reason}`;
  return `${refs}; ${who}${e.gpa ? ` at gpa ${e.gpa}` : e.gva ? ` at gva ${e.gva}` : ''}${e.table_access ? ' on a guest paging-structure access' : ''}${e.recalc ? ' (recalc-marked entry)' : ''}${code}`;
}

function drawWalk() {
  const w = walkUi.walk;
  const grid = $('walkGrid');
  if (w === null) return;
  const [rows, cols, rowNames, colNames] = walkShape(w);
  const cells = Array.from({ length: rows }, () => Array.from({ length: cols }, () => ({ kind: '', html: '', title: '', cls: '' })));
  const refs = w.references;
  const shown = Math.min(walkUi.step, refs.length);
  let n = 0;
  for (let k = 0; k < shown; k++) {
    const r = refs[k];
    if (r.cached_by === 'tlb') {
      for (const row of cells) for (const c of row) Object.assign(c, { kind: 'skip', html: 'TLB', title: describeRef(w, r, k) });
    } else if (r.cached_by === 'pde_cache') {
      const col = r.column;
      for (let y = 0; y < rows; y++) Object.assign(cells[y][col], { kind: 'skip', html: 'PDE cache', title: describeRef(w, r, k) });
    } else if (r.cached_by === 'nested_tlb') {
      if (r.purpose === 'guest A/D write') continue;
      for (let y = 0; y < Math.min(4, rows); y++) Object.assign(cells[y][r.column], { kind: 'skip', html: 'nested TLB', title: describeRef(w, r, k) });
    } else {
      n++;
      if (r.purpose === 'guest A/D write') continue; // the write-back's translation: listed in the detail, not a cell of the figure
      const [y, x] = walkCell(w, r);
      Object.assign(cells[y][x], {
        kind: 'ref', cls: r.stage === 'guest' ? 'guest' : '', title: describeRef(w, r, k),
        html: `<span class="n">${n}</span>${escapeHtml(r.name)}${r.set.length ? `<br><span class="set">+${escapeHtml(r.set.join(' '))}</span>` : ''}`,
      });
    }
  }
  // The last reference shown is the current one.
  if (shown > 0) {
    const r = refs[shown - 1];
    if (r.cached_by === null && r.purpose !== 'guest A/D write') {
      const [y, x] = walkCell(w, r);
      cells[y][x].cls += ' current';
    }
  }
  if (shown === refs.length && w.walk === '2-d') {
    const c = cells[4][4];
    if (w.exit !== null) Object.assign(c, { kind: 'exit', html: escapeHtml(w.exit.reason), title: outcomeText(w) });
    else if (c.kind === '') Object.assign(c, { kind: 'data', html: `hpa<br>${escapeHtml(w.hpa)}`, title: outcomeText(w) });
  }
  const head = `<tr><th></th>${colNames.map((c) => `<th>${escapeHtml(c)}</th>`).join('')}</tr>`;
  const body = cells.map((row, y) => `<tr><th class="rowh">${escapeHtml(rowNames[y])}</th>${row.map((c) =>
    `<td${c.kind ? ` data-kind="${c.kind}"` : ''}${c.cls ? ` class="${c.cls.trim()}"` : ''} title="${escapeHtml(c.title)}">${c.html}</td>`).join('')}</tr>`).join('');
  grid.innerHTML = head + body;
  grid.dataset.walk = w.walk;
  $('walkStep').textContent = `${shown} / ${refs.length} rows · ${n} memory reference${n === 1 ? '' : 's'} so far`;
  $('walkOutcome').textContent = shown === refs.length ? outcomeText(w) : 'stepping…';
  $('walkOutcome').dataset.done = shown === refs.length ? '1' : '0';
  $('walkDetail').textContent = shown > 0 ? describeRef(w, refs[shown - 1], shown - 1) : (w.gva ? `gva ${w.gva}` : `gpa ${w.gpa}`) + `, ${w.access}, vCPU ${w.vcpu}, ${w.format}`;
  for (const td of grid.querySelectorAll('td[title]')) td.onmouseenter = () => { if (td.title) $('walkDetail').textContent = td.title; };
}

async function doWalk(body) {
  const j = await post('/api/walk', { vcpu: Number($('walkVcpu').value), access: $('walkAccess').value, cold: $('walkCold').checked, ...body });
  if (j === null) return;
  walkUi.walk = j;
  walkUi.first = j;
  walkUi.step = 0;
  $('walkAddr').value = j.address;
  drawWalk();
}

function initWalk() {
  $('walkGo').onclick = () => doWalk({ address: $('walkAddr').value.trim() });
  $('walkFirst').onclick = () => { walkUi.step = 0; drawWalk(); };
  $('walkBack').onclick = () => { walkUi.step = Math.max(0, walkUi.step - 1); drawWalk(); };
  $('walkNext').onclick = () => { if (walkUi.walk) { walkUi.step = Math.min(walkUi.walk.references.length, walkUi.step + 1); drawWalk(); } };
  $('walkAll').onclick = () => { if (walkUi.walk) { walkUi.step = walkUi.walk.references.length; drawWalk(); } };
  // The server sends, with each walk, the same translation once more right after it (caches as it left them).
  $('walkAgain').onclick = () => { if (walkUi.walk?.next) { walkUi.walk = walkUi.walk.next; walkUi.step = 0; drawWalk(); } };
  // A page of the heatmap: the guest frame under the pointer (the first of its pixel).
  $('heatmap').onclick = (ev) => {
    const f = ui.frame;
    if (f === null) return;
    const cv = $('heatmap');
    const box = cv.getBoundingClientRect();
    const x = Math.min(f.width - 1, Math.floor(((ev.clientX - box.left) / box.width) * f.width));
    const y = Math.min(f.height - 1, Math.floor(((ev.clientY - box.top) / box.height) * f.height));
    const gfn = (y * f.width + x) * f.pagesPerPixel;
    if (gfn < f.pageCount) doWalk({ gfn });
  };
}

// ---------- state and controls ----------

function setStatus(s) {
  ui.state = s.state;
  const c = s.config;
  const what = c ? ` — ${c.mode}, ${c.addressing ?? 'identity'} addressing, ${c.workload} at ${c.dirtyRate.toLocaleString('en-US')} pages/s, ${c.cleanEvery.toLocaleString('en-US')} accesses per round, ${c.memBytes / 1048576} MiB` : '';
  $('status').innerHTML = `<b>${s.state}</b>${what}${s.message ? ` · ${escapeHtml(s.message)}` : ''}`;
  $('status').className = s.state === 'failed' ? 'bad' : '';
  $('stop').disabled = s.state !== 'running';
  $('start').disabled = s.state === 'migrating';
  $('migrate').disabled = !(s.state === 'running' || s.state === 'stopped');
  document.body.dataset.state = s.state;
}

function escapeHtml(t) {
  return String(t).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

async function post(path, body) {
  const r = await fetch(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body ?? {}) });
  const j = await r.json().catch(() => ({}));
  if (!r.ok) {
    $('status').innerHTML = `<b>${ui.state}</b> · ${escapeHtml(j.error ?? r.statusText)}`;
    $('status').className = 'bad';
    return null;
  }
  return j;
}

function fillSelect(sel, items, value) {
  sel.innerHTML = items.map((it) => {
    const name = typeof it === 'string' ? it : it.name;
    const title = typeof it === 'string' ? '' : ` title="${escapeHtml(it.summary)}"`;
    return `<option value="${name}"${title}>${name}</option>`;
  }).join('');
  sel.value = value;
}

async function init() {
  drawAgeBar();
  const st = await (await fetch('/api/state')).json();
  const cfg = st.config ?? st.defaults;
  fillSelect($('mode'), st.choices.modes, cfg.mode);
  fillSelect($('workload'), st.choices.workloads, cfg.workload);
  fillSelect($('policy'), st.choices.policies, 'xen');
  $('dirtyRate').value = cfg.dirtyRate;
  $('addressing').value = cfg.addressing ?? 'identity';
  initWalk();
  $('mem').value = String(cfg.memBytes);
  if (![...$('mem').options].some((o) => o.value === String(cfg.memBytes))) {
    $('mem').insertAdjacentHTML('afterbegin', `<option value="${cfg.memBytes}">${cfg.memBytes / 1048576} MiB</option>`);
    $('mem').value = String(cfg.memBytes);
  }
  setStatus(st);
  drawCharts();
  drawMigration();

  $('start').onclick = () => post('/api/run', {
    mode: $('mode').value, workload: $('workload').value, dirtyRate: Number($('dirtyRate').value),
    cleanEvery: $('cleanEvery').value === '' ? undefined : Number($('cleanEvery').value), memBytes: Number($('mem').value),
    addressing: $('addressing').value,
  });
  $('stop').onclick = () => post('/api/stop');
  $('migrate').onclick = () => {
    ui.migRounds = [];
    drawMigration();
    $('migSummary').textContent = 'starting the receiver…';
    post('/api/migrate', { policy: $('policy').value, bandwidth: Number($('bandwidth').value) });
  };
  $('heatMode').onchange = () => {
    $('legendRecency').hidden = $('heatMode').value !== 'recency';
    $('legendAge').hidden = $('heatMode').value !== 'age';
    drawHeatmap();
  };
  window.addEventListener('resize', () => { drawCharts(); drawMigration(); });

  const es = new EventSource('/api/events');
  es.addEventListener('state', (e) => setStatus(JSON.parse(e.data)));
  es.addEventListener('round', (e) => {
    const r = JSON.parse(e.data);
    if (r.run !== ui.run) {
      ui.run = r.run;
      ui.rounds = [];
      ui.heatRound = -1;
    }
    ui.rounds.push(r);
    if (ui.rounds.length > HISTORY) ui.rounds.shift();
    drawCharts();
    ui.wantHeat = r.heat_round;
    fetchHeatmap();
  });
  es.addEventListener('heatmap', (e) => {
    ui.wantHeat = JSON.parse(e.data).heat_round;
    fetchHeatmap();
  });
  es.addEventListener('migration-start', (e) => {
    const m = JSON.parse(e.data);
    ui.migRounds = [];
    drawMigration();
    $('migSummary').textContent = `migrating to ${m.host}:${m.port}, policy ${m.policy}, ${m.bandwidth_mib_s} MiB/s modelled link…`;
  });
  es.addEventListener('migration-round', (e) => {
    ui.migRounds.push(JSON.parse(e.data));
    drawMigration();
  });
  es.addEventListener('migration-done', (e) => {
    const d = JSON.parse(e.data);
    $('migSummary').innerHTML =
      `${d.rounds} rounds, policy ${escapeHtml(d.policy)} · downtime ${d.downtime_ms.toFixed(2)} ms · total ${d.total_ms.toFixed(1)} ms · ` +
      `${(d.bytes_sent / 1048576).toFixed(1)} MiB sent\n` +
      `${d.verified ? '<span class="ok">verified</span>' : '<span class="bad">NOT verified</span>'}: digest ${escapeHtml(d.source_digest.slice(0, 16))}… = ${escapeHtml(d.dest_digest.slice(0, 16))}…`;
  });
  es.addEventListener('failure', (e) => {
    const d = JSON.parse(e.data);
    $('migSummary').textContent = `failed: ${d.message}`;
  });
}

init().catch((e) => {
  $('status').textContent = `could not load: ${e.message}`;
});
