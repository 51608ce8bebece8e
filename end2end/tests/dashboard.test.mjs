// The dashboard as a user sees it, with replay running: numbers and charts move, and the CSV
// download holds the predictions shown.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { startProduct, openHydrated } from '../harness.mjs';

let product;
let page;
let errors;

before(async () => {
  product = await startProduct({ replayRate: 40, extraArgs: ['--window-secs', '2'] });
  ({ page, errors } = await openHydrated(product, { width: 1280, height: 1100 }, '/dashboard'));
});
after(async () => {
  if (process.exitCode) console.error(product?.logs.join(''));
  await product?.stop();
});

const number = async (selector) => Number((await page.locator(selector).textContent()).replace(/[^\d.]/g, ''));

test('the dashboard numbers and charts move while replay runs', async () => {
  await page.locator('#dash-count').waitFor({ timeout: 30_000 });
  const first = await number('#dash-count');
  await page.waitForFunction((n) => Number(document.querySelector('#dash-count')?.textContent) > n, first, { timeout: 30_000 });
  assert.ok(await number('#dash-count') > first);
  assert.ok(await page.locator('#window-chart rect').count() >= 1);
  assert.ok(await page.locator('#segments .seg').count() >= 4, 'segment breakdown');
  assert.match(await page.locator('#dash-drift').textContent(), /^\d+\.\d{3}$/);
  // The replayed history carries its outcomes: live model quality appears.
  await page.locator('#quality tbody tr').first().waitFor({ timeout: 30_000 });
  assert.ok(await page.locator('#riskiest tbody tr').count() >= 1);
  await page.screenshot({ path: new URL('../../docs/dashboard.png', import.meta.url).pathname, fullPage: true });
});

test('operations endpoints: readiness and Prometheus metrics', async () => {
  const ready = await product.fetch(`${product.url}/readyz`);
  assert.equal(ready.status, 200);
  assert.deepEqual(await ready.json(),
    { broker_reachable: true, model_loaded: true, consumer_assigned: true, failed_tasks: [] });
  const metrics = await (await product.fetch(`${product.url}/metrics`)).text();
  const scored = Number(metrics.match(/^churn_records_scored_total (\d+)$/m)?.[1]);
  assert.ok(scored > 0, metrics);
  assert.match(metrics, /^churn_model_info\{version="m-[0-9a-f]{12}"\} 1$/m);
  assert.match(metrics, /^churn_consumer_lag\{partition="0"\} \d+$/m);
  // What the broker holds, per topic (the harness's broker is external: no data dir size),
  // measured every 15 s: wait for a measurement taken after the replay started.
  let storage = metrics;
  for (let i = 0; i < 25 && !/^churn_topic_records\{topic="costumerchurn"\} [1-9]/m.test(storage); i++) {
    await new Promise((r) => setTimeout(r, 2000));
    storage = await (await product.fetch(`${product.url}/metrics`)).text();
  }
  assert.match(storage, /^churn_topic_records\{topic="costumerchurn"\} [1-9]\d*$/m);
  assert.match(storage, /^churn_broker_data_bytes 0$/m);
});

test('the CSV download contains the predictions shown', async () => {
  const names = await page.locator('#riskiest tbody tr td:nth-child(2)').allTextContents();
  assert.ok(names.length > 0);
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export-5')]);
  const csv = await readFile(await download.path(), 'utf8');
  const lines = csv.trim().split('\n');
  assert.equal(lines[0], 'id,scored_at,name,churn_probability,churn,threshold,model_version,top_factors');
  assert.ok(lines.length > names.length);
  for (const name of names) assert.ok(csv.includes(name), `${name} is in the CSV`);
  assert.deepEqual(errors, []);
});

test('the top bar moves between pages, and the pipeline card counts live without a reload', async () => {
  await page.click('nav a[href="/"]');
  await page.waitForURL(`${product.url}/`);
  await page.waitForFunction(() => document.documentElement.dataset.hydrated === 'true', null, { timeout: 30_000 });
  assert.equal(await page.locator('nav a[aria-current="page"]').textContent(), 'Score');
  await page.locator('.status-card .scored').waitFor({ timeout: 30_000 });
  const scored = await number('.status-card .scored');
  await page.waitForFunction((n) => Number(document.querySelector('.status-card .scored')?.textContent) > n, scored, { timeout: 30_000 });
  await page.click('nav a[href="/dashboard"]');
  await page.locator('#dash-count').waitFor({ timeout: 30_000 });
  assert.equal(await page.locator('nav a[aria-current="page"]').textContent(), 'Dashboard');
  assert.equal((await product.fetch(`${product.url}/no-such-page`)).status, 404);
  assert.deepEqual(errors, []);
});
