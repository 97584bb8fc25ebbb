// The file browser: list and navigate directories, upload (file input),
// download, make folders, delete, and view or edit small text files.

import { getJSON, request, sandboxPath } from './api.js';
import { age, el, size } from './render.js';

const MAX_EDIT = 1 << 20; // larger files are downloaded, not edited

function join(dir, name) {
  return dir.endsWith('/') ? dir + name : dir + '/' + name;
}

function parent(dir) {
  const i = dir.replace(/\/+$/, '').lastIndexOf('/');
  return i <= 0 ? '/' : dir.slice(0, i);
}

export class Files {
  constructor(sandboxId) {
    this.id = sandboxId;
    this.dir = '';
    this.pathLabel = el('code', { class: 'path' });
    this.status = el('div', { class: 'files-status muted' });
    this.upload = el('input', { type: 'file', multiple: true, class: 'visually-hidden', id: 'upload-input', onchange: () => this.uploadFiles() });
    this.rows = el('tbody');
    this.editor = null;
    this.element = el('section', { class: 'panel files' },
      el('div', { class: 'panel-head' },
        el('h2', {}, 'Files'),
        this.pathLabel,
        el('span', { class: 'spacer' }),
        el('button', { type: 'button', title: 'Parent folder', onclick: () => this.cd(parent(this.dir)) }, 'Up'),
        el('button', { type: 'button', title: 'Reload', onclick: () => this.refresh() }, 'Reload'),
        el('button', { type: 'button', onclick: () => this.mkdir() }, 'New folder'),
        el('label', { class: 'button primary', for: 'upload-input' }, 'Upload', this.upload)),
      el('div', { class: 'table-wrap' },
        el('table', { class: 'file-table' },
          el('thead', {}, el('tr', {}, el('th', {}, 'Name'), el('th', { class: 'num' }, 'Size'), el('th', {}, 'Modified'), el('th', {}))),
          this.rows)),
      this.status);
  }

  /** start shows the sandbox's working directory. */
  async start() {
    try {
      const st = await getJSON(sandboxPath(this.id, '/stat?path=.'));
      await this.cd(st.path);
    } catch (e) {
      this.say(e.message, true);
    }
  }

  say(message, error) {
    this.status.textContent = message;
    this.status.classList.toggle('failure', !!error);
  }

  async cd(dir) {
    try {
      const list = await getJSON(sandboxPath(this.id, '/dir?path=' + encodeURIComponent(dir)));
      this.dir = dir;
      this.pathLabel.textContent = dir;
      this.show(list.files || []);
      this.say(`${(list.files || []).length} entries`);
    } catch (e) {
      this.say(e.message, true);
    }
  }

  refresh() {
    return this.cd(this.dir);
  }

  show(files) {
    files.sort((a, b) => (b.isDir - a.isDir) || a.name.localeCompare(b.name));
    this.rows.replaceChildren(...files.map((f) => {
      const name = f.isDir
        ? el('a', { href: '#', class: 'dir', onclick: (e) => { e.preventDefault(); this.cd(f.path); } }, f.name + '/')
        : el('a', { href: '#', class: 'file', title: 'View or edit', onclick: (e) => { e.preventDefault(); this.open(f); } }, f.name);
      return el('tr', { 'data-name': f.name },
        el('td', {}, name),
        el('td', { class: 'num' }, f.isDir ? '' : size(f.size)),
        el('td', { class: 'muted', title: f.modTime }, age(f.modTime) + ' ago'),
        el('td', { class: 'actions' },
          f.isDir ? '' : el('button', { type: 'button', class: 'download', onclick: () => this.download(f) }, 'Download'),
          el('button', { type: 'button', class: 'icon danger', title: 'Delete', 'aria-label': 'delete ' + f.name, onclick: (e) => this.remove(f, e.currentTarget) }, '✕')));
    }));
  }

  async uploadFiles() {
    const list = [...this.upload.files];
    this.upload.value = '';
    for (const f of list) {
      this.say(`uploading ${f.name}…`);
      try {
        await request('PUT', sandboxPath(this.id, '/files?path=' + encodeURIComponent(join(this.dir, f.name))), { body: f });
      } catch (e) {
        this.say(`${f.name}: ${e.message}`, true);
        return;
      }
    }
    await this.refresh();
    this.say(`uploaded ${list.map((f) => f.name).join(', ')}`);
  }

  async download(f) {
    try {
      const resp = await request('GET', sandboxPath(this.id, '/files?path=' + encodeURIComponent(f.path)));
      const url = URL.createObjectURL(await resp.blob());
      const a = el('a', { href: url, download: f.name, class: 'visually-hidden' });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
      this.say(`downloaded ${f.name}`);
    } catch (e) {
      this.say(e.message, true);
    }
  }

  async mkdir() {
    const name = prompt('New folder name');
    if (!name) return;
    try {
      await request('POST', sandboxPath(this.id, '/dir?path=' + encodeURIComponent(join(this.dir, name))));
      await this.refresh();
    } catch (e) {
      this.say(e.message, true);
    }
  }

  async remove(f, button) {
    // Two clicks: the first arms the button.
    if (!button.classList.contains('armed')) {
      button.classList.add('armed');
      button.textContent = 'Delete?';
      setTimeout(() => { button.classList.remove('armed'); button.textContent = '✕'; }, 4000);
      return;
    }
    try {
      await request('DELETE', sandboxPath(this.id, '/files?path=' + encodeURIComponent(f.path)));
      await this.refresh();
      this.say(`deleted ${f.name}`);
    } catch (e) {
      this.say(e.message, true);
    }
  }

  async open(f) {
    if (f.size > MAX_EDIT) {
      this.say(`${f.name} is ${size(f.size)}: download it instead (the editor takes files up to ${size(MAX_EDIT)})`);
      return;
    }
    let text;
    try {
      const resp = await request('GET', sandboxPath(this.id, '/files?path=' + encodeURIComponent(f.path)));
      text = new TextDecoder('utf-8', { fatal: true }).decode(await resp.arrayBuffer());
    } catch (e) {
      this.say(e instanceof TypeError ? `${f.name} is not UTF-8 text: download it instead` : e.message, true);
      return;
    }
    this.closeEditor();
    const area = el('textarea', { class: 'editor-text', spellcheck: 'false', 'aria-label': 'file content' });
    area.value = text;
    const save = async () => {
      try {
        await request('PUT', sandboxPath(this.id, '/files?path=' + encodeURIComponent(f.path)), { body: area.value });
        await this.refresh();
        this.say(`saved ${f.path}`);
      } catch (e) {
        this.say(e.message, true);
      }
    };
    area.addEventListener('keydown', (e) => {
      if (e.key === 's' && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        save();
      }
    });
    this.editor = el('div', { class: 'editor' },
      el('div', { class: 'panel-head' }, el('code', { class: 'path' }, f.path), el('span', { class: 'spacer' }),
        el('button', { type: 'button', class: 'primary', id: 'save-file', onclick: save }, 'Save'),
        el('button', { type: 'button', onclick: () => this.closeEditor() }, 'Close')),
      area);
    this.status.before(this.editor);
    area.focus();
  }

  closeEditor() {
    if (this.editor) this.editor.remove();
    this.editor = null;
  }
}
