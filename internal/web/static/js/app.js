// The dashboard's entry point: hash routes (#/tasks, #/tasks/<id>, ...),
// the shell (sidebar on wide screens, top bar on phones), and the switch
// between the login screen and the app.

import { h, icon, replace, refreshTimes } from './ui.js';
import { getSession, isAdmin, logout, authEvents } from './api.js';
import { live } from './live.js';

const ROUTES = [
  { pattern: '/', key: 'overview', title: 'Overview', load: () => import('./views/overview.js') },
  { pattern: '/instances', key: 'instances', title: 'Instances', load: () => import('./views/instances.js') },
  { pattern: '/tasks', key: 'tasks', title: 'Tasks', load: () => import('./views/tasks.js') },
  { pattern: '/tasks/:id', key: 'tasks', title: 'Task', load: () => import('./views/task.js') },
  { pattern: '/submit', key: 'submit', title: 'Submit', load: () => import('./views/submit.js') },
  { pattern: '/files', key: 'files', title: 'Files', load: () => import('./views/files.js') },
  { pattern: '/config', key: 'config', title: 'Config', admin: true, load: () => import('./views/config.js') },
  { pattern: '/keys', key: 'keys', title: 'API keys', load: () => import('./views/keys.js') },
  { pattern: '/api', key: 'apidoc', title: 'API reference', load: () => import('./views/apidoc.js') },
];
const NAV = ['overview', 'instances', 'tasks', 'submit', 'files', 'keys', 'config', 'apidoc'];
const NAV_LABEL = { overview: 'Overview', instances: 'Instances', tasks: 'Tasks', submit: 'Submit', files: 'Files', keys: 'API keys', config: 'Config', apidoc: 'API reference' };
const NAV_HREF = { overview: '#/', instances: '#/instances', tasks: '#/tasks', submit: '#/submit', files: '#/files', keys: '#/keys', config: '#/config', apidoc: '#/api' };

const root = document.getElementById('app');
let shell = null; // { main, navLinks, conn }
let cleanup = null;
let renderSeq = 0;
let loginReason = '';

// parseHash splits "#/tasks/abc?status=failed" into path and query.
export function parseHash(hash = location.hash) {
  const raw = hash.replace(/^#/, '') || '/';
  const [path, q = ''] = raw.split('?');
  return { path: path || '/', query: Object.fromEntries(new URLSearchParams(q)) };
}

function match(path) {
  const parts = path.split('/').filter(Boolean);
  for (const r of ROUTES) {
    const pp = r.pattern.split('/').filter(Boolean);
    if (pp.length !== parts.length) continue;
    const params = {};
    let ok = true;
    for (let i = 0; i < pp.length; i++) {
      if (pp[i].startsWith(':')) params[pp[i].slice(1)] = decodeURIComponent(parts[i]);
      else if (pp[i] !== parts[i]) { ok = false; break; }
    }
    if (ok) return { route: r, params };
  }
  return null;
}

// navigate goes to a route; hashchange renders it.
export function navigate(hash, { replace: rep = false } = {}) {
  if (hash === location.hash) {
    render();
    return;
  }
  if (rep) location.replace(hash);
  else location.hash = hash;
}

// setQuery updates the current route's query in place (no history entry,
// no re-render), so a reload or a shared link shows the same filter.
export function setQuery(query) {
  const { path } = parseHash();
  const q = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== '' && v !== undefined && v !== null));
  const s = q.toString();
  const hash = '#' + path + (s ? '?' + s : '');
  if (hash !== location.hash) history.replaceState(null, '', hash);
}

async function render() {
  const seq = ++renderSeq;
  const { path, query } = parseHash();
  const session = getSession();
  if (session && path === '/login') {
    const to = query.next && query.next.startsWith('/') ? query.next : '/';
    history.replaceState(null, '', '#' + to);
    render();
    return;
  }
  if (!session) {
    teardownApp();
    let next = query.next || '';
    if (path !== '/login') {
      next = location.hash.replace(/^#/, '');
      if (next === '/') next = '';
      history.replaceState(null, '', '#/login' + (next ? '?next=' + encodeURIComponent(next) : ''));
    }
    const mod = await import('./views/login.js');
    if (seq !== renderSeq) return;
    if (cleanup) { cleanup(); cleanup = null; }
    root.removeAttribute('aria-busy');
    root.className = '';
    cleanup = mod.default(root, { next, reason: loginReason, onLogin: (to) => navigate('#' + (to || '/'), { replace: true }) });
    loginReason = '';
    document.title = 'Log in · ComfyFleet';
    return;
  }
  ensureShell(session);
  live.start();
  const m = match(path);
  if (cleanup) { cleanup(); cleanup = null; }
  const main = shell.main;
  main.replaceChildren(h('div', { class: 'loading' }, h('span', { class: 'spinner' })));
  const key = m ? m.route.key : '';
  for (const [k, a] of Object.entries(shell.navLinks)) {
    const on = k === key;
    a.forEach((el) => {
      el.classList.toggle('active', on);
      if (on) el.setAttribute('aria-current', 'page');
      else el.removeAttribute('aria-current');
    });
  }
  if (!m) {
    replace(main, h('div', { class: 'panel' }, h('h1', null, 'Not found'),
      h('p', null, 'No page at ', h('code', null, path), '. ', h('a', { href: '#/' }, 'Go to the overview'), '.')));
    document.title = 'Not found · ComfyFleet';
    return;
  }
  if (m.route.admin && !isAdmin()) {
    replace(main, h('div', { class: 'panel' }, h('h1', null, 'Admins only'),
      h('p', { class: 'muted' }, 'This page needs the admin role. You are logged in as ', h('b', null, session.user.username), ' (', session.user.role, ').')));
    document.title = m.route.title + ' · ComfyFleet';
    return;
  }
  let mod;
  try {
    mod = await m.route.load();
  } catch (err) {
    if (seq !== renderSeq) return;
    replace(main, h('div', { class: 'form-error' }, 'Could not load this page: ' + err.message));
    return;
  }
  if (seq !== renderSeq) return;
  main.replaceChildren();
  document.title = m.route.title + ' · ComfyFleet';
  cleanup = mod.default(main, { params: m.params, query, navigate, setQuery }) || null;
  main.focus({ preventScroll: true });
  window.scrollTo(0, 0);
}

function navLink(k) {
  return h('a', { href: NAV_HREF[k], 'data-nav': k }, icon(k), h('span', null, NAV_LABEL[k]));
}

function ensureShell(session) {
  if (shell && shell.user === session.user.username + '/' + session.user.role) return;
  teardownApp();
  const keys = NAV.filter((k) => k !== 'config' || session.user.role === 'admin');
  const navLinks = {};
  const side = h('nav', { class: 'nav', 'aria-label': 'Main' }, keys.map((k) => navLink(k)));
  const top = h('nav', { class: 'nav', 'aria-label': 'Main (compact)' }, keys.map((k) => navLink(k)));
  for (const k of keys) navLinks[k] = [...side.querySelectorAll(`[data-nav="${k}"]`), ...top.querySelectorAll(`[data-nav="${k}"]`)];
  const conn = [h('span', { class: 'conn', id: 'conn' }), h('span', { class: 'conn' })];
  const setConn = (s) => conn.forEach((c) => {
    c.dataset.state = s;
    c.textContent = s === 'open' ? 'Live' : s === 'connecting' ? 'Connecting…' : 'Offline';
    c.title = s === 'open' ? 'Receiving live updates over /ws' : 'Live updates are not flowing; retrying';
  });
  setConn(live.state);
  const logoutBtn = (cls) => h('button', { class: cls, id: cls.includes('side') ? 'logout' : null, 'data-action': 'logout', title: 'Log out', onclick: () => logout() },
    icon('logout'), h('span', null, 'Log out'));
  const user = session.user;
  const main = h('main', { class: 'main', id: 'main', tabindex: '-1' });
  const el = h('div', { class: 'shell' },
    h('aside', { class: 'side' },
      h('a', { class: 'brand', href: '#/' }, h('img', { src: '/favicon.svg', alt: '' }), 'ComfyFleet'),
      side,
      h('div', { class: 'side-foot' },
        conn[0],
        h('div', { class: 'who' }, h('span', { class: 'name', id: 'whoami' }, user.username), h('span', { class: 'badge plain' }, user.role)),
        logoutBtn('btn-sm side-logout'))),
    h('div', null,
      h('header', { class: 'topbar' },
        h('div', { class: 'bar' },
          h('a', { class: 'brand', href: '#/' }, h('img', { src: '/favicon.svg', alt: '' }), 'ComfyFleet'),
          conn[1],
          logoutBtn('btn-sm btn-ghost')),
        top),
      main));
  root.removeAttribute('aria-busy');
  root.className = '';
  root.replaceChildren(el);
  const off = live.on('connection', setConn);
  shell = { main, navLinks, user: user.username + '/' + user.role, off };
}

function teardownApp() {
  if (!shell) return;
  if (cleanup) { cleanup(); cleanup = null; }
  shell.off();
  shell = null;
  live.stop();
  root.replaceChildren();
}

authEvents.on('logout', (reason) => {
  loginReason = reason || ''; // shown on the login screen
  const { path } = parseHash();
  const next = path === '/login' ? '' : location.hash.replace(/^#/, '');
  history.replaceState(null, '', '#/login' + (next && next !== '/' ? '?next=' + encodeURIComponent(next) : ''));
  render();
});
authEvents.on('login', () => {
  if (parseHash().path === '/login') return; // the login view navigates itself
  render();
});

window.addEventListener('hashchange', render);
setInterval(() => refreshTimes(), 2000);
render();
