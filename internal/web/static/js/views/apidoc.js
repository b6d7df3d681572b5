// API reference: a readable rendering of the gateway's own OpenAPI
// document (/api/openapi.json), with nothing fetched from elsewhere, so it
// works offline.

import { h, replace } from '../ui.js';

const METHODS = ['get', 'post', 'put', 'patch', 'delete'];

// refName is the component name of a "$ref".
const refName = (ref) => ref.split('/').pop();

// typeOf renders a schema as a short type expression, linking components.
function typeOf(s) {
  if (!s) return 'any';
  if (s.$ref) return h('a', { href: '#/api', 'data-ref': refName(s.$ref), onclick: (e) => { e.preventDefault(); document.getElementById('schema-' + refName(s.$ref))?.scrollIntoView(); } }, refName(s.$ref));
  if (s.allOf) return h('span', null, ...s.allOf.flatMap((p, i) => [i ? ' & ' : '', typeOf(p)]));
  if (s.const !== undefined) return JSON.stringify(s.const);
  if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(' | ');
  const t = Array.isArray(s.type) ? s.type.join(' | ') : s.type;
  if (t === 'array') return h('span', null, typeOf(s.items), '[]');
  if (s.properties) return h('span', null, '{ ', ...Object.entries(s.properties).flatMap(([k, v], i) => [i ? ', ' : '', h('code', null, k), ': ', typeOf(v)]), ' }');
  return t || 'any';
}

function schemaTable(s) {
  if (!s.properties) return h('p', { class: 'small' }, typeOf(s));
  const req = new Set(s.required || []);
  return h('table', { class: 'data small' },
    h('thead', null, h('tr', null, h('th', null, 'Field'), h('th', null, 'Type'), h('th', null, ''))),
    h('tbody', null, Object.entries(s.properties).map(([k, v]) => h('tr', null,
      h('td', null, h('code', null, k), req.has(k) ? ' *' : ''), h('td', null, typeOf(v)), h('td', { class: 'muted' }, v.description || '')))));
}

function operation(path, method, op) {
  const params = op.parameters || [];
  const body = op.requestBody?.content;
  return h('details', { class: 'op', 'data-op': method.toUpperCase() + ' ' + path },
    h('summary', null, h('span', { class: 'badge plain method' }, method.toUpperCase()), ' ', h('code', null, path), ' ', h('span', { class: 'muted' }, op.summary || ''),
      op.security && op.security.length === 0 ? h('span', { class: 'badge plain' }, 'no token') : ''),
    params.length ? h('div', null, h('h4', null, 'Parameters'), h('ul', null, params.map((p) => {
      const q = p.$ref ? { name: refName(p.$ref), in: 'path' } : p;
      return h('li', null, h('code', null, q.name), ` (${q.in}) `, q.schema ? typeOf(q.schema) : '', q.description ? ' — ' + q.description : '');
    }))) : '',
    body ? h('div', null, h('h4', null, 'Request body'), Object.entries(body).map(([ct, m]) => h('div', null, h('span', { class: 'muted small' }, ct + ': '), typeOf(m.schema)))) : '',
    h('h4', null, 'Responses'),
    h('ul', null, Object.entries(op.responses || {}).map(([code, r]) => {
      const c = r.content ? Object.values(r.content)[0] : null;
      return h('li', null, h('strong', null, code), ' ', r.$ref ? typeOf(r) : (r.description || ''), c?.schema ? h('div', { class: 'small' }, typeOf(c.schema)) : '');
    })));
}

export default function mount(main) {
  const body = h('div', { id: 'apidoc' }, h('p', { class: 'muted' }, 'Loading the OpenAPI document…'));
  replace(main,
    h('div', { class: 'page-head' }, h('h1', null, 'API reference'), h('a', { class: 'btn-sm', href: '/api/openapi.json', download: 'openapi.json' }, 'openapi.json')),
    body);
  const ctrl = new AbortController();
  fetch('/api/openapi.json', { signal: ctrl.signal }).then((r) => r.json()).then((doc) => {
    const byTag = new Map();
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const m of METHODS) {
        if (!item[m]) continue;
        const tag = item[m].tags?.[0] || 'other';
        if (!byTag.has(tag)) byTag.set(tag, []);
        byTag.get(tag).push(operation(path, m, item[m]));
      }
    }
    replace(body,
      h('section', { class: 'panel' }, h('h2', null, doc.info.title, ' ', h('span', { class: 'muted small' }, 'OpenAPI ' + doc.openapi)),
        h('pre', { class: 'doc-text' }, doc.info.description || '')),
      ...[...byTag].map(([tag, ops]) => h('section', { class: 'panel', id: 'tag-' + tag }, h('h2', null, tag), ops)),
      h('section', { class: 'panel' }, h('h2', null, 'Schemas'),
        Object.entries(doc.components.schemas).map(([n, s]) => h('div', { id: 'schema-' + n, class: 'schema' },
          h('h3', null, n), s.description ? h('p', { class: 'muted small' }, s.description) : '', schemaTable(s)))));
  }).catch((err) => {
    if (err.name !== 'AbortError') replace(body, h('p', { class: 'empty' }, 'Could not load the document: ' + err.message));
  });
  return () => ctrl.abort();
}
