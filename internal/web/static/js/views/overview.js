// Overview: the monitor counts live from global_status, the last hour's
// queue depth and throughput, the fleet at a glance and the latest tasks.

import { h, replace, fmtNum, debounce } from '../ui.js';
import { get } from '../api.js';
import { live } from '../live.js';
import { mountChart } from '../chart.js';
import { TaskRow, watchTasks } from '../taskrows.js';

const KPIS = [
  { key: 'aliveInstances', label: 'Instances alive', cls: 'ok', href: '#/instances', sub: (o) => `of ${fmtNum(o.totalInstances)} · ${fmtNum(o.enabledInstances)} enabled` },
  { key: 'busyInstances', label: 'Busy instances', cls: 'info', href: '#/instances', sub: (o) => `${fmtNum(Math.max(0, o.aliveInstances - o.busyInstances))} idle` },
  { key: 'pendingTasks', label: 'Pending', cls: 'warn', href: '#/tasks?status=pending' },
  { key: 'runningTasks', label: 'Running', cls: 'info', href: '#/tasks?status=running' },
  { key: 'completedTasks', label: 'Completed', cls: 'ok', href: '#/tasks?status=completed' },
  { key: 'failedTasks', label: 'Failed', cls: 'bad', href: '#/tasks?status=failed' },
  { key: 'cancelledTasks', label: 'Cancelled', cls: '', href: '#/tasks?status=cancelled' },
];

export default function mount(main) {
  const kpiEls = {};
  const kpis = h('section', { class: 'kpis', id: 'kpis', 'aria-label': 'Fleet counts' }, KPIS.map((k) => {
    const value = h('span', { class: 'value' }, '—');
    const sub = h('span', { class: 'sub' }, '');
    kpiEls[k.key] = { value, sub, def: k };
    return h('a', { class: 'kpi ' + k.cls, href: k.href, 'data-kpi': k.key }, h('span', { class: 'label' }, k.label), value, sub);
  }));

  const spanBox = h('div', { class: 'chips', role: 'group', 'aria-label': 'Chart window' });
  const queueNow = h('b', { id: 'queue-now' }, '—');
  const rateNow = h('b', { id: 'rate-now' }, '—');
  const chartPanel = h('section', { class: 'panel', 'aria-labelledby': 'chart-title' },
    h('div', { class: 'panel-head' },
      h('h2', { id: 'chart-title' }, 'Queue and throughput'),
      spanBox),
    h('div', { class: 'legend', style: { marginBottom: '8px' } },
      h('span', null, h('i', { style: { background: 'var(--chart-queue)' } }), 'Queue depth (pending): ', queueNow),
      h('span', null, h('i', { style: { background: 'var(--chart-rate)' } }), 'Finished in the last minute: ', rateNow)));
  const stopChart = mountChart(chartPanel, spanBox);

  const statsBox = h('div', { class: 'meta', id: 'stats' });
  const statsPanel = h('section', { class: 'panel', hidden: true }, h('h2', null, 'Throughput and latency'), statsBox);

  const dots = h('div', { class: 'fleet-dots', id: 'fleet-dots' });
  const fleetPanel = h('section', { class: 'panel' },
    h('div', { class: 'panel-head' }, h('h2', null, 'Fleet'), h('a', { href: '#/instances', class: 'small' }, 'All instances →')), dots);

  const tbody = h('tbody');
  const recentPanel = h('section', { class: 'panel' },
    h('div', { class: 'panel-head' }, h('h2', null, 'Latest tasks'), h('a', { href: '#/tasks', class: 'small' }, 'All tasks →')),
    h('div', { class: 'table-wrap' }, h('table', { class: 'data cards', id: 'recent-tasks' },
      h('thead', null, h('tr', null, h('th', null, 'Task'), h('th', null, 'Status'), h('th', null, 'Progress'), h('th', null, 'Created'), h('th', null, ''))),
      tbody)));

  replace(main,
    h('div', { class: 'page-head' }, h('h1', null, 'Overview')),
    kpis,
    h('div', { class: 'grid grid-2' }, h('div', { class: 'stack' }, chartPanel, statsPanel), fleetPanel),
    h('div', { style: { marginTop: '14px' } }, recentPanel));

  const showOverview = (o) => {
    if (!o) return;
    for (const [key, { value, sub, def }] of Object.entries(kpiEls)) {
      value.textContent = fmtNum(o[key] ?? 0);
      sub.textContent = def.sub ? def.sub(o) : '';
    }
    const stats = o.stats && typeof o.stats === 'object' ? Object.entries(o.stats) : [];
    statsPanel.hidden = stats.length === 0;
    replace(statsBox, stats.map(([k, v]) => h('div', null, h('dt', null, k), h('dd', null, typeof v === 'object' ? JSON.stringify(v) : String(v)))));
  };
  const showRates = () => {
    const box = chartPanel.querySelector('.chart');
    queueNow.textContent = box?.dataset.queue || '—';
    rateNow.textContent = box?.dataset.rate || '—';
  };
  const showInstances = (list) => {
    if (!list.length) {
      replace(dots, h('p', { class: 'muted' }, 'No instances configured.'));
      return;
    }
    replace(dots, list.map((i) => {
      const state = !i.enabled ? 'disabled' : !i.alive ? 'down' : i.busy ? 'busy' : 'idle';
      return h('a', { class: 'fleet-dot', href: '#/instances', 'data-state': state, 'data-instance-id': i.id, title: `${i.id}: ${state}` },
        h('span', { class: 'dot' }),
        h('span', { class: 't' }, h('span', { class: 'mono' }, i.id), h('br'), h('span', { class: 'muted' }, state)));
    }));
  };

  // latest tasks
  const rows = new Map();
  const loadRecent = async () => {
    try {
      const res = await get('/api/tasks?limit=8');
      rows.clear();
      const trs = res.items.map((t) => {
        const r = new TaskRow(t, { columns: 'compact' });
        rows.set(t.id, r);
        return r.el;
      });
      replace(tbody, trs.length ? trs : h('tr', null, h('td', { colspan: 5, class: 'empty' }, 'No tasks yet. ', h('a', { href: '#/submit' }, 'Submit one'), '.')));
    } catch (err) {
      if (err.status !== 401) replace(tbody, h('tr', null, h('td', { colspan: 5, class: 'empty' }, err.message)));
    }
  };
  const reloadRecent = debounce(loadRecent, 400);
  const stopTasks = watchTasks(rows, () => reloadRecent());

  showOverview(live.overview);
  showInstances(live.instances);
  loadRecent();
  if (!live.overview) live.seed();
  const offs = [
    live.on('overview', showOverview),
    live.on('instances', showInstances),
    live.on('instance', () => showInstances(live.instances)),
    live.on('sample', () => requestAnimationFrame(showRates)),
    live.on('reconnected', () => reloadRecent()),
  ];
  const t = setInterval(showRates, 5000);
  requestAnimationFrame(showRates);
  return () => {
    offs.forEach((f) => f());
    stopChart();
    stopTasks();
    reloadRecent.cancel();
    clearInterval(t);
  };
}
