// Faults a running app meets in the browser, each with its outcome asserted
// against the real server (store from FERRYDB_E2E_STORE, see
// harness.freshStore):
// - a tab frozen by the browser while it held live queries and was the tab
//   the worker asked for a token;
// - the site's storage cleared under the running worker (the server's
//   `Clear-Site-Data: "storage"` answer, which every engine heeds);
// - the storage quota exhausted, then lifted.
// Freezing and the quota need a browser that can do that to a running page
// (Chromium, over CDP); elsewhere those two are skipped (see harness `can`).
// No test waits a fixed time for an event: each waits for the status, row or
// promise that says it happened.
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildTestSite, eventually, freshStore, launchProfile, root, startServer, syncTools, test } from './harness.mjs';

let site;
let storeDir;
let server;
const profiles = [];
const tools = syncTools(() => server);
const { status, todoIds, syncedTab, allConnected, addTodo, faults, serverMutations, assertNoDuplicates } = tools;

before(async () => {
  site = await buildTestSite();
  storeDir = await mkdtemp(join(tmpdir(), 'ferrydb-faults-'));
  server = await startServer([
    '--app', join(root, 'tests', 'fixtures', 'app.json'),
    '--store', await freshStore(storeDir, 'faults'),
    '--dev-auth',
    '--demo',
    '--static', site,
  ]);
});

after(async () => {
  for (const profile of profiles) await profile.close().catch(() => {});
  await server?.stop();
  if (storeDir) await rm(storeDir, { recursive: true, force: true });
});

async function device(dir, options) {
  const profile = await launchProfile(dir, options);
  profiles.push(profile);
  return profile;
}

/** Closes the browser, keeping its profile, and starts it again on it. */
async function restart(profile) {
  profiles.splice(profiles.indexOf(profile), 1);
  await profile.close({ keep: true });
  return device(profile.dir);
}

/** The ids a tab's live query (`window.todos`, from `watchTodos`) shows now. */
const shown = (page) =>
  page.evaluate(() => {
    const state = window.todos.getSnapshot();
    return state.status === 'ok' ? state.rows.map((r) => r.id) : state.status;
  });

const watchTodos = (page) => page.evaluate(() => (window.todos = window.db.watch('SELECT id FROM todos ORDER BY id')));

/**
 * What a promise (`expression`, run in the page) settled with: 'ok' or the
 * FerryError code; 'pending' if it has not settled within `ms` (a deadline
 * for a failing run, far beyond what a passing one takes).
 */
const settled = (page, expression, ms = 30000) =>
  page.evaluate(
    ([source, ms]) =>
      Promise.race([
        new Function(`return ${source}`)().then(() => 'ok', (e) => e.code ?? String(e)),
        new Promise((resolve) => setTimeout(() => resolve('pending'), ms)),
      ]),
    [expression, ms],
  );

// Without SharedWorker the first tab leads, and a frozen leader is taken
// over: tests/e2e/leader.test.mjs. A follower frozen with CDP there was seen
// to keep answering token asks (not frozen): not understood yet, so this
// runs where SharedWorker is.
test('a frozen tab: the others write, watch and sync; its token ask moves on; thawed, its live query catches up', { needs: ['freeze', 'sharedWorker'] }, async () => {
  const profile = await device(undefined, { freezable: true });
  const user = 'fay';
  const logBefore = (await serverMutations()).length;
  // Token asks each tab's provider answered, in order. Tab `b` lifts the
  // server's 401 switch before answering, so its token is the good one.
  const asked = [];
  async function tokenTab(name) {
    const page = await profile.newTab();
    await page.exposeFunction('ferryToken', async (who) => {
      asked.push(name);
      if (name === 'b') await faults({ failStatus: null });
      return who;
    });
    await page.goto(server.url);
    await page.waitForFunction(() => window.ready);
    assert.equal(await page.evaluate((u) => window.openSynced({ user: u, auth: 'exposed' }), user), null);
    return page;
  }
  // `a` connects first, so it is the tab the worker asks first.
  const a = await tokenTab('a');
  const b = await tokenTab('b');
  await allConnected([a, b]);
  await watchTodos(a);
  await watchTodos(b);
  await addTodo(a, { id: 'before', owner: user });
  assert.equal(await settled(a, 'window.lastMutation.server'), 'ok');
  await eventually(async () => (await shown(b)).join() === 'before', 10000, 'b sees a write of a');
  assert.deepEqual(asked, ['a'], 'one token, from a');

  await profile.freeze(a);
  // Every sync request now gets 401: the worker drops its token and asks a,
  // which cannot answer while frozen.
  await faults({ failStatus: 401 });
  await addTodo(b, { id: 'frozen-1', owner: user });
  assert.deepEqual(await shown(b), ['before', 'frozen-1'], 'b writes and watches while a is frozen');
  // After a's deadline the worker asks b; b's token goes through.
  assert.equal(await settled(b, 'window.lastMutation.server'), 'ok', 'the write reached the server');
  assert.deepEqual(asked, ['a', 'b'], 'b was asked, a did not answer');
  await addTodo(b, { id: 'frozen-2', owner: user });
  assert.equal(await settled(b, 'window.lastMutation.server'), 'ok');
  // `server` settles on the push reply; the outbox row goes with the next pull.
  await eventually(async () => (await status(b)).pendingMutations === 0, 30000, 'the outbox drains');
  assert.deepEqual(await shown(b), ['before', 'frozen-1', 'frozen-2']);

  await profile.thaw(a);
  await eventually(async () => (await shown(a)).join() === 'before,frozen-1,frozen-2', 10000, "a's live query catches up");
  // a answers the asks it got while frozen once it runs again (one, or two
  // if a second request met a 401 before a's deadline); none is used.
  await eventually(() => asked.length >= 3, 10000, "a's late answer");
  assert.deepEqual(asked.slice(0, 2), ['a', 'b']);
  assert.ok(asked.slice(2).every((tab) => tab === 'a'), JSON.stringify(asked));
  await addTodo(a, { id: 'thawed', owner: user });
  assert.equal(await settled(a, 'window.lastMutation.server'), 'ok', 'a syncs again');
  await eventually(async () => (await shown(b)).includes('thawed'), 10000, 'b sees the write of the thawed tab');
  assert.equal((await status(a)).error, null);

  const log = (await serverMutations()).slice(logBefore);
  assertNoDuplicates(log);
  assert.deepEqual(log.map((m) => [m.name, m.outcome]), Array(4).fill(['addTodo', 'ok']), 'each write once');
  assert.deepEqual(await todoIds(b), ['before', 'frozen-1', 'frozen-2', 'thawed']);
});

/** Records every storage status of the tab's database in `window.storageStatuses`. */
const recordStorage = (page) =>
  page.evaluate(() => {
    window.storageStatuses = [];
    window.db.onStorageChange((s) => window.storageStatuses.push(s));
  });

const storageOf = (page) => page.evaluate(() => window.db.storage);

test('storage cleared under the running app: it says storage_cleared, keeps working and syncing from memory, writes nothing more; reopened, it re-syncs what the server confirmed', async () => {
  let profile = await device();
  const user = 'cleo';
  const logBefore = (await serverMutations()).length;
  const [p, q] = [await syncedTab(profile, user), await syncedTab(profile, user)];
  await allConnected([p, q]);
  await recordStorage(p);
  await watchTodos(q);
  await addTodo(p, { id: 'confirmed', owner: user });
  assert.equal(await settled(p, 'window.lastMutation.server'), 'ok');
  await eventually(async () => (await status(p)).pendingMutations === 0, 30000, 'the outbox drains');
  // One mutation durable here but not yet sent when storage goes.
  await p.evaluate(() => window.db.pauseSync());
  await addTodo(p, { id: 'queued', owner: user });
  await eventually(async () => (await status(p)).pendingMutations === 1, 10000, 'one pending');
  const durableBefore = (await storageOf(p)).durableSeq;

  // The site answers `Clear-Site-Data: "storage"`, as a sign-out page might.
  await p.evaluate(() => fetch('/demo/clear-site-data', { method: 'POST' }));
  // The worker is told at once (its IndexedDB connection closes), before any write.
  const isCleared = async (tab) => (await storageOf(tab)).error?.code === 'storage_cleared';
  await eventually(() => isCleared(p), 10000, 'the storage status');
  await eventually(() => isCleared(q), 10000, 'every tab is told');
  assert.equal((await storageOf(p)).error.retryable, false);

  // Writes keep working in memory, in every tab; `durable` rejects at once.
  const write = await p.evaluate(async () => {
    const m = window.db.mutate.addTodo({ id: 'after-clear', listId: 'l1', owner: 'cleo', title: 'after-clear' });
    window.lastMutation = m;
    await m.local;
    return m.durable.then(() => 'durable', (e) => e.code);
  });
  assert.equal(write, 'storage_cleared');
  await eventually(async () => (await shown(q)).join() === 'after-clear,confirmed,queued', 10000, "q's live query");
  const localTable = "window.db.exec('CREATE TABLE IF NOT EXISTS notes (x)').then((r) => r.durable)";
  assert.equal(await settled(q, localTable), 'storage_cleared', 'plain SQL in the other tab too');
  // Sync goes on from memory: the outbox drains, the server confirms both.
  await q.evaluate(() => window.db.resumeSync());
  assert.equal(await settled(p, 'window.lastMutation.server'), 'ok');
  await eventually(async () => (await status(p)).pendingMutations === 0, 30000, 'the outbox drains');
  // A last write the server never hears of: not acknowledged, and gone after the restart.
  await p.evaluate(() => window.db.pauseSync());
  await p.evaluate(() => {
    const m = window.db.mutate.addTodo({ id: 'never-sent', listId: 'l1', owner: 'cleo', title: 'never-sent' });
    window.neverSent = m;
    return m.local;
  });
  assert.equal(await settled(p, 'window.neverSent.durable'), 'storage_cleared');
  // Nothing was written after the clear, and the status never claimed otherwise.
  const statuses = await p.evaluate(() => window.storageStatuses);
  const from = statuses.findIndex((s) => s.error?.code === 'storage_cleared');
  const all = JSON.stringify(statuses);
  assert.ok(statuses.slice(from).every((s) => s.error?.code === 'storage_cleared'), `the error never lifts: ${all}`);
  assert.ok(statuses.every((s) => s.durableSeq <= durableBefore), `durableSeq never grows: ${all}`);

  profile = await restart(profile);
  const again = await syncedTab(profile, user);
  const resynced = async () => (await todoIds(again)).join() === 'after-clear,confirmed,queued';
  await eventually(resynced, 30000, 're-synced from the server');
  await recordStorage(again);
  assert.equal((await storageOf(again)).error, undefined, 'storage works again');
  await addTodo(again, { id: 'reopened', owner: user });
  assert.equal(await settled(again, 'window.lastMutation.server'), 'ok');
  const log = (await serverMutations()).slice(logBefore);
  assertNoDuplicates(log);
  assert.equal(log.length, 4, 'confirmed, queued, after-clear, reopened; never never-sent');
  assert.ok(log.every((m) => m.outcome === 'ok'));
  assert.deepEqual(await todoIds(again), ['after-clear', 'confirmed', 'queued', 'reopened']);
});

test('storage quota exhausted, then space again: writes go on in memory, durable rejects with storage_quota; then they reach the disk and survive a restart', { needs: 'quota' }, async () => {
  let profile = await device();
  // The OPFS backend: Chromium applies a quota override to OPFS writes; its
  // IndexedDB (the default backend's log) does not heed the override.
  const options = { name: 'quota', storage: 'opfs' };
  const open = async () => {
    const tab = await profile.newTab(server.url);
    await tab.waitForFunction(() => window.ready);
    await tab.evaluate((o) => window.openDb(o), options);
    await tab.waitForFunction(() => window.db.storage !== undefined);
    return tab;
  };
  const rows = (tab) => tab.evaluate(async () => (await window.db.query('SELECT x FROM t ORDER BY x')).map((r) => r.x));
  const insert = (tab, x, bytes = 1000) =>
    tab.evaluate(
      async ({ x, bytes }) => {
        const r = await window.db.exec('INSERT INTO t VALUES (?, randomblob(?))', [x, bytes]);
        return r.durable.then(() => 'durable', (e) => e.code);
      },
      { x, bytes },
    );
  let tab = await open();
  const other = await open();
  await tab.evaluate(() => window.db.exec('CREATE TABLE t (x INTEGER PRIMARY KEY, pad BLOB)'));
  assert.equal(await insert(tab, 1), 'durable');
  await recordStorage(tab);
  await other.evaluate(() => (window.t = window.db.watch('SELECT x FROM t ORDER BY x')));
  const watched = () => other.evaluate(() => window.t.getSnapshot().rows?.map((r) => r.x).join());
  const durableBefore = (await storageOf(tab)).durableSeq;

  const origin = new URL(server.url).origin;
  await profile.setQuota(tab, origin, 1);
  // Large: a leader tab's worker appends its log in place (`opfs-sync`), and
  // Chromium grants a file capacity ahead of its writes (1 MiB and more), so
  // a small append lands without asking the quota.
  assert.equal(await insert(tab, 2, 3_000_000), 'storage_quota', 'the write that met the full disk');
  const error = (await storageOf(tab)).error;
  assert.equal(error.code, 'storage_quota');
  assert.equal(error.retryable, true);
  assert.equal(await insert(other, 3), 'storage_quota', 'a write while it is full: rejected at once');
  assert.deepEqual(await rows(tab), [1, 2, 3], 'the writes are there in memory');
  await eventually(async () => (await watched()) === '1,2,3', 10000, "the other tab's live query");
  assert.equal((await storageOf(other)).error?.code, 'storage_quota', 'every tab is told');
  assert.equal((await storageOf(tab)).durableSeq, durableBefore, 'nothing reached the disk');

  await profile.setQuota(tab, origin, undefined);
  // The worker retries on its own (backoff up to 30 s): the stalled frames land.
  await eventually(async () => (await storageOf(tab)).error === undefined, 60000, 'storage recovers');
  assert.ok((await storageOf(tab)).durableSeq >= durableBefore + 2, 'both stalled writes are on disk');
  assert.equal(await insert(tab, 4), 'durable', 'later writes are durable again');
  const statuses = await tab.evaluate(() => window.storageStatuses);
  const failing = statuses.map((s) => s.error?.code ?? 'ok').filter((c, i, all) => c !== all[i - 1]);
  assert.deepEqual(failing, ['storage_quota', 'ok'], 'one stall, one recovery, no flapping');

  profile = await restart(profile);
  tab = await open();
  assert.deepEqual(await rows(tab), [1, 2, 3, 4], 'everything survives a restart');
  assert.deepEqual(await tab.evaluate(() => window.db.query('PRAGMA integrity_check')), [{ integrity_check: 'ok' }]);
});
