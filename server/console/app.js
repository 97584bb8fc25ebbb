// The console's pages: the sandbox list (#/) and a sandbox (#/sandboxes/ID)
// with its notebook, files and terminal; and the token form, shown when
// the server answers 401.

import { ApiError, V1, getJSON, onUnauthorized, request, sandboxPath, sendJSON, setToken, token } from './api.js';
import { Files } from './files.js';
import { Notebook } from './notebook.js';
import { age, el } from './render.js';
import { TerminalPane } from './terminal.js';

const main = document.getElementById('main');
let current = null; // the page shown: {dispose()}
let asking = false; // the token form is up

function show(page, ...nodes) {
  if (current && current.dispose) current.dispose();
  current = page;
  main.replaceChildren(...nodes);
}

function failure(e) {
  return el('p', { class: 'failure' }, e.message);
}

// --- the token form ---

onUnauthorized((err) => askToken(token() ? 'The server refused this token.' : 'This server needs a token.', err));

function askToken(message) {
  if (asking) return;
  asking = true;
  const input = el('input', { type: 'password', id: 'token-input', autocomplete: 'off', required: true, 'aria-label': 'token', placeholder: 'token' });
  const form = el('form', { class: 'panel token-form', id: 'token-form' },
    el('h2', {}, 'Token'),
    el('p', { class: token() ? 'failure' : 'muted', id: 'token-message' }, message),
    el('p', { class: 'muted' }, 'The server was started with --token (or $COMPUTE_TOKEN). The console keeps it in this tab only and sends it as a bearer header.'),
    el('div', { class: 'row' }, input, el('button', { type: 'submit', class: 'primary' }, 'Continue')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    setToken(input.value.trim());
    asking = false;
    route();
  });
  setToken('');
  show(null, form);
  input.focus();
  updateHeader();
}

function updateHeader() {
  document.getElementById('forget-token').hidden = !token();
}

// --- the sandbox list ---

function listPage() {
  const rows = el('tbody');
  const status = el('p', { class: 'muted' });
  const newButton = el('button', { type: 'button', class: 'primary', id: 'new-sandbox', onclick: create }, 'New sandbox');
  const page = {};
  let timer = null;

  async function load() {
    try {
      const list = await getJSON(`${V1}/sandboxes`);
      const sbs = list.sandboxes || [];
      sbs.sort((a, b) => b.createdAt.localeCompare(a.createdAt));
      rows.replaceChildren(...sbs.map(row));
      status.textContent = sbs.length ? '' : 'No sandboxes yet: make one.';
      status.className = 'muted';
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 401)) {
        status.textContent = e.message;
        status.className = 'failure';
      }
    }
  }

  function row(sb) {
    const destroy = el('button', { type: 'button', class: 'danger destroy', onclick: () => destroyOne(sb, destroy) }, 'Destroy');
    return el('tr', { 'data-id': sb.id },
      el('td', {}, el('a', { href: '#/sandboxes/' + encodeURIComponent(sb.id), class: 'sandbox-link' }, el('code', {}, sb.id))),
      el('td', {}, sb.name || ''),
      el('td', {}, sb.provider),
      el('td', {}, el('span', { class: 'status status-' + sb.status }, sb.status)),
      el('td', { title: sb.createdAt }, age(sb.createdAt)),
      el('td', { class: 'actions' }, destroy));
  }

  async function create() {
    newButton.disabled = true;
    status.textContent = 'creating a sandbox…';
    status.className = 'muted';
    try {
      const sb = await sendJSON('POST', `${V1}/sandboxes`, {});
      location.hash = '#/sandboxes/' + encodeURIComponent(sb.id);
    } catch (e) {
      status.textContent = e.message;
      status.className = 'failure';
    } finally {
      newButton.disabled = false;
    }
  }

  async function destroyOne(sb, button) {
    if (!button.classList.contains('armed')) {
      button.classList.add('armed');
      button.textContent = 'Really destroy?';
      return;
    }
    button.disabled = true;
    try {
      await request('DELETE', sandboxPath(sb.id));
    } catch (e) {
      status.textContent = e.message;
      status.className = 'failure';
    }
    load();
  }

  page.dispose = () => clearInterval(timer);
  show(page,
    el('section', { class: 'panel' },
      el('div', { class: 'panel-head' }, el('h2', {}, 'Sandboxes'), el('span', { class: 'spacer' }),
        el('button', { type: 'button', onclick: load }, 'Reload'), newButton),
      el('div', { class: 'table-wrap' },
        el('table', { class: 'sandbox-table' },
          el('thead', {}, el('tr', {}, ...['ID', 'Name', 'Provider', 'Status', 'Age', ''].map((h) => el('th', {}, h)))),
          rows)),
      status));
  load();
  timer = setInterval(load, 10000);
}

// --- a sandbox ---

async function sandboxPage(id) {
  const page = { parts: [] };
  page.dispose = () => page.parts.forEach((p) => p.dispose && p.dispose());
  show(page, el('p', { class: 'muted' }, 'loading ' + id + '…'));
  let sb;
  try {
    sb = await getJSON(sandboxPath(id));
  } catch (e) {
    if (current === page && !(e instanceof ApiError && e.status === 401)) {
      main.replaceChildren(el('p', {}, el('a', { href: '#/' }, '← Sandboxes')), failure(e));
    }
    return;
  }
  if (current !== page) return;
  const nb = new Notebook(id);
  const files = new Files(id);
  const term = new TerminalPane(id);
  page.parts = [term];
  const destroy = el('button', { type: 'button', class: 'danger', id: 'destroy-sandbox' }, 'Destroy');
  destroy.addEventListener('click', async () => {
    if (!destroy.classList.contains('armed')) {
      destroy.classList.add('armed');
      destroy.textContent = 'Really destroy?';
      return;
    }
    try {
      await request('DELETE', sandboxPath(id));
      location.hash = '#/';
    } catch (e) {
      destroy.after(failure(e));
    }
  });
  main.replaceChildren(
    el('div', { class: 'sandbox-head' },
      el('a', { href: '#/' }, '← Sandboxes'),
      el('h1', {}, el('code', { id: 'sandbox-id' }, sb.id)),
      el('span', { class: 'status status-' + sb.status }, sb.status),
      el('span', { class: 'muted' }, `${sb.provider} · created ${age(sb.createdAt)} ago${sb.name ? ' · ' + sb.name : ''}`),
      el('span', { class: 'spacer' }),
      destroy),
    el('div', { class: 'sandbox-grid' },
      nb.element,
      el('div', { class: 'side' }, term.element, files.element)));
  term.start();
  files.start();
  nb.cells.querySelector('textarea').focus();
}

// --- routing ---

function route() {
  updateHeader();
  if (asking) return;
  const m = location.hash.match(/^#\/sandboxes\/([^/]+)$/);
  if (m) sandboxPage(decodeURIComponent(m[1]));
  else listPage();
}

document.getElementById('forget-token').addEventListener('click', () => {
  setToken('');
  askToken('Token forgotten.');
});
window.addEventListener('hashchange', () => {
  asking = false;
  route();
});
route();
