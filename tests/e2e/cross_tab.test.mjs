// The walking skeleton, end to end: the skeleton page (its first demo) served by ferrydb-server, the
// wasm engine in a real SharedWorker, several real tabs of one browser profile.
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { buildTestSite, eventually, launchProfile, startServer, test, texts } from './harness.mjs';

let server;
/** The walking skeleton's page (tests/e2e/site/skeleton). */
let skeleton;
let profile;

before(async () => {
  server = await startServer(['--static', await buildTestSite()]);
  skeleton = `${server.url}skeleton/`;
  profile = await launchProfile();
});

after(async () => {
  await profile?.close();
  await server?.stop();
});

async function skeletonTab() {
  const page = await profile.newTab(skeleton);
  await page.waitForSelector('#state:text("live")');
  return page;
}

const titles = (page) => texts(page, '#items li');

test('an item added in one tab appears in the other without reload', async () => {
  const [a, b] = [await skeletonTab(), await skeletonTab()];
  const title = `milk ${Date.now()}`;
  await a.fill('#title', title);
  await a.click('button[type=submit]');
  await eventually(async () => (await titles(b)).includes(title), 5000, 'the item in tab B');
  assert.deepEqual(await titles(a), await titles(b), 'both tabs show the same list');

  await b.fill('#title', 'from B');
  await b.press('#title', 'Enter');
  await eventually(async () => (await titles(a)).includes('from B'), 5000, 'tab B item in tab A');
  await Promise.all([a.close(), b.close()]);
});

test('bad SQL is a FerryError with code sql_error and the worker keeps serving', async () => {
  const tab = await skeletonTab();
  const failure = await tab.evaluate(async () => {
    try {
      await window.ferry.exec('INSRT INTO items VALUES (1)');
      return null;
    } catch (e) {
      return { name: e.name, code: e.code, message: e.message, isError: e instanceof Error };
    }
  });
  assert.equal(failure?.name, 'FerryError');
  assert.equal(failure.code, 'sql_error');
  assert.match(failure.message, /syntax error/);
  assert.equal(failure.isError, true);

  const watchError = await tab.evaluate(
    () =>
      new Promise((resolve) => {
        const q = window.ferry.watch('SELECT missing_column FROM items');
        q.subscribe(() => resolve(q.getSnapshot().status === 'error' && q.getSnapshot().error.code));
      }),
  );
  assert.equal(watchError, 'sql_error', 'an invalid live query errors alone');

  const rows = await tab.evaluate(() => window.ferry.query('SELECT count(*) AS n FROM items'));
  assert.equal(typeof rows[0].n, 'number', 'the worker still answers');
  await tab.close();
});

test('a closed tab releases its subscriptions in the worker', async () => {
  const stay = await skeletonTab();
  const leave = await skeletonTab();
  await leave.evaluate(async () => {
    const q = window.ferry.watch('SELECT count(*) FROM items WHERE title LIKE ?', ['%x%']);
    await new Promise((resolve) => q.subscribe(resolve));
  });
  const before = await stay.evaluate(() => window.ferry.stats());
  assert.equal(before.tabs, 2);
  assert.equal(before.subscriptions, 3, 'one list query per tab plus one extra');
  assert.equal(before.liveQueries, 2, 'the two tabs share one evaluation');

  // No goodbye message: the page just goes away, as a crashed or killed tab would.
  await leave.close();
  const after = await eventually(
    async () => {
      const s = await stay.evaluate(() => window.ferry.stats());
      return s.tabs === 1 ? s : null;
    },
    5000,
    'the worker to notice the closed tab',
  );
  assert.deepEqual(
    { tabs: after.tabs, liveQueries: after.liveQueries, subscriptions: after.subscriptions },
    { tabs: 1, liveQueries: 1, subscriptions: 1 },
  );
  await stay.close();
});

test('the page loads without errors', async () => {
  assert.deepEqual(profile.errors, []);
});
