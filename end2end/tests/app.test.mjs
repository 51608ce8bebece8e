// The web app as a user sees it: real Chromium, real server, real broker, real scorer.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startProduct, openHydrated, sessionCookie, signIn, sleep } from '../harness.mjs';

let product;
let page;
let errors;
const predictStatuses = [];
let predictUrl;

before(async () => {
  product = await startProduct({ extraArgs: ['--max-pending', '20'] });
  ({ page, errors } = await openHydrated(product, { width: 1280, height: 1000 }));
  page.on('response', (r) => {
    if (r.url().includes('/api/predict')) {
      predictStatuses.push(r.status());
      predictUrl = r.url();
    }
  });
});
after(async () => {
  if (process.exitCode) console.error(product?.logs.join(''));
  await product?.stop();
});

const text = (selector) => page.locator(selector).textContent();

test('an invalid field shows its error and blocks submit, with the reason', async () => {
  await page.fill('#field-age', '-3');
  await page.locator('#field-age').blur();
  const error = page.locator('[data-field="Age"] .field-error');
  await error.waitFor();
  assert.match(await error.textContent(), /between 16 and 110/);
  assert.equal(await page.locator('#submit').isDisabled(), true);
  assert.match(await text('#submit-why'), /Age/);
});

test('a sample customer fills the form and a submission returns a prediction through Kafka', async () => {
  await page.click('#sample');
  await page.waitForFunction(() => document.querySelector('#field-names').value !== '');
  assert.equal(await page.locator('#submit').isDisabled(), false, await text('#submit-why'));
  await page.locator('#field-names').fill('Ada Lovelace');
  await page.locator('#field-names').press('Enter'); // keyboard submit
  await page.locator('#probability').waitFor({ timeout: 20_000 });
  assert.match(await text('#probability'), /^\d+(\.\d)?%$/);
  assert.match(await text('#model-version'), /^m-[0-9a-f]{12}$/);
  assert.match(await text('#round-trip'), /^\d+ ms$/);
  assert.ok(await page.locator('.factors li').count() >= 1);
});

test('changing a what-if slider moves the probability through the same path', async () => {
  const before = await text('#probability');
  const slider = page.locator('#what-if-num_sites');
  await slider.evaluate((el) => { el.value = '25'; el.dispatchEvent(new Event('change', { bubbles: true })); });
  await page.waitForFunction(() => /Churn probability .* \(was /.test(document.querySelector('#what-if-result').textContent), null, { timeout: 20_000 });
  const result = await text('#what-if-result');
  assert.ok(result.includes(`(was ${before})`), result);
  assert.ok(!result.startsWith(`Churn probability ${before}`), `25 sites should change the risk: ${result}`);
});

test('the live feed grows while replay runs', async () => {
  await page.waitForFunction(() => document.querySelector('.conn')?.classList.contains('on'), null, { timeout: 20_000 });
  const received = async () => Number((await text('.feed-note')).match(/(\d+) predictions received/)?.[1] ?? 0);
  const first = await received();
  await page.waitForFunction((n) => {
    const m = document.querySelector('.feed-note').textContent.match(/(\d+) predictions received/);
    return m && Number(m[1]) >= n + 5;
  }, first, { timeout: 20_000 });
  assert.ok(await page.locator('#feed tbody tr').count() > 0);
  // The chart draws closed seconds: wait for a few, then keep a picture for the README.
  await page.waitForFunction(() => Number(document.querySelector('#kpi-throughput').textContent) > 0, null, { timeout: 20_000 });
  await sleep(4000);
  await page.screenshot({ path: new URL('../../docs/screenshot.png', import.meta.url).pathname, fullPage: true });
});

test('the live feed reconnects by itself when the connection drops', async () => {
  const received = async () => Number((await text('.feed-note')).match(/(\d+) predictions received/)?.[1] ?? 0);
  // The web server restarts under the open page (a deploy, a crash): the socket drops.
  const restarted = product.restartServer();
  await page.waitForFunction(() => !document.querySelector('.conn').classList.contains('on'), null, { timeout: 20_000 });
  await restarted;
  // Sessions live in the server's memory: a restart signs browsers out. Signing in again in
  // another tab (here: a session cookie) is enough; the open page reconnects by itself, without a reload.
  await page.context().addCookies([await sessionCookie(product)]);
  await page.waitForFunction(() => document.querySelector('.conn').classList.contains('on'), null, { timeout: 20_000 });
  const after = await received();
  await page.waitForFunction((n) => {
    const m = document.querySelector('.feed-note').textContent.match(/(\d+) predictions received/);
    return m && Number(m[1]) >= n + 5;
  }, after, { timeout: 20_000 });
});

test('the page fits a phone screen', async () => {
  const phone = await product.browser.newPage({ viewport: { width: 390, height: 844 } });
  await signIn(product, phone);
  await phone.goto(product.url);
  await phone.locator('#field-age').waitFor();
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `horizontal overflow of ${overflow}px on a phone`);
  await phone.close();
});

test('web input is guarded: 413 for oversized bodies, 4xx for malformed payloads, 429 for a flood', async () => {
  assert.ok(predictUrl, 'the form has called its server function');
  const big = 'a'.repeat(200_000);
  for (const url of [predictUrl, `${product.url}/api/v1/predict`]) {
    const response = await product.fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: big });
    assert.equal(response.status, 413, url);
  }
  const garbage = await product.fetch(predictUrl, {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'garbage=%%%',
  });
  assert.equal(garbage.status, 400);
  assert.match(JSON.stringify(await garbage.json()), /BadRequest/);
  const notJson = await product.fetch(`${product.url}/api/v1/predict`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{not json' });
  assert.equal(notJson.status, 400);
  const invalid = await product.fetch(`${product.url}/api/v1/predict`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ Names: 'A', Age: -4 }),
  });
  assert.equal(invalid.status, 422);
  assert.ok((await invalid.json()).fields.some((f) => f.field === 'Age'));

  // A flood: more submissions at once than the server lets wait (--max-pending 20).
  const record = {
    Names: 'Flood', Age: 40, Total_Purchase: 5000, Account_Manager: 0, Years: 4, Num_Sites: 8,
    Onboard_date: '2012-05-06 07:08:09', Location: '1 Main St, Springfield, IL 62701', Company: 'X',
  };
  const statuses = await Promise.all(Array.from({ length: 200 }, () => product.fetch(`${product.url}/api/v1/predict`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(record),
  }).then((r) => r.status)));
  assert.ok(statuses.includes(429), `some refused: ${statuses.join(',')}`);
  assert.ok(statuses.includes(200), 'some served');
  assert.ok(statuses.every((s) => s === 200 || s === 429), statuses.join(','));
  const metrics = await (await product.fetch(`${product.url}/metrics`)).text();
  assert.match(metrics, /^churn_pending_requests 0$/m, 'nothing left waiting');
});

test('the broker going away gives a clear error, and the app recovers when it returns', async () => {
  await product.stopBroker();
  await page.click('#submit');
  const error = page.locator('#predict-error');
  await error.waitFor({ timeout: 20_000 });
  assert.match(await error.textContent(), /Kafka is not reachable|no prediction arrived/);
  assert.ok(predictStatuses.some((s) => s === 503 || s === 504), `statuses: ${predictStatuses}`);

  await product.startBroker();
  let recovered = false;
  for (let attempt = 0; attempt < 12 && !recovered; attempt++) {
    await page.click('#submit');
    await page.waitForFunction(() => !document.querySelector('#submit').disabled || false, null, { timeout: 30_000 })
      .catch(() => {});
    await page.waitForFunction(() => document.querySelector('#submit').textContent !== 'Scoring…', null, { timeout: 30_000 });
    recovered = await page.locator('#probability').isVisible();
    if (!recovered) await sleep(2000);
  }
  assert.ok(recovered, 'a submission succeeds once the broker is back');
  assert.deepEqual(errors, []);
});
