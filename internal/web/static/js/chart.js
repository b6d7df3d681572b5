// The overview chart, drawn as SVG: queue depth (area, left axis) and
// throughput in tasks finished per minute (line, right axis) over the last
// hour. It redraws on new samples, every few seconds (the window slides)
// and when its box is resized.

import { svg, h } from './ui.js';
import { live, series } from './live.js';

const PAD = { l: 34, r: 38, t: 10, b: 22 };

const SPANS = { '1h': 60, '15m': 15, '5m': 5 }; // minutes
const SPAN_KEY = 'comfyfleet.chartSpan';

// mountChart draws into container; spanBox (optional) gets the buttons that
// choose the window (1 h by default; 15 and 5 minutes to see detail).
export function mountChart(container, spanBox) {
  let span = localStorage.getItem(SPAN_KEY) in SPANS ? localStorage.getItem(SPAN_KEY) : '1h';
  const box = h('div', { class: 'chart', role: 'img' });
  container.appendChild(box);
  if (spanBox) {
    const btns = Object.keys(SPANS).map((k) => h('button', {
      type: 'button', class: 'chip', 'aria-pressed': String(k === span), 'data-span': k,
      onclick: () => {
        span = k;
        try { localStorage.setItem(SPAN_KEY, k); } catch { /* ignore */ }
        btns.forEach((b) => b.setAttribute('aria-pressed', String(b.dataset.span === k)));
        schedule();
      },
    }, k));
    spanBox.replaceChildren(...btns);
  }
  let raf = 0;
  const draw = () => {
    raf = 0;
    const w = Math.max(240, box.clientWidth || 600);
    const hgt = Math.max(140, box.clientHeight || 220);
    const minutes = SPANS[span];
    box.setAttribute('aria-label', `Queue depth and throughput over the last ${minutes === 60 ? 'hour' : minutes + ' minutes'}`);
    const pts = series(live.samples, Date.now(), (minutes * 60_000) / 240, live.state === 'open', minutes * 60_000);
    box.replaceChildren(render(pts, w, hgt, minutes));
    const last = [...pts].reverse().find((p) => p.queue !== null);
    box.dataset.queue = last ? last.queue : '';
    box.dataset.rate = last && last.rate !== null ? last.rate : '';
  };
  const schedule = () => { if (!raf) raf = requestAnimationFrame(draw); };
  const offs = [live.on('sample', schedule), live.on('connection', schedule)];
  const tick = setInterval(schedule, 5000);
  const ro = typeof ResizeObserver === 'function' ? new ResizeObserver(schedule) : null;
  ro?.observe(box);
  schedule();
  return () => {
    offs.forEach((f) => f());
    clearInterval(tick);
    ro?.disconnect();
    cancelAnimationFrame(raf);
  };
}

function niceMax(v) {
  if (v <= 4) return 4;
  const mag = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) {
    if (m * mag >= v) return m * mag;
  }
  return 10 * mag;
}

function render(pts, w, hgt, minutes) {
  const root = svg('svg', { viewBox: `0 0 ${w} ${hgt}`, width: w, height: hgt, 'aria-hidden': 'true' });
  const iw = w - PAD.l - PAD.r;
  const ih = hgt - PAD.t - PAD.b;
  if (!pts.length) {
    root.appendChild(svg('text', { x: w / 2, y: hgt / 2, 'text-anchor': 'middle', class: 'empty-note' }, 'Collecting samples…'));
    return root;
  }
  const t0 = pts[0].t;
  const t1 = pts[pts.length - 1].t;
  const qMax = niceMax(Math.max(0, ...pts.map((p) => p.queue ?? 0)));
  const rMax = niceMax(Math.max(0, ...pts.map((p) => p.rate ?? 0)));
  const x = (t) => PAD.l + ((t - t0) / Math.max(1, t1 - t0)) * iw;
  const yq = (v) => PAD.t + ih - (v / qMax) * ih;
  const yr = (v) => PAD.t + ih - (v / rMax) * ih;

  // grid and axes
  for (let i = 0; i <= 4; i++) {
    const y = PAD.t + (ih * i) / 4;
    root.appendChild(svg('line', { x1: PAD.l, x2: PAD.l + iw, y1: y, y2: y, class: 'grid-line' }));
    root.appendChild(svg('text', { x: PAD.l - 6, y: y + 4, 'text-anchor': 'end', class: 'axis-label' }, fmt(qMax * (1 - i / 4))));
    root.appendChild(svg('text', { x: PAD.l + iw + 6, y: y + 4, 'text-anchor': 'start', class: 'axis-label' }, fmt(rMax * (1 - i / 4))));
  }
  const ticks = minutes === 60 ? [60, 45, 30, 15, 0] : minutes === 15 ? [15, 10, 5, 0] : [5, 4, 3, 2, 1, 0];
  ticks.forEach((m, i) => {
    const t = t1 - m * 60_000;
    const anchor = i === 0 ? 'start' : m === 0 ? 'end' : 'middle';
    root.appendChild(svg('text', { x: x(t), y: hgt - 5, 'text-anchor': anchor, class: 'axis-label' }, m === 0 ? 'now' : `-${m}m`));
  });

  // shade the time before the first known point
  const firstKnown = pts.find((p) => p.queue !== null);
  if (firstKnown && firstKnown.t > t0) {
    const w0 = x(firstKnown.t) - PAD.l;
    root.appendChild(svg('rect', { x: PAD.l, y: PAD.t, width: w0, height: ih, class: 'unknown' }));
    if (w0 > 150) {
      const since = new Date(firstKnown.t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
      root.appendChild(svg('text', { x: PAD.l + w0 / 2, y: PAD.t + ih / 2, 'text-anchor': 'middle', class: 'empty-note' }, `No samples before ${since}`));
    }
  }
  if (!firstKnown) {
    root.appendChild(svg('text', { x: w / 2, y: hgt / 2, 'text-anchor': 'middle', class: 'empty-note' }, 'Collecting samples…'));
  }

  // queue depth: area + line, split at unknown points
  for (const seg of segments(pts, 'queue')) {
    let line = seg.map((p, i) => `${i ? 'L' : 'M'}${x(p.t).toFixed(1)},${yq(p.queue).toFixed(1)}`).join('');
    if (seg.length === 1) line += 'h0.1';
    const area = `${line}L${x(seg[seg.length - 1].t).toFixed(1)},${yq(0)}L${x(seg[0].t).toFixed(1)},${yq(0)}Z`;
    root.appendChild(svg('path', { d: area, class: 'queue-area' }));
    root.appendChild(svg('path', { d: line, class: 'queue-line' }));
  }
  // throughput line (a lone point gets a dot so it shows)
  let lastRate = null;
  for (const seg of segments(pts, 'rate')) {
    let d = seg.map((p, i) => `${i ? 'L' : 'M'}${x(p.t).toFixed(1)},${yr(p.rate).toFixed(1)}`).join('');
    if (seg.length === 1) d += 'h0.1';
    root.appendChild(svg('path', { d, class: 'rate-line' }));
    lastRate = seg[seg.length - 1];
  }
  if (lastRate) root.appendChild(svg('circle', { cx: x(lastRate.t), cy: yr(lastRate.rate), r: 3, class: 'now-dot' }));
  return root;
}

function segments(pts, key) {
  const out = [];
  let cur = [];
  for (const p of pts) {
    if (p[key] === null || p[key] === undefined) {
      if (cur.length) out.push(cur);
      cur = [];
    } else cur.push(p);
  }
  if (cur.length) out.push(cur);
  return out;
}

function fmt(v) {
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}
