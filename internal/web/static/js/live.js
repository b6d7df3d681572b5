// Live state from /ws: the connection (with reconnects and pings), the
// latest overview and instances from global_status / instance_status, and
// the samples behind the overview chart (kept in the browser, seeded from
// GET /api/monitor/overview). Views subscribe with live.on(type, fn).

import { Emitter } from './ui.js';
import { get, getSession, endSession } from './api.js';

const HOUR = 3600_000;
const SAMPLE_SPACING = 5000; // settled samples are at least this far apart

class Live extends Emitter {
  constructor() {
    super();
    this.ws = null;
    this.state = 'closed'; // connecting | open | closed
    this.overview = null;
    this.instances = []; // fleet.View, config order
    this.samples = [];
    this.retry = 0;
    this.timer = 0;
    this.pingTimer = 0;
    this.wanted = false;
    this.gapNext = true;
    this.sampleKey = 'comfyfleet.samples.' + location.host;
    this.loadSamples();
  }

  // start connects (idempotent) and seeds the state over REST.
  start() {
    if (this.wanted) return;
    this.wanted = true;
    this.gapNext = true;
    this.seed();
    this.connect();
  }

  stop() {
    this.wanted = false;
    clearTimeout(this.timer);
    clearInterval(this.pingTimer);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onclose = ws.onmessage = ws.onerror = null;
      try { ws.close(1000, 'logout'); } catch { /* already closed */ }
    }
    this.setState('closed');
    this.overview = null;
    this.instances = [];
  }

  // seed loads the overview and instances over REST: at start, after a
  // reconnect (the contract says clients resync over REST), and on demand.
  async seed() {
    try {
      const [ov, inst] = await Promise.all([get('/api/monitor/overview'), get('/api/instances')]);
      if (!this.wanted) return;
      this.setOverview(ov, Date.now());
      this.setInstances(inst);
    } catch (err) {
      if (err.status !== 401) console.warn('seed failed', err);
    }
  }

  setState(s) {
    if (this.state === s) return;
    this.state = s;
    this.emit('connection', s);
  }

  connect() {
    const s = getSession();
    if (!this.wanted || !s) return;
    clearTimeout(this.timer);
    this.setState('connecting');
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    let ws;
    try {
      ws = new WebSocket(`${proto}//${location.host}/ws?token=${encodeURIComponent(s.token)}`);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.retry = 0;
      this.gapNext = true;
      this.setState('open');
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => this.send({ type: 'ping', requestId: 'hb-' + Date.now() }), 25000);
      this.emit('reconnected');
    };
    ws.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      this.handle(msg);
    };
    ws.onclose = () => {
      clearInterval(this.pingTimer);
      if (this.ws !== ws) return;
      this.ws = null;
      this.setState('closed');
      if (!this.wanted) return;
      // A refused upgrade (401) looks like any other failure to the
      // browser: ask the API whether the token still holds.
      if (!opened) {
        get('/api/auth/me').then(() => this.scheduleReconnect(), (err) => {
          if (err.status !== 401) this.scheduleReconnect();
        });
      } else {
        this.scheduleReconnect();
      }
    };
  }

  scheduleReconnect() {
    if (!this.wanted) return;
    const s = getSession();
    if (!s) { endSession('Your session expired; please log in again.'); return; }
    const delay = Math.min(30000, 800 * 2 ** this.retry) * (0.75 + Math.random() * 0.5);
    this.retry = Math.min(this.retry + 1, 8);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.connect();
      this.seed();
    }, delay);
  }

  send(obj) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(obj));
  }

  handle(msg) {
    const { type, data } = msg;
    switch (type) {
      case 'global_status':
        if (data?.overview) this.setOverview(data.overview, msg.timestamp || Date.now());
        if (Array.isArray(data?.instances)) this.setInstances(data.instances);
        break;
      case 'instance_status':
        this.patchInstance(data);
        break;
    }
    this.emit(type, data, msg);
  }

  setOverview(ov, ts) {
    this.overview = ov;
    this.addSample(ov, ts);
    this.emit('overview', ov);
  }

  setInstances(list) {
    this.instances = list || [];
    this.emit('instances', this.instances);
  }

  // patchInstance applies an instance_status event to the known list.
  patchInstance(d) {
    if (!d?.instanceId) return;
    const i = this.instances.find((x) => x.id === d.instanceId);
    if (!i) return;
    for (const k of ['alive', 'busy', 'enabled', 'currentTaskId', 'lastError', 'drainReason', 'autoDrained']) {
      if (k in d) i[k] = d[k];
    }
    this.emit('instance', i);
  }

  instance(id) {
    return this.instances.find((x) => x.id === id);
  }

  // ---------- samples for the chart ----------

  addSample(ov, ts) {
    const s = {
      t: ts,
      p: ov.pendingTasks | 0,
      r: ov.runningTasks | 0,
      c: ov.completedTasks | 0,
      f: ov.failedTasks | 0,
      x: ov.cancelledTasks | 0,
      b: ov.busyInstances | 0,
    };
    if (this.gapNext) {
      s.gap = 1;
      this.gapNext = false;
    }
    const arr = this.samples;
    const prev = arr[arr.length - 2];
    const last = arr[arr.length - 1];
    if (last && s.t < last.t) return; // out of order
    if (last && !s.gap && !last.gap && prev && s.t - prev.t < SAMPLE_SPACING) {
      arr[arr.length - 1] = s; // coalesce: the last sample is always the latest
    } else {
      arr.push(s);
    }
    const cut = Date.now() - HOUR - 120_000;
    while (arr.length && arr[0].t < cut) arr.shift();
    this.emit('sample', s);
    this.saveSamples();
  }

  loadSamples() {
    try {
      const arr = JSON.parse(localStorage.getItem(this.sampleKey) || '[]');
      const cut = Date.now() - HOUR - 120_000;
      this.samples = Array.isArray(arr) ? arr.filter((s) => s && s.t > cut) : [];
    } catch {
      this.samples = [];
    }
  }

  saveSamples() {
    if (this.saveTimer) return;
    this.saveTimer = setTimeout(() => {
      this.saveTimer = 0;
      try { localStorage.setItem(this.sampleKey, JSON.stringify(this.samples)); } catch { /* quota */ }
    }, 3000);
  }
}

export const live = new Live();

// series resamples the samples on a regular grid over the last hour:
// queue depth (pending) and throughput (tasks that finished, completed or
// failed, in the trailing minute). A point is null where nothing is known:
// before the first sample, and across a gap (page closed, connection
// lost). Just after a gap the trailing minute is shorter: the count is
// then what finished since the gap, a lower bound.
export function series(samples, now = Date.now(), step = 15000, live_ = true, span = HOUR) {
  const start = now - span;
  const out = [];
  const n = samples.length;
  if (!n) return out;
  // at(t): the last sample at or before t, or null when t is unknown.
  const at = (t) => {
    let lo = 0;
    let hi = n - 1;
    if (samples[0].t > t) return null;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (samples[mid].t <= t) lo = mid;
      else hi = mid - 1;
    }
    const s = samples[lo];
    const next = samples[lo + 1];
    if (next && next.gap) return null; // t falls in a gap before next
    if (!next && !live_ && t - s.t > 60_000) return null;
    return s;
  };
  // segStart(t): the first sample of the stretch without gaps that holds t.
  const segStart = (t) => {
    let first = null;
    for (const s of samples) {
      if (s.t > t) break;
      if (s.gap || !first) first = s;
    }
    return first;
  };
  const done = (s) => s.c + s.f;
  for (let t = start; ; t = Math.min(t + step, now)) {
    const q = at(t);
    let rate = null;
    if (q) {
      let b = at(t - 60_000);
      if (!b || hasGap(samples, b.t, q.t)) b = segStart(t);
      if (b) rate = Math.max(0, done(q) - done(b));
    }
    out.push({ t, queue: q ? q.p : null, rate });
    if (t >= now) break;
  }
  return out;
}

function hasGap(samples, from, to) {
  for (const s of samples) {
    if (s.t > from && s.t <= to && s.gap) return true;
  }
  return false;
}
