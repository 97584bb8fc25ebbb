// The server's v1 API as the console uses it: every request carries the
// token (Authorization: Bearer, never a cookie); a 401 calls the handler
// set with onUnauthorized, which asks for the token again.

const TOKEN_KEY = 'compute.token';

/** V1 is the prefix of the server's v1 endpoints. */
export const V1 = '/api/compute/v1';

/** token returns the token the user gave in this tab ('' for none). */
export function token() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  } catch {
    return '';
  }
}

/** setToken keeps t for this tab (sessionStorage); '' forgets it. */
export function setToken(t) {
  try {
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage refused (a private mode): the token lasts until reload.
  }
}

/** ApiError is a failed request: its HTTP status and the server's code. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

let unauthorized = () => {};

/** onUnauthorized sets what a 401 reply does (the app shows the token form). */
export function onUnauthorized(fn) {
  unauthorized = fn;
}

/**
 * request sends method path with the token and returns the Response, or
 * throws an ApiError carrying the server's message for a reply that is
 * not 2xx. opts: json (a value sent as JSON), body, signal.
 */
export async function request(method, path, opts = {}) {
  const headers = new Headers();
  const t = token();
  if (t) headers.set('Authorization', 'Bearer ' + t);
  let body = opts.body;
  if (opts.json !== undefined) {
    headers.set('Content-Type', 'application/json');
    body = JSON.stringify(opts.json);
  }
  const resp = await fetch(path, {
    method, headers, body, signal: opts.signal, credentials: 'omit', cache: 'no-store',
  });
  if (resp.ok) return resp;
  let message = `${method} ${path}: HTTP ${resp.status}`;
  let code = '';
  try {
    const e = await resp.json();
    if (e && e.error) message = e.error;
    if (e && e.code) code = e.code;
  } catch {
    // Not JSON (a proxy's page): keep the status line.
  }
  const err = new ApiError(resp.status, code, message);
  if (resp.status === 401) unauthorized(err);
  throw err;
}

/** getJSON returns the JSON reply to GET path. */
export async function getJSON(path, opts) {
  return (await request('GET', path, opts)).json();
}

/** sendJSON sends value as JSON and returns the JSON reply (null for 204). */
export async function sendJSON(method, path, value, opts = {}) {
  const resp = await request(method, path, { ...opts, json: value });
  return resp.status === 204 ? null : resp.json();
}

/** sandboxPath is the v1 path of sandbox id, plus rest. */
export function sandboxPath(id, rest = '') {
  return `${V1}/sandboxes/${encodeURIComponent(id)}${rest}`;
}

/** readNDJSON calls onEvent with each JSON line of resp as it arrives. */
export async function readNDJSON(resp, onEvent) {
  const reader = resp.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (line) onEvent(JSON.parse(line));
    }
  }
  buf += dec.decode();
  if (buf.trim()) onEvent(JSON.parse(buf));
}

/** fromBase64 decodes standard base64 into bytes. */
export function fromBase64(s) {
  const bin = atob(s || '');
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** toBase64URL encodes bytes as base64url without padding. */
export function toBase64URL(bytes) {
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}
