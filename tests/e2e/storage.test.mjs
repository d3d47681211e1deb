// Durable storage in a real browser: OPFS (and IndexedDB, forced) survive
// reloads and browser restarts; a write whose `durable` resolved survives the
// browser closing right after; a burst cut off by closing the browser recovers
// to a prefix that holds every acknowledged write.
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { buildTestSite, can, eventually, launchProfile, startServer, test } from './harness.mjs';

let server;

before(async () => {
  server = await startServer(['--static', await buildTestSite()]);
});

after(async () => {
  await server?.stop();
});

/** A tab with the database open; resolves once the worker reported its storage. */
async function openTab(profile, options) {
  const tab = await profile.newTab(server.url);
  await tab.waitForFunction(() => window.ready);
  await tab.evaluate((options) => window.openDb(options), options);
  await tab.waitForFunction(() => window.db.storage !== undefined);
  return tab;
}

const rows = (tab, sql) => tab.evaluate((sql) => window.db.query(sql), sql);

// Without SharedWorker the leader tab's worker keeps its log in OPFS too,
// written in place through sync access handles (docs/architecture.md,
// "Topology").
const BACKEND = can.sharedWorker
  ? { auto: 'indexeddb+opfs', opfs: 'opfs', indexeddb: 'indexeddb' }
  : { auto: 'opfs-sync', opfs: 'opfs-sync', indexeddb: 'indexeddb' };

for (const storage of Object.keys(BACKEND)) {
  test(`${storage}: data survives a reload and a browser restart`, async () => {
    let profile = await launchProfile();
    const options = { name: 'notes', storage };
    let tab = await openTab(profile, options);
    assert.equal(await tab.evaluate(() => window.db.storage.backend), BACKEND[storage]);
    await tab.evaluate(async () => {
      await window.db.exec('CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)');
      const r = await window.db.exec("INSERT INTO notes (body) VALUES ('first')");
      await r.durable;
    });
    await tab.reload();
    await tab.waitForFunction(() => window.ready);
    await tab.evaluate((options) => window.openDb(options), options);
    assert.deepEqual(await rows(tab, 'SELECT body FROM notes'), [{ body: 'first' }]);

    await profile.close({ keep: true });
    profile = await launchProfile(profile.dir);
    tab = await openTab(profile, options);
    assert.deepEqual(await rows(tab, 'SELECT body FROM notes'), [{ body: 'first' }]);
    assert.ok((await tab.evaluate(() => window.db.storage.durableSeq)) >= 2);
    await profile.close();
  });

  test(`${storage}: a write whose durable promise resolved survives closing the browser at once`, async () => {
    let profile = await launchProfile();
    const options = { name: 'quick', storage };
    let tab = await openTab(profile, options);
    await tab.evaluate(async () => {
      await window.db.exec('CREATE TABLE t (x)');
      await (await window.db.exec('INSERT INTO t VALUES (1)')).durable;
    });
    await profile.close({ keep: true }); // no grace period for the worker
    profile = await launchProfile(profile.dir);
    tab = await openTab(profile, options);
    assert.deepEqual(await rows(tab, 'SELECT x FROM t'), [{ x: 1 }]);
    await profile.close();
  });

  test(`${storage}: closing the browser mid-burst recovers an intact prefix with every durable write`, async () => {
    let profile = await launchProfile();
    const options = { name: 'burst', storage };
    let tab = await openTab(profile, options);
    await tab.evaluate(async () => {
      await window.db.exec('CREATE TABLE burst (x INTEGER PRIMARY KEY, pad TEXT)');
      window.acked = 0;
      (async () => {
        for (let i = 1; i <= 100000; i++) {
          const r = await window.db.exec('INSERT INTO burst VALUES (?, ?)', [i, 'x'.repeat(200)]);
          r.durable.then(() => (window.acked = Math.max(window.acked, i)), () => {});
        }
      })();
    });
    const acked = await eventually(() => tab.evaluate(() => (window.acked > 200 ? window.acked : 0)), 10000, 'acks');
    await profile.close({ keep: true });

    profile = await launchProfile(profile.dir);
    tab = await openTab(profile, options);
    const got = (await rows(tab, 'SELECT x FROM burst ORDER BY x')).map((r) => r.x);
    console.log(`# ${storage} burst: ${acked} acknowledged durable, ${got.length} recovered`);
    assert.ok(got.length >= acked, `every acknowledged write is there (${got.length} rows, ${acked} acked)`);
    assert.deepEqual(got, Array.from({ length: got.length }, (_, i) => i + 1), 'a prefix, no gaps');
    assert.deepEqual(await rows(tab, 'PRAGMA integrity_check'), [{ integrity_check: 'ok' }]);
    await profile.close();
  });
}

test('memory storage says so, and keeps nothing across a restart', async () => {
  let profile = await launchProfile();
  const options = { name: 'volatile', storage: 'memory' };
  let tab = await openTab(profile, options);
  assert.equal(await tab.evaluate(() => window.db.storage.backend), 'memory');
  await tab.evaluate(() => window.db.exec('CREATE TABLE t (x)'));
  await profile.close({ keep: true });
  profile = await launchProfile(profile.dir);
  tab = await openTab(profile, options);
  const failure = await tab.evaluate(() => window.db.query('SELECT * FROM t').catch((e) => e.code));
  assert.equal(failure, 'sql_error', 'the table is gone');
  await profile.close();
});

test('two users of one browser have separate replicas; deleteDatabase removes one', async () => {
  const profile = await launchProfile();
  const alice = await openTab(profile, { name: 'app', user: 'alice' });
  const bob = await openTab(profile, { name: 'app', user: 'bob' });
  await alice.evaluate(async () => {
    await window.db.exec('CREATE TABLE secrets (s TEXT)');
    await (await window.db.exec("INSERT INTO secrets VALUES ('alice only')")).durable;
  });
  const bobSees = await bob.evaluate(() => window.db.query('SELECT * FROM secrets').catch((e) => e.code));
  assert.equal(bobSees, 'sql_error', "bob's replica has no such table");

  const watched = alice.evaluate(
    () =>
      new Promise((resolve) => {
        const q = window.db.watch('SELECT * FROM secrets');
        q.subscribe(() => q.getSnapshot().status === 'error' && resolve(q.getSnapshot().error.code));
      }),
  );
  await eventually(() => alice.evaluate(() => window.db.stats().then((s) => s.subscriptions === 1)), 3000, 'watch');
  await alice.evaluate(() => window.db.deleteDatabase());
  assert.equal(await watched, 'database_deleted');
  const after = await alice.evaluate(() => window.db.query('SELECT * FROM secrets').catch((e) => e.code));
  assert.equal(after, 'sql_error', 'the data is gone');
  await profile.close();
});
