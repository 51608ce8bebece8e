// The model lifecycle as people see it: an admin uploads a challenger on the Models page, the
// history shows it, scorers score it in the shadow while users only ever get the champion's
// predictions, a viewer has no upload control, and a duel on the models topic appears as a card.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { startProduct, openHydrated, sessionCookie, sleep } from '../harness.mjs';

const churn = process.env.CHURN_BIN;
// The test helper that writes a duel as the referee does (server/examples/publish_duel.rs).
const publishDuelBin = join(dirname(churn), 'examples', 'publish_duel');

let product;
let challenger; // its version
let champion;
let challengerFile;

before(async () => {
  // No analytics, so no referee: the duel shown is the one the test writes, never overwritten.
  product = await startProduct({ replayRate: 20, extraArgs: ['--no-analytics'] });
  champion = JSON.parse(readFileSync(join(product.dir, 'model.json'), 'utf8')).version;
  // Another model, trained on other customers: another version.
  const csv = join(product.dir, 'other.csv');
  challengerFile = join(product.dir, 'challenger.json');
  execFileSync(churn, ['generate', '--rows', '400', '--seed', '77', '--output', csv]);
  execFileSync(churn, ['train', '--input', csv, '--output', challengerFile]);
  challenger = JSON.parse(readFileSync(challengerFile, 'utf8')).version;
  assert.notEqual(challenger, champion);
});
after(async () => {
  if (process.exitCode) console.error(product?.logs.join(''));
  await product?.stop();
});

/// The newest records of `topic`, as `churn tail` prints them.
function tail(topic, last = 20) {
  return execFileSync(churn, ['tail', topic, '--last', String(last), '--brokers', `127.0.0.1:${product.brokerPort}`])
    .toString().trim().split('\n').filter(Boolean).map((line) => JSON.parse(line));
}

test('an admin uploads a challenger and the history shows it', async () => {
  const { page, errors } = await openHydrated(product, { width: 1280, height: 1000 }, '/models');
  assert.equal(await page.locator('nav a[aria-current="page"]').textContent(), 'Models');
  // Nothing chosen: the page says what to do, and sends nothing.
  await page.click('#upload');
  await page.locator('#upload-result .error').waitFor({ timeout: 10_000 });
  assert.match(await page.locator('#upload-result').textContent(), /Choose a model file first/);

  // A model edited after training is refused with the scorers' reason.
  const tampered = JSON.parse(readFileSync(challengerFile, 'utf8'));
  tampered.threshold = 0.01;
  const tamperedFile = join(product.dir, 'tampered.json');
  writeFileSync(tamperedFile, JSON.stringify(tampered));
  await page.setInputFiles('#model-file', tamperedFile);
  await page.click('#upload');
  await page.waitForFunction(() => /refused/.test(document.querySelector('#upload-result')?.textContent ?? ''), null, { timeout: 15_000 });
  assert.match(await page.locator('#upload-result').textContent(), /changed after training/);

  await page.setInputFiles('#model-file', challengerFile);
  assert.ok(await page.locator('#seat-challenger').isChecked(), 'challenger is the seat offered first');
  await page.click('#upload');
  await page.waitForFunction(() => /as challenger/.test(document.querySelector('#upload-result')?.textContent ?? ''), null, { timeout: 15_000 });
  assert.match(await page.locator('#upload-result').textContent(), new RegExp(`Published ${challenger} as challenger`));

  // Pushed back over the live feed: the history and the lineup, without a reload.
  const row = page.locator('#history tbody tr', { hasText: 'challenger published' }).first();
  await row.waitFor({ timeout: 20_000 });
  assert.match(await row.textContent(), new RegExp(challenger));
  assert.match(await row.textContent(), /e2e-admin/);
  assert.match(await row.textContent(), /by hand/);
  await page.locator('#lineup-challenger').waitFor({ timeout: 20_000 });
  assert.equal(await page.locator('#lineup-challenger').textContent(), challenger);
  assert.equal(await page.locator('#lineup-champion').textContent(), champion);
  assert.ok(await page.locator('#withdraw-challenger').isEnabled());
  assert.deepEqual(errors, []);
  await page.close();
});

test('scorers score the challenger in the shadow; users never see its score', async () => {
  // On the predictions topic every new prediction carries the challenger's score...
  let shadowed = [];
  for (let i = 0; i < 60 && shadowed.length === 0; i++) {
    shadowed = tail('test3').filter((r) => r.value?.challenger?.model_version === challenger);
    if (shadowed.length === 0) await sleep(500);
  }
  assert.ok(shadowed.length > 0, 'the scorer scores the challenger in the shadow');
  assert.ok(shadowed.every((r) => r.value.model_version === champion), 'the champion answers');

  // ...and nothing a user receives carries it: the live feed, the API, the export.
  const { page, errors } = await openHydrated(product, { width: 1280, height: 1000 }, '/');
  const frames = [];
  page.on('websocket', (ws) => ws.on('framereceived', (f) => frames.push(String(f.payload))));
  await page.reload();
  await page.waitForFunction(() => document.documentElement.dataset.hydrated === 'true', null, { timeout: 30_000 });
  await page.locator('#feed tbody tr').first().waitFor({ timeout: 30_000 });
  await sleep(3000);
  assert.ok(frames.some((f) => f.includes('"Prediction"')), 'predictions were pushed');
  for (const frame of frames) {
    assert.doesNotMatch(frame, /"challenger":\{"model_version"/, 'no shadow score in the live feed');
  }
  assert.ok(!(await page.locator('#feed').textContent()).includes(challenger), 'the feed names only the champion');

  const record = {
    Names: 'Shadow Test', Age: 40, Total_Purchase: 5000, Account_Manager: 0, Years: 4, Num_Sites: 8,
    Onboard_date: '2012-05-06 07:08:09', Location: '1 Main St, Springfield, IL 62701', Company: 'X',
  };
  const reply = await product.fetch(`${product.url}/api/v1/predict`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(record),
  });
  assert.equal(reply.status, 200);
  const answer = await reply.json();
  assert.equal(answer.prediction.model_version, champion);
  assert.equal(answer.prediction.challenger, undefined, JSON.stringify(answer));
  const csv = await (await product.fetch(`${product.url}/export/predictions.csv?minutes=5`)).text();
  assert.ok(!csv.includes(challenger), 'the export carries no shadow score');
  assert.deepEqual(errors, []);
  await page.close();
});

test('a viewer sees the duel and history but has no upload control and cannot publish', async () => {
  const { page, errors } = await openHydrated(product, { width: 1280, height: 1000 }, '/dashboard', 'e2e-viewer');
  await page.locator('#history tbody tr').first().waitFor({ timeout: 20_000 });
  assert.equal(await page.locator('#model-file').count(), 0);
  assert.equal(await page.locator('#withdraw-challenger').count(), 0);
  assert.equal(await page.locator('nav a[href="/models"]').count(), 0, 'no Models page in the navigation');
  await page.goto(`${product.url}/models`);
  assert.notEqual(new URL(page.url()).pathname, '/models', 'the Models page sends a viewer elsewhere');
  assert.equal(await page.locator('#model-file').count(), 0);
  assert.deepEqual(errors, []);
  await page.close();

  // With a viewer's or an analyst's session, the API refuses too.
  for (const user of ['e2e-viewer', 'e2e-analyst']) {
    const cookie = await sessionCookie(product, user);
    for (const [method, path] of [['POST', '/api/v1/models?seat=challenger'], ['DELETE', '/api/v1/models?seat=challenger']]) {
      const response = await fetch(product.url + path, {
        method,
        headers: { cookie: `churn_session=${cookie.value}`, origin: product.url, 'content-type': 'application/json' },
        body: method === 'POST' ? readFileSync(challengerFile, 'utf8') : undefined,
      });
      assert.equal(response.status, 403, `${user} ${method}`);
    }
  }
});

/// A duel between the current models, as the referee publishes it.
function publishDuel() {
  const estimate = (value, half) => ({ value, low: value - half, high: value + half });
  const evidence = {
    records: 4210, churners: 702, metric: 'brier_reduction', estimate: 0.0061, interval: [0.0023, 0.0099],
    test: 'empirical-bernstein-confidence-sequence', alpha: 0.05, min_records: 500, min_per_class: 50,
  };
  const decision = { verdict: 'challenger_better', evidence };
  const duel = {
    champion, challenger, after_promotion: false, auto_promote: false,
    report: {
      records: 4210, churners: 702, auc_records: 4210, confidence: 0.95,
      champion: { auc: estimate(0.8512, 0.011), log_loss: estimate(0.3321, 0.012), brier: estimate(0.1012, 0.004), calibration_error: estimate(0.0312, 0.008) },
      challenger: { auc: estimate(0.8843, 0.009), log_loss: estimate(0.2987, 0.011), brier: estimate(0.0951, 0.004), calibration_error: estimate(0.0187, 0.007) },
      gains: { auc: estimate(0.0331, 0.008), log_loss: estimate(0.0334, 0.006), brier: estimate(0.0061, 0.002) },
      decision,
    },
    decision,
    updated_at: new Date().toISOString(),
  };
  execFileSync(publishDuelBin, [`127.0.0.1:${product.brokerPort}`], { input: JSON.stringify(duel) });
}

test('a published duel shows its figures, the sequential interval against 0 and the verdict', async (t) => {
  if (!existsSync(publishDuelBin)) {
    // scripts/test.sh builds it; only a hand-run of this file may lack it.
    if (process.env.CI) throw new Error(`missing ${publishDuelBin}: cargo build -p server --example publish_duel`);
    t.skip(`build the helper first: cargo build -p server --example publish_duel (looked for ${publishDuelBin})`);
    return;
  }
  publishDuel();
  const { page, errors } = await openHydrated(product, { width: 1280, height: 1400 }, '/dashboard', 'e2e-viewer');
  await page.locator('#duel-table').waitFor({ timeout: 20_000 });
  const table = await page.locator('#duel-table').textContent();
  for (const figure of ['0.8512', '0.8843', '+0.0331', '0.0187', 'Calibration error']) {
    assert.ok(table.includes(figure), `${figure} in ${table}`);
  }
  assert.equal(await page.locator('#duel-records').textContent(), '4210');
  assert.match(await page.locator('#duel-verdict').textContent(), /challenger is better.*Auto-promote is off/);
  assert.equal(await page.locator('#auto-promote').textContent(), 'auto-promote off');
  assert.equal(await page.locator('#interval-chart rect.span.good').count(), 1, 'the interval has left 0 on the challenger side');
  assert.match(await page.locator('#interval-text').textContent(), /\+0\.0023 to \+0\.0099/);
  await page.locator('#duel').screenshot({ path: new URL('../test-results/duel.png', import.meta.url).pathname });
  assert.deepEqual(errors, []);
  await page.close();
});

test('an admin withdraws the challenger and the history records it', async () => {
  const { page, errors } = await openHydrated(product, { width: 1280, height: 1000 }, '/models');
  await page.locator('#lineup-challenger').waitFor({ timeout: 20_000 });
  await page.waitForFunction(() => !document.querySelector('#withdraw-challenger')?.disabled, null, { timeout: 10_000 });
  await page.click('#withdraw-challenger');
  await page.waitForFunction(() => /Withdrew the challenger/.test(document.querySelector('#upload-result')?.textContent ?? ''), null, { timeout: 15_000 });
  await page.locator('#history tbody tr', { hasText: 'challenger withdrawn' }).first().waitFor({ timeout: 20_000 });
  await page.locator('#duel-none').waitFor({ timeout: 20_000 });
  assert.ok(await page.locator('#withdraw-challenger').isDisabled(), 'nothing left to withdraw');
  await page.screenshot({ path: new URL('../test-results/models.png', import.meta.url).pathname, fullPage: true });
  assert.deepEqual(errors, []);
  await page.close();
});
