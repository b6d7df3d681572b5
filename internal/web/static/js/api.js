// The REST client: the session (token in localStorage), the envelope, and
// the one rule for expiry: any 401 from the API ends the session and the
// app shows the login screen.

import { Emitter } from './ui.js';

const KEY = 'comfyfleet.session';

// events: 'login', 'logout' (with a reason string).
export const authEvents = new Emitter();

let session = load();
let expiryTimer = 0;

function load() {
  try {
    const s = JSON.parse(localStorage.getItem(KEY) || 'null');
    if (!s || !s.token) return null;
    if (s.expiresAt && Date.parse(s.expiresAt) <= Date.now()) {
      localStorage.removeItem(KEY);
      return null;
    }
    return s;
  } catch {
    return null;
  }
}

export function getSession() {
  if (session && session.expiresAt && Date.parse(session.expiresAt) <= Date.now()) {
    endSession('Your session expired; please log in again.');
  }
  return session;
}

export function isAdmin() {
  return session?.user?.role === 'admin';
}

function armExpiry() {
  clearTimeout(expiryTimer);
  if (!session?.expiresAt) return;
  const ms = Date.parse(session.expiresAt) - Date.now();
  if (isNaN(ms)) return;
  // setTimeout cannot wait more than ~24.8 days; re-arm in steps.
  expiryTimer = setTimeout(() => {
    if (Date.parse(session?.expiresAt) <= Date.now()) endSession('Your session expired; please log in again.');
    else armExpiry();
  }, Math.min(Math.max(ms, 0), 2 ** 31 - 1));
}
armExpiry();

// Another tab logged in or out: follow it.
window.addEventListener('storage', (e) => {
  if (e.key !== KEY) return;
  const next = load();
  if (!next && session) {
    session = null;
    clearTimeout(expiryTimer);
    authEvents.emit('logout', 'You were logged out in another tab.');
  } else if (next && next.token !== session?.token) {
    session = next;
    armExpiry();
    authEvents.emit('login', session);
  }
});

export function endSession(reason = '') {
  const had = !!session;
  session = null;
  clearTimeout(expiryTimer);
  try { localStorage.removeItem(KEY); } catch { /* private mode */ }
  if (had) authEvents.emit('logout', reason);
}

// ApiError carries the envelope's fields: status, code (snake_case reason),
// message, data and data.field when the API named a field.
export class ApiError extends Error {
  constructor(status, body) {
    const msg = body?.message || (status === 0 ? 'The gateway cannot be reached.' : `Request failed with HTTP ${status}.`);
    super(msg);
    this.status = status;
    this.code = body?.error || (status === 0 ? 'network_error' : 'http_' + status);
    this.data = body?.data ?? null;
    this.field = (body?.data && typeof body.data === 'object' && body.data.field) || '';
  }
}

async function parse(res) {
  const text = await res.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return { message: text.slice(0, 300) };
  }
}

function check401(status, path) {
  if (status === 401 && !path.startsWith('/api/auth/login')) {
    endSession('Your session has expired or was revoked; please log in again.');
  }
}

// api calls the REST API and returns the envelope's data; errors throw
// ApiError. body may be an object (sent as JSON) or FormData.
export async function api(method, path, body, { signal } = {}) {
  const headers = { Accept: 'application/json' };
  const s = getSession();
  if (s?.token) headers.Authorization = 'Bearer ' + s.token;
  let payload;
  if (body instanceof FormData) payload = body;
  else if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body: payload, signal, cache: 'no-store' });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, null);
  }
  const env = await parse(res);
  if (!res.ok) {
    check401(res.status, path);
    throw new ApiError(res.status, env);
  }
  return env && 'data' in env ? env.data : env;
}

export const get = (path, opts) => api('GET', path, undefined, opts);

export async function login(username, password) {
  const data = await api('POST', '/api/auth/login', { username, password });
  session = { token: data.token, user: data.user, expiresAt: data.expiresAt };
  try { localStorage.setItem(KEY, JSON.stringify(session)); } catch { /* private mode: session lives in memory */ }
  armExpiry();
  authEvents.emit('login', session);
  return session;
}

export function logout() {
  endSession('');
}

// upload sends one file as multipart field "file" and reports progress
// (0..1) through onProgress. XMLHttpRequest, because fetch has no upload
// progress.
export function upload(file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/api/files/upload');
    const s = getSession();
    if (s?.token) xhr.setRequestHeader('Authorization', 'Bearer ' + s.token);
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.upload.onprogress = (e) => { if (e.lengthComputable && onProgress) onProgress(e.loaded / e.total); };
    xhr.onerror = () => reject(new ApiError(0, null));
    xhr.onload = () => {
      let env = null;
      try { env = JSON.parse(xhr.responseText); } catch { env = { message: xhr.responseText.slice(0, 300) }; }
      if (xhr.status >= 200 && xhr.status < 300) {
        resolve(env?.data ?? env);
        return;
      }
      check401(xhr.status, '/api/files/upload');
      reject(new ApiError(xhr.status, env));
    };
    const fd = new FormData();
    fd.append('file', file, file.name);
    xhr.send(fd);
  });
}

// qs builds a query string, leaving out empty values.
export function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') p.set(k, v);
  }
  const s = p.toString();
  return s ? '?' + s : '';
}
