// The in-sandbox half of a Node code context (package interpreter).
//
// Started as `node -e <this source>`, it speaks the same protocol as
// python.py on its stdin/stdout (JSON lines; see interpreter.go). Node
// cannot dup file descriptors, so the protocol is kept away from user code
// with two processes:
//   - this one, the relay, owns stdin/stdout and runs no user code;
//   - a child (the same source, argument "child") runs the cells. Its fds
//     0/1/2 are /dev/null and two pipes the relay reads and forwards as
//     stream messages, so whatever user code (or a subprocess of it) writes
//     there cannot break the framing. fd 3 carries the child's messages to
//     the relay, fd 4 requests to the child, fd 5 interrupts.
// A result must reach the host after the output printed before it: before
// each message the child writes a numbered marker (with a random nonce)
// into its stdout and stderr, and the relay forwards the message only once
// it has read both markers.
//
// Cells are evaluated with the V8 inspector's Runtime.evaluate in REPL mode
// (what a browser console does): top-level await, let/const that survive
// and may be declared again, the completion value of the last statement.
// An interrupt reaches a worker thread in the child, which asks the main
// thread to give up a pending await; if the main thread is busy running
// JavaScript (an endless loop) the worker stops it with
// Runtime.terminateExecution over its own inspector session. Either way the
// context's state survives.
'use strict';

const ROLE = process.argv[process.argv.length - 1] === 'child' ? 'child' : 'relay';
const MARK = 'csdk:';

if (ROLE === 'relay') relay(); else child();

function relay() {
  const { spawn } = require('child_process');
  const crypto = require('crypto');
  const nonce = crypto.randomBytes(12).toString('hex');
  const prefix = Buffer.from('\0' + MARK + nonce + ':');
  const env = Object.assign({}, process.env, { CSDK_NONCE: nonce });
  const ch = spawn(process.execPath, [...process.execArgv, 'child'], {
    stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe', 'pipe'], env,
  });
  const toChild = ch.stdio[4];
  const intr = ch.stdio[5];
  toChild.on('error', () => {});
  intr.on('error', () => {});
  let cell = null; // id of the running cell
  const queue = []; // child messages waiting for their markers

  // out writes to the host; while the host does not keep up, the child's
  // output is not read either, so a cell printing forever waits for the
  // host rather than filling this process's memory.
  let paused = false;
  function out(msg) {
    if (!process.stdout.write(JSON.stringify(msg) + '\n') && !paused) {
      paused = true;
      ch.stdout.pause();
      ch.stderr.pause();
      process.stdout.once('drain', () => {
        paused = false;
        ch.stdout.resume();
        ch.stderr.resume();
      });
    }
  }

  class Demux {
    constructor(name) { this.name = name; this.seen = 0; this.hold = null; }
    push(chunk) {
      let data = this.hold ? Buffer.concat([this.hold, chunk]) : chunk;
      this.hold = null;
      for (;;) {
        const i = data.indexOf(prefix);
        if (i < 0) break;
        const j = data.indexOf(0, i + prefix.length);
        if (j < 0) { // a marker cut in two: wait for the rest
          this.forward(data.subarray(0, i));
          this.hold = Buffer.from(data.subarray(i));
          return;
        }
        this.forward(data.subarray(0, i));
        this.seen = Number(data.subarray(i + prefix.length, j).toString());
        data = data.subarray(j + 1);
        pump();
      }
      // Keep back a tail that may be the start of a marker.
      let k = Math.min(prefix.length - 1, data.length);
      for (; k > 0; k--) {
        if (data.subarray(data.length - k).equals(prefix.subarray(0, k))) break;
      }
      this.forward(data.subarray(0, data.length - k));
      if (k > 0) this.hold = Buffer.from(data.subarray(data.length - k));
    }
    forward(b) {
      if (b.length && cell !== null) {
        out({ type: 'stream', id: cell, name: this.name, data: b.toString('base64') });
      }
    }
  }
  const dOut = new Demux('stdout');
  const dErr = new Demux('stderr');
  ch.stdout.on('data', (c) => dOut.push(c));
  ch.stderr.on('data', (c) => dErr.push(c));

  function pump() {
    while (queue.length) {
      const m = queue[0];
      const seq = m.seq || 0;
      if ((m.mo && dOut.seen < seq) || (m.me && dErr.seen < seq)) return;
      queue.shift();
      delete m.seq; delete m.mo; delete m.me;
      if (m.type === 'end' && m.id === cell) cell = null;
      out(m);
    }
  }

  let cbuf = '';
  ch.stdio[3].setEncoding('utf8');
  ch.stdio[3].on('data', (s) => {
    cbuf += s;
    let i;
    while ((i = cbuf.indexOf('\n')) >= 0) {
      const line = cbuf.slice(0, i);
      cbuf = cbuf.slice(i + 1);
      try { queue.push(JSON.parse(line)); } catch (e) { /* not ours */ }
    }
    pump();
  });

  let exited = false;
  ch.on('exit', (code, signal) => {
    exited = true;
    // Give the pipes a moment to deliver what the child wrote last.
    setTimeout(() => {
      out({ type: 'exit', code, signal });
      process.exit(0);
    }, 20);
  });
  ch.on('error', (e) => {
    out({ type: 'fatal', message: 'cannot start node: ' + e.message });
    process.exit(1);
  });

  let ibuf = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (s) => {
    ibuf += s;
    let i;
    while ((i = ibuf.indexOf('\n')) >= 0) {
      const line = ibuf.slice(0, i);
      ibuf = ibuf.slice(i + 1);
      let msg;
      try { msg = JSON.parse(line); } catch (e) { continue; }
      if (msg.type === 'execute') {
        cell = msg.id;
        toChild.write(line + '\n');
      } else if (msg.type === 'interrupt') {
        if (msg.id === cell && cell !== null) intr.write(String(msg.id) + '\n');
      } else if (msg.type === 'shutdown') {
        // Now, even while a cell runs: the host is done with this context.
        if (!exited) ch.kill('SIGKILL');
      }
    }
  });
  process.stdin.on('end', () => {
    if (!exited) ch.kill('SIGKILL');
    process.exit(0);
  });
}

function child() {
  const fs = require('fs');
  const net = require('net');
  const util = require('util');
  const inspector = require('inspector');
  const { Worker } = require('worker_threads');
  const nonce = process.env.CSDK_NONCE || '';
  delete process.env.CSDK_NONCE;

  // What user code sees as globals, as in `node -e`.
  globalThis.require = require;
  globalThis.module = module;
  globalThis.exports = module.exports;
  globalThis.__filename = '[cell]';
  globalThis.__dirname = process.cwd();
  // Code evaluated through the inspector has no dynamic import() of its
  // own; execute() rewrites import(...) to this, which has ours.
  Object.defineProperty(globalThis, '__csdk_import', { value: (s, o) => import(s, o) });

  const msgs = new net.Socket({ fd: 3, readable: false, writable: true });
  msgs.on('error', () => process.exit(1));
  const ino = [1, 2].map((fd) => { try { return fs.fstatSync(fd).ino; } catch (e) { return -1; } });
  let seq = 0;
  const sleeper = new Int32Array(new SharedArrayBuffer(4));

  function writeAll(fd, s) {
    const b = Buffer.from(s);
    let off = 0;
    while (off < b.length) {
      try {
        off += fs.writeSync(fd, b, off);
      } catch (e) {
        if (e.code !== 'EAGAIN') throw e;
        Atomics.wait(sleeper, 0, 0, 1);
      }
    }
  }

  // marker writes the next marker to fds 1 and 2, where they are still the
  // pipes to the relay (user code may have closed or replaced them).
  function marker() {
    seq++;
    const ok = [false, false];
    for (const fd of [1, 2]) {
      try {
        if (fs.fstatSync(fd).ino !== ino[fd - 1]) continue;
        writeAll(fd, '\0' + MARK + nonce + ':' + seq + '\0');
        ok[fd - 1] = true;
      } catch (e) { /* closed: nothing to wait for */ }
    }
    return { seq, mo: ok[0], me: ok[1] };
  }

  // flushed resolves once what user code wrote to stream has reached the
  // pipe: a write to a full pipe is queued in the process, and the marker
  // must not overtake it.
  function flushed(stream) {
    return new Promise((resolve) => {
      if (!stream || stream.destroyed || !stream.writableLength) return resolve();
      const t = setTimeout(resolve, 10000); // a stream that never drains
      try {
        stream.write('', () => { clearTimeout(t); resolve(); });
      } catch (e) {
        clearTimeout(t);
        resolve();
      }
    });
  }

  let sending = Promise.resolve();
  function send(list) {
    sending = sending.then(async () => {
      if (process.stdout.writableLength || process.stderr.writableLength) {
        await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
      }
      const m = marker();
      let s = '';
      for (const msg of list) s += JSON.stringify(Object.assign(msg, m)) + '\n';
      msgs.write(s);
    });
  }

  process.on('uncaughtException', (e) => {
    try { process.stderr.write('Uncaught ' + util.inspect(e) + '\n'); } catch (x) { /* ignore */ }
  });
  process.on('unhandledRejection', (r) => {
    try { process.stderr.write('Unhandled rejection: ' + util.inspect(r) + '\n'); } catch (x) { /* ignore */ }
  });

  const session = new inspector.Session();
  session.connect();
  // Else Node prints "Waiting for the debugger to disconnect..." at exit.
  process.on('exit', () => { try { session.disconnect(); } catch (e) { /* ignore */ } });
  const STASH = Symbol.for('csdk.stash');

  // value turns a RemoteObject back into the JavaScript value it stands for.
  function value(ro) {
    if (!ro) return undefined;
    if (ro.objectId) {
      session.post('Runtime.callFunctionOn', {
        objectId: ro.objectId,
        functionDeclaration: 'function(v) { globalThis[Symbol.for("csdk.stash")] = v; }',
        arguments: [{ objectId: ro.objectId }],
      }, () => {});
      const v = globalThis[STASH];
      delete globalThis[STASH];
      return v;
    }
    if ('unserializableValue' in ro) {
      const u = ro.unserializableValue;
      return ro.type === 'bigint' ? BigInt(u.slice(0, -1)) : Number(u);
    }
    return ro.value;
  }

  // Shared with the worker: [0] the running cell, [1] the last interrupt
  // the main thread took in, [2] the last interrupt asked for.
  const state = new Int32Array(new SharedArrayBuffer(12));
  const worker = new Worker(`
    const inspector = require('inspector');
    const net = require('net');
    const { parentPort, workerData } = require('worker_threads');
    const state = workerData.state;
    const s = new inspector.Session();
    s.connectToMainThread();
    const intr = new net.Socket({ fd: 5, readable: true, writable: false });
    intr.on('error', () => {});
    let buf = '';
    intr.setEncoding('utf8');
    intr.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\\n')) >= 0) {
        const id = Number(buf.slice(0, i));
        buf = buf.slice(i + 1);
        // A cell that has not started yet is skipped as it starts: the
        // main thread reads [2] after setting [0], this reads [0] after
        // setting [2], so one of the two sees the other.
        Atomics.store(state, 2, id);
        if (Atomics.load(state, 0) !== id) continue;
        parentPort.postMessage(id);
        // A main thread that does not take the message in is running
        // JavaScript: stop that.
        setTimeout(() => {
          if (Atomics.load(state, 0) === id && Atomics.load(state, 1) !== id) {
            s.post('Runtime.terminateExecution', () => {});
          }
        }, 50);
      }
    });
  `, { eval: true, workerData: { state } });
  worker.unref();
  worker.on('error', (e) => process.stderr.write('interrupt worker: ' + e.message + '\n'));

  let cur = null;

  function cleanStack(stack) {
    const lines = String(stack).split('\n');
    const i = lines.findIndex((l) => /^\s+at .*(node:inspector|\[eval\])/.test(l));
    return (i < 0 ? lines : lines.slice(0, i)).join('\n');
  }

  function errorOf(e) {
    if (e !== null && typeof e === 'object' && typeof e.stack === 'string') {
      let name = 'Error';
      let message = '';
      try { name = String(e.name); message = String(e.message); } catch (x) { /* ignore */ }
      return { name, value: message, traceback: cleanStack(e.stack) };
    }
    const s = util.inspect(e);
    return { name: 'Uncaught', value: s, traceback: 'Uncaught ' + s };
  }

  function finish(c, err, val, hasVal) {
    if (c.done) return;
    c.done = true;
    Atomics.store(state, 0, 0);
    const out = [];
    if (hasVal && val !== undefined) {
      let text;
      try { text = util.inspect(val); } catch (e) { text = String(e); }
      out.push({ type: 'result', id: c.id, main: true, data: { 'text/plain': text } });
    }
    if (err) out.push(Object.assign({ type: 'error', id: c.id }, err));
    out.push({ type: 'end', id: c.id });
    send(out);
    session.post('Runtime.releaseObjectGroup', { objectGroup: c.group }, () => {});
    if (cur === c) cur = null;
  }

  const INTERRUPTED = { name: 'Interrupted', value: 'Script execution interrupted.', traceback: '' };

  worker.on('message', (id) => {
    Atomics.store(state, 1, id);
    if (cur && cur.id === id) finish(cur, INTERRUPTED);
  });

  function execute(msg) {
    const c = { id: msg.id, group: 'cell' + msg.id, done: false };
    cur = c;
    let code = String(msg.code || '');
    // As the Node REPL does: a cell that is an object literal is not a block.
    if (/^\s*\{/.test(code) && !/;\s*$/.test(code)) {
      try {
        new (require('vm').Script)('(' + code + '\n)');
        code = '(' + code + '\n)';
      } catch (e) { /* a block after all */ }
    }
    if (code.includes('import')) code = code.replace(/(^|[^.\w$])import\s*\(/g, '$1__csdk_import(');
    Atomics.store(state, 0, c.id);
    if (Atomics.load(state, 2) === c.id) return finish(c, INTERRUPTED);
    session.post('Runtime.evaluate', {
      expression: code, replMode: true, awaitPromise: true, objectGroup: c.group,
    }, (err, r) => {
      if (c.done) return;
      if (err) return finish(c, /terminated/i.test(err.message) ? INTERRUPTED : { name: 'Error', value: err.message, traceback: '' });
      if (r.exceptionDetails) {
        const d = r.exceptionDetails;
        const e = d.exception ? value(d.exception) : undefined;
        return finish(c, e === undefined && !d.exception
          ? { name: 'Error', value: d.text, traceback: d.text } : errorOf(e));
      }
      finish(c, null, value(r.result), true);
    });
  }

  const req = new net.Socket({ fd: 4, readable: true, writable: false });
  let rbuf = '';
  req.setEncoding('utf8');
  req.on('data', (s) => {
    rbuf += s;
    let i;
    while ((i = rbuf.indexOf('\n')) >= 0) {
      const line = rbuf.slice(0, i);
      rbuf = rbuf.slice(i + 1);
      let msg;
      try { msg = JSON.parse(line); } catch (e) { continue; }
      if (msg.type === 'execute') execute(msg);
    }
  });
  req.on('end', () => process.exit(0));
  req.on('error', () => process.exit(1));

  send([{ type: 'ready', runtime: 'node', version: process.versions.node, rich: false, mode: 'node', pid: process.pid }]);
}
