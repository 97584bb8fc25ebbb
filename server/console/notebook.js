// Notebook cells over the sandbox's code contexts: one context per
// language, found (a reload keeps the interpreter's state) or created on
// the first run; cells stream their output as the cell produces it.

import { ApiError, fromBase64, getJSON, readNDJSON, request, sandboxPath, sendJSON } from './api.js';
import { AnsiWriter, ansiPre, el, renderBundle } from './render.js';

const LANGS = [['python', 'Python'], ['node', 'Node']];

export class Notebook {
  constructor(sandboxId) {
    this.id = sandboxId;
    this.contexts = new Map(); // runtime -> Promise of a context's info
    this.described = new Map(); // runtime -> what the status line says of it
    this.count = 0;
    this.status = el('span', { class: 'muted', id: 'kernel-status' }, 'no interpreter yet: one starts on the first run');
    this.cells = el('div', { class: 'cells' });
    this.element = el('section', { class: 'panel notebook' },
      el('div', { class: 'panel-head' },
        el('h2', {}, 'Notebook'),
        this.status,
        el('span', { class: 'spacer' }),
        el('button', { type: 'button', onclick: () => this.restart(), title: 'Restart the interpreters: every variable is lost' }, 'Restart'),
        el('button', { type: 'button', class: 'primary', id: 'add-cell', onclick: () => this.addCell().focus() }, '+ Cell')),
      this.cells);
    this.addCell();
  }

  /** addCell appends a cell (after `after` when given) and returns it. */
  addCell(after, runtime) {
    const cell = new Cell(this, runtime || (after ? after.runtime() : 'python'));
    if (after) after.element.after(cell.element);
    else this.cells.append(cell.element);
    return cell;
  }

  /** next returns the cell after cell, adding one at the end. */
  next(cell) {
    const n = cell.element.nextElementSibling;
    return n && n.cell ? n.cell : this.addCell(cell);
  }

  /** context returns the info of the sandbox's context for runtime. */
  context(runtime) {
    let p = this.contexts.get(runtime);
    if (!p) {
      p = this.findOrCreate(runtime);
      this.contexts.set(runtime, p);
      p.catch(() => this.contexts.delete(runtime));
    }
    return p;
  }

  async findOrCreate(runtime) {
    this.status.textContent = `starting ${runtime}…`;
    const list = await getJSON(sandboxPath(this.id, '/contexts'));
    let info = (list.contexts || []).filter((c) => c.runtime === runtime).pop();
    if (!info) info = await sendJSON('POST', sandboxPath(this.id, '/contexts'), { runtime });
    this.describe(info);
    return info;
  }

  describe(info) {
    const name = info.runtime === 'python' ? 'Python' : 'Node';
    this.described.set(info.runtime, `${name} ${info.version}${info.rich ? ' (IPython)' : ''}`);
    this.status.textContent = [...this.described.values()].join(' · ');
    this.status.title = `context ${info.id}`;
  }

  /** forget drops a context the server no longer has. */
  forget(runtime) {
    this.contexts.delete(runtime);
  }

  /** revive restarts the context of runtime, whose interpreter died. */
  revive(runtime) {
    const p = this.contexts.get(runtime);
    if (!p) return;
    const next = p.then((info) => sendJSON('POST', sandboxPath(this.id, `/contexts/${info.id}/restart`), {}))
      .then((info) => {
        this.describe(info);
        return info;
      });
    this.contexts.set(runtime, next);
    next.catch(() => this.contexts.delete(runtime));
  }

  async restart() {
    for (const [runtime, p] of [...this.contexts]) {
      try {
        const info = await p;
        this.describe(await sendJSON('POST', sandboxPath(this.id, `/contexts/${info.id}/restart`), {}));
      } catch (e) {
        this.forget(runtime);
        this.status.textContent = 'restart failed: ' + e.message;
      }
    }
    this.count = 0;
  }
}

class Cell {
  constructor(nb, runtime) {
    this.nb = nb;
    this.running = null; // the AbortController of a run
    this.prompt = el('span', { class: 'prompt' }, '[ ]');
    this.lang = el('select', { class: 'lang', 'aria-label': 'language' },
      ...LANGS.map(([v, label]) => el('option', { value: v, selected: v === runtime }, label)));
    this.code = el('textarea', {
      class: 'code', rows: '2', spellcheck: 'false', autocapitalize: 'off', autocomplete: 'off',
      placeholder: 'code… (Shift+Enter runs)', 'aria-label': 'cell code',
      oninput: () => this.grow(),
      onkeydown: (e) => this.key(e),
    });
    this.runButton = el('button', { type: 'button', class: 'run', onclick: () => (this.running ? this.stop() : this.run()) }, 'Run');
    this.out = el('div', { class: 'out' });
    this.element = el('div', { class: 'cell' },
      el('div', { class: 'cell-head' }, this.prompt, this.lang, el('span', { class: 'spacer' }), this.runButton,
        el('button', { type: 'button', class: 'icon', title: 'Delete cell', 'aria-label': 'delete cell', onclick: () => this.remove() }, '✕')),
      this.code, this.out);
    this.element.cell = this;
  }

  runtime() {
    return this.lang.value;
  }

  focus() {
    this.code.focus();
    return this;
  }

  grow() {
    this.code.style.height = 'auto';
    this.code.style.height = this.code.scrollHeight + 2 + 'px';
  }

  key(e) {
    if (e.key === 'Enter' && e.shiftKey) {
      e.preventDefault();
      this.run();
      this.nb.next(this).focus();
    } else if (e.key === 'Tab' && !e.shiftKey && !e.ctrlKey && !e.metaKey) {
      e.preventDefault();
      this.code.setRangeText('    ', this.code.selectionStart, this.code.selectionEnd, 'end');
      this.grow();
    }
  }

  remove() {
    this.stop();
    if (this.nb.cells.children.length > 1) this.element.remove();
    else {
      this.code.value = '';
      this.out.replaceChildren();
      this.prompt.textContent = '[ ]';
    }
  }

  stop() {
    if (this.running) this.running.abort();
  }

  async run() {
    if (this.running) return;
    const code = this.code.value;
    if (!code.trim()) return;
    const runtime = this.runtime();
    const ac = new AbortController();
    this.running = ac;
    this.element.classList.add('running');
    this.runButton.textContent = 'Stop';
    this.prompt.textContent = '[*]';
    this.out.replaceChildren();
    this.stream = null;
    let ended = false;
    try {
      for (let attempt = 0; ; attempt++) {
        const info = await this.nb.context(runtime);
        try {
          const resp = await request('POST', sandboxPath(this.nb.id, `/contexts/${info.id}/run`), { json: { code }, signal: ac.signal });
          await readNDJSON(resp, (ev) => {
            if (ev.type === 'end' || ev.type === 'failure') ended = true;
            this.event(ev, runtime);
          });
          break;
        } catch (e) {
          // A context closed meanwhile (or reaped with its sandbox's idle
          // time) is made again once.
          if (e instanceof ApiError && e.code === 'context_not_found' && attempt === 0) {
            this.nb.forget(runtime);
            continue;
          }
          throw e;
        }
      }
      if (!ended) this.note('the stream ended without an end event: the connection was cut', 'failure');
    } catch (e) {
      if (ac.signal.aborted) this.note('interrupted', 'note');
      else this.note(e.message, 'failure');
    } finally {
      this.running = null;
      this.element.classList.remove('running');
      this.runButton.textContent = 'Run';
      this.prompt.textContent = `[${++this.nb.count}]`;
    }
  }

  // text appends stream output to the cell, joining consecutive chunks.
  text(kind, bytes) {
    if (!this.stream || this.stream.kind !== kind) {
      const pre = el('pre', { class: kind });
      this.out.append(pre);
      this.stream = { kind, writer: new AnsiWriter(pre), dec: new TextDecoder() };
    }
    this.stream.writer.write(this.stream.dec.decode(bytes, { stream: true }));
  }

  note(message, cls) {
    this.stream = null;
    this.out.append(el('div', { class: cls }, message));
  }

  event(ev, runtime) {
    switch (ev.type) {
      case 'stdout':
      case 'stderr':
        this.text(ev.type, fromBase64(ev.data));
        break;
      case 'result':
        this.stream = null;
        this.out.append(el('div', { class: 'result' + (ev.main ? ' main' : '') }, renderBundle(ev.bundle || {})));
        break;
      case 'error': {
        this.stream = null;
        const box = el('div', { class: 'error' });
        const title = ev.value ? `${ev.name}: ${ev.value}` : ev.name;
        box.append(el('div', { class: 'error-title' }, title));
        if (ev.traceback && ev.traceback.trim() !== title) box.append(ansiPre(ev.traceback, 'traceback'));
        this.out.append(box);
        break;
      }
      case 'end':
        if (this.stream) this.stream.writer.end();
        if (ev.truncated) this.note('an output larger than the server\'s output limit was left out', 'note');
        break;
      case 'failure':
        if (ev.code === 'context_died') {
          this.nb.revive(runtime);
          this.note(ev.error + ' (restarting it: its variables are lost)', 'failure');
        } else if (ev.code === 'context_not_found') {
          this.nb.forget(runtime);
          this.note(ev.error, 'failure');
        } else {
          this.note(ev.error || 'the cell failed', 'failure');
        }
        break;
      default: // ping, and types added later
    }
  }
}
