// Instances: every configured ComfyUI instance with its state, current
// task, heartbeat, device, labels and what it can run (its node catalogue:
// classes and checkpoints); admins can enable or disable (drain) one and
// read its catalogue again.
// Live from instance_status and global_status; heartbeats are refreshed
// over REST every 10 s because they do not produce events.

import { h, replace, timeEl, fmtBytes, toast, shortId } from '../ui.js';
import { api, get, isAdmin } from '../api.js';
import { live } from '../live.js';

function stateOf(i) {
  if (!i.enabled) return i.autoDrained ? 'drained' : 'disabled';
  if (!i.alive) return 'down';
  return i.busy ? 'busy' : 'idle';
}

function stateBadges(i) {
  const out = [h('span', { class: 'badge ' + (i.alive ? 'alive' : 'down'), 'data-field': 'alive' }, i.alive ? 'alive' : 'down')];
  if (i.alive) out.push(h('span', { class: 'badge ' + (i.busy ? 'busy' : 'idle'), 'data-field': 'busy' }, i.busy ? 'busy' : 'idle'));
  if (!i.enabled) {
    out.push(i.autoDrained
      ? h('span', { class: 'badge drained', 'data-field': 'enabled', title: i.drainReason || '' }, 'drained')
      : h('span', { class: 'badge disabled', 'data-field': 'enabled' }, 'disabled'));
  }
  return h('div', { class: 'badges' }, out);
}

function device(i) {
  const d = i.device;
  if (!d) return h('span', { class: 'muted' }, '—');
  const used = d.vramTotal ? d.vramTotal - d.vramFree : 0;
  const pct = d.vramTotal ? Math.round((used / d.vramTotal) * 100) : 0;
  return h('div', { class: 'device', title: d.comfyuiVersion ? 'ComfyUI ' + d.comfyuiVersion : '' },
    h('div', { class: 'small' }, d.name || d.type || 'device'),
    d.vramTotal ? h('div', { class: 'cell-sub' }, `VRAM ${fmtBytes(used)} / ${fmtBytes(d.vramTotal)} (${pct}%)`) : null,
    d.vramTotal ? h('div', { class: 'meter', role: 'meter', 'aria-valuenow': pct, 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-label': 'VRAM used' },
      h('div', { style: { width: pct + '%' } })) : null);
}

// capabilities shows the labels and the catalogue summary; admins get a
// button that reads /object_info again (after installing models or nodes).
function capabilities(i, admin, onRefreshed) {
  const labels = Object.entries(i.labels || {}).sort(([a], [b]) => a.localeCompare(b));
  const c = i.catalog;
  const ckpts = c?.checkpoints || [];
  const refresh = admin ? h('button', {
    class: 'btn btn-sm btn-ghost', type: 'button', 'data-action': 'refresh-catalog', 'aria-label': 'Read the catalogue of ' + i.id + ' again', title: 'Read the node catalogue (/object_info) again',
    onclick: async (e) => {
      e.target.disabled = true;
      try {
        const v = await api('POST', '/api/instances/' + encodeURIComponent(i.id) + '/refresh-catalog');
        toast(`${i.id}: catalogue read (${v.catalog?.nodeClasses ?? 0} node classes)`, 'ok');
        onRefreshed(v);
      } catch (err) {
        toast(err.message, 'bad');
        e.target.disabled = false;
      }
    },
  }, '↻') : null;
  return h('div', { class: 'caps', 'data-field': 'capabilities' },
    labels.length ? h('div', { class: 'badges wrap' }, labels.map(([k, v]) => h('span', { class: 'badge plain label', 'data-label': k }, `${k}=${v}`))) : null,
    c
      ? h('div', { class: 'cell-sub', 'data-field': 'catalog', title: ckpts.join('\n') || 'no checkpoints' },
        `${c.nodeClasses} node classes · ${ckpts.length} checkpoint${ckpts.length === 1 ? '' : 's'}`,
        ckpts.length ? h('div', { class: 'small mono ckpts' }, ckpts.slice(0, 3).join(', ') + (ckpts.length > 3 ? ', …' : '')) : null)
      : h('div', { class: 'cell-sub muted', 'data-field': 'catalog' }, 'catalogue not read yet'),
    refresh);
}

export default function mount(main) {
  const admin = isAdmin();
  const tbody = h('tbody');
  const summary = h('span', { class: 'muted', id: 'instances-summary' });
  const filter = h('input', { type: 'search', placeholder: 'Filter by server, address, task, label or model…', 'aria-label': 'Filter instances', style: { maxWidth: '320px' } });
  replace(main,
    h('div', { class: 'page-head' }, h('h1', null, 'Instances'), summary),
    h('div', { class: 'toolbar' }, filter),
    h('section', { class: 'panel' },
      h('div', { class: 'table-wrap' }, h('table', { class: 'data cards', id: 'instances' },
        h('thead', null, h('tr', null,
          h('th', null, 'Server'), h('th', null, 'Address'), h('th', null, 'State'), h('th', null, 'Current task'),
          h('th', { class: 'num' }, 'Queue'), h('th', null, 'Last heartbeat'), h('th', null, 'GPU / VRAM'), h('th', null, 'Capabilities'), h('th', null, 'Enabled'))),
        tbody))));

  const rows = new Map(); // id -> { tr, inst, pending }

  const toggle = (i) => {
    const input = h('input', {
      type: 'checkbox', checked: !!i.enabled, disabled: !admin, role: 'switch', 'aria-checked': String(!!i.enabled),
      'aria-label': (i.enabled ? 'Disable ' : 'Enable ') + i.id, class: 'enable-toggle', 'data-instance-id': i.id,
      onchange: async (e) => {
        const want = e.target.checked;
        const row = rows.get(i.id);
        e.target.disabled = true;
        if (row) row.pending = true;
        try {
          const v = await api('PUT', '/api/instances/' + encodeURIComponent(i.id), { enabled: want });
          toast(`${i.id} ${v.enabled ? 'enabled' : 'disabled'}${!v.enabled && v.busy ? '; its running task will finish first' : ''}`, 'ok');
          if (row) row.pending = false;
          upsert(v);
        } catch (err) {
          toast(err.status === 403 ? 'Only admins can enable or disable instances.' : err.message, 'bad');
          if (row) row.pending = false;
          e.target.checked = !want;
          e.target.disabled = !admin;
        }
      },
    });
    return h('label', { class: 'switch', title: admin ? 'Enabled instances receive new tasks; disabling drains it' : 'Only admins can change this' },
      input, h('span', { class: 'track' }), h('span', { class: 'small' }, i.enabled ? 'on' : 'off'));
  };

  const drawRow = (tr, i) => {
    tr.dataset.state = stateOf(i);
    tr.dataset.enabled = String(!!i.enabled);
    tr.dataset.alive = String(!!i.alive);
    tr.dataset.busy = String(!!i.busy);
    const task = i.currentTaskId
      ? h('a', { href: '#/tasks/' + encodeURIComponent(i.currentTaskId), class: 'mono', title: i.currentTaskId }, shortId(i.currentTaskId))
      : h('span', { class: 'muted' }, '—');
    replace(tr,
      h('td', { 'data-label': 'Server' }, h('div', { class: 'cell-main' }, i.serverName || i.serverId), h('div', { class: 'cell-sub' }, i.serverId)),
      h('td', { 'data-label': 'Address', class: 'mono' }, `${i.ip}:${i.port}`),
      h('td', { 'data-label': 'State' }, stateBadges(i),
        i.autoDrained && i.drainReason ? h('div', { class: 'cell-sub drain-reason', 'data-field': 'drainReason', title: i.drainReason },
          i.drainReason.length > 120 ? i.drainReason.slice(0, 120) + '…' : i.drainReason) : null,
        i.enabled && i.runFailures > 0 ? h('div', { class: 'cell-sub', 'data-field': 'runFailures' },
          `${i.runFailures} run${i.runFailures === 1 ? '' : 's'} failed in a row`) : null,
        i.lastError ? h('div', { class: 'cell-sub', style: { color: 'var(--bad)' }, title: i.lastError }, i.lastError.length > 80 ? i.lastError.slice(0, 80) + '…' : i.lastError) : null),
      h('td', { 'data-label': 'Current task' }, task),
      h('td', { 'data-label': 'Queue', class: 'num' }, String(i.queueRemaining ?? 0)),
      h('td', { 'data-label': 'Last heartbeat', class: 'small nowrap' }, timeEl(i.lastHeartbeat)),
      h('td', { 'data-label': 'GPU / VRAM' }, device(i)),
      h('td', { 'data-label': 'Capabilities' }, capabilities(i, admin, (v) => upsert(v))),
      h('td', { 'data-label': 'Enabled' }, toggle(i)));
  };

  const matches = (i) => {
    const q = filter.value.trim().toLowerCase();
    if (!q) return true;
    const labels = Object.entries(i.labels || {}).map(([k, v]) => `${k}=${v}`);
    return [i.id, i.serverId, i.serverName, i.currentTaskId, i.device?.name, stateOf(i), ...labels, ...(i.catalog?.checkpoints || [])]
      .some((s) => s && String(s).toLowerCase().includes(q));
  };

  const upsert = (i) => {
    let row = rows.get(i.id);
    if (!row) {
      row = { tr: h('tr', { 'data-instance-id': i.id }), inst: i, pending: false };
      rows.set(i.id, row);
    }
    if (row.pending) return; // a toggle is in flight; its answer redraws
    const changed = JSON.stringify(row.inst) !== JSON.stringify(i) || !row.tr.firstChild;
    row.inst = { ...i };
    if (changed) drawRow(row.tr, row.inst);
    row.tr.hidden = !matches(row.inst);
  };

  const showAll = (list) => {
    const seen = new Set();
    for (const i of list) {
      upsert(i);
      seen.add(i.id);
    }
    for (const id of [...rows.keys()]) if (!seen.has(id)) rows.delete(id);
    const trs = list.map((i) => rows.get(i.id).tr);
    if (!trs.length) replace(tbody, h('tr', null, h('td', { colspan: 9, class: 'empty' }, 'No instances configured.', admin ? [' ', h('a', { href: '#/config' }, 'Add servers'), '.'] : null)));
    else if (trs.some((tr, n) => tbody.children[n] !== tr) || tbody.children.length !== trs.length) replace(tbody, trs);
    const alive = list.filter((i) => i.alive).length;
    const busy = list.filter((i) => i.busy).length;
    const enabled = list.filter((i) => i.enabled).length;
    summary.textContent = `${alive}/${list.length} alive · ${busy} busy · ${enabled} enabled`;
  };

  const refresh = async () => {
    try {
      live.setInstances(await get('/api/instances'));
    } catch (err) {
      if (err.status !== 401) toast(err.message, 'bad');
    }
  };

  filter.addEventListener('input', () => { for (const r of rows.values()) r.tr.hidden = !matches(r.inst); });
  showAll(live.instances);
  if (!live.instances.length) refresh();
  const offs = [
    live.on('instances', showAll),
    live.on('instance', (i) => { upsert(i); showAll(live.instances); }),
  ];
  const timer = setInterval(refresh, 10000);
  return () => {
    offs.forEach((f) => f());
    clearInterval(timer);
  };
}
