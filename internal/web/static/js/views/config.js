// Config (admins): the servers and the live-tunable settings of
// GET/PUT /api/config. A 400 names the field ("servers[1].ports",
// "healthCheck.interval"); the message is shown next to that input.

import { h, replace, icon, toast, confirmDialog, setFieldError, stripField } from '../ui.js';
import { api, get } from '../api.js';

// compactPorts writes [8001,8002,8003,8010] as "8001-8003, 8010".
export function compactPorts(ports) {
  if (!Array.isArray(ports)) return String(ports ?? '');
  const out = [];
  let i = 0;
  while (i < ports.length) {
    let j = i;
    while (j + 1 < ports.length && ports[j + 1] === ports[j] + 1) j++;
    out.push(j - i >= 2 ? `${ports[i]}-${ports[j]}` : j > i ? `${ports[i]}, ${ports[j]}` : String(ports[i]));
    i = j + 1;
  }
  return out.join(', ');
}

// Live settings besides servers: [section, key, label, hint, type].
const SETTINGS = [
  ['healthCheck', 'interval', 'Probe interval (ms)', 'How often each instance is probed.', 'int'],
  ['healthCheck', 'timeout', 'Probe timeout (ms)', 'One probe gives up after this.', 'int'],
  ['healthCheck', 'failureThreshold', 'Failure threshold', 'Failed probes in a row before an instance is down.', 'int'],
  ['scheduler', 'taskTimeout', 'Task timeout (ms)', 'A run is interrupted after this.', 'int'],
  ['healthCheck', 'drainAfterFailures', 'Drain after failures', 'Runs failed in a row for the instance\'s own reasons before it is drained (-1: never).', 'int'],
  ['healthCheck', 'drainCooldown', 'Drain cooldown (ms)', 'A drained instance is probed and enabled again after this.', 'int'],
  ['healthCheck', 'probeTimeout', 'Probe workflow timeout (ms)', 'A drained instance\'s probe workflow must finish within this.', 'int'],
  ['scheduler', 'maxAttempts', 'Max attempts', 'Runs of one task after lost instances.', 'int'],
  ['scheduler', 'maxTaskTimeout', 'Max task timeout (ms)', 'The longest timeout a task may ask for.', 'int'],
  ['scheduler', 'prefetch', 'Prefetch', 'Prompts placed in a busy instance\'s own queue (0: one at a time).', 'int'],
  ['scheduler', 'placement', 'Placement', 'warm (prefer the loaded model) or fifo.', 'str'],
  ['scheduler', 'warmWindow', 'Warm window (ms)', 'How far a task for the loaded model may jump ahead.', 'int'],
  ['scheduler', 'priorityAging', 'Priority aging (ms)', 'Waiting this long is worth one priority point.', 'int'],
  ['scheduler', 'interruptGrace', 'Interrupt grace (ms)', 'An interrupted prompt still there after this ends its task anyway.', 'int'],
  ['files', 'maxUploadBytes', 'Max upload (bytes)', 'Largest accepted upload.', 'int'],
  ['files', 'maxOutputBytes', 'Max output (bytes)', 'Largest output file copied from an instance.', 'int'],
  ['files', 'outputTimeout', 'Output copy timeout (ms)', 'One output file\'s copy gives up after this.', 'int'],
  ['server', 'publicBaseUrl', 'Public base URL', 'Prefix of file URLs, e.g. https://fleet.example.com', 'str'],
  ['server', 'maxBodyBytes', 'Max JSON body (bytes)', 'Largest accepted request body.', 'int'],
];

export default function mount(main) {
  let cfg = null;
  const serversBox = h('div', { class: 'stack', id: 'servers', 'data-field': 'servers' });
  const serversErr = h('div', { class: 'field-error', role: 'alert' });
  const settingsBox = h('div', { class: 'form-grid' });
  const overrides = h('div', { class: 'small muted', id: 'runtime-overrides' });
  const formErr = h('div', { class: 'form-error', id: 'config-error', role: 'alert' });
  const rawPre = h('pre', { class: 'json' });
  const saveBtn = h('button', { type: 'submit', class: 'btn-primary', id: 'config-save' }, 'Save and apply');
  const dirtyNote = h('span', { class: 'small muted', id: 'config-dirty' });
  let servers = []; // [{ el, fields: {id,name,ip,ports}, err }]
  const settingInputs = {}; // "section.key" -> { input, err, type }

  const markDirty = () => { dirtyNote.textContent = 'Unsaved changes'; };

  const serverCard = (s = { id: '', name: '', ip: '', ports: [] }) => {
    const idx = () => servers.indexOf(entry);
    const mk = (key, label, value, attrs = {}) => {
      const input = h('input', { value, spellcheck: 'false', autocapitalize: 'none', ...attrs, oninput: () => { setFieldError(input, err, ''); markDirty(); } });
      const err = h('div', { class: 'field-error', role: 'alert' });
      const id = 'srv-' + Math.random().toString(36).slice(2, 9) + '-' + key;
      input.id = id;
      return { input, err, el: h('div', { class: 'field', 'data-key': key }, h('label', { for: id }, label), input, err) };
    };
    const f = {
      id: mk('id', 'Id', s.id, { placeholder: 'gpu-box-1' }),
      name: mk('name', 'Name', s.name || '', { placeholder: 'shown as serverName' }),
      ip: mk('ip', 'IP or host', s.ip, { placeholder: '192.168.1.10' }),
      ports: mk('ports', 'Ports', compactPorts(s.ports), { placeholder: '8001-8004, 8010' }),
    };
    const cardErr = h('div', { class: 'field-error', role: 'alert' });
    const rm = h('button', {
      type: 'button', class: 'btn-sm btn-danger', title: 'Remove this server', 'aria-label': 'Remove this server',
      onclick: () => {
        servers.splice(idx(), 1);
        entry.el.remove();
        renumber();
        markDirty();
      },
    }, icon('trash'), 'Remove');
    const el = h('div', { class: 'server-card' },
      h('div', { class: 'form-grid' }, f.id.el, f.name.el, f.ip.el, f.ports.el, h('div', { class: 'field' }, h('label', { 'aria-hidden': 'true' }, '\u00a0'), rm)),
      cardErr);
    const entry = { el, f, cardErr };
    return entry;
  };

  // renumber keeps data-field in step with the list order, as the API
  // names servers by index.
  const renumber = () => {
    servers.forEach((s, i) => {
      s.el.dataset.field = `servers[${i}]`;
      for (const [k, v] of Object.entries(s.f)) v.input.dataset.field = `servers[${i}].${k}`;
    });
    if (!servers.length) replace(serversBox, h('p', { class: 'muted', style: { margin: 0 } }, 'No servers: the gateway has no instances.'));
  };

  const addServer = (s) => {
    const entry = serverCard(s);
    if (!servers.length) serversBox.replaceChildren();
    servers.push(entry);
    serversBox.appendChild(entry.el);
    renumber();
    return entry;
  };

  const draw = () => {
    servers = [];
    serversBox.replaceChildren();
    for (const s of cfg.servers || []) addServer(s);
    renumber();
    replace(settingsBox, SETTINGS.map(([sec, key, label, hint, type]) => {
      const path = `${sec}.${key}`;
      const v = cfg[sec]?.[key];
      const input = h('input', {
        id: 'cfg-' + path.replace('.', '-'), type: type === 'int' ? 'number' : 'text', step: type === 'int' ? 1 : null, min: type === 'int' && path !== 'healthCheck.drainAfterFailures' ? 0 : null,
        value: v ?? '', 'data-field': path, spellcheck: 'false',
        oninput: () => { setFieldError(input, err, ''); markDirty(); },
      });
      const err = h('div', { class: 'field-error', role: 'alert' });
      settingInputs[path] = { input, err, type };
      return h('div', { class: 'field' }, h('label', { for: input.id }, label), input, h('div', { class: 'hint' }, hint), err);
    }));
    const ro = cfg.runtimeOverrides || [];
    replace(overrides, ro.length
      ? ['Changed through the API (these win over the config file): ', ro.map((k, i) => [i ? ', ' : '', h('code', null, k)])]
      : 'Everything comes from the config file and environment.');
    rawPre.textContent = JSON.stringify(cfg, null, 2);
    dirtyNote.textContent = '';
  };

  const load = async () => {
    try {
      cfg = await get('/api/config');
      draw();
    } catch (err) {
      if (err.status === 401) return;
      replace(main, h('div', { class: 'form-error', role: 'alert' }, err.status === 403 ? 'The config is for admins only.' : err.message));
    }
  };

  const clearErrors = () => {
    formErr.textContent = '';
    serversErr.textContent = '';
    for (const s of servers) {
      s.cardErr.textContent = '';
      for (const v of Object.values(s.f)) setFieldError(v.input, v.err, '');
    }
    for (const v of Object.values(settingInputs)) setFieldError(v.input, v.err, '');
  };

  // showError puts the API's message next to the field it names, or the
  // closest thing that has a name (a server card, the servers list).
  const showError = (err) => {
    const field = err.field || '';
    const msg = stripField(err.message, field);
    let m = /^servers\[(\d+)\](?:\.(\w+))?/.exec(field);
    let target = null;
    if (m && servers[Number(m[1])]) {
      const s = servers[Number(m[1])];
      const sub = m[2] && s.f[m[2]];
      if (sub) {
        setFieldError(sub.input, sub.err, msg);
        target = sub.input;
      } else {
        s.cardErr.textContent = msg;
        target = s.el;
      }
    } else if (field === 'servers' || field.startsWith('servers')) {
      serversErr.textContent = err.message;
      target = serversErr;
    } else if (settingInputs[field]) {
      setFieldError(settingInputs[field].input, settingInputs[field].err, msg);
      target = settingInputs[field].input;
    }
    formErr.textContent = target ? `Not saved: ${err.message}` : err.message;
    (target || formErr).scrollIntoView?.({ block: 'center', behavior: 'smooth' });
    if (target?.focus && target.tagName === 'INPUT') target.focus({ preventScroll: true });
  };

  const body = () => {
    const out = {
      servers: servers.map((s) => {
        const o = { id: s.f.id.input.value.trim(), ip: s.f.ip.input.value.trim() };
        if (s.f.name.input.value.trim()) o.name = s.f.name.input.value.trim();
        const p = s.f.ports.input.value.trim();
        // A plain list of numbers goes as a list; ranges go as the string
        // the API parses ("8001-8004, 8010").
        o.ports = /^\d+(\s*,\s*\d+)*$/.test(p) ? p.split(',').map((x) => Number(x.trim())) : p;
        return o;
      }),
    };
    for (const [path, { input, type }] of Object.entries(settingInputs)) {
      const [sec, key] = path.split('.');
      const raw = input.value.trim();
      let v;
      if (raw === '') v = null; // the default
      else if (type === 'int') v = Number(raw);
      else v = raw;
      const cur = cfg[sec]?.[key];
      if (v === cur || (v === null && (cur === '' || cur === undefined))) continue; // unchanged
      out[sec] = out[sec] || {};
      out[sec][key] = v;
    }
    return out;
  };

  const save = async (e) => {
    e.preventDefault();
    clearErrors();
    for (const [path, { input, err, type }] of Object.entries(settingInputs)) {
      if (type === 'int' && input.value.trim() !== '' && !Number.isInteger(Number(input.value))) {
        setFieldError(input, err, 'Must be a whole number.');
        input.focus();
        return;
      }
      void path;
    }
    saveBtn.disabled = true;
    try {
      cfg = await api('PUT', '/api/config', body());
      draw();
      toast('Config saved and applied', 'ok');
    } catch (err) {
      if (err.status !== 401) showError(err);
    } finally {
      saveBtn.disabled = false;
    }
  };

  const reset = async () => {
    const ok = await confirmDialog('Drop the runtime overrides?', 'The gateway goes back to the config file and environment for every setting changed here, including the servers.', { ok: 'Reset', danger: true });
    if (!ok) return;
    clearErrors();
    try {
      cfg = await api('PUT', '/api/config', { reset: true });
      draw();
      toast('Back to the config file', 'ok');
    } catch (err) {
      if (err.status !== 401) showError(err);
    }
  };

  const form = h('form', { id: 'config-form', novalidate: true, onsubmit: save, class: 'stack' },
    h('section', { class: 'panel' },
      h('div', { class: 'panel-head' }, h('h2', null, 'Servers'),
        h('button', { type: 'button', class: 'btn-sm', id: 'add-server', onclick: () => { addServer().f.id.input.focus(); markDirty(); } }, icon('plus'), 'Add server')),
      h('p', { class: 'muted small', style: { marginTop: 0 } }, 'Each port of a server is one ComfyUI instance (id ip:port). Removing a server drains its busy instances first.'),
      serversBox, serversErr),
    h('section', { class: 'panel' }, h('h2', null, 'Health check, scheduler and limits'), settingsBox),
    h('section', { class: 'panel' },
      h('div', { class: 'panel-head' }, h('h2', null, 'Runtime overrides'),
        h('button', { type: 'button', class: 'btn-sm btn-danger', onclick: reset }, 'Reset to the config file')),
      overrides,
      h('details', { style: { marginTop: '10px' } }, h('summary', null, 'Full config (secrets redacted)'), rawPre)),
    formErr,
    h('div', { class: 'sticky-actions' }, saveBtn, h('button', { type: 'button', id: 'config-discard', onclick: () => { clearErrors(); load(); } }, 'Discard changes'), dirtyNote));

  replace(main, h('div', { class: 'page-head' }, h('h1', null, 'Config')), form);
  load();
  return () => {};
}
