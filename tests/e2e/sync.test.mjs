// Sync end to end: the reference server (dev auth, demo switches; a SQLite
// store, or Postgres with FERRYDB_E2E_STORE=postgres://…, see
// harness.freshStore) and two browser profiles — two devices — with two
// tabs each.
// Every assertion is about behaviour; no test asserts a duration (how fast is
// `npm run bench`'s business).
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildTestSite, eventually, freshStore, launchProfile, root, startServer, test } from './harness.mjs';

let site;
let storeDir;
let server;
const profiles = [];

async function startSyncServer(appPath, name) {
  return startServer([
    '--app', appPath,
    '--store', await freshStore(storeDir, name),
    '--dev-auth',
    '--demo',
    '--static', site,
  ]);
}

before(async () => {
  site = await buildTestSite();
  storeDir = await mkdtemp(join(tmpdir(), 'ferrydb-sync-store-'));
  server = await startSyncServer(join(root, 'tests', 'fixtures', 'app.json'), 'main');
});

after(async () => {
  for (const profile of profiles) await profile.close().catch(() => {});
  await server?.stop();
  if (storeDir) await rm(storeDir, { recursive: true, force: true });
});

async function device() {
  const profile = await launchProfile();
  profiles.push(profile);
  return profile;
}

/** A tab of `profile` with the sample app open as `user`, synced with `at`. */
async function syncedTab(profile, user, { at = server, auth = 'user', name, version, refused } = {}) {
  const page = await profile.newTab(at.url);
  await page.waitForFunction(() => window.ready);
  const failure = await page.evaluate((options) => window.openSynced(options), { user, auth, name, version });
  assert.deepEqual(failure, refused ?? null, 'how opening ended');
  return page;
}

/** What `call` (run in the page) threw, as `{name, code}`; null if it did not throw. */
function thrown(page, call) {
  return page.evaluate(async (source) => {
    try {
      await new Function(`return (${source})()`)();
      return null;
    } catch (e) {
      return { name: e.name, code: e.code };
    }
  }, call.toString());
}

const status = (page) => page.evaluate(() => window.db.syncStatus);
const todoIds = (page) =>
  page.evaluate(async () => (await window.db.query('SELECT id FROM todos ORDER BY id')).map((r) => r.id));

/** Waits until every tab is connected to the server. */
async function allConnected(tabs) {
  for (const tab of tabs) await eventually(async () => (await status(tab)).connected, 30000, 'connected');
}

/** Runs `addTodo` in `page` and waits for `local`; returns the mutation id. */
function addTodo(page, todo) {
  return page.evaluate(async (t) => {
    const m = window.db.mutate.addTodo({ listId: 'l1', title: t.id, ...t });
    window.lastMutation = m;
    const id = await m.local;
    await m.durable;
    return id;
  }, todo);
}

/** Waits inside the page, until `deadline` (ms since the epoch), for todo `id`. */
function seesTodoBy(page, id, deadline) {
  return page.evaluate(
    async ({ id, deadline }) => {
      for (;;) {
        const rows = await window.db.query('SELECT id FROM todos WHERE id = ?', [id]);
        if (rows.length > 0) return true;
        if (Date.now() > deadline) return false;
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    { id, deadline },
  );
}

async function faults(body) {
  const response = await fetch(`${server.url}demo/faults`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  assert.equal(response.status, 200, await response.text());
}

async function serverMutations() {
  const response = await fetch(`${server.url}demo/mutations`);
  return (await response.json()).mutations;
}

function assertNoDuplicates(log) {
  const seen = new Set();
  for (const m of log) {
    const key = `${m.clientID}/${m.id}`;
    assert.ok(!seen.has(key), `mutation ${key} was processed twice`);
    seen.add(key);
  }
}

test('a mutation shows in both tabs of its device at once and on the other device through its realtime poke', async () => {
  const [laptop, phone] = [await device(), await device()];
  const user = 'ada';
  const tabs = [
    await syncedTab(laptop, user),
    await syncedTab(laptop, user),
    await syncedTab(phone, user),
    await syncedTab(phone, user),
  ];
  await allConnected(tabs);
  const [a1, a2, b1, b2] = tabs;
  // A first write reaching the other device shows its realtime channel is
  // open (it connects after the first exchange). The second must come by the
  // poke: the other device's interval pull is 60 s after its last pull, so
  // within 30 s nothing else brings it. How fast is the benchmark's business
  // (cross-device latency in `npm run bench`), not this test's.
  await addTodo(a1, { id: 'realtime-0', owner: user });
  for (const tab of [b1, b2]) await eventually(async () => (await todoIds(tab)).includes('realtime-0'), 30000, 'warm-up');

  const start = Date.now();
  await addTodo(a1, { id: 'realtime-1', owner: user });
  assert.ok(await seesTodoBy(a2, 'realtime-1', Date.now()), 'the second tab has it when local resolves');
  const seen = await Promise.all([b1, b2].map((tab) => seesTodoBy(tab, 'realtime-1', start + 30_000)));
  assert.deepEqual(seen, [true, true], 'both tabs of the other device, well before an interval pull');
  await a1.evaluate(() => window.lastMutation.server);
  await eventually(async () => (await status(a1)).pendingMutations === 0, 30000, 'the outbox drains');
});

test('writes made offline survive a browser restart and reach the server exactly once', async () => {
  const laptop = await device();
  const phone = await device();
  const user = 'grace';
  let [a1, a2] = [await syncedTab(laptop, user), await syncedTab(laptop, user)];
  const b1 = await syncedTab(phone, user);
  await allConnected([a1, a2, b1]);
  const before = (await serverMutations()).length;

  await faults({ failStatus: 503 });
  try {
    for (const id of ['offline-1', 'offline-2']) await addTodo(a1, { id, owner: user });
    await addTodo(a2, { id: 'offline-3', owner: user });
    await eventually(async () => (await status(a1)).error?.code === 'server_error', 30000, 'the failure shows');
    assert.deepEqual(await todoIds(a2), ['offline-1', 'offline-2', 'offline-3']);
    assert.equal((await status(a2)).pendingMutations, 3);

    // The browser goes away and comes back: the worker starts again from storage.
    const dir = laptop.dir;
    await laptop.close({ keep: true });
    profiles.splice(profiles.indexOf(laptop), 1);
    const again = await launchProfile(dir);
    profiles.push(again);
    [a1, a2] = [await syncedTab(again, user), await syncedTab(again, user)];
    assert.deepEqual(await todoIds(a1), ['offline-1', 'offline-2', 'offline-3']);
    assert.equal((await serverMutations()).length, before, 'nothing reached the server while it failed');
  } finally {
    await faults({ failStatus: null });
  }
  await eventually(async () => (await status(a1)).pendingMutations === 0, 60000, 'the outbox drains');
  await eventually(async () => (await todoIds(b1)).length === 3, 60000, 'the other device has every write');
  const log = await serverMutations();
  assertNoDuplicates(log);
  assert.equal(log.length, before + 3, 'each write processed once');
  assert.ok(log.slice(before).every((m) => m.outcome === 'ok'));
});

test('a server answering 500 for a while: backoff, recovery, nothing lost', async () => {
  const [laptop, phone] = [await device(), await device()];
  const user = 'edsger';
  const a1 = await syncedTab(laptop, user);
  const b1 = await syncedTab(phone, user);
  await allConnected([a1, b1]);
  const before = (await serverMutations()).length;

  await faults({ failStatus: 500 });
  try {
    await addTodo(a1, { id: 'flaky-1', owner: user });
    await addTodo(a1, { id: 'flaky-2', owner: user });
    await eventually(async () => (await status(a1)).error?.code === 'server_error', 30000, 'the failure shows');
    // Retries keep failing for a while; the writes stay queued.
    await new Promise((r) => setTimeout(r, 3000));
    assert.equal((await status(a1)).pendingMutations, 2);
    assert.equal((await serverMutations()).length, before);
  } finally {
    await faults({ failStatus: null });
  }
  await eventually(async () => (await status(a1)).pendingMutations === 0, 60000, 'the outbox drains');
  const after = await status(a1);
  assert.equal(after.error, null);
  assert.equal(after.connected, true);
  await eventually(async () => (await todoIds(b1)).join() === 'flaky-1,flaky-2', 60000, 'the other device');
  const log = await serverMutations();
  assertNoDuplicates(log);
  assert.equal(log.length, before + 2);
});

test('a rejected mutation: server promise rejects with its code, the row goes from every tab, later writes go through', async () => {
  const laptop = await device();
  const user = 'barbara';
  const [a1, a2] = [await syncedTab(laptop, user), await syncedTab(laptop, user)];
  await allConnected([a1, a2]);

  const outcome = await a1.evaluate(async (owner) => {
    const m = window.db.mutate.addTodo({ id: 'not-mine', listId: 'l1', owner, title: 'x' });
    await m.local;
    const visible = (await window.db.query("SELECT id FROM todos WHERE id = 'not-mine'")).length;
    try {
      await m.server;
      return { visible, rejected: null };
    } catch (e) {
      return { visible, rejected: { name: e.name, code: e.code, serverCode: e.rejection?.code } };
    }
  }, 'someone-else');
  assert.equal(outcome.visible, 1, 'applied optimistically');
  assert.deepEqual(outcome.rejected, { name: 'FerryError', code: 'forbidden', serverCode: 'forbidden' });
  for (const tab of [a1, a2]) {
    await eventually(async () => !(await todoIds(tab)).includes('not-mine'), 30000, 'the row disappears');
  }
  const rejections = await a2.evaluate(async () => {
    const live = window.db.rejections();
    await live.ready();
    const state = live.getSnapshot();
    return state.status === 'ok' ? state.rows.map((r) => ({ name: r.name, code: r.code })) : state;
  });
  assert.deepEqual(rejections, [{ name: 'addTodo', code: 'forbidden' }]);
  await a2.evaluate(() => window.db.clearRejections());
  assert.deepEqual(await a1.evaluate(() => window.db.query('SELECT * FROM _ferry_rejections')), []);
  assert.ok((await a1.evaluate(() => window.syncEvents)).some((e) => e.type === 'rejected'));

  await addTodo(a2, { id: 'mine', owner: user });
  await a2.evaluate(() => window.lastMutation.server);
  assert.deepEqual(await todoIds(a1), ['mine']);
});

test('an auth provider that throws: status auth_required, writes still accepted locally', async () => {
  const laptop = await device();
  const tab = await syncedTab(laptop, 'alan', { auth: 'throw' });
  await eventually(async () => (await status(tab)).error?.code === 'auth_required', 30000, 'auth_required');
  await addTodo(tab, { id: 'local-only', owner: 'alan' });
  assert.deepEqual(await todoIds(tab), ['local-only']);
  const s = await status(tab);
  assert.equal(s.pendingMutations, 1);
  assert.equal(s.connected, false);
});

test('a server on a newer app version: updateNeeded in every tab, local writes kept', async () => {
  const app = JSON.parse(await readFile(join(root, 'tests', 'fixtures', 'app.json'), 'utf8'));
  app.version = 2;
  const appV2 = join(storeDir, 'app-v2.json');
  await writeFile(appV2, JSON.stringify(app));
  const newer = await startSyncServer(appV2, 'v2');
  try {
    const laptop = await device();
    const tabs = [await syncedTab(laptop, 'linus', { at: newer }), await syncedTab(laptop, 'linus', { at: newer })];
    for (const tab of tabs) {
      await eventually(
        async () => (await tab.evaluate(() => window.syncEvents)).find((e) => e.type === 'updateNeeded'),
        30000,
        'updateNeeded',
      );
    }
    const event = (await tabs[1].evaluate(() => window.syncEvents)).find((e) => e.type === 'updateNeeded');
    assert.equal(event.serverSchemaVersion, 2);
    assert.equal((await status(tabs[0])).error?.code, 'update_needed');
    await addTodo(tabs[0], { id: 'kept', owner: 'linus' });
    assert.deepEqual(await todoIds(tabs[1]), ['kept']);
    assert.equal((await status(tabs[1])).pendingMutations, 1);
  } finally {
    await newer.stop();
  }
});

test('plain SQL may not write synced tables; local tables take it; bad mutations leave nothing', async () => {
  const laptop = await device();
  const tab = await syncedTab(laptop, 'tony');
  assert.deepEqual(
    await thrown(tab, () => window.db.exec("INSERT INTO todos (id, list_id, owner, title, done) VALUES ('x', 'l', 'tony', 'x', 0)")),
    { name: 'FerryError', code: 'write_outside_mutator' },
  );
  await tab.evaluate(() => window.db.exec("INSERT INTO drafts (id, body) VALUES ('d1', 'hello')"));
  assert.deepEqual(await tab.evaluate(() => window.db.query('SELECT body FROM drafts')), [{ body: 'hello' }]);
  assert.deepEqual(await thrown(tab, () => window.db.mutate('nope', {}).local), { name: 'FerryError', code: 'unknown_mutator' });
  assert.deepEqual(await thrown(tab, () => window.db.mutate.addTodo({ id: 'x' }).local), {
    name: 'FerryError',
    code: 'bad_arguments',
  });
  assert.deepEqual(await todoIds(tab), []);
  assert.equal((await tab.evaluate(() => window.db.query('SELECT count(*) AS n FROM _ferry_outbox')))[0].n, 0);
});

// A tab of a newer build upgrades the worker instead: faults_process.test.mjs.
test('a tab of an older build than the worker is refused with app_outdated', async () => {
  const laptop = await device();
  const name = 'versions';
  const current = await syncedTab(laptop, 'ken', { name, version: 2 });
  const older = await syncedTab(laptop, 'ken', { name, version: 1, refused: { name: 'FerryError', code: 'app_outdated' } });
  assert.deepEqual(await thrown(older, () => window.db.query('SELECT 1')), { name: 'FerryError', code: 'app_outdated' });
  // The tab of the worker's own version is unaffected.
  assert.deepEqual(await current.evaluate(() => window.db.query('SELECT 1 AS one')), [{ one: 1 }]);
});

test('deleteDatabase while syncing: the replica comes back from the server, and new writes sync as a new client', async () => {
  const laptop = await device();
  const user = 'hedy';
  const tab = await syncedTab(laptop, user);
  await allConnected([tab]);
  await addTodo(tab, { id: 'before-delete', owner: user });
  await tab.evaluate(() => window.lastMutation.server);
  const before = await serverMutations();

  await tab.evaluate(() => window.db.deleteDatabase());
  await eventually(async () => (await todoIds(tab)).join() === 'before-delete', 30000, 'the full pull after the reset');
  await addTodo(tab, { id: 'after-delete', owner: user });
  await tab.evaluate(() => window.lastMutation.server);
  const log = await serverMutations();
  assertNoDuplicates(log);
  assert.equal(log.length, before.length + 1);
  const last = log.at(-1);
  assert.equal(last.id, 1, 'a new client starts its mutation ids at 1');
  assert.ok(!before.some((m) => m.clientID === last.clientID), 'under a client id never seen before');
});
