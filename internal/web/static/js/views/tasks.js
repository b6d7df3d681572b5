// Tasks: newest first, filtered by status (several at once), paged, with
// live progress bars and cancel. New tasks appear on the first page.

import { h, replace, debounce, fmtNum, icon } from '../ui.js';
import { get, qs, isAdmin } from '../api.js';
import { live } from '../live.js';
import { STATUSES, TaskRow, watchTasks } from '../taskrows.js';

const SIZES = [20, 50, 100];
const COUNT_KEY = { pending: 'pendingTasks', running: 'runningTasks', completed: 'completedTasks', failed: 'failedTasks', cancelled: 'cancelledTasks' };

export default function mount(main, { query, setQuery }) {
  const state = {
    statuses: new Set((query.status || '').split(',').filter((s) => STATUSES.includes(s))),
    limit: SIZES.includes(Number(query.limit)) ? Number(query.limit) : 20,
    offset: Math.max(0, Number(query.offset) || 0),
    total: 0,
  };
  const rows = new Map();
  const tbody = h('tbody');
  const info = h('span', { class: 'muted small', id: 'tasks-range' });
  const prev = h('button', { class: 'btn-sm', id: 'tasks-prev', onclick: () => go(state.offset - state.limit) }, '← Newer');
  const next = h('button', { class: 'btn-sm', id: 'tasks-next', onclick: () => go(state.offset + state.limit) }, 'Older →');
  const size = h('select', { 'aria-label': 'Tasks per page', onchange: () => { state.limit = Number(size.value); go(0); } },
    SIZES.map((n) => h('option', { value: n, selected: n === state.limit }, `${n} / page`)));
  const banner = h('div', { class: 'banner', hidden: true, id: 'tasks-banner' });
  const chipEls = {};
  const chip = (s) => {
    const n = h('span', { class: 'n' });
    const b = h('button', {
      class: 'chip', 'aria-pressed': String(s ? state.statuses.has(s) : state.statuses.size === 0), 'data-status': s || 'all',
      onclick: () => {
        if (!s) state.statuses.clear();
        else if (state.statuses.has(s)) state.statuses.delete(s);
        else state.statuses.add(s);
        go(0);
      },
    }, s || 'all', ' ', n);
    chipEls[s || 'all'] = { b, n };
    return b;
  };
  const chips = h('div', { class: 'chips', role: 'group', 'aria-label': 'Filter by status' }, chip(''), STATUSES.map(chip));

  replace(main,
    h('div', { class: 'page-head' }, h('h1', null, 'Tasks'),
      h('button', { class: 'btn-sm', title: 'Reload', onclick: () => load() }, icon('refresh'), 'Reload'),
      h('a', { class: 'btn btn-primary', href: '#/submit' }, icon('plus'), 'New task')),
    h('div', { class: 'toolbar' }, chips),
    banner,
    h('section', { class: 'panel' },
      h('div', { class: 'table-wrap' }, h('table', { class: 'data cards', id: 'tasks' },
        h('thead', null, h('tr', null,
          h('th', null, 'Task'), h('th', null, 'Status'), h('th', null, 'Progress'), h('th', { class: 'num' }, 'Priority'),
          h('th', null, 'Instance'), h('th', null, 'Owner'), h('th', null, 'Created'), h('th', { class: 'num' }, 'Duration'), h('th', null, ''))),
        tbody)),
      h('div', { class: 'pager' }, info, size, prev, next)));

  let ctrl = null;
  let pendingNew = 0;
  const load = async () => {
    ctrl?.abort();
    ctrl = new AbortController();
    const status = [...state.statuses].join(',');
    setQuery({ status, limit: state.limit === 20 ? '' : state.limit, offset: state.offset || '' });
    for (const [k, { b }] of Object.entries(chipEls)) b.setAttribute('aria-pressed', String(k === 'all' ? state.statuses.size === 0 : state.statuses.has(k)));
    try {
      const res = await get('/api/tasks' + qs({ status, limit: state.limit, offset: state.offset }), { signal: ctrl.signal });
      state.total = res.total;
      if (state.offset > 0 && state.offset >= res.total) {
        go(Math.max(0, Math.floor((res.total - 1) / state.limit) * state.limit));
        return;
      }
      rows.clear();
      const trs = res.items.map((t) => {
        const r = new TaskRow(t);
        rows.set(t.id, r);
        return r.el;
      });
      replace(tbody, trs.length ? trs : h('tr', null, h('td', { colspan: 9, class: 'empty' },
        state.statuses.size ? 'No tasks with this status.' : ['No tasks yet. ', h('a', { href: '#/submit' }, 'Submit one'), '.'])));
      const from = res.total ? state.offset + 1 : 0;
      const to = state.offset + res.items.length;
      info.textContent = `${fmtNum(from)}–${fmtNum(to)} of ${fmtNum(res.total)}`;
      prev.disabled = state.offset === 0;
      next.disabled = to >= res.total;
      pendingNew = 0;
      banner.hidden = true;
    } catch (err) {
      if (err.name === 'AbortError' || err.status === 401) return;
      replace(tbody, h('tr', null, h('td', { colspan: 9, class: 'empty' }, err.message)));
      if (err.field) state.statuses.clear();
    }
  };
  const go = (offset) => {
    state.offset = Math.max(0, offset);
    load();
  };
  const reload = debounce(load, 400);

  // The monitor's counts are fleet-wide; a user sees only their own tasks,
  // so the chips show counts to admins only.
  const showCounts = (o) => {
    if (!o || !isAdmin()) return;
    let all = 0;
    for (const s of STATUSES) {
      const n = o[COUNT_KEY[s]] ?? 0;
      all += n;
      chipEls[s].n.textContent = fmtNum(n);
    }
    chipEls.all.n.textContent = fmtNum(all);
  };

  // A task we do not show: new tasks reload the first page by themselves;
  // elsewhere a banner offers to jump there.
  const onUnknown = (d) => {
    if (d.status !== 'pending' || (state.statuses.size && !state.statuses.has('pending'))) return;
    if (state.offset === 0) {
      reload();
      return;
    }
    pendingNew++;
    replace(banner, `${pendingNew} new task${pendingNew > 1 ? 's' : ''}. `, h('a', { href: '#', onclick: (e) => { e.preventDefault(); go(0); } }, 'Show newest'));
    banner.hidden = false;
  };
  const stopTasks = watchTasks(rows, onUnknown);
  const offs = [live.on('overview', showCounts), live.on('reconnected', () => reload())];
  showCounts(live.overview);
  load();
  return () => {
    ctrl?.abort();
    reload.cancel();
    stopTasks();
    offs.forEach((f) => f());
  };
}
