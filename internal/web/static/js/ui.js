// Small DOM and formatting helpers. Everything the dashboard shows is built
// with h(), which sets text as text: no HTML from the API ever reaches
// innerHTML.

const SVG_NS = 'http://www.w3.org/2000/svg';
const PROPS = new Set(['value', 'checked', 'disabled', 'selected', 'indeterminate', 'hidden', 'open', 'multiple', 'readOnly', 'required']);

// h(tag, attrs, ...children) creates an element. Attributes: class, style
// (object), dataset (object), on<event> handlers, boolean properties; the
// rest become attributes. Children are nodes, strings, numbers or arrays;
// null, undefined and false are skipped.
export function h(tag, attrs, ...children) {
  const el = tag.startsWith('svg:') ? document.createElementNS(SVG_NS, tag.slice(4)) : document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null) continue;
      if (k === 'class') {
        if (v) el.setAttribute('class', v);
      } else if (k === 'style' && typeof v === 'object') {
        Object.assign(el.style, v);
      } else if (k === 'dataset') {
        Object.assign(el.dataset, v);
      } else if (k.startsWith('on') && typeof v === 'function') {
        el.addEventListener(k.slice(2).toLowerCase(), v);
      } else if (PROPS.has(k)) {
        el[k] = v;
      } else if (v !== false) {
        el.setAttribute(k, v === true ? '' : String(v));
      }
    }
  }
  append(el, children);
  return el;
}

export function svg(tag, attrs, ...children) {
  return h('svg:' + tag, attrs, ...children);
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

// replace empties el and appends children.
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// icon returns a small inline SVG icon by name.
const ICONS = {
  overview: 'M3 13h8V3H3zm0 8h8v-6H3zm10 0h8V11h-8zm0-18v6h8V3z',
  instances: 'M4 5h16v4H4zm0 5h16v4H4zm0 5h16v4H4zM6.5 6.5h2v1h-2zm0 5h2v1h-2zm0 5h2v1h-2z',
  tasks: 'M9 5h11v2H9zm0 6h11v2H9zm0 6h11v2H9zM4 4h3v3H4zm0 6h3v3H4zm0 6h3v3H4z',
  submit: 'M4 12l16-8-6 16-2.5-6.5zM11.5 13.5L20 4',
  files: 'M6 2h8l6 6v14H6zm8 0v6h6',
  config: 'M12 8a4 4 0 100 8 4 4 0 000-8zm8.5 4l2-1.5-2-3.5-2.4.8a7 7 0 00-1.7-1L16 4h-4l-.4 2.8a7 7 0 00-1.7 1l-2.4-.8-2 3.5L7.5 12l-2 1.5 2 3.5 2.4-.8a7 7 0 001.7 1L12 20h4l.4-2.8a7 7 0 001.7-1l2.4.8 2-3.5z',
  copy: 'M8 8h12v12H8zM4 4h12v2H6v10H4z',
  trash: 'M5 7h14M10 7V4h4v3m-7 0l1 13h8l1-13',
  x: 'M6 6l12 12M18 6L6 18',
  clip: 'M16 7l-7.5 7.5a2 2 0 003 3L19 10a4 4 0 00-6-6l-7.5 7.5a6 6 0 008.5 8.5L20 14',
  upload: 'M12 16V4m0 0l-5 5m5-5l5 5M4 20h16',
  logout: 'M15 4h4v16h-4M10 8l-4 4 4 4M6 12h10',
  refresh: 'M20 11a8 8 0 10-2.3 5.7M20 4v7h-7',
  plus: 'M12 5v14M5 12h14',
  back: 'M15 5l-7 7 7 7',
  external: 'M14 4h6v6m0-6L10 14M18 14v6H4V6h6',
  keys: 'M14 10a4 4 0 10-3.5 4L4 20.5V23h3v-2h2v-2h2l1.5-1.5A4 4 0 0014 10z',
  apidoc: 'M8 6l-5 6 5 6M16 6l5 6-5 6M13.5 4l-3 16',
};
const STROKED = new Set(['submit', 'copy', 'trash', 'x', 'clip', 'upload', 'logout', 'refresh', 'plus', 'back', 'external', 'config', 'keys', 'apidoc']);

export function icon(name) {
  const stroked = STROKED.has(name);
  return svg('svg', { class: 'icon', viewBox: '0 0 24 24', 'aria-hidden': 'true', fill: stroked ? 'none' : 'currentColor',
    stroke: stroked ? 'currentColor' : 'none', 'stroke-width': stroked ? 2 : 0, 'stroke-linecap': 'round', 'stroke-linejoin': 'round' },
  svg('path', { d: ICONS[name] || '' }));
}

// ---------- formatting ----------

export function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (isNaN(d)) return String(iso);
  const now = new Date();
  const sameDay = d.toDateString() === now.toDateString();
  return sameDay
    ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' })
    : d.toLocaleString([], { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}

export function relTime(iso, now = Date.now()) {
  if (!iso) return 'never';
  const t = typeof iso === 'number' ? iso : Date.parse(iso);
  if (isNaN(t)) return String(iso);
  let s = Math.round((now - t) / 1000);
  const future = s < 0;
  s = Math.abs(s);
  let out;
  if (s < 5) return 'just now';
  if (s < 60) out = s + 's';
  else if (s < 3600) out = Math.floor(s / 60) + 'm';
  else if (s < 86400) out = Math.floor(s / 3600) + 'h';
  else out = Math.floor(s / 86400) + 'd';
  return future ? 'in ' + out : out + ' ago';
}

// timeEl is a <time> that app.js refreshes every few seconds.
export function timeEl(iso, mode = 'rel') {
  const el = h('time', { datetime: iso || '', title: iso ? new Date(iso).toLocaleString() : '' });
  el.dataset.reltime = mode;
  el.textContent = mode === 'rel' ? relTime(iso) : fmtTime(iso);
  return el;
}

export function refreshTimes(root = document) {
  const now = Date.now();
  for (const el of root.querySelectorAll('time[data-reltime="rel"]')) {
    const iso = el.getAttribute('datetime');
    const t = relTime(iso || null, now);
    if (el.textContent !== t) el.textContent = t;
  }
}

export function fmtDuration(ms) {
  if (ms === null || ms === undefined || isNaN(ms)) return '—';
  if (ms < 1000) return Math.round(ms) + ' ms';
  const s = ms / 1000;
  if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + ' s';
  const m = Math.floor(s / 60);
  if (m < 60) return m + 'm ' + Math.round(s % 60) + 's';
  return Math.floor(m / 60) + 'h ' + (m % 60) + 'm';
}

export function fmtBytes(n) {
  if (n === null || n === undefined || isNaN(n)) return '—';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i === 0 ? v : v.toFixed(v < 10 ? 1 : 0)) + ' ' + units[i];
}

export function shortId(id) {
  return id ? String(id).slice(0, 8) : '—';
}

export function fmtNum(n) {
  return n === null || n === undefined ? '—' : Number(n).toLocaleString();
}

// ---------- widgets ----------

export function statusBadge(status) {
  return h('span', { class: 'badge ' + status, 'data-status': status }, status);
}

// progressBar builds a bar; setProgress updates it in place.
export function progressBar(pct, status, big = false) {
  const fill = h('div', { class: 'fill' });
  const el = h('div', { class: 'progress' + (big ? ' big' : ''), role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100 },
    h('div', { class: 'bar' }, fill), h('span', { class: 'pct' }));
  setProgress(el, pct, status);
  return el;
}

export function setProgress(el, pct, status) {
  if (!el) return;
  pct = Math.max(0, Math.min(100, Math.round(Number(pct) || 0)));
  const cur = Number(el.getAttribute('aria-valuenow'));
  // Progress never goes down, not even when the task fails or is
  // cancelled; only a requeued task (status pending) may show less.
  if (status !== 'pending' && el.dataset.status !== 'pending' && cur > pct) pct = cur;
  el.setAttribute('aria-valuenow', pct);
  if (status) el.dataset.status = status;
  el.querySelector('.fill').style.width = pct + '%';
  el.querySelector('.pct').textContent = pct + '%';
}

export function toast(message, kind = '') {
  const box = document.getElementById('toasts');
  if (!box) return;
  const t = h('div', { class: 'toast ' + kind, role: kind === 'bad' ? 'alert' : 'status' }, message);
  box.appendChild(t);
  setTimeout(() => t.remove(), kind === 'bad' ? 7000 : 3500);
}

// confirmDialog shows a modal and resolves true when confirmed.
export function confirmDialog(title, message, { ok = 'OK', cancel: cancelLabel = 'Cancel', danger = false } = {}) {
  return new Promise((resolve) => {
    const okBtn = h('button', { class: danger ? 'btn-danger solid' : 'btn-primary', value: 'ok', 'data-action': 'confirm' }, ok);
    const cancel = h('button', { value: 'cancel', 'data-action': 'dismiss' }, cancelLabel);
    const dlg = h('dialog', { class: 'confirm', 'aria-labelledby': 'dlg-title' },
      h('form', { method: 'dialog' },
        h('h2', { id: 'dlg-title' }, title),
        h('p', { class: 'msg' }, message),
        h('div', { class: 'row' }, cancel, okBtn)));
    dlg.addEventListener('close', () => {
      resolve(dlg.returnValue === 'ok');
      dlg.remove();
    });
    document.body.appendChild(dlg);
    dlg.showModal();
    okBtn.focus();
  });
}

// copyText copies to the clipboard, with a fallback for plain-http pages
// where navigator.clipboard does not exist.
export async function copyText(text) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch { /* fall back */ }
  const ta = h('textarea', { readonly: true, style: { position: 'fixed', top: '-1000px', opacity: '0' } });
  ta.value = text;
  document.body.appendChild(ta);
  ta.select();
  let ok = false;
  try { ok = document.execCommand('copy'); } catch { ok = false; }
  ta.remove();
  return ok;
}

export function copyButton(text, label = 'Copy') {
  return h('button', {
    class: 'icon-btn', title: label, 'aria-label': label,
    onclick: async (e) => {
      e.preventDefault();
      e.stopPropagation();
      const ok = await copyText(typeof text === 'function' ? text() : text);
      toast(ok ? 'Copied to the clipboard' : 'Could not copy; select the text instead', ok ? 'ok' : 'bad');
    },
  }, icon('copy'));
}

// mediaKind guesses how to show a file: image, video, audio or other.
export function mediaKind(name, type = '') {
  const t = String(type).toLowerCase();
  if (t.startsWith('image/')) return 'image';
  if (t.startsWith('video/')) return 'video';
  if (t.startsWith('audio/')) return 'audio';
  const ext = String(name || '').toLowerCase().split('?')[0].split('.').pop();
  if (['png', 'jpg', 'jpeg', 'webp', 'gif', 'bmp', 'avif', 'svg'].includes(ext)) return 'image';
  if (['mp4', 'webm', 'mov', 'mkv', 'm4v'].includes(ext)) return 'video';
  if (['mp3', 'wav', 'flac', 'ogg', 'opus', 'm4a', 'aac'].includes(ext)) return 'audio';
  if (['images', 'gifs'].includes(t)) return 'image';
  if (['video', 'videos'].includes(t)) return 'video';
  if (t === 'audio') return 'audio';
  return 'other';
}

// sameOriginFallback makes a media element retry a /files/ URL on this
// page's origin when the URL as given fails to load: the gateway serves
// /files itself, and a publicBaseUrl that does not reach it from this
// browser (a wrong host or port) should not break previews.
export function sameOriginFallback(el) {
  el.addEventListener('error', () => {
    if (el.dataset.retried) return;
    let u;
    try { u = new URL(el.currentSrc || el.src, location.href); } catch { return; }
    if (u.origin === location.origin || !u.pathname.startsWith('/files/')) return;
    el.dataset.retried = '1';
    el.src = location.origin + u.pathname + u.search;
  });
  return el;
}

// debounce delays fn until calls stop for ms.
export function debounce(fn, ms) {
  let t;
  const d = (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
  d.cancel = () => clearTimeout(t);
  return d;
}

// Emitter is a tiny event bus; on returns an unsubscribe function.
export class Emitter {
  constructor() { this.handlers = new Map(); }
  on(type, fn) {
    if (!this.handlers.has(type)) this.handlers.set(type, new Set());
    this.handlers.get(type).add(fn);
    return () => this.handlers.get(type)?.delete(fn);
  }
  emit(type, data, msg) {
    for (const fn of this.handlers.get(type) || []) {
      try { fn(data, msg); } catch (err) { console.error('handler for', type, 'failed', err); }
    }
    for (const fn of this.handlers.get('*') || []) {
      try { fn(data, msg, type); } catch (err) { console.error('handler for * failed', err); }
    }
  }
}

// setFieldError shows msg under a field (or clears it with '').
export function setFieldError(input, errEl, msg) {
  if (input) {
    if (msg) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
  }
  if (errEl) errEl.textContent = msg || '';
}

// stripField removes a leading "field: " the API puts before messages.
export function stripField(message, field) {
  if (!message) return '';
  if (field && message.startsWith(field + ': ')) return message.slice(field.length + 2);
  return message;
}
