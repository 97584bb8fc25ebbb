// The terminal: xterm.js over the server's WebSocket endpoint
// (GET /api/compute/v1/sandboxes/{id}/terminal, subprotocol
// compute.terminal.v1). Binary frames carry bytes both ways; the page
// sends {"type":"resize"} when the element changes size; the server's
// last text frame says how the program ended. Browsers cannot set headers
// on a WebSocket, so the token travels as the subprotocol
// "bearer.<base64url(token)>", which the server never echoes back.

import { FitAddon } from './vendor/xterm/addon-fit.mjs';
import { Terminal } from './vendor/xterm/xterm.mjs';
import { ApiError, request, sandboxPath, toBase64URL, token } from './api.js';
import { el } from './render.js';

const PROTOCOL = 'compute.terminal.v1';

export class TerminalPane {
  constructor(sandboxId) {
    this.id = sandboxId;
    this.state = el('span', { class: 'muted', id: 'terminal-state' }, 'connecting…');
    this.again = el('button', { type: 'button', hidden: true, onclick: () => this.connect(true) }, 'New terminal');
    this.screen = el('div', { class: 'terminal-screen', id: 'terminal' });
    this.element = el('section', { class: 'panel terminal' },
      el('div', { class: 'panel-head' }, el('h2', {}, 'Terminal'), this.state, el('span', { class: 'spacer' }), this.again),
      this.screen);
    this.ws = null;
    this.term = null;
    this.observer = null;
  }

  setState(state, text) {
    this.screen.dataset.state = state;
    this.state.textContent = text;
  }

  /** start opens the terminal once the element is in the document. */
  start() {
    this.term = new Terminal({
      cursorBlink: true,
      fontSize: 13,
      fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
      theme: { background: '#141a23', foreground: '#dfe6ee', cursor: '#7cc4ff' },
      scrollback: 5000,
    });
    this.fit = new FitAddon();
    this.term.loadAddon(this.fit);
    this.term.open(this.screen);
    this.fitNow();
    this.screen.dataset.rows = this.term.rows;
    this.screen.dataset.cols = this.term.cols;
    const enc = new TextEncoder();
    this.term.onData((d) => this.send(enc.encode(d)));
    this.term.onBinary((d) => this.send(Uint8Array.from(d, (c) => c.charCodeAt(0) & 0xff)));
    this.term.onResize(({ rows, cols }) => {
      this.screen.dataset.rows = rows;
      this.screen.dataset.cols = cols;
      if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ type: 'resize', rows, cols }));
    });
    let pending = false;
    this.observer = new ResizeObserver(() => {
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => {
        pending = false;
        this.fitNow();
      });
    });
    this.observer.observe(this.screen);
    this.connect();
  }

  fitNow() {
    if (!this.term || !this.screen.isConnected || this.screen.clientWidth === 0) return;
    try {
      this.fit.fit();
    } catch {
      // Not laid out yet: the observer fits it once it is.
    }
  }

  send(bytes) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(bytes);
  }

  /**
   * connect opens a terminal; focus says to type into it once open (when
   * the user asked for it, never on the page's load: that would take the
   * keyboard from the cell being typed in).
   */
  connect(focus = false) {
    this.again.hidden = true;
    this.setState('connecting', 'connecting…');
    const q = new URLSearchParams({ rows: String(this.term.rows), cols: String(this.term.cols) });
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const url = `${scheme}//${location.host}${sandboxPath(this.id, '/terminal')}?${q}`;
    const protocols = [PROTOCOL];
    const t = token();
    if (t) protocols.push('bearer.' + toBase64URL(new TextEncoder().encode(t)));
    const ws = new WebSocket(url, protocols);
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    let opened = false;
    let ended = false;
    ws.onopen = () => {
      opened = true;
      this.setState('open', 'connected');
      if (focus) this.term.focus();
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data !== 'string') {
        this.term.write(new Uint8Array(ev.data));
        return;
      }
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (msg.type === 'exit') {
        ended = true;
        this.term.write(`\r\n\x1b[2m[exited with code ${msg.exitCode}]\x1b[0m\r\n`);
        this.setState('exited', `exited with code ${msg.exitCode}`);
      } else if (msg.type === 'error') {
        ended = true;
        this.term.write(`\r\n\x1b[31m[${msg.error}]\x1b[0m\r\n`);
        this.setState('error', msg.error);
      }
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.again.hidden = false;
      if (!opened) this.explain();
      else if (!ended) {
        this.term.write('\r\n\x1b[2m[disconnected]\x1b[0m\r\n');
        this.setState('closed', 'disconnected');
      }
    };
  }

  // explain says why a WebSocket could not open. The browser does not
  // show the server's reply to the handshake, so ask the API about the
  // sandbox: gone, a token refused, or else a refusal the server's log
  // explains (a provider without terminals answers 501 there).
  async explain() {
    let message = 'could not open a terminal: the server refused it (a provider without terminals does; its log says why)';
    try {
      await request('GET', sandboxPath(this.id));
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return; // the token form is up
      message = 'could not open a terminal: ' + e.message;
    }
    this.term.write(`\x1b[31m[${message}]\x1b[0m\r\n`);
    this.setState('error', message);
  }

  /** dispose hangs up and frees the terminal. */
  dispose() {
    if (this.observer) this.observer.disconnect();
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000, 'console closed');
    if (this.term) this.term.dispose();
  }
}
