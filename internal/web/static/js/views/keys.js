// API keys: create one (name, scopes, optional expiry; the key is shown
// once), list them with their last use, revoke.

import { h, replace, icon, toast, timeEl, copyText, confirmDialog } from '../ui.js';
import { api, get, getSession, isAdmin } from '../api.js';

// SCOPES offered as checkboxes; the API accepts every "<resource>:read|write".
const SCOPES = ['tasks:read', 'tasks:write', 'files:read', 'files:write', 'instances:read', 'monitor:read', 'keys:read', 'keys:write'];

export default function mount(main) {
  const role = getSession()?.user?.role || 'user';
  const tbody = h('tbody');
  const name = h('input', { id: 'key-name', required: true, maxlength: 100, placeholder: 'my-app', autocomplete: 'off' });
  const expires = h('input', { id: 'key-expires', type: 'date', 'aria-label': 'Expires on (optional)' });
  const roleScope = h('select', { id: 'key-role', 'aria-label': 'Scope' },
    (role === 'admin' ? ['admin', 'user', 'narrow'] : ['user', 'narrow']).map((v) =>
      h('option', { value: v }, v === 'narrow' ? 'only the scopes below' : v === 'admin' ? 'admin: everything' : 'user: what a user may do')));
  const boxes = SCOPES.map((s) => h('label', { class: 'check' }, h('input', { type: 'checkbox', value: s, 'data-scope': s }), ' ', h('code', null, s)));
  const boxWrap = h('div', { class: 'scope-boxes', hidden: true }, boxes);
  roleScope.onchange = () => { boxWrap.hidden = roleScope.value !== 'narrow'; };
  const shown = h('div', { id: 'key-secret', hidden: true, class: 'banner' });
  const form = h('form', { class: 'key-form', id: 'key-form', onsubmit: (e) => { e.preventDefault(); create(); } },
    h('label', null, 'Name ', name), ' ',
    h('label', null, 'Scope ', roleScope), ' ',
    h('label', null, 'Expires ', expires), ' ',
    h('button', { class: 'btn-sm', type: 'submit', id: 'key-create' }, icon('plus'), 'Create key'),
    boxWrap);

  replace(main,
    h('div', { class: 'page-head' }, h('h1', null, 'API keys'), h('button', { class: 'btn-sm', onclick: () => load() }, icon('refresh'), 'Reload')),
    h('p', { class: 'muted small' }, 'Programs use a key as ', h('code', null, 'Authorization: Bearer cfk_…'),
      '. A key is shown once, when it is created; the gateway keeps only its hash. See the ', h('a', { href: '#/api' }, 'API reference'), '.'),
    h('section', { class: 'panel', style: { marginBottom: '14px' } }, form, shown),
    h('section', { class: 'panel' },
      h('div', { class: 'table-wrap' }, h('table', { class: 'data cards', id: 'keys' },
        h('thead', null, h('tr', null, h('th', null, 'Name'), h('th', null, 'Owner'), h('th', null, 'Scopes'), h('th', null, 'Status'),
          h('th', null, 'Created'), h('th', null, 'Expires'), h('th', null, 'Last used'), h('th', null, ''))),
        tbody))));

  const when = (iso, none) => (iso ? timeEl(iso) : h('span', { class: 'muted' }, none));
  const row = (k) => h('tr', { 'data-key-id': k.id },
    h('td', { 'data-label': 'Name' }, h('div', null, k.name), h('div', { class: 'cell-sub mono' }, k.prefix + '_…')),
    h('td', { 'data-label': 'Owner', class: 'small' }, k.owner),
    h('td', { 'data-label': 'Scopes', class: 'small' }, k.scopes.map((s) => h('code', { class: 'scope' }, s, ' '))),
    h('td', { 'data-label': 'Status', class: 'small' }, h('span', { class: 'badge ' + (k.status === 'active' ? 'ok' : 'plain'), 'data-status': k.status }, k.status)),
    h('td', { 'data-label': 'Created', class: 'small nowrap' }, timeEl(k.createdAt)),
    h('td', { 'data-label': 'Expires', class: 'small nowrap' }, when(k.expiresAt, 'never')),
    h('td', { 'data-label': 'Last used', class: 'small nowrap' }, when(k.lastUsedAt, 'never')),
    h('td', { 'data-label': '' }, k.status === 'revoked' ? '' : h('button', {
      class: 'btn-sm btn-danger', 'data-action': 'revoke', title: 'Revoke this key',
      onclick: async () => {
        const ok = await confirmDialog('Revoke key?', `${k.name} stops working at once, everywhere.`, { ok: 'Revoke', danger: true });
        if (!ok) return;
        try {
          await api('DELETE', '/api/keys/' + encodeURIComponent(k.id));
          toast(`Revoked ${k.name}`, 'ok');
          load();
        } catch (err) {
          toast(err.message, 'bad');
        }
      },
    }, icon('trash'), 'Revoke')));

  const create = async () => {
    const body = { name: name.value.trim() };
    if (roleScope.value === 'narrow') {
      body.scopes = boxes.map((b) => b.querySelector('input')).filter((i) => i.checked).map((i) => i.value);
      if (!body.scopes.length) { toast('Pick at least one scope', 'bad'); return; }
    } else {
      body.scopes = [roleScope.value];
    }
    if (expires.value) body.expiresAt = new Date(expires.value + 'T00:00:00Z').toISOString();
    try {
      const k = await api('POST', '/api/keys', body);
      replace(shown,
        h('div', null, 'Copy the key now: it is not shown again.'),
        h('code', { class: 'mono secret', id: 'new-key' }, k.key), ' ',
        h('button', { class: 'btn-sm', type: 'button', onclick: async () => toast((await copyText(k.key)) ? 'Key copied' : 'Could not copy', 'ok') }, icon('copy'), 'Copy'));
      shown.hidden = false;
      name.value = '';
      load();
    } catch (err) {
      toast(err.message, 'bad');
    }
  };

  let ctrl = null;
  const load = async () => {
    ctrl?.abort();
    ctrl = new AbortController();
    try {
      const res = await get('/api/keys', { signal: ctrl.signal });
      replace(tbody, res.items.length ? res.items.map(row)
        : h('tr', null, h('td', { colspan: 8, class: 'empty' }, isAdmin() ? 'No keys yet.' : 'No keys yet. Create one above.')));
    } catch (err) {
      if (err.name === 'AbortError' || err.status === 401) return;
      replace(tbody, h('tr', null, h('td', { colspan: 8, class: 'empty' }, err.message)));
    }
  };
  load();
  return () => ctrl?.abort();
}
