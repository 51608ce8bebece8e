// Starts the real product for a test: `churn serve` with its embedded broker, a generated data
// set and a freshly trained model, on free ports; and a headless Chromium to drive it.
import { spawn, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const churn = process.env.CHURN_BIN;
mkdirSync(new URL('./test-results', import.meta.url), { recursive: true });
if (!churn) throw new Error('CHURN_BIN must point to the churn binary (scripts/test.sh sets it)');

export async function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function waitFor(url, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const response = await fetch(url);
      if (response.ok) return;
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${url} did not come up within ${timeoutMs} ms`);
}

export async function startProduct({ replayRate = 20 } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'churn-e2e-'));
  const csv = join(dir, 'customers.csv');
  const model = join(dir, 'model.json');
  execFileSync(churn, ['generate', '--rows', '400', '--output', csv]);
  execFileSync(churn, ['train', '--input', csv, '--output', model]);
  const [port, brokerPort] = [await freePort(), await freePort()];
  const logs = [];
  const server = spawn(churn, [
    'serve', '--addr', `127.0.0.1:${port}`, '--broker-port', String(brokerPort), '--data-dir', dir,
    '--model', model, '--replay', csv, '--replay-rate', String(replayRate),
  ], { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
  server.stdout.on('data', (d) => logs.push(String(d)));
  server.stderr.on('data', (d) => logs.push(String(d)));
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor(`${url}/healthz`, 60_000);
  } catch (e) {
    server.kill('SIGKILL');
    throw new Error(`${e.message}\n${logs.join('')}`);
  }
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-quic', '--no-first-run'],
  });
  return {
    url, dir, logs, browser,
    async stop() {
      await browser.close().catch(() => {});
      // SIGTERM lets `churn serve` stop its broker; the group kill is the backstop.
      const exited = new Promise((r) => server.once('exit', r));
      try { process.kill(-server.pid, 'SIGTERM'); } catch { /* already gone */ }
      const timer = setTimeout(() => { try { process.kill(-server.pid, 'SIGKILL'); } catch { } }, 10_000);
      await exited;
      clearTimeout(timer);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/// Opens the page and waits until the WASM bundle has hydrated it.
export async function openHydrated(product) {
  const page = await product.browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(product.url);
  await page.waitForFunction(() => document.documentElement.dataset.hydrated === 'true', null, { timeout: 30_000 });
  return { page, errors };
}
