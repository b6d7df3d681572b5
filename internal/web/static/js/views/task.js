// One task: status and live progress (with the node and step from
// task_progress), the live preview of a running sampler (task_preview),
// timings, cancel, a readable error (ComfyUI's node_errors per node and
// input), output previews, params and the workflow.

import { h, replace, statusBadge, progressBar, setProgress, timeEl, fmtTime, fmtDuration, copyButton, mediaKind, icon, shortId, sameOriginFallback } from '../ui.js';
import { get } from '../api.js';
import { live } from '../live.js';
import { cancelTask, etaText, isFinal } from '../taskrows.js';
import { saveDraft } from './submit.js';

export default function mount(main, { params, navigate }) {
  const id = params.id;
  let task = null;
  let ctrl = null;
  let pollTimer = 0;
  let stepText = '';

  const head = h('div', { class: 'page-head' });
  const body = h('div', { class: 'stack', id: 'task-detail' }, h('div', { class: 'loading' }, h('span', { class: 'spinner' })));
  replace(main, head, body);

  let bar = null;
  let stepEl = null;
  let preview = null; // the latest task_preview while the task runs: { src, nodeId }
  let previewImg = null;
  let badgeEl = null;
  let cancelBtn = null;

  const nodeLabel = (nodeId) => {
    const n = task?.workflow?.[nodeId];
    if (!n) return `node ${nodeId}`;
    const title = n._meta?.title;
    return `${n.class_type || 'node'} #${nodeId}${title && title !== n.class_type ? ` “${title}”` : ''}`;
  };

  const load = async () => {
    ctrl?.abort();
    ctrl = new AbortController();
    try {
      const prev = task;
      task = await get('/api/tasks/' + encodeURIComponent(id), { signal: ctrl.signal });
      // The stored progress can lag behind the task_progress events already
      // shown; the bar never goes back (unless the task was requeued).
      if (prev && task.status !== 'pending' && prev.status !== 'pending') task.progress = Math.max(task.progress, prev.progress || 0);
      draw();
    } catch (err) {
      if (err.name === 'AbortError' || err.status === 401) return;
      replace(head, h('a', { href: '#/tasks', class: 'btn btn-sm' }, icon('back'), 'Tasks'), h('h1', null, 'Task ' + shortId(id)));
      replace(body, h('div', { class: 'form-error', role: 'alert' }, err.status === 404 ? `No task ${id} (or it is not yours).` : err.message));
    }
  };

  const draw = () => {
    const t = task;
    badgeEl = statusBadge(t.status);
    cancelBtn = isFinal(t.status) ? null : h('button', {
      class: 'btn-danger', id: 'task-cancel', 'data-action': 'cancel',
      onclick: async () => {
        const res = await cancelTask(t.id, t.status);
        if (res) load();
      },
    }, icon('x'), 'Cancel task');
    replace(head,
      h('a', { href: '#/tasks', class: 'btn btn-sm', title: 'Back to tasks' }, icon('back'), 'Tasks'),
      h('h1', null, 'Task ', h('span', { class: 'mono', title: t.id }, shortId(t.id)), ' ', copyButton(t.id, 'Copy task id')),
      badgeEl,
      h('button', {
        class: 'btn-sm', id: 'task-template', title: 'Open the submit form with this workflow and params',
        onclick: () => {
          saveDraft({
            workflow: t.workflow ? JSON.stringify(t.workflow, null, 2) : '',
            params: Object.entries(t.params || {}).map(([key, v]) => (v && typeof v === 'object' && v.fileId)
              ? { key, value: '', file: { fileId: v.fileId, filename: v.fileId } }
              : { key, value: typeof v === 'string' ? v : JSON.stringify(v) }),
            priority: String(t.priority ?? 0),
          });
          navigate('#/submit');
        },
      }, 'Use as template'),
      cancelBtn);

    bar = progressBar(t.progress, t.status, true);
    bar.id = 'task-progress';
    stepEl = h('div', { class: 'small muted', id: 'task-step' }, stepFor(t));
    const meta = h('dl', { class: 'meta' },
      item('Owner', t.owner || '—'),
      item('Priority', String(t.priority ?? 0)),
      item('Instance', t.instanceId ? h('span', { class: 'mono' }, t.instanceId) : '—'),
      item('Attempts', String(t.attempts ?? 0)),
      t.status === 'pending' && t.queuePosition !== undefined && t.queuePosition !== null ? item('Queue position', h('span', { id: 'queue-position' }, String(t.queuePosition))) : null,
      t.status === 'pending' && t.estimatedStart ? item('Estimated start', h('span', { id: 'eta-start', title: t.estimatedStart }, fmtTime(t.estimatedStart))) : null,
      t.status === 'pending' && t.estimatedFinish ? item('Estimated finish', h('span', { id: 'eta-finish', title: t.estimatedFinish }, fmtTime(t.estimatedFinish))) : null,
      item('Created', h('span', { title: t.createdAt }, fmtTime(t.createdAt))),
      item('Started', t.startedAt ? h('span', { title: t.startedAt }, fmtTime(t.startedAt)) : '—'),
      item('Finished', t.finishedAt ? h('span', { title: t.finishedAt }, fmtTime(t.finishedAt)) : '—'),
      item('Waited', t.startedAt ? fmtDuration(Math.max(0, Date.parse(t.startedAt) - Date.parse(t.createdAt))) : t.status === 'pending' ? timeEl(t.createdAt) : '—'),
      item('Ran', t.startedAt ? fmtDuration((t.finishedAt ? Date.parse(t.finishedAt) : Date.now()) - Date.parse(t.startedAt)) : '—'),
      item('Updated', timeEl(t.updatedAt)));

    if (t.status !== 'running') preview = null;
    previewImg = null;
    const parts = [
      h('section', { class: 'panel' }, h('div', { class: 'stack' }, bar, stepEl, meta)),
      preview ? previewPanel() : null,
    ];
    if (t.error) parts.push(errorPanel(t.error, nodeLabel));
    const outs = outputsPanel(t.result, nodeLabel, t.id);
    if (outs) parts.push(outs);
    else if (t.status === 'completed') parts.push(h('section', { class: 'panel muted' }, 'This task produced no output files.'));
    parts.push(paramsPanel(t.params));
    parts.push(webhooksPanel(t.id));
    if (t.workflow) parts.push(workflowPanel(t.workflow));
    replace(body, parts);

    clearInterval(pollTimer);
    if (t.status === 'pending') pollTimer = setInterval(load, 5000); // queue position moves without events
  };

  const stepFor = (t) => {
    if (t.status === 'pending') {
      const wait = t.queuePosition ? `Waiting in the queue (position ${t.queuePosition})` : 'Waiting for a free instance';
      const eta = etaText(t);
      return eta ? `${wait}; ${eta}.` : `${wait}.`;
    }
    if (t.status === 'running' && t.cancelRequested) return 'Cancel requested; the instance is interrupting the run…';
    if (t.status === 'running') return stepText || 'Running…';
    if (t.status === 'completed') return 'Completed' + (t.finishedAt && t.startedAt ? ' in ' + fmtDuration(Date.parse(t.finishedAt) - Date.parse(t.startedAt)) : '') + '.';
    if (t.status === 'failed') return 'Failed.';
    if (t.status === 'cancelled') return 'Cancelled.';
    return '';
  };

  // runningLabel names the node a task_progress is about: its class, id and
  // title as the event gives them (older gateways sent only `node`).
  const runningLabel = (d) => {
    const nodeId = d.nodeId || d.node;
    if (!d.classType) return nodeLabel(nodeId);
    return `${d.classType} #${nodeId}${d.title && d.title !== d.classType ? ` “${d.title}”` : ''}`;
  };

  const onProgress = (d) => {
    if (d.taskId !== id || !task) return;
    if (task.status === 'pending') task.status = 'running';
    task.progress = Math.max(task.progress || 0, d.progress);
    if (d.nodeId || d.node) stepText = `${runningLabel(d)}${d.max ? `: step ${d.value} of ${d.max}` : ''}`;
    setProgress(bar, task.progress, task.status);
    if (stepEl) stepEl.textContent = stepFor(task);
  };
  // previewPanel shows the live preview; it appears with the first
  // task_preview (instances send none unless ComfyUI has a preview method).
  const previewPanel = () => {
    previewImg = h('img', { id: 'task-preview', class: 'live-preview', alt: 'Live preview of the running sampler', src: preview.src });
    return h('section', { class: 'panel', id: 'task-live' },
      h('div', { class: 'panel-head' }, h('h2', null, 'Live preview'), h('span', { class: 'small muted', id: 'task-preview-node' }, nodeLabel(preview.nodeId))),
      h('div', { class: 'live-preview-box' }, previewImg));
  };
  const onPreview = (d) => {
    if (d?.taskId !== id || !task || isFinal(task.status) || !/^(jpeg|png)$/.test(d.format) || typeof d.image !== 'string') return;
    preview = { src: `data:image/${d.format};base64,${d.image}`, nodeId: d.nodeId };
    if (task.status !== 'running') return; // shown once the page knows it runs
    if (previewImg) {
      previewImg.src = preview.src;
      const label = document.getElementById('task-preview-node');
      if (label) label.textContent = nodeLabel(preview.nodeId);
    } else {
      body.firstElementChild?.after(previewPanel());
    }
  };
  const onChange = (d) => {
    if (d?.taskId !== id) return;
    if (task && d.progress !== undefined) setProgress(bar, d.status === 'completed' ? 100 : Math.max(task.progress, d.progress), d.status || task.status);
    load();
  };
  const offs = [
    live.on('task_progress', onProgress),
    live.on('task_preview', onPreview),
    live.on('task_status', onChange),
    live.on('task_completed', onChange),
    live.on('task_failed', onChange),
    live.on('task_cancelled', onChange),
    live.on('reconnected', () => load()),
  ];
  load();
  return () => {
    ctrl?.abort();
    clearInterval(pollTimer);
    offs.forEach((f) => f());
  };
}

function item(label, value) {
  return h('div', null, h('dt', null, label), h('dd', null, value));
}

// errorPanel shows the task's error; ComfyUI validation errors list each
// node and, per error, the input it is about.
function errorPanel(err, nodeLabel) {
  const box = h('section', { class: 'error-box', id: 'task-error', role: 'alert' },
    h('h2', null, titleFor(err.type)),
    h('div', { class: 'msg' }, err.message || err.type),
    err.nodeId ? h('div', { class: 'small', style: { marginTop: '6px' } }, 'At ', h('b', null, err.nodeType ? `${err.nodeType} #${err.nodeId}` : nodeLabel(err.nodeId))) : null,
    h('div', { class: 'small muted', style: { marginTop: '4px' } }, 'Error type: ', h('code', null, err.type || 'unknown'),
      err.exceptionType ? [' (', h('code', { id: 'task-exception-type' }, err.exceptionType), ')'] : null),
    err.traceback ? h('details', { id: 'task-traceback', style: { marginTop: '6px' } },
      h('summary', { class: 'small' }, 'Traceback'), h('pre', { class: 'json' }, err.traceback)) : null);
  let ne = err.nodeErrors;
  if (typeof ne === 'string') {
    try { ne = JSON.parse(ne); } catch { ne = null; }
  }
  if (ne && typeof ne === 'object' && Object.keys(ne).length) {
    const list = h('div', { class: 'node-errors' });
    for (const [nodeId, info] of Object.entries(ne)) {
      const errs = Array.isArray(info?.errors) ? info.errors : [];
      const label = info?.class_type ? `${info.class_type} #${nodeId}` : nodeLabel(nodeId);
      list.appendChild(h('div', { class: 'node-error', 'data-node-id': nodeId },
        h('div', { class: 'head' }, h('b', null, label),
          Array.isArray(info?.dependent_outputs) && info.dependent_outputs.length
            ? h('span', { class: 'small muted' }, 'blocks output ' + info.dependent_outputs.map((o) => nodeLabel(o)).join(', ')) : null),
        h('ul', null, errs.length ? errs.map((e) => h('li', null,
          e.extra_info?.input_name ? [h('span', { class: 'input' }, e.extra_info.input_name), ' '] : null,
          h('span', null, e.message || e.type),
          e.details ? h('div', { class: 'details' }, e.details) : null,
          e.extra_info?.received_value !== undefined ? h('div', { class: 'details' }, 'Received: ', h('code', null, JSON.stringify(e.extra_info.received_value))) : null))
          : h('li', null, JSON.stringify(info)))));
    }
    box.appendChild(list);
  }
  return box;
}

function titleFor(type) {
  switch (type) {
    case 'prompt_outputs_failed_validation': return 'The workflow failed ComfyUI’s validation';
    case 'execution_error': return 'A node failed while running';
    case 'timeout': return 'The task ran past its timeout';
    case 'instance_lost': return 'The instance was lost too many times';
    case 'interrupted': return 'The run was interrupted on its instance';
    case 'upload_failed': return 'An input file could not be sent to the instance';
    case 'output_failed': return 'An output file could not be collected';
    case 'output_lost': return 'Images streamed over the WebSocket were missed';
    default: return 'The task failed';
  }
}

function mediaFor(url, filename, type) {
  const kind = mediaKind(filename || url, type === 'gifs' && /\.(mp4|webm|mov)$/i.test(filename || '') ? 'video' : type);
  if (kind === 'image') return sameOriginFallback(h('img', { src: url, alt: filename || 'output image', loading: 'lazy', class: 'output-image' }));
  if (kind === 'video') return sameOriginFallback(h('video', { src: url, controls: true, muted: true, loop: true, playsinline: true, preload: 'metadata', class: 'output-video' }));
  if (kind === 'audio') return sameOriginFallback(h('audio', { src: url, controls: true, preload: 'metadata', class: 'output-audio' }));
  return h('a', { href: url, target: '_blank', rel: 'noopener', class: 'btn' }, icon('external'), 'Open');
}

function outputCard(url, filename, type, label) {
  return h('figure', { class: 'output', style: { margin: 0 }, 'data-kind': mediaKind(filename || url, type) },
    h('div', { class: 'media' }, mediaFor(url, filename, type)),
    h('figcaption', { class: 'cap' },
      h('a', { href: url, target: '_blank', rel: 'noopener', title: filename }, filename || url),
      copyButton(url, 'Copy URL'),
      label ? h('span', { class: 'muted node' }, label) : null));
}

function outputsPanel(result, nodeLabel, taskId) {
  if (!result) return null;
  const cards = [];
  const seen = new Set();
  for (const [nodeId, list] of Object.entries(result.outputs || {})) {
    for (const o of list || []) {
      seen.add(o.url);
      // kind is ComfyUI's key (images, gifs...); older results had it in type.
      cards.push(outputCard(o.url, o.filename, o.kind || o.type, nodeLabel(o.nodeId || nodeId) + (o.type === 'temp' ? ' (preview)' : '')));
    }
  }
  for (const url of result.files || []) {
    if (seen.has(url)) continue;
    cards.push(outputCard(url, decodeURIComponent(url.split('/').pop() || url), '', ''));
  }
  if (!cards.length) return null;
  return h('section', { class: 'panel', id: 'task-outputs' },
    h('div', { class: 'panel-head' }, h('h2', null, `Outputs (${cards.length})`),
      h('a', { class: 'small', href: '#/files?taskId=' + encodeURIComponent(taskId) }, 'In Files →')),
    h('div', { class: 'outputs' }, cards));
}

// webhooksPanel is the task's webhook delivery log (GET
// /api/tasks/{id}/webhooks): each event sent to each URL, its state, its
// attempts and the receiver's response codes. Hidden when the task has none.
function webhooksPanel(taskId) {
  const panel = h('section', { class: 'panel', id: 'task-webhooks', hidden: true });
  get('/api/tasks/' + encodeURIComponent(taskId) + '/webhooks').then((res) => {
    const items = res?.items || [];
    if (!items.length) return;
    const codes = (d) => d.log.map((a) => a.status ? String(a.status) : (a.error ? 'error' : '—')).join(', ');
    const rows = items.map((d) => h('tr', { 'data-delivery': d.id },
      h('td', { class: 'mono small' }, d.type),
      h('td', { class: 'mono small', title: d.url }, d.url),
      h('td', { class: 'delivery-state' }, d.state),
      h('td', null, String(d.attempts)),
      h('td', { class: 'mono small delivery-codes', title: d.lastError || '' }, codes(d) || '—'),
      h('td', { class: 'small' }, d.nextAttemptAt ? fmtTime(d.nextAttemptAt) : '—')));
    replace(panel,
      h('h2', null, 'Webhooks'),
      h('table', { class: 'kv' },
        h('thead', null, h('tr', null, h('th', null, 'Event'), h('th', null, 'URL'), h('th', null, 'State'), h('th', null, 'Attempts'), h('th', null, 'Response codes'), h('th', null, 'Next attempt'))),
        h('tbody', null, rows)));
    panel.hidden = false;
  }, () => {});
  return panel;
}

function paramsPanel(params) {
  const entries = Object.entries(params || {});
  const rows = entries.map(([k, v]) => {
    const isFile = v && typeof v === 'object' && typeof v.fileId === 'string';
    const val = h('td', { class: 'mono small' }, isFile ? 'file ' + v.fileId : JSON.stringify(v));
    if (isFile) {
      get('/api/files/' + encodeURIComponent(v.fileId)).then((f) => {
        replace(val, icon('clip'), ' ', h('a', { href: f.url, target: '_blank', rel: 'noopener' }, f.filename), h('span', { class: 'muted' }, ` (${v.fileId})`));
      }, () => {});
    }
    return h('tr', null, h('td', null, k), val);
  });
  return h('section', { class: 'panel', id: 'task-params' },
    h('h2', null, 'Params'),
    rows.length ? h('table', { class: 'kv' }, h('tbody', null, rows)) : h('p', { class: 'muted', style: { margin: 0 } }, 'No params: the workflow ran as submitted.'));
}

function workflowPanel(wf) {
  const text = JSON.stringify(wf, null, 2);
  const nodes = Object.keys(wf || {}).length;
  return h('section', { class: 'panel' },
    h('details', null,
      h('summary', null, `Workflow (${nodes} node${nodes === 1 ? '' : 's'}) `, copyButton(() => text, 'Copy workflow JSON')),
      h('pre', { class: 'json' }, text)));
}


