// Task rows shared by the task list and the overview, kept live by the
// task_* events from /ws.

import { h, statusBadge, progressBar, setProgress, timeEl, shortId, fmtDuration, fmtTime, relTime, confirmDialog, toast, replace, icon } from './ui.js';
import { api } from './api.js';
import { live } from './live.js';

export const STATUSES = ['pending', 'running', 'completed', 'failed', 'cancelled'];
const FINAL = new Set(['completed', 'failed', 'cancelled']);

export function isFinal(status) {
  return FINAL.has(status);
}

// cancelTask asks first, then DELETE /api/tasks/:id. Returns the task view
// or null when not cancelled.
export async function cancelTask(id, status) {
  const running = status === 'running';
  const ok = await confirmDialog('Cancel task?',
    running ? `Task ${shortId(id)} is running; it will be interrupted on its instance.` : `Task ${shortId(id)} will be removed from the queue.`,
    { ok: 'Cancel task', cancel: 'Keep it', danger: true });
  if (!ok) return null;
  try {
    const t = await api('DELETE', '/api/tasks/' + encodeURIComponent(id));
    toast(t.status === 'cancelled' ? 'Task cancelled' : 'Cancellation requested; the instance is interrupting it', 'ok');
    return t;
  } catch (err) {
    toast(err.message, 'bad');
    return null;
  }
}

function duration(t) {
  if (!t.startedAt) return null;
  const end = t.finishedAt ? Date.parse(t.finishedAt) : Date.now();
  return end - Date.parse(t.startedAt);
}

// etaText says when a pending task is expected to start, from the API's
// estimatedStart; null when it has none.
export function etaText(t) {
  if (t.status !== 'pending' || !t.estimatedStart) return null;
  const rel = relTime(t.estimatedStart);
  return rel === 'just now' || rel.endsWith(' ago') ? 'starts now' : 'starts ' + rel;
}

// durationContent is what the Duration column shows: how long the task ran,
// or for a pending one when it is expected to start and finish.
function durationContent(t) {
  const eta = etaText(t);
  if (!eta) return fmtDuration(duration(t));
  return h('span', {
    class: 'eta', 'data-field': 'eta',
    title: `Estimated start ${fmtTime(t.estimatedStart)}, finish ${fmtTime(t.estimatedFinish)}`,
  }, eta);
}

// TaskRow is one <tr> of a task table; update() applies newer data.
export class TaskRow {
  constructor(task, { columns = 'full', onChange } = {}) {
    this.task = { ...task };
    this.columns = columns;
    this.onChange = onChange;
    this.el = h('tr', { 'data-task-id': task.id, class: 'task-row' });
    this.draw();
  }

  draw() {
    const t = this.task;
    const link = h('a', { href: '#/tasks/' + encodeURIComponent(t.id), class: 'mono task-link', title: t.id }, shortId(t.id));
    this.badgeCell = h('td', { 'data-label': 'Status', class: 'status-cell' }, statusBadge(t.status));
    this.bar = progressBar(t.progress, t.status);
    const progCell = h('td', { 'data-label': 'Progress' }, this.bar);
    this.instCell = h('td', { 'data-label': 'Instance', class: 'mono small' }, t.instanceId || '—');
    this.actions = h('td', { 'data-label': '', class: 'actions-cell' }, this.actionButtons());
    const cells = [h('td', { 'data-label': 'Task' }, link)];
    cells.push(this.badgeCell, progCell);
    if (this.columns === 'full') {
      this.durCell = h('td', { 'data-label': 'Duration', class: 'num small' }, durationContent(t));
      cells.push(
        h('td', { 'data-label': 'Priority', class: 'num' }, String(t.priority ?? 0)),
        this.instCell,
        h('td', { 'data-label': 'Owner', class: 'small' }, t.owner || '—'),
        h('td', { 'data-label': 'Created', class: 'small nowrap' }, timeEl(t.createdAt)),
        this.durCell);
    } else {
      cells.push(h('td', { 'data-label': 'Created', class: 'small nowrap' }, timeEl(t.createdAt)));
    }
    cells.push(this.actions);
    replace(this.el, cells);
    this.el.dataset.status = t.status;
  }

  actionButtons() {
    const t = this.task;
    if (isFinal(t.status)) return null;
    return h('button', {
      class: 'btn-sm btn-danger cancel-btn', 'data-action': 'cancel', title: 'Cancel this task',
      onclick: async (e) => {
        e.preventDefault();
        const res = await cancelTask(t.id, t.status);
        if (res) this.update(res);
      },
    }, icon('x'), 'Cancel');
  }

  // update merges fields (from a task view or an event) and redraws the
  // parts that changed.
  update(patch) {
    const t = this.task;
    const before = t.status;
    if (typeof patch.progress === 'number') {
      // Progress never goes down, except when a task is requeued.
      t.progress = patch.status === 'pending' ? patch.progress : Math.max(t.progress || 0, patch.progress);
    }
    for (const k of ['status', 'instanceId', 'startedAt', 'finishedAt', 'attempts', 'priority', 'owner', 'result', 'error', 'estimatedStart', 'estimatedFinish']) {
      if (k in patch && patch[k] !== undefined) t[k] = patch[k];
    }
    if (t.status === 'completed') t.progress = 100;
    if (t.status !== before) {
      this.badgeCell.replaceChildren(statusBadge(t.status));
      this.actions.replaceChildren(...[this.actionButtons()].filter(Boolean));
      this.el.dataset.status = t.status;
      this.el.classList.remove('flash');
      void this.el.offsetWidth;
      this.el.classList.add('flash');
    }
    setProgress(this.bar, t.progress, t.status);
    this.instCell.textContent = t.instanceId || '—';
    if (this.durCell) this.durCell.replaceChildren(durationContent(t));
    if (this.onChange && t.status !== before) this.onChange(this, before);
  }
}

// watchTasks routes task events to rows by id; unknown ids go to onUnknown.
export function watchTasks(rows, onUnknown) {
  const route = (patch) => (data, msg) => {
    if (!data?.taskId) return;
    const row = rows.get(data.taskId);
    if (!row) {
      if (onUnknown) onUnknown(data);
      return;
    }
    const p = patch(data);
    // Events carry no startedAt / finishedAt: take the event's time, so
    // the duration column fills in without a request per task.
    const at = msg?.timestamp ? new Date(msg.timestamp).toISOString() : undefined;
    if (at && p.status === 'running' && !row.task.startedAt) p.startedAt = at;
    if (at && isFinal(p.status) && !row.task.finishedAt) p.finishedAt = at;
    row.update(p);
  };
  const offs = [
    live.on('task_status', route((d) => ({ status: d.status, instanceId: d.instanceId, progress: d.progress, attempts: d.attempts }))),
    live.on('task_progress', route((d) => ({ progress: d.progress }))),
    live.on('task_completed', route((d) => ({ status: 'completed', progress: 100, result: d.result, instanceId: d.instanceId }))),
    live.on('task_failed', route((d) => ({ status: 'failed', error: d.error, instanceId: d.instanceId }))),
    live.on('task_cancelled', route(() => ({ status: 'cancelled' }))),
  ];
  return () => offs.forEach((f) => f());
}
