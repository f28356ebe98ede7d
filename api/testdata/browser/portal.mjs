// Drives the portal in Debian's chromium, as a customer would, for api/portal_browser_test.go:
//
//   node portal.mjs PORTAL_URL_OF_ACCOUNT_1 PORTAL_URL_OF_ACCOUNT_2 SCREENSHOT.png
//
// Account 1 has a failed delivery whose endpoint now answers: open it, read its attempts,
// press Retry, see it succeed. Account 2 must see none of it. No request may carry a token
// in its URL, and every API request carries it as an Authorization header. Exits 0 when all
// of that held, 1 otherwise.
import { chromium } from 'playwright-core';

const [url1, url2, screenshot] = process.argv.slice(2);
if (!url1 || !url2 || !screenshot) {
  console.error('usage: node portal.mjs PORTAL_URL_1 PORTAL_URL_2 SCREENSHOT.png');
  process.exit(2);
}
const tokens = [url1, url2].map((u) => new URL(u).hash.replace(/^#token=/, ''));
const timeout = 30000;

function check(ok, what) {
  if (!ok) throw new Error(what);
  console.log('ok: ' + what);
}

// watch fails the run on any request that carries a token in its URL, or an API request
// without the Authorization header.
function watch(page, problems) {
  page.on('request', (req) => {
    const url = req.url();
    if (tokens.some((t) => url.includes(t))) problems.push('token in a request URL: ' + url.replace(/#.*/, '#…'));
    if (new URL(url).pathname.startsWith('/v1/') && !/^Bearer \S+$/.test(req.headers()['authorization'] || '')) {
      problems.push('API request without a bearer token: ' + url);
    }
  });
  page.on('pageerror', (err) => problems.push('page error: ' + err.message));
  page.on('console', (msg) => { if (msg.type() === 'error') problems.push('console error: ' + msg.text()); });
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  // As root there is no sandbox; the rest keeps chromium off the closed network.
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
const problems = [];
let page;
try {
  const desk = await browser.newContext({ viewport: { width: 1280, height: 900 }, timezoneId: 'UTC', locale: 'en-GB' });
  page = await desk.newPage();
  page.setDefaultTimeout(timeout);
  watch(page, problems);
  await page.goto(url1);

  // The failed delivery, its webhook's health, and no token left in the address bar.
  const failed = page.locator('#deliveries tr[data-status="failed"]').first();
  await failed.waitFor();
  const id = await failed.getAttribute('data-delivery');
  check(!!id, 'account 1 sees a failed delivery, ' + id);
  check(!page.url().includes('token='), 'the token is gone from the address bar');
  const hook = await failed.getAttribute('data-webhook');
  const hookRow = page.locator(`#webhooks tr[data-webhook="${hook}"]`);
  await hookRow.waitFor();
  const hookURL = (await hookRow.locator('.url').textContent()).trim();
  check(/1 failed/.test(await hookRow.textContent()), 'its webhook counts 1 failed delivery in 24 h');
  check(/Account 1/.test(await page.locator('#who').textContent()), 'the header names account 1');

  // Its attempts, opened from the keyboard: what the endpoint answered each time.
  const row = page.locator(`tr[data-delivery="${id}"]`);
  await row.getByRole('button', { name: 'Attempts' }).focus();
  await page.keyboard.press('Enter');
  const detail = page.locator('.detail-row');
  await detail.locator('table.attempts tbody tr').nth(1).waitFor();
  const answers = await detail.locator('table.attempts td.answer').allTextContents();
  check(answers.length === 2 && answers.every((a) => a === '500'), 'its two attempts show the endpoint answered 500: ' + answers);
  check(await page.evaluate(() => document.activeElement.tagName === 'H3'), 'focus moved to the opened delivery');
  check(/X-Webhook-Attempt: 2/.test(await detail.locator('pre.request').textContent()), 'the request of attempt 2 is shown');

  // Retry: it turns succeeded, with a third attempt answered 200.
  await detail.getByRole('button', { name: 'Retry' }).click();
  await page.locator(`tr[data-delivery="${id}"][data-status="succeeded"]`).waitFor();
  check(true, 'after Retry the delivery shows succeeded');
  await page.locator('.detail-row table.attempts tbody tr').nth(2).waitFor();
  const after = await page.locator('.detail-row table.attempts td.answer').allTextContents();
  check(after[2] === '200', 'its third attempt shows 200: ' + after);
  await page.locator('#notice').filter({ hasText: 'succeeded' }).waitFor();
  await page.screenshot({ path: screenshot, fullPage: true });
  check(true, 'screenshot saved to ' + screenshot);

  // A phone: the page fits the screen, no sideways scrolling.
  await page.setViewportSize({ width: 390, height: 844 });
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  check(wide <= 391, 'on a 390 px wide phone the page is ' + wide + ' px wide');

  // Another account's token shows none of it.
  const other = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page2 = await other.newPage();
  page2.setDefaultTimeout(timeout);
  watch(page2, problems);
  await page2.goto(url2);
  await page2.locator('#deliveries tr[data-delivery]').first().waitFor();
  await page2.locator('#notice').filter({ hasText: /^$/ }).waitFor();
  const html = await page2.content();
  check(/Account 2/.test(await page2.locator('#who').textContent()), 'the second page is account 2');
  check(!html.includes(id) && !html.includes(id.slice(0, 12)), 'account 2 does not see account 1\'s delivery');
  check(!html.includes(hookURL), 'account 2 does not see account 1\'s webhook (' + hookURL + ')');
  const own = await page2.locator('#deliveries tr[data-delivery]').count();
  check(own === 1, 'account 2 sees its own delivery only (' + own + ')');

  check(problems.length === 0, 'no token in any URL, every API request authorized, no page error' +
    (problems.length ? ': ' + problems.join('; ') : ''));
  await browser.close();
} catch (err) {
  console.error('FAIL: ' + err.message);
  for (const p of problems) console.error('  ' + p);
  if (page && process.env.FAILURE_SCREENSHOT) {
    await page.screenshot({ path: process.env.FAILURE_SCREENSHOT, fullPage: true }).catch(() => {});
  }
  await browser.close();
  process.exit(1);
}
