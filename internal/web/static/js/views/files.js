// Files: uploads and task outputs, paged; upload (button or drop, several
// at once, with progress), copy URL, delete.

import { h, replace, icon, toast, timeEl, fmtBytes, fmtNum, copyText, confirmDialog, mediaKind, progressBar, setProgress, shortId, sameOriginFallback } from '../ui.js';
import { api, get, qs, upload } from '../api.js';

const SIZES = [20, 50, 100];

export default function mount(main, { query, setQuery }) {
  const state = {
    limit: SIZES.includes(Number(query.limit)) ? Number(query.limit) : 20,
    offset: Math.max(0, Number(query.offset) || 0),
    taskId: query.taskId || '',
  };
  const tbody = h('tbody');
  const info = h('span', { class: 'muted small', id: 'files-range' });
  const prev = h('button', { class: 'btn-sm', onclick: () => go(state.offset - state.limit) }, '← Newer');
  const next = h('button', { class: 'btn-sm', onclick: () => go(state.offset + state.limit) }, 'Older →');
  const size = h('select', { 'aria-label': 'Files per page', onchange: () => { state.limit = Number(size.value); go(0); } },
    SIZES.map((n) => h('option', { value: n, selected: n === state.limit }, `${n} / page`)));
  const picker = h('input', { type: 'file', multiple: true, hidden: true, id: 'file-picker', onchange: () => { uploadAll([...picker.files]); picker.value = ''; } });
  const uploads = h('div', { class: 'upload-list', id: 'uploads' });
  const zone = h('div', { class: 'dropzone' },
    h('div', { class: 'drop-target' },
      h('div', null, icon('upload')), 'Drop files here, or ',
      h('button', { type: 'button', class: 'btn-sm', id: 'upload-btn', onclick: () => picker.click() }, 'choose files'),
      h('div', { class: 'small', style: { marginTop: '4px' } }, 'Uploaded files can be used as workflow inputs: {"fileId": "…"} in a param.')),
    uploads, picker);
  for (const ev of ['dragenter', 'dragover']) zone.addEventListener(ev, (e) => { e.preventDefault(); zone.classList.add('over'); });
  for (const ev of ['dragleave', 'drop']) zone.addEventListener(ev, () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    const files = [...(e.dataTransfer?.files || [])];
    if (files.length) uploadAll(files);
  });
  const taskFilter = state.taskId
    ? h('div', { class: 'banner' }, 'Files of task ', h('a', { href: '#/tasks/' + encodeURIComponent(state.taskId), class: 'mono' }, shortId(state.taskId)), ' · ',
      h('a', { href: '#', onclick: (e) => { e.preventDefault(); state.taskId = ''; taskFilter.hidden = true; go(0); } }, 'show all files'))
    : h('div', { hidden: true });

  replace(main,
    h('div', { class: 'page-head' }, h('h1', null, 'Files'), h('button', { class: 'btn-sm', onclick: () => load() }, icon('refresh'), 'Reload')),
    h('section', { class: 'panel', style: { marginBottom: '14px' } }, zone),
    taskFilter,
    h('section', { class: 'panel' },
      h('div', { class: 'table-wrap' }, h('table', { class: 'data cards', id: 'files' },
        h('thead', null, h('tr', null, h('th', null, ''), h('th', null, 'Name'), h('th', { class: 'num' }, 'Size'), h('th', null, 'Type'),
          h('th', null, 'Owner'), h('th', null, 'Task'), h('th', null, 'Created'), h('th', null, ''))),
        tbody)),
      h('div', { class: 'pager' }, info, size, prev, next)));

  const row = (f) => {
    const kind = mediaKind(f.filename, f.contentType);
    const thumb = kind === 'image'
      ? sameOriginFallback(h('img', { class: 'thumb', src: f.url, alt: '', loading: 'lazy' }))
      : h('div', { class: 'thumb icon' }, (f.filename.split('.').pop() || kind).slice(0, 4));
    return h('tr', { 'data-file-id': f.fileId },
      h('td', { 'data-label': '' }, h('a', { href: f.url, target: '_blank', rel: 'noopener', tabindex: '-1' }, thumb)),
      h('td', { 'data-label': 'Name', class: 'filename-cell' }, h('div', { class: 'clip' },
        h('a', { href: f.url, target: '_blank', rel: 'noopener', title: f.filename, class: 'file-link' }, f.filename),
        h('div', { class: 'cell-sub mono', title: f.fileId }, f.fileId))),
      h('td', { 'data-label': 'Size', class: 'num small' }, fmtBytes(f.size)),
      h('td', { 'data-label': 'Type', class: 'small' }, f.contentType || '—'),
      h('td', { 'data-label': 'Owner', class: 'small' }, f.owner || '—'),
      h('td', { 'data-label': 'Task', class: 'small' }, f.taskId ? h('a', { href: '#/tasks/' + encodeURIComponent(f.taskId), class: 'mono' }, shortId(f.taskId)) : h('span', { class: 'muted' }, 'upload')),
      h('td', { 'data-label': 'Created', class: 'small nowrap' }, timeEl(f.createdAt)),
      h('td', { 'data-label': '' }, h('div', { class: 'actions' },
        h('button', {
          class: 'btn-sm', 'data-action': 'copy-url', title: 'Copy the file URL',
          onclick: async () => {
            const ok = await copyText(f.url);
            toast(ok ? 'URL copied' : 'Could not copy: ' + f.url, ok ? 'ok' : 'bad');
          },
        }, icon('copy'), 'Copy URL'),
        h('button', {
          class: 'btn-sm btn-danger', 'data-action': 'delete', title: 'Delete this file',
          onclick: async () => {
            const ok = await confirmDialog('Delete file?', `${f.filename} will be deleted; its URL stops working${f.taskId ? ' and the task’s output preview breaks' : ''}.`, { ok: 'Delete', danger: true });
            if (!ok) return;
            try {
              await api('DELETE', '/api/files/' + encodeURIComponent(f.fileId));
              toast(`Deleted ${f.filename}`, 'ok');
              load();
            } catch (err) {
              toast(err.message, 'bad');
            }
          },
        }, icon('trash'), 'Delete'))));
  };

  let ctrl = null;
  const load = async () => {
    ctrl?.abort();
    ctrl = new AbortController();
    setQuery({ limit: state.limit === 20 ? '' : state.limit, offset: state.offset || '', taskId: state.taskId });
    try {
      const res = await get('/api/files' + qs({ limit: state.limit, offset: state.offset, taskId: state.taskId }), { signal: ctrl.signal });
      if (state.offset > 0 && state.offset >= res.total) {
        go(Math.max(0, Math.floor((res.total - 1) / state.limit) * state.limit));
        return;
      }
      replace(tbody, res.items.length ? res.items.map(row) : h('tr', null, h('td', { colspan: 8, class: 'empty' }, 'No files yet. Upload one above.')));
      const from = res.total ? state.offset + 1 : 0;
      const to = state.offset + res.items.length;
      info.textContent = `${fmtNum(from)}–${fmtNum(to)} of ${fmtNum(res.total)}`;
      prev.disabled = state.offset === 0;
      next.disabled = to >= res.total;
    } catch (err) {
      if (err.name === 'AbortError' || err.status === 401) return;
      replace(tbody, h('tr', null, h('td', { colspan: 8, class: 'empty' }, err.message)));
    }
  };
  const go = (offset) => {
    state.offset = Math.max(0, offset);
    load();
  };

  const uploadAll = async (files) => {
    let done = 0;
    for (const f of files) {
      const bar = progressBar(0, 'running');
      const status = h('span', { class: 'small muted' });
      const item = h('div', { class: 'upload-item' }, h('div', { class: 'name' }, f.name, ' ', h('span', { class: 'muted' }, fmtBytes(f.size)), ' ', status), bar);
      uploads.appendChild(item);
      try {
        await upload(f, (p) => setProgress(bar, p * 100, 'running'));
        setProgress(bar, 100, 'completed');
        status.textContent = 'uploaded';
        done++;
        setTimeout(() => item.remove(), 2500);
      } catch (err) {
        setProgress(bar, 100, 'failed');
        status.textContent = '';
        status.appendChild(h('span', { class: 'field-error' }, err.status === 413 ? 'larger than the upload limit' : err.message));
        setTimeout(() => item.remove(), 8000);
      }
    }
    if (done) {
      toast(done === 1 ? 'File uploaded' : `${done} files uploaded`, 'ok');
      state.taskId = '';
      go(0);
    }
  };

  load();
  return () => ctrl?.abort();
}
