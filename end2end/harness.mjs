// Starts the real product for a test: the embedded broker (Nisshi, durable SQLite storage, so
// the test can stop and restart it), `churn serve` pointed at it with a generated data set and a
// freshly trained model, on free ports; and a headless Chromium to drive it.
import { spawn, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const churn = process.env.CHURN_BIN;
if (!churn) throw new Error('CHURN_BIN must point to the churn binary (scripts/test.sh sets it)');
const nisshi = process.env.CHURN_NISSHI ?? join(process.env.CHURN_TOOLS ?? '', 'bin', 'nisshi');
mkdirSync(new URL('./test-results', import.meta.url), { recursive: true });

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const bindable = (port) => new Promise((resolve) => {
  const server = createServer();
  server.unref();
  server.on('error', () => resolve(false));
  server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
});

/// A free port below the kernel's ephemeral range (32768 and up), which outgoing connections draw
/// from: one of those could take a port the kernel just handed out before our server binds it.
export async function freePort() {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (await bindable(port)) return port;
  }
}

async function until(what, timeoutMs, check) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await sleep(200);
  }
  throw new Error(`timed out waiting for ${what}`);
}

const portOpen = (port) => new Promise((resolve) => {
  const socket = connect(port, '127.0.0.1');
  socket.once('connect', () => { socket.destroy(); resolve(true); });
  socket.once('error', () => resolve(false));
});

function stopProcess(child, timeoutMs = 10_000) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  const exited = new Promise((r) => child.once('exit', r));
  try { process.kill(-child.pid, 'SIGTERM'); } catch { /* gone */ }
  const timer = setTimeout(() => { try { process.kill(-child.pid, 'SIGKILL'); } catch { } }, timeoutMs);
  return exited.finally(() => clearTimeout(timer));
}

export async function startProduct({ replayRate = 20, extraArgs = [] } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'churn-e2e-'));
  const csv = join(dir, 'customers.csv');
  const model = join(dir, 'model.json');
  execFileSync(churn, ['generate', '--rows', '400', '--output', csv]);
  execFileSync(churn, ['train', '--input', csv, '--output', model]);
  // Accounts before the first start (so serve creates no admin of its own): one per role, and
  // an admin API token for the tests' own requests.
  for (const [user, role] of Object.entries(USERS)) {
    execFileSync(churn, ['users', 'add', user, '--role', role, '--password-stdin', '--data-dir', dir],
      { input: `${PASSWORD}\n` });
  }
  const token = execFileSync(churn, ['tokens', 'create', '--role', 'admin', '--name', 'e2e', '--data-dir', dir])
    .toString().trim().split('\n').pop().trim();
  const port = await freePort();
  let brokerPort;
  do brokerPort = await freePort(); while (brokerPort === port);
  const logs = [];
  const keep = (child, name) => {
    child.stdout.on('data', (d) => logs.push(`[${name}] ${d}`));
    child.stderr.on('data', (d) => logs.push(`[${name}] ${d}`));
    return child;
  };
  const listener = `tcp://127.0.0.1:${brokerPort}`;
  let broker;
  const startBroker = async () => {
    broker = keep(spawn(nisshi, ['broker', '--listener-url', listener, '--advertised-listener-url', listener,
      '--storage-engine', 'sqlite://broker.db', '--group-initial-rebalance-delay', '500ms'],
    { cwd: dir, detached: true, stdio: ['ignore', 'pipe', 'pipe'] }), 'broker');
    await until('the broker', 30_000, () => portOpen(brokerPort));
  };
  const stopBroker = async () => {
    await stopProcess(broker);
    await until('the broker port to close', 10_000, async () => !(await portOpen(brokerPort)));
  };
  await startBroker();
  const serveArgs = [
    'serve', '--addr', `127.0.0.1:${port}`, '--brokers', `127.0.0.1:${brokerPort}`,
    '--data-dir', dir, '--model', model, '--replay', csv, '--replay-rate', String(replayRate), '--reply-timeout', '8',
    ...extraArgs,
  ];
  const startServer = () => keep(spawn(churn, serveArgs,
    { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } }), 'serve');
  let server = startServer();
  const url = `http://127.0.0.1:${port}`;
  try {
    await until(`${url}/healthz`, 60_000, async () => (await fetch(`${url}/healthz`)).ok);
  } catch (e) {
    await stopProcess(server);
    await stopProcess(broker);
    throw new Error(`${e.message}\n${logs.join('')}`);
  }
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-quic', '--no-first-run'],
  });
  const restartServer = async () => {
    await stopProcess(server);
    server = startServer();
    await until(`${url}/healthz`, 60_000, async () => (await fetch(`${url}/healthz`)).ok);
  };
  return {
    url, dir, logs, browser, startBroker, stopBroker, brokerPort, restartServer, token,
    /// `fetch` as a program with an admin API token.
    fetch: (target, init = {}) => fetch(target, {
      ...init, headers: { authorization: `Bearer ${token}`, ...(init.headers ?? {}) },
    }),
    async stop() {
      await browser.close().catch(() => {});
      await stopProcess(server);
      await stopProcess(broker);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/// One account per role, made before the server starts; all share the test password.
export const USERS = { 'e2e-admin': 'admin', 'e2e-analyst': 'analyst', 'e2e-viewer': 'viewer' };
export const PASSWORD = 'e2e-password-123';

/// Signs `page` in through the sign-in page.
export async function signIn(product, page, user = 'e2e-admin', password = PASSWORD) {
  await page.goto(`${product.url}/login`);
  await page.fill('#login-user', user);
  await page.fill('#login-password', password);
  await Promise.all([page.waitForURL((u) => !u.pathname.startsWith('/login')), page.click('#login-submit')]);
}

/// A session cookie for `user`, from the sign-in form posted as the browser would.
export async function sessionCookie(product, user = 'e2e-admin') {
  const response = await fetch(`${product.url}/login`, {
    method: 'POST', redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: product.url },
    body: new URLSearchParams({ user, password: PASSWORD, next: '/' }),
  });
  const cookie = response.headers.get('set-cookie') ?? '';
  const value = cookie.match(/churn_session=([^;]+)/)?.[1];
  if (!value) throw new Error(`no session for ${user}: ${response.status}`);
  return { name: 'churn_session', value, url: product.url };
}

/// Opens the page, signed in as `user`, and waits until the WASM bundle has hydrated it. Any
/// Content-Security-Policy violation (a script or style the policy blocks) is an error.
export async function openHydrated(product, viewport, path = '/', user = 'e2e-admin') {
  const page = await product.browser.newPage(viewport ? { viewport } : {});
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (/Content.Security.Policy/i.test(m.text())) errors.push(m.text()); });
  await signIn(product, page, user);
  await page.goto(product.url + path);
  await page.waitForFunction(() => document.documentElement.dataset.hydrated === 'true', null, { timeout: 30_000 });
  return { page, errors };
}
