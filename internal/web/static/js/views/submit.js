// Submit: paste or drop an API-format workflow, override inputs with
// params ("<nodeId>.<input>" or "<title>.<input>"), attach input files
// (uploaded first, then referenced as {"fileId": ...}), set the priority,
// and POST /api/tasks. The API's 400 names the field (data.field); the
// message is shown next to it. The form is kept as a draft in
// localStorage.

import { h, replace, icon, toast, debounce, setFieldError, stripField, fmtBytes } from '../ui.js';
import { api, upload } from '../api.js';

const DRAFT_KEY = 'comfyfleet.draft';

export const EXAMPLE = {
  3: { class_type: 'KSampler', inputs: { seed: 156680208700286, steps: 20, cfg: 8, sampler_name: 'euler', scheduler: 'normal', denoise: 1, model: ['4', 0], positive: ['6', 0], negative: ['7', 0], latent_image: ['5', 0] }, _meta: { title: 'KSampler' } },
  4: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'v1-5-pruned-emaonly.safetensors' }, _meta: { title: 'Load Checkpoint' } },
  5: { class_type: 'EmptyLatentImage', inputs: { width: 512, height: 512, batch_size: 1 }, _meta: { title: 'Empty Latent Image' } },
  6: { class_type: 'CLIPTextEncode', inputs: { text: 'a lighthouse on a cliff at dusk, volumetric light', clip: ['4', 1] }, _meta: { title: 'Positive' } },
  7: { class_type: 'CLIPTextEncode', inputs: { text: 'text, watermark, blurry', clip: ['4', 1] }, _meta: { title: 'Negative' } },
  8: { class_type: 'VAEDecode', inputs: { samples: ['3', 0], vae: ['4', 2] }, _meta: { title: 'VAE Decode' } },
  9: { class_type: 'SaveImage', inputs: { filename_prefix: 'ComfyFleet', images: ['8', 0] }, _meta: { title: 'Save Image' } },
};

const FILE_INPUTS = new Set(['image', 'audio', 'video', 'file', 'mask', 'upload']);

export function loadDraft() {
  try {
    const d = JSON.parse(localStorage.getItem(DRAFT_KEY) || 'null');
    if (d && typeof d === 'object') return d;
  } catch { /* ignore */ }
  return null;
}

export function saveDraft(d) {
  try { localStorage.setItem(DRAFT_KEY, JSON.stringify(d)); } catch { /* quota or private mode */ }
}

// parseWorkflow checks the text locally, with the same wording as the API
// where it can; it returns { wf } or { error }.
export function parseWorkflow(text) {
  if (!text.trim()) return { error: 'Paste a workflow exported with “Save (API Format)”, or drop its .json file here.' };
  let wf;
  try {
    wf = JSON.parse(text);
  } catch (err) {
    return { error: 'Not valid JSON: ' + err.message };
  }
  if (!wf || typeof wf !== 'object' || Array.isArray(wf)) return { error: 'The workflow must be a JSON object of node id → {class_type, inputs}.' };
  if (Array.isArray(wf.nodes)) return { error: 'This is a UI-format workflow (it has a "nodes" array). In ComfyUI, export it with “Save (API Format)”.' };
  if (wf.prompt && typeof wf.prompt === 'object' && !wf.class_type) return { wf: wf.prompt, note: 'Using the "prompt" object inside the file.' };
  return { wf };
}

// resolveKey finds the node and input a param key names, by id or title.
export function resolveKey(wf, key) {
  if (!wf || !key) return null;
  const dot = key.lastIndexOf('.');
  if (dot <= 0 || dot === key.length - 1) return null;
  const ref = key.slice(0, dot);
  const input = key.slice(dot + 1);
  let nodeId = Object.prototype.hasOwnProperty.call(wf, ref) ? ref : null;
  if (!nodeId) {
    const hits = Object.entries(wf).filter(([, n]) => n?._meta?.title === ref);
    if (hits.length === 1) nodeId = hits[0][0];
    else if (hits.length > 1) return { ambiguous: true };
  }
  if (!nodeId) return null;
  const node = wf[nodeId];
  const inputs = node?.inputs || {};
  return { nodeId, input, node, has: Object.prototype.hasOwnProperty.call(inputs, input), current: inputs[input] };
}

// parseValue turns the text of a value box into JSON: numbers, booleans,
// null, objects and arrays are parsed; everything else is a string. When
// the input's current value is a string, the text stays a string.
export function parseValue(text, current) {
  if (typeof current === 'string') return text;
  const t = text.trim();
  if (/^-?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(t) || t === 'true' || t === 'false' || t === 'null' || /^[[{"]/.test(t)) {
    try { return JSON.parse(t); } catch { /* a string after all */ }
  }
  return text;
}

const isLink = (v) => Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && typeof v[1] === 'number';

export default function mount(main, { navigate }) {
  const draft = loadDraft() || { workflow: '', params: [], priority: '0', timeout: '' };
  let wf = null;

  // ---------- workflow ----------
  const wfText = h('textarea', { id: 'workflow', rows: 14, spellcheck: 'false', 'aria-describedby': 'workflow-error workflow-summary', placeholder: '{\n  "3": { "class_type": "KSampler", "inputs": { … } },\n  …\n}' });
  wfText.value = draft.workflow || '';
  const wfErr = h('div', { class: 'field-error', id: 'workflow-error', role: 'alert' });
  const wfSummary = h('div', { class: 'wf-summary muted', id: 'workflow-summary' });
  const wfFile = h('input', { type: 'file', accept: '.json,application/json', hidden: true, onchange: () => { if (wfFile.files[0]) readWorkflowFile(wfFile.files[0]); wfFile.value = ''; } });
  const drop = h('div', { class: 'dropzone field' },
    h('label', { for: 'workflow' }, 'Workflow (API format)'),
    wfText,
    h('div', { class: 'hint' }, 'Paste the JSON, or drop a .json file on the box. In ComfyUI: Workflow → Export (API).'),
    wfSummary, wfErr);
  for (const ev of ['dragenter', 'dragover']) drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add('over'); });
  for (const ev of ['dragleave', 'drop']) drop.addEventListener(ev, () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    const f = e.dataTransfer?.files?.[0];
    if (f) readWorkflowFile(f);
  });

  const readWorkflowFile = async (f) => {
    if (!/json|text/.test(f.type) && !/\.json$/i.test(f.name)) {
      toast(`${f.name} is not a .json workflow; attach input files under Params.`, 'bad');
      return;
    }
    if (f.size > 20 << 20) {
      toast(`${f.name} is ${fmtBytes(f.size)}; that is too big for a workflow.`, 'bad');
      return;
    }
    const text = await f.text();
    const res = parseWorkflow(text);
    wfText.value = res.wf && res.note ? JSON.stringify(res.wf, null, 2) : text;
    onWorkflow();
    toast(`Loaded ${f.name}`, 'ok');
  };

  // ---------- nodes ----------
  const nodesBody = h('tbody');
  const nodesPanel = h('section', { class: 'panel', hidden: true, id: 'nodes-panel' },
    h('details', { open: window.matchMedia('(min-width: 721px)').matches },
      h('summary', null, 'Nodes and inputs ', h('span', { class: 'muted small' }, '(click an input to add it as a param)')),
      h('div', { class: 'table-wrap' }, h('table', { class: 'data cards nodes-table' },
        h('thead', null, h('tr', null, h('th', null, 'Id'), h('th', null, 'Class'), h('th', null, 'Title'), h('th', null, 'Inputs'))),
        nodesBody))));
  const keyList = h('datalist', { id: 'param-keys' });

  const drawNodes = () => {
    if (!wf) {
      nodesPanel.hidden = true;
      keyList.replaceChildren();
      return;
    }
    nodesPanel.hidden = false;
    const keys = [];
    const titles = {};
    for (const n of Object.values(wf)) {
      const t = n?._meta?.title;
      if (t) titles[t] = (titles[t] || 0) + 1;
    }
    const ids = Object.keys(wf).sort((a, b) => (Number(a) - Number(b)) || a.localeCompare(b));
    replace(nodesBody, ids.map((id) => {
      const n = wf[id] || {};
      const title = n._meta?.title || '';
      const inputs = Object.entries(n.inputs || {}).filter(([, v]) => !isLink(v));
      for (const [name] of inputs) {
        keys.push(`${id}.${name}`);
        if (title && titles[title] === 1) keys.push(`${title}.${name}`);
      }
      return h('tr', { 'data-node-id': id },
        h('td', { class: 'mono', 'data-label': 'Id' }, id),
        h('td', { 'data-label': 'Class' }, n.class_type || h('span', { class: 'field-error' }, 'missing class_type')),
        h('td', { 'data-label': 'Title' }, title),
        h('td', { 'data-label': 'Inputs' }, h('div', { class: 'inputs' }, inputs.length ? inputs.map(([name, v]) => {
          const fileLike = FILE_INPUTS.has(name) && /^Load/.test(n.class_type || '');
          return h('button', {
            type: 'button', class: 'inp', title: `Add param ${id}.${name} (now ${JSON.stringify(v)})${fileLike ? '; attach a file' : ''}`,
            onclick: () => {
              const row = addRow({ key: `${id}.${name}`, value: typeof v === 'string' ? v : JSON.stringify(v) });
              if (fileLike) row.pickFile();
              else row.value.focus();
            },
          }, fileLike ? icon('clip') : null, name);
        }) : h('span', { class: 'muted' }, 'only links'))));
    }));
    replace(keyList, keys.map((k) => h('option', { value: k })));
    for (const r of rows) r.refresh();
  };

  const onWorkflow = () => {
    const res = parseWorkflow(wfText.value);
    wf = res.wf || null;
    if (!wfText.value.trim()) {
      setFieldError(wfText, wfErr, '');
      wfSummary.textContent = '';
    } else if (res.error) {
      setFieldError(wfText, wfErr, res.error);
      wfSummary.textContent = '';
    } else {
      setFieldError(wfText, wfErr, '');
      const nodes = Object.values(wf);
      const outs = Object.entries(wf).filter(([, n]) => /^(Save|Preview)/.test(n?.class_type || '')).map(([id, n]) => `${n.class_type} #${id}`);
      wfSummary.className = 'wf-summary ok';
      wfSummary.textContent = `✓ ${nodes.length} node${nodes.length === 1 ? '' : 's'}` + (outs.length ? ` · outputs: ${outs.join(', ')}` : '') + (res.note ? ' · ' + res.note : '');
    }
    drawNodes();
    persist();
  };
  wfText.addEventListener('input', debounce(onWorkflow, 250));

  // ---------- params ----------
  const rows = [];
  const rowsBox = h('div', { class: 'param-rows', id: 'param-rows' });
  const paramsErr = h('div', { class: 'field-error', id: 'params-error', role: 'alert' });
  const emptyNote = h('p', { class: 'muted small', style: { margin: 0 } }, 'No params: the workflow runs as it is.');

  const addRow = (init = {}) => {
    const key = h('input', { class: 'pkey mono', placeholder: 'node.input, e.g. 3.seed or KSampler.steps', list: 'param-keys', 'aria-label': 'Param key', spellcheck: 'false', autocapitalize: 'none' });
    key.value = init.key || '';
    const value = h('input', { class: 'pval', placeholder: 'value', 'aria-label': 'Param value', spellcheck: 'false' });
    value.value = init.value ?? '';
    const err = h('div', { class: 'field-error', role: 'alert' });
    const cur = h('div', { class: 'cur' });
    const fileIn = h('input', { type: 'file', hidden: true });
    const valueSlot = h('div', null, value);
    const row = { key, value, err, file: init.file || null, uploading: false };
    const clipBtn = h('button', { type: 'button', class: 'icon-btn', title: 'Attach a file (uploaded to the gateway)', 'aria-label': 'Attach a file', onclick: () => fileIn.click() }, icon('clip'));
    const rm = h('button', { type: 'button', class: 'icon-btn', title: 'Remove this param', 'aria-label': 'Remove this param', onclick: () => removeRow(row) }, icon('x'));
    const el = h('div', { class: 'param-row' }, key, valueSlot, clipBtn, rm, cur, err, fileIn);
    row.el = el;

    row.showFile = () => {
      if (!row.file) {
        replace(valueSlot, value);
        return;
      }
      const chip = h('div', { class: 'file-chip', title: row.file.fileId },
        icon('clip'), h('span', { class: 'fname' }, row.file.filename || row.file.fileId),
        row.uploading ? h('span', { class: 'small' }, row.uploading) : null,
        h('button', { type: 'button', class: 'icon-btn', 'aria-label': 'Detach file', title: 'Use a typed value instead', onclick: () => { row.file = null; row.showFile(); persist(); } }, icon('x')));
      replace(valueSlot, chip);
    };
    row.pickFile = () => fileIn.click();
    row.refresh = () => {
      const r = resolveKey(wf, key.value.trim());
      if (!key.value.trim() || !wf) cur.textContent = '';
      else if (!r) cur.textContent = key.value.includes('.') ? 'No node has this id or title.' : 'Keys look like <nodeId>.<input> or <title>.<input>.';
      else if (r.ambiguous) cur.textContent = 'Several nodes have this title; use the node id.';
      else if (!r.has) cur.textContent = `${r.node.class_type} #${r.nodeId} has no input “${r.input}” yet; it will be added.`;
      else cur.textContent = `${r.node.class_type} #${r.nodeId} · now ${isLink(r.current) ? 'linked to node ' + r.current[0] : JSON.stringify(r.current)}`;
    };
    fileIn.addEventListener('change', async () => {
      const f = fileIn.files[0];
      fileIn.value = '';
      if (!f) return;
      await attach(row, f);
    });
    for (const ev of ['dragenter', 'dragover']) el.addEventListener(ev, (e) => { e.preventDefault(); el.classList.add('over'); });
    el.addEventListener('dragleave', () => el.classList.remove('over'));
    el.addEventListener('drop', (e) => {
      e.preventDefault();
      el.classList.remove('over');
      const f = e.dataTransfer?.files?.[0];
      if (f) attach(row, f);
    });
    key.addEventListener('input', () => { setFieldError(key, err, ''); row.refresh(); persist(); });
    value.addEventListener('input', () => { setFieldError(value, err, ''); persist(); });
    rows.push(row);
    rowsBox.appendChild(el);
    emptyNote.hidden = true;
    row.showFile();
    row.refresh();
    persist();
    return row;
  };

  const attach = async (row, f) => {
    row.file = { fileId: '', filename: f.name };
    row.uploading = 'uploading…';
    row.showFile();
    setFieldError(row.value, row.err, '');
    try {
      const res = await upload(f, (p) => {
        row.uploading = Math.round(p * 100) + '%';
        const s = row.el.querySelector('.file-chip .small');
        if (s) s.textContent = row.uploading;
      });
      row.file = { fileId: res.fileId, filename: res.filename };
      row.uploading = false;
      row.showFile();
      toast(`Uploaded ${res.filename}`, 'ok');
    } catch (err) {
      row.file = null;
      row.uploading = false;
      row.showFile();
      setFieldError(row.value, row.err, err.status === 413 ? `${f.name} is larger than the gateway's upload limit.` : err.message);
    }
    persist();
  };

  const removeRow = (row) => {
    rows.splice(rows.indexOf(row), 1);
    row.el.remove();
    emptyNote.hidden = rows.length > 0;
    persist();
  };

  // ---------- options ----------
  const priority = h('input', { id: 'priority', type: 'number', step: 1, inputmode: 'numeric', 'aria-describedby': 'priority-error' });
  priority.value = draft.priority ?? '0';
  const priorityErr = h('div', { class: 'field-error', id: 'priority-error', role: 'alert' });
  const timeout = h('input', { id: 'timeout', type: 'number', min: 0, step: 1000, inputmode: 'numeric', placeholder: 'default', 'aria-describedby': 'timeout-error' });
  timeout.value = draft.timeout ?? '';
  const timeoutErr = h('div', { class: 'field-error', id: 'timeout-error', role: 'alert' });
  priority.addEventListener('input', () => { setFieldError(priority, priorityErr, ''); persist(); });
  timeout.addEventListener('input', () => { setFieldError(timeout, timeoutErr, ''); persist(); });

  const formErr = h('div', { class: 'form-error', id: 'submit-error', role: 'alert' });
  const submitBtn = h('button', { type: 'submit', class: 'btn-primary', id: 'submit-task' }, icon('submit'), 'Submit task');

  const saveNow = () => saveDraft({
    workflow: wfText.value,
    params: rows.map((r) => ({ key: r.key.value, value: r.value.value, file: r.file && r.file.fileId ? r.file : null })),
    priority: priority.value,
    timeout: timeout.value,
  });
  const persist = debounce(saveNow, 300);

  const clearErrors = () => {
    formErr.textContent = '';
    paramsErr.textContent = '';
    setFieldError(wfText, wfErr, '');
    setFieldError(priority, priorityErr, '');
    setFieldError(timeout, timeoutErr, '');
    for (const r of rows) {
      setFieldError(r.key, r.err, '');
      setFieldError(r.value, null, '');
    }
  };

  // showError puts an API error next to the field it names.
  const showError = (err) => {
    const field = err.field || '';
    const msg = stripField(err.message, field);
    let target = null;
    if (field === 'workflow' || field.startsWith('workflow.')) {
      const where = field.startsWith('workflow.') ? field.slice('workflow.'.length) : '';
      setFieldError(wfText, wfErr, (where ? `Node ${where}: ` : '') + msg);
      target = wfText;
    } else if (field.startsWith('params.')) {
      const key = field.slice('params.'.length);
      const row = rows.find((r) => r.key.value.trim() === key) || rows.find((r) => key.startsWith(r.key.value.trim() + '.'));
      if (row) {
        setFieldError(row.key, row.err, msg);
        target = row.key;
      } else {
        paramsErr.textContent = `${key}: ${msg}`;
        target = paramsErr;
      }
    } else if (field === 'params') {
      paramsErr.textContent = msg;
      target = paramsErr;
    } else if (field === 'priority') {
      setFieldError(priority, priorityErr, msg);
      target = priority;
    } else if (field === 'timeout') {
      setFieldError(timeout, timeoutErr, msg);
      target = timeout;
    } else {
      formErr.textContent = err.message;
      target = formErr;
    }
    target?.scrollIntoView?.({ block: 'center', behavior: 'smooth' });
    if (target?.focus && target.tagName !== 'DIV') target.focus({ preventScroll: true });
  };

  const submit = async (e) => {
    e.preventDefault();
    clearErrors();
    const res = parseWorkflow(wfText.value);
    if (res.error) {
      showError({ field: 'workflow', message: res.error });
      return;
    }
    const params = {};
    for (const r of rows) {
      const k = r.key.value.trim();
      if (!k && !r.value.value && !r.file) continue;
      if (!k) {
        setFieldError(r.key, r.err, 'Name the input: <nodeId>.<input> or <title>.<input>.');
        r.key.focus();
        return;
      }
      if (r.uploading) {
        setFieldError(r.value, r.err, 'Wait for the upload to finish.');
        return;
      }
      if (k in params) {
        setFieldError(r.key, r.err, 'This key is set twice.');
        r.key.focus();
        return;
      }
      params[k] = r.file ? { fileId: r.file.fileId } : parseValue(r.value.value, resolveKey(res.wf, k)?.current);
    }
    const body = { workflow: res.wf };
    if (Object.keys(params).length) body.params = params;
    if (priority.value.trim() !== '') {
      const p = Number(priority.value);
      if (!Number.isInteger(p)) {
        showError({ field: 'priority', message: 'Priority must be a whole number; higher runs first.' });
        return;
      }
      body.priority = p;
    }
    if (timeout.value.trim() !== '') {
      const t = Number(timeout.value);
      if (!Number.isInteger(t) || t < 0) {
        showError({ field: 'timeout', message: 'Timeout is a whole number of milliseconds.' });
        return;
      }
      if (t > 0) body.timeout = t;
    }
    submitBtn.disabled = true;
    try {
      const t = await api('POST', '/api/tasks', body);
      toast(`Task ${t.id.slice(0, 8)} queued` + (t.queuePosition ? ` (position ${t.queuePosition})` : ''), 'ok');
      navigate('#/tasks/' + encodeURIComponent(t.id));
    } catch (err) {
      if (err.status !== 401) showError(err);
    } finally {
      submitBtn.disabled = false;
    }
  };

  const form = h('form', { id: 'submit-form', class: 'stack', novalidate: true, onsubmit: submit },
    h('section', { class: 'panel' },
      h('div', { class: 'panel-head' }, h('h2', null, 'Workflow'),
        h('button', { type: 'button', class: 'btn-sm', onclick: () => wfFile.click() }, icon('upload'), 'Open file…'),
        h('button', { type: 'button', class: 'btn-sm', id: 'load-example', onclick: () => { wfText.value = JSON.stringify(EXAMPLE, null, 2); onWorkflow(); } }, 'Load example'),
        h('button', { type: 'button', class: 'btn-sm', title: 'Pretty-print the JSON', onclick: () => { const r = parseWorkflow(wfText.value); if (r.wf) { wfText.value = JSON.stringify(r.wf, null, 2); onWorkflow(); } else onWorkflow(); } }, 'Format'),
        h('button', { type: 'button', class: 'btn-sm btn-ghost', onclick: () => { wfText.value = ''; onWorkflow(); } }, 'Clear')),
      drop, wfFile),
    nodesPanel,
    h('section', { class: 'panel' },
      h('div', { class: 'panel-head' }, h('h2', null, 'Params'),
        h('button', { type: 'button', class: 'btn-sm', id: 'add-param', onclick: () => addRow().key.focus() }, icon('plus'), 'Add param'),
        h('button', { type: 'button', class: 'btn-sm', onclick: () => addRow().pickFile() }, icon('clip'), 'Attach file')),
      h('div', { class: 'stack' },
        h('p', { class: 'hint muted small', style: { margin: 0 } }, 'Each param overrides one node input before the run. Values are JSON when they parse as a number, true/false, an object or a list, and text otherwise; an input that is text now stays text. An attached file is uploaded to the gateway and sent to the instance that runs the task.'),
        emptyNote, rowsBox, paramsErr, keyList)),
    h('section', { class: 'panel' },
      h('h2', null, 'Options'),
      h('div', { class: 'form-grid' },
        h('div', { class: 'field' }, h('label', { for: 'priority' }, 'Priority'), priority, h('div', { class: 'hint' }, 'Higher runs first; default 0.'), priorityErr),
        h('div', { class: 'field' }, h('label', { for: 'timeout' }, 'Timeout (ms)'), timeout, h('div', { class: 'hint' }, 'Empty: the gateway’s default.'), timeoutErr))),
    formErr,
    h('div', { class: 'row' }, submitBtn, h('a', { href: '#/tasks', class: 'btn btn-ghost' }, 'Cancel')));

  replace(main, h('div', { class: 'page-head' }, h('h1', null, 'Submit a task')), h('div', { class: 'stack' }, form));
  for (const p of draft.params || []) addRow(p);
  emptyNote.hidden = rows.length > 0;
  onWorkflow();
  return () => {
    persist.cancel();
    saveNow();
  };
}
