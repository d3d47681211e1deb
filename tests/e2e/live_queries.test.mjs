// Live queries across real tabs: row-level patches, object identity for
// unchanged rows, errors that stay with their query.
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { buildTestSite, eventually, launchProfile, startServer, test } from './harness.mjs';

let server;
/** The walking skeleton's page (tests/e2e/site/skeleton). */
let skeleton;
let profile;
let a;
let b;

before(async () => {
  server = await startServer(['--static', await buildTestSite()]);
  skeleton = `${server.url}skeleton/`;
  profile = await launchProfile();
  a = await profile.newTab(skeleton);
  b = await profile.newTab(skeleton);
  for (const tab of [a, b]) await tab.waitForFunction(() => window.ferry);
  await a.evaluate(() =>
    window.ferry.exec('CREATE TABLE todos (id INTEGER PRIMARY KEY, title TEXT, done INTEGER, list TEXT)'),
  );
  await a.evaluate(async () => {
    for (let i = 1; i <= 20; i++) {
      await window.ferry.exec('INSERT INTO todos VALUES (?, ?, 0, ?)', [i, `todo ${i}`, i % 2 ? 'odd' : 'even']);
    }
  });
});

after(async () => {
  await profile?.close();
  await server?.stop();
});

/** Starts a watch in the page, recording every snapshot it is notified of. */
function watchIn(tab, key, sql, params = []) {
  return tab.evaluate(
    ({ key, sql, params }) =>
      new Promise((resolve) => {
        const q = window.ferry.watch(sql, params);
        window.watches ??= {};
        const w = (window.watches[key] = { q, snapshots: [] });
        q.subscribe(() => {
          w.snapshots.push(q.getSnapshot());
          if (w.snapshots.length === 1) resolve(q.getSnapshot().status);
        });
      }),
    { key, sql, params },
  );
}

const notifications = (tab, key) => tab.evaluate((key) => window.watches[key].snapshots.length, key);

test('a write in one tab updates the same query in both tabs and leaves other queries alone', async () => {
  assert.equal(await watchIn(a, 'odd', "SELECT id, title FROM todos WHERE list = 'odd' ORDER BY id"), 'ok');
  assert.equal(await watchIn(b, 'odd', "SELECT id, title FROM todos WHERE list = 'odd' ORDER BY id"), 'ok');
  assert.equal(await watchIn(b, 'even', "SELECT id, title FROM todos WHERE list = 'even' ORDER BY id"), 'ok');

  await a.evaluate(() => window.ferry.exec("UPDATE todos SET title = 'renamed' WHERE id = 3"));
  for (const tab of [a, b]) {
    const titles = await eventually(
      () =>
        tab.evaluate(() => {
          const s = window.watches.odd.q.getSnapshot();
          return s.rows.some((r) => r.title === 'renamed') && s.rows.map((r) => r.title);
        }),
      3000,
      'the rename',
    );
    assert.equal(titles.length, 10);
    assert.equal(titles[1], 'renamed');
  }
  assert.equal(await notifications(b, 'even'), 1, 'the even query was not notified');
  const stats = await a.evaluate(() => window.ferry.stats());
  assert.ok(stats.liveQueries >= 2, 'the shared odd query is one live query');
});

test('unchanged rows keep their object identity and snapshots are stable between changes', async () => {
  await watchIn(a, 'all', 'SELECT * FROM todos ORDER BY id');
  const result = await a.evaluate(async () => {
    const { q } = window.watches.all;
    const before = q.getSnapshot();
    const stable = before === q.getSnapshot();
    const changed = new Promise((resolve) => {
      const stop = q.subscribe(() => {
        stop();
        resolve();
      });
    });
    await window.ferry.exec('UPDATE todos SET done = 1 WHERE id = 5');
    await changed;
    const after = q.getSnapshot();
    const same = after.rows.filter((row, i) => row === before.rows[i]).length;
    return {
      stable,
      replaced: before !== after,
      same,
      total: after.rows.length,
      fifthIsNew: after.rows[4] !== before.rows[4],
      fifthDone: after.rows[4].done,
    };
  });
  assert.equal(result.stable, true, 'getSnapshot returns the same object until a change');
  assert.equal(result.replaced, true, 'a change gives a new snapshot');
  assert.equal(result.total, 20);
  assert.equal(result.same, 19, 'every unchanged row is the same object');
  assert.equal(result.fifthIsNew, true);
  assert.equal(result.fifthDone, 1);
});

test('a deleted and a moved row: the rest keep identity, order follows the query', async () => {
  await watchIn(b, 'bytitle', 'SELECT id, title FROM todos ORDER BY title, id');
  const result = await b.evaluate(async () => {
    const { q } = window.watches.bytitle;
    const before = q.getSnapshot().rows;
    const changed = new Promise((resolve) => {
      const stop = q.subscribe(() => (stop(), resolve()));
    });
    await window.ferry.exec('BEGIN');
    await window.ferry.exec('DELETE FROM todos WHERE id = 7');
    await window.ferry.exec("UPDATE todos SET title = 'aaa first' WHERE id = 12");
    await window.ferry.exec('COMMIT');
    await changed;
    const after = q.getSnapshot().rows;
    const byId = new Map(before.map((r) => [r.id, r]));
    return {
      ids: after.map((r) => r.id),
      kept: after.filter((r) => byId.get(r.id) === r).length,
      expected: (await window.ferry.query('SELECT id FROM todos ORDER BY title, id')).map((r) => r.id),
    };
  });
  assert.deepEqual(result.ids, result.expected);
  assert.equal(result.ids[0], 12);
  assert.ok(!result.ids.includes(7));
  assert.equal(result.kept, 18, 'all but the changed row are reused (the deleted one is gone)');
});

test('an invalid live query errors alone; valid queries in the same tab keep updating', async () => {
  const status = await a.evaluate(
    () =>
      new Promise((resolve) => {
        const bad = window.ferry.watch('SELECT nope FROM todos');
        bad.subscribe(() => resolve({ status: bad.getSnapshot().status, code: bad.getSnapshot().error?.code }));
      }),
  );
  assert.deepEqual(status, { status: 'error', code: 'sql_error' });
  const before = await notifications(a, 'all');
  await a.evaluate(() => window.ferry.exec("INSERT INTO todos VALUES (100, 'new', 0, 'even')"));
  await eventually(async () => (await notifications(a, 'all')) > before, 3000, 'the valid query to update');
});

test('close() and unsubscribe free the worker-side state', async () => {
  const before = await a.evaluate(() => window.ferry.stats());
  await b.evaluate(() => {
    for (const w of Object.values(window.watches)) w.q.close();
  });
  const after = await eventually(
    async () => {
      const s = await a.evaluate(() => window.ferry.stats());
      return s.subscriptions === before.subscriptions - 3 ? s : null;
    },
    3000,
    'subscriptions to drop',
  );
  assert.equal(after.tabs, 2);
});
