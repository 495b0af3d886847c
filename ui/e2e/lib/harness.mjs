// The browser tests' harness: builds the real egressd binary and a fake
// outside world (testdata/fakeup: an HTTPS upstream and an OAuth provider,
// on loopback), runs `egressd serve` on a temporary data dir with loopback
// ports, and drives headless Chromium with playwright-core. Everything
// stops by itself; waits poll with deadlines.
import { spawn, execFileSync } from 'node:child_process';
import { before, after } from 'node:test';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import tls from 'node:tls';
import { chromium } from 'playwright-core';

export const repoRoot = path.resolve(import.meta.dirname, '..', '..', '..');
export const artifacts = path.join(repoRoot, 'ui', 'e2e', 'artifacts');

// poll calls fn until it returns a truthy value, or fails after ms.
export async function poll(what, fn, ms = 15000, every = 50) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? ': ' + last.message : ''}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

// firstLine resolves with the first line a child prints, or fails when it
// exits first or the deadline passes.
function firstLine(child, what, ms = 30000) {
  return new Promise((resolve, reject) => {
    const rl = readline.createInterface({ input: child.stdout });
    const timer = setTimeout(() => reject(new Error(`${what}: no output within ${ms} ms`)), ms);
    rl.once('line', (line) => {
      clearTimeout(timer);
      resolve(line);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited (${code}) before printing`));
    });
  });
}

function build(out, pkg) {
  execFileSync('go', ['build', '-o', out, pkg], { cwd: repoRoot, stdio: ['ignore', 'inherit', 'inherit'] });
  return out;
}

// startStack builds and starts everything a test needs.
export async function startStack() {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'egressd-ui-e2e-'));
  const bin = process.env.EGRESSD_BIN || build(path.join(tmp, 'egressd'), './cmd/egressd');
  const fakeBin = process.env.FAKEUP_BIN || build(path.join(tmp, 'fakeup'), './ui/e2e/testdata/fakeup');
  const children = [];
  const stop = async () => {
    for (const c of children.reverse()) {
      if (c.exitCode !== null || c.signalCode !== null) continue;
      const gone = new Promise((r) => c.once('exit', r));
      c.kill('SIGTERM');
      const t = setTimeout(() => c.kill('SIGKILL'), 5000);
      await gone;
      clearTimeout(t);
    }
    if (!process.env.KEEP_TMP) fs.rmSync(tmp, { recursive: true, force: true });
  };
  try {
    const fake = spawn(fakeBin, ['-dir', tmp], { stdio: ['pipe', 'pipe', 'inherit'] });
    children.push(fake);
    const world = JSON.parse(await firstLine(fake, 'fakeup'));
    const providers = path.join(tmp, 'providers.json');
    fs.writeFileSync(providers, JSON.stringify({ providers: [{
      name: 'acme', display_name: 'Acme ID', auth_url: world.oauth + '/authorize', token_url: world.oauth + '/token',
      scopes: ['read'], allowed_hosts: ['localhost'], refresh: false, pkce: true,
      client_id: 'operator-app', client_secret: 'operator-app-secret',
    }] }));
    const data = path.join(tmp, 'data');
    const log = fs.openSync(path.join(tmp, 'egressd.log'), 'w');
    const srv = spawn(bin, ['serve', '--data-dir', data, '--admin-listen', '127.0.0.1:0', '--proxy-listen', '127.0.0.1:0',
      '--metrics-listen', '127.0.0.1:0', '--allow-private-destinations', '127.0.0.1/32', '--upstream-ca', world.ca,
      '--oauth-providers', providers, '--log-format', 'text', '--log-level', 'warn'], { stdio: ['ignore', 'pipe', log] });
    children.push(srv);
    const keys = JSON.parse(await firstLine(srv, 'egressd serve'));
    const read = (f) => fs.readFileSync(path.join(data, f), 'utf8').trim();
    const admin = 'http://' + (await poll('admin.addr', () => fs.existsSync(path.join(data, 'admin.addr')) && read('admin.addr')));
    const proxyAddr = await poll('proxy.addr', () => fs.existsSync(path.join(data, 'proxy.addr')) && read('proxy.addr'));
    await poll('/healthz', async () => (await fetch(admin + '/healthz')).ok);
    return {
      tmp, admin, proxyAddr, operatorKey: keys.operator_key, defaultKey: keys.api_key,
      upstream: world.https, egressCA: fs.readFileSync(path.join(data, 'ca.pem')),
      logFile: path.join(tmp, 'egressd.log'), stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

// useStack starts one egressd (startStack) and one Chromium (launch)
// before the calling test file's first test, hands them to set, and stops
// both after its last test.
export function useStack(set) {
  let stack;
  let browser;
  before(async () => {
    stack = await startStack();
    browser = await launch();
    set(stack, browser);
  });
  after(async () => {
    if (browser) await browser.close();
    if (stack) await stack.stop();
  });
}

// api calls the admin API; it answers {status, json}.
export async function api(stack, token, method, p, body) {
  const res = await fetch(stack.admin + p, {
    method,
    headers: Object.assign({ Authorization: 'Bearer ' + token }, body === undefined ? {} : { 'Content-Type': 'application/json' }),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch (_) {
    json = null;
  }
  return { status: res.status, json, text };
}

// must is api that fails the test on an answer outside 2xx.
export async function must(stack, token, method, p, body) {
  const r = await api(stack, token, method, p, body);
  if (r.status < 200 || r.status > 299) throw new Error(`${method} ${p}: ${r.status} ${r.text}`);
  return r.json;
}

let tenants = 0;
// newTenant creates a tenant with the operator key: its id and admin key.
export async function newTenant(stack, name) {
  const r = await must(stack, stack.operatorKey, 'POST', '/api/v1/tenants', { name: `${name}-${process.pid}-${++tenants}` });
  return { id: r.tenant.id, name: r.tenant.name, key: r.api_key };
}

// proxied sends one HTTPS request from sandbox sbx (its creation answer)
// through egressd's proxy to the fake upstream: CONNECT, then TLS trusting
// egressd's CA. Answers {status, body, denied}.
export function proxied(stack, sbx, { path: p = '/v1/models', headers = {} } = {}) {
  const [ph, pp] = stack.proxyAddr.split(':');
  const port = stack.upstream.split(':')[1];
  const auth = Buffer.from(`${sbx.id}:${sbx.proxy_token}`).toString('base64');
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('proxied request timed out')), 10000);
    const done = (v, err) => {
      clearTimeout(timer);
      return err ? reject(err) : resolve(v);
    };
    const connect = http.request({ host: ph, port: pp, method: 'CONNECT', path: `localhost:${port}`,
      headers: { Host: `localhost:${port}`, 'Proxy-Authorization': 'Basic ' + auth } });
    connect.on('error', (e) => done(null, e));
    connect.on('connect', (res, socket) => {
      if (res.statusCode !== 200) {
        socket.destroy();
        return done({ status: res.statusCode, body: '', denied: res.headers['x-egress-denied'] || '' });
      }
      // HTTP/1.1 by hand over the TLS socket: one request, then close.
      const sock = tls.connect({ socket, servername: 'localhost', ca: stack.egressCA }, () => {
        const lines = [`GET ${p} HTTP/1.1`, `Host: localhost:${port}`, 'Connection: close'];
        for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
        sock.write(lines.join('\r\n') + '\r\n\r\n');
      });
      let raw = '';
      sock.setEncoding('utf8');
      sock.on('data', (c) => (raw += c));
      sock.on('error', (e) => done(null, e));
      sock.on('end', () => {
        const [head, ...rest] = raw.split('\r\n\r\n');
        const status = Number((/^HTTP\/1\.1 (\d{3})/.exec(head) || [])[1] || 0);
        const denied = (/^x-egress-denied: *(.*)$/im.exec(head) || [])[1] || '';
        done({ status, body: rest.join('\r\n\r\n'), denied: denied.trim() });
      });
    });
    connect.end();
  });
}

// launch starts headless Chromium (Debian's package).
export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking'],
  });
}

// openPage opens a fresh context (its own session storage) and records
// every response body the page received and every console error (a CSP
// violation is one).
export async function openPage(browser, viewport = { width: 1280, height: 800 }) {
  const context = await browser.newContext({ viewport, acceptDownloads: true, reducedMotion: 'reduce' });
  const page = await context.newPage();
  page.setDefaultTimeout(20000); // generous: CI shares two cores
  const bodies = [];
  const errors = [];
  page.on('response', (res) => {
    bodies.push(res.body().then((b) => `${res.url()}\n${b.toString('utf8')}`, () => ''));
  });
  page.on('console', (m) => {
    if (m.type() === 'error' && !/status of 40[0-9]/.test(m.text())) errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(String(e)));
  page.received = async () => (await Promise.all(bodies)).join('\n');
  page.errors = errors;
  return page;
}

// signIn opens the dashboard and signs in with token through the form.
export async function signIn(page, stack, token) {
  await page.goto(stack.admin + '/ui/');
  await page.fill('#signin-token', token);
  await page.click('#signin-form button[type=submit]');
  await page.waitForSelector('#nav:not([hidden])');
}

// withPage runs fn with a page and saves a full-page screenshot to
// artifacts/<name>.png when it fails.
export async function withPage(browser, name, fn, viewport) {
  const page = await openPage(browser, viewport);
  try {
    await fn(page);
    if (page.errors.length) throw new Error('console errors on the page: ' + page.errors.join(' | '));
  } catch (e) {
    fs.mkdirSync(artifacts, { recursive: true });
    const file = path.join(artifacts, name.replace(/[^A-Za-z0-9_-]+/g, '_') + '.png');
    await page.screenshot({ path: file, fullPage: true }).catch(() => {});
    e.message += `\n(screenshot: ${file})`;
    throw e;
  } finally {
    await page.context().close();
  }
}

export const randomValue = (p) => `${p}-${Math.random().toString(36).slice(2)}${Date.now().toString(36)}`;
