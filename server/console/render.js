// Rendering of what sandboxes produce. Nothing from a sandbox is ever
// parsed as HTML in the console's document: text goes in as text nodes,
// images as data: URLs of <img> elements, and HTML only into a sandboxed
// iframe (srcdoc, no allow-same-origin, no scripts) with its own policy.

/** el makes an element: el('div', {class: 'x', onclick: f}, child, 'text'). */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else if (k in e && typeof v !== 'string') e[k] = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

// SGR colour numbers (30–37, 90–97 and their backgrounds) map to classes
// of console.css; 256-colour and RGB codes are dropped, their text kept.
const CSI = /\x1b\[([0-9;:?]*)([@-~])/y;
const OTHER_ESC = /\x1b(?:\][^\x07\x1b]*(?:\x07|\x1b\\)|[()#][0-9A-Za-z]|[@-Z\\-_])/y;

/**
 * AnsiWriter appends terminal text to a <pre>: colours and bold from SGR
 * escape codes become spans, other escape codes are dropped, and a
 * carriage return starts its line again (progress bars).
 */
export class AnsiWriter {
  constructor(pre) {
    this.pre = pre;
    this.style = { fg: 0, bg: 0, bold: false, italic: false, underline: false };
    this.carry = ''; // an escape code cut between two writes
    this.line = []; // the nodes of the current line
  }

  write(text) {
    text = this.carry + text;
    this.carry = '';
    let plain = '';
    let i = 0;
    const flush = () => {
      if (plain) this.emit(plain);
      plain = '';
    };
    while (i < text.length) {
      const c = text[i];
      if (c === '\x1b') {
        CSI.lastIndex = i;
        OTHER_ESC.lastIndex = i;
        let m = CSI.exec(text);
        if (m) {
          flush();
          if (m[2] === 'm') this.sgr(m[1]);
          i = CSI.lastIndex;
          continue;
        }
        m = OTHER_ESC.exec(text);
        if (m) {
          i = OTHER_ESC.lastIndex;
          continue;
        }
        if (text.length - i < 32) { // incomplete: wait for the rest
          flush();
          this.carry = text.slice(i);
          return;
        }
        i++; // a lone ESC
        continue;
      }
      if (c === '\r') {
        if (text[i + 1] === '\n') {
          i++;
          continue;
        }
        if (i + 1 === text.length) { // \r\n may be cut in two writes
          flush();
          this.carry = '\r';
          return;
        }
        flush();
        for (const n of this.line) n.remove();
        this.line = [];
        i++;
        continue;
      }
      plain += c;
      if (c === '\n') {
        flush();
        this.line = [];
      }
      i++;
    }
    flush();
  }

  /** end writes what a cut escape code or carriage return held back. */
  end() {
    const rest = this.carry.replace(/\x1b/g, '').replace(/\r/g, '');
    this.carry = '';
    if (rest) this.emit(rest);
  }

  emit(s) {
    const st = this.style;
    let node;
    if (st.fg || st.bg || st.bold || st.italic || st.underline) {
      const cls = [];
      if (st.fg) cls.push('ansi-fg-' + st.fg);
      if (st.bg) cls.push('ansi-bg-' + st.bg);
      if (st.bold) cls.push('ansi-bold');
      if (st.italic) cls.push('ansi-italic');
      if (st.underline) cls.push('ansi-underline');
      node = el('span', { class: cls.join(' ') }, s);
    } else {
      node = document.createTextNode(s);
    }
    this.pre.append(node);
    if (!s.endsWith('\n')) this.line.push(node);
  }

  sgr(params) {
    const ps = params === '' ? [0] : params.split(/[;:]/).map((p) => parseInt(p || '0', 10));
    const st = this.style;
    for (let k = 0; k < ps.length; k++) {
      const p = ps[k];
      if (p === 0) Object.assign(st, { fg: 0, bg: 0, bold: false, italic: false, underline: false });
      else if (p === 1) st.bold = true;
      else if (p === 3) st.italic = true;
      else if (p === 4) st.underline = true;
      else if (p === 22) st.bold = false;
      else if (p === 23) st.italic = false;
      else if (p === 24) st.underline = false;
      else if ((p >= 30 && p <= 37) || (p >= 90 && p <= 97)) st.fg = p;
      else if (p === 39) st.fg = 0;
      else if ((p >= 40 && p <= 47) || (p >= 100 && p <= 107)) st.bg = p;
      else if (p === 49) st.bg = 0;
      else if (p === 38 || p === 48) k += ps[k + 1] === 5 ? 2 : 4; // 256 colours or RGB: skipped
    }
  }
}

/** ansiPre returns a <pre class=cls> holding text, colours rendered. */
export function ansiPre(text, cls) {
  const pre = el('pre', { class: cls });
  const w = new AnsiWriter(pre);
  w.write(text);
  w.end();
  return pre;
}

function utf8Base64(s) {
  let bin = '';
  for (const b of new TextEncoder().encode(s)) bin += String.fromCharCode(b);
  return btoa(bin);
}

// The frame's own policy, on top of the console's (which it inherits):
// nothing is fetched from anywhere, scripts never run (the sandbox
// attribute already says so), images only as data: URLs.
const FRAME_HEAD = '<!doctype html><html><head><meta charset="utf-8">' +
  '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; style-src \'unsafe-inline\'">' +
  '<style>body{margin:4px;font:13px/1.4 system-ui,sans-serif;color:#1d2430;background:#fff}' +
  'table{border-collapse:collapse}th,td{border:1px solid #d8dde6;padding:3px 8px;text-align:right}' +
  'thead th{background:#eef1f6}tbody tr:nth-child(even){background:#f7f8fb}</style></head><body>';

/**
 * htmlFrame returns a sandboxed iframe showing untrusted html: an opaque
 * origin (no allow-same-origin), no scripts, no forms, no popups.
 */
export function htmlFrame(html) {
  const rows = (html.match(/<tr[\s>]/gi) || []).length;
  const lines = (html.match(/<br|<p[\s>]|<li[\s>]|<h\d/gi) || []).length;
  const height = Math.min(480, Math.max(60, 21 * rows + 22 * lines + 30));
  const frame = el('iframe', {
    class: 'html-output',
    sandbox: '', // the attribute, empty: every restriction on
    referrerpolicy: 'no-referrer',
    title: 'HTML output (sandboxed)',
    srcdoc: FRAME_HEAD + html + '</body></html>',
    height: String(height),
  });
  frame.addEventListener('load', () => { frame.dataset.loaded = '1'; }, { once: true });
  return frame;
}

/**
 * renderBundle returns the element for a display output (a MIME bundle),
 * choosing the richest type the console can show safely.
 */
export function renderBundle(b) {
  if (b['image/png']) return el('img', { class: 'image-output', alt: 'PNG output', src: 'data:image/png;base64,' + b['image/png'] });
  if (b['image/jpeg']) return el('img', { class: 'image-output', alt: 'JPEG output', src: 'data:image/jpeg;base64,' + b['image/jpeg'] });
  if (b['image/svg+xml']) {
    // As an image, an SVG runs no scripts and loads nothing.
    return el('img', { class: 'image-output', alt: 'SVG output', src: 'data:image/svg+xml;base64,' + utf8Base64(b['image/svg+xml']) });
  }
  if (b['text/html']) return htmlFrame(b['text/html']);
  if (b['text/markdown']) return el('pre', { class: 'text-output' }, b['text/markdown']);
  if (b['text/latex']) return el('pre', { class: 'text-output' }, b['text/latex']);
  if (b['application/json'] !== undefined) return el('pre', { class: 'text-output' }, JSON.stringify(b['application/json'], null, 2));
  if (b['text/plain'] !== undefined) return ansiPre(b['text/plain'], 'text-output');
  if (b['application/pdf']) {
    const bytes = Uint8Array.from(atob(b['application/pdf']), (c) => c.charCodeAt(0));
    const url = URL.createObjectURL(new Blob([bytes], { type: 'application/pdf' }));
    return el('a', { class: 'button', href: url, download: 'output.pdf' }, `Download PDF output (${bytes.length} bytes)`);
  }
  if (b['application/javascript']) return el('p', { class: 'note' }, 'JavaScript output: not run by the console.');
  return el('p', { class: 'note' }, 'An output of a type the console does not show: ' + Object.keys(b).join(', '));
}

/** age says how long ago an RFC 3339 time was, shortly ("3m", "2h"). */
export function age(iso) {
  const s = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
  if (s < 60) return Math.floor(s) + 's';
  if (s < 3600) return Math.floor(s / 60) + 'm';
  if (s < 86400) return Math.floor(s / 3600) + 'h';
  return Math.floor(s / 86400) + 'd';
}

/** size says a byte count shortly ("512 B", "3.1 KiB"). */
export function size(n) {
  if (n < 1024) return n + ' B';
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = -1;
  do {
    v /= 1024;
    u++;
  } while (v >= 1024 && u < units.length - 1);
  return v.toFixed(v < 10 ? 1 : 0) + ' ' + units[u];
}
