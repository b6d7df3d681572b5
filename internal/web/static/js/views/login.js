// The login screen: POST /api/auth/login, token kept in localStorage.

import { h } from '../ui.js';
import { login } from '../api.js';

export default function mount(root, { next, reason, onLogin }) {
  const user = h('input', { id: 'login-username', name: 'username', autocomplete: 'username', required: true, autocapitalize: 'none', spellcheck: 'false' });
  const pass = h('input', { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const err = h('div', { class: 'form-error', id: 'login-error', role: 'alert' });
  const btn = h('button', { class: 'btn-primary', type: 'submit', id: 'login-submit' }, 'Log in');
  const form = h('form', {
    novalidate: true,
    onsubmit: async (e) => {
      e.preventDefault();
      err.textContent = '';
      if (!user.value.trim() || !pass.value) {
        err.textContent = 'Enter your username and password.';
        (user.value.trim() ? pass : user).focus();
        return;
      }
      btn.disabled = true;
      btn.textContent = 'Logging in…';
      try {
        await login(user.value.trim(), pass.value);
        onLogin(next && next.startsWith('/') && !next.startsWith('/login') ? next : '/');
      } catch (ex) {
        err.textContent = ex.status === 401 ? 'Wrong username or password.' : ex.message;
        pass.value = '';
        pass.focus();
        btn.disabled = false;
        btn.textContent = 'Log in';
      }
    },
  },
  reason ? h('div', { class: 'notice', id: 'login-notice' }, reason) : null,
  h('div', { class: 'field' }, h('label', { for: 'login-username' }, 'Username'), user),
  h('div', { class: 'field' }, h('label', { for: 'login-password' }, 'Password'), pass),
  err,
  btn);
  const page = h('div', { class: 'login-page' },
    h('div', { class: 'panel login-card' },
      h('div', { class: 'brand' }, h('img', { src: '/favicon.svg', alt: '' }), 'ComfyFleet'),
      form));
  root.replaceChildren(page);
  user.focus();
  return () => {};
}
