import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startProduct, openHydrated } from '../harness.mjs';

let product;
before(async () => { product = await startProduct(); });
after(async () => { await product?.stop(); });

test('the page renders on the server, hydrates, and shows predictions flowing', async () => {
  const { page, errors } = await openHydrated(product);
  await page.getByRole('heading', { name: 'Pipeline' }).waitFor();
  const scored = async () => Number(await page.locator('dd.scored').textContent());
  const before = await scored();
  // Clicking works only once the WASM bundle has hydrated the page; the server function answers.
  let after = before;
  for (let attempt = 0; attempt < 60 && after <= before; attempt++) {
    await page.locator('#refresh').click();
    await page.waitForTimeout(500);
    after = await scored();
  }
  assert.ok(after > before, `scored ${before} -> ${after}`);
  assert.match(await page.locator('dd.model-version').textContent(), /^m-[0-9a-f]{12}$/);
  assert.deepEqual(errors, []);
  await page.screenshot({ path: new URL('../../docs/screenshot.png', import.meta.url).pathname, fullPage: true });
});
