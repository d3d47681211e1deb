// Sync controls end to end, against the real server (store from
// FERRYDB_E2E_STORE, see harness.freshStore): the app's pause switch, the
// progress of an initial sync pulled in several pages, and an expired JWT
// refreshed once through the tab.
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildTestSite, eventually, freshStore, launchProfile, root, startServer, syncTools, test } from './harness.mjs';

/** Rows per page of a full pull: small, so a few todos take several pages. */
const PAGE_SIZE = 3;
const JWT_SECRET = 'e2e-secret-e2e-secret-e2e-secret';
/**
 * The server verifies `exp` with jsonwebtoken's default leeway of 60 s
 * (server/src/auth.rs keeps `Validation::new`'s defaults), so a token is
 * refused `LEEWAY_S` seconds after its `exp`.
 */
const LEEWAY_S = 60;

let site;
let storeDir;
let server;
const profiles = [];
const tools = syncTools(() => server);
const { status, todoIds, syncedTab, allConnected, addTodo, serverMutations, assertNoDuplicates } = tools;

async function startSyncServer(name, auth) {
  return startServer([
    '--app', join(root, 'tests', 'fixtures', 'app.json'),
    '--store', await freshStore(storeDir, name),
    ...auth,
    '--demo',
    '--page-size', String(PAGE_SIZE),
    '--static', site,
  ]);
}

before(async () => {
  site = await buildTestSite();
  storeDir = await mkdtemp(join(tmpdir(), 'ferrydb-sync-control-'));
  server = await startSyncServer('control', ['--dev-auth']);
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

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function realtimeClients() {
  const text = await (await fetch(`${server.url}metrics`)).text();
  return Number(text.match(/^ferrydb_realtime_clients (\d+)/m)?.[1]);
}

// First in this file: it counts the server's realtime channels from zero.
test('a paused worker closes its realtime channel on the server; resumed, it opens one again', { needs: 'abortClosesConnection' }, async () => {
  const [laptop, phone] = [await device(), await device()];
  const user = 'pat';
  const [a1, a2] = [await syncedTab(laptop, user), await syncedTab(laptop, user)];
  const b1 = await syncedTab(phone, user);
  await allConnected([a1, a2, b1]);
  await eventually(async () => (await realtimeClients()) === 2, 30000, 'both devices listen for pokes');

  await a1.evaluate(() => window.db.pauseSync());
  await eventually(async () => (await realtimeClients()) === 1, 20000, 'the paused worker closed its realtime channel');
  await a2.evaluate(() => window.db.resumeSync());
  await eventually(async () => (await realtimeClients()) === 2, 30000, 'the realtime channel is back');

  // The next test counts channels from zero.
  for (const profile of [laptop, phone]) {
    profiles.splice(profiles.indexOf(profile), 1);
    await profile.close();
  }
  await eventually(async () => (await realtimeClients()) === 0, 20000, 'closed browsers hold no channel');
});

test('pauseSync in one tab pauses every tab of the replica; writes queue; resumeSync delivers them exactly once', async () => {
  const [laptop, phone] = [await device(), await device()];
  const user = 'pia';
  const [a1, a2] = [await syncedTab(laptop, user), await syncedTab(laptop, user)];
  const b1 = await syncedTab(phone, user);
  await allConnected([a1, a2, b1]);
  await eventually(async () => (await realtimeClients()) === 2, 30000, 'both devices listen for pokes');
  const before = (await serverMutations()).length;

  await a1.evaluate(() => window.db.pauseSync());
  await eventually(async () => (await status(a2)).paused, 5000, 'the other tab sees paused');
  assert.equal((await status(a2)).connected, false);

  await addTodo(a2, { id: 'paused-1', owner: user });
  await addTodo(a1, { id: 'paused-2', owner: user });
  assert.deepEqual(await todoIds(a1), ['paused-1', 'paused-2'], 'local writes keep working');
  // Longer than the first backoff steps and the poke debounce: a client that
  // kept syncing would have pushed by now.
  await sleep(2000);
  assert.equal((await serverMutations()).length, before, 'nothing reached the server while paused');
  const paused = await status(a1);
  assert.equal(paused.pendingMutations, 2);
  assert.equal(paused.paused, true);
  assert.deepEqual(await todoIds(b1), []);

  // Resumed from the other tab: the switch is the worker's, not the tab's.
  await a2.evaluate(() => window.db.resumeSync());
  await eventually(async () => (await status(a1)).pendingMutations === 0, 30000, 'the outbox drains');
  const resumed = await status(a1);
  assert.equal(resumed.paused, false);
  assert.equal(resumed.connected, true);
  await eventually(async () => (await todoIds(b1)).join() === 'paused-1,paused-2', 30000, 'the other device');
  const log = await serverMutations();
  assertNoDuplicates(log);
  assert.equal(log.length, before + 2, 'each write processed once');
  assert.ok(log.slice(before).every((m) => m.outcome === 'ok'));
});

test('initial sync reports rows received page by page, then null', async () => {
  const [writer, fresh] = [await device(), await device()];
  const user = 'ivy';
  const w = await syncedTab(writer, user);
  await allConnected([w]);
  const ids = Array.from({ length: 10 }, (_, i) => `seed-${String(i).padStart(2, '0')}`);
  for (const id of ids) await addTodo(w, { id, owner: user });
  await eventually(async () => (await status(w)).pendingMutations === 0, 30000, 'the writer is synced');

  const tab = await syncedTab(fresh, user);
  await eventually(async () => (await todoIds(tab)).length === ids.length, 30000, 'the initial sync');
  await eventually(async () => (await status(tab)).initialSync === null && (await status(tab)).lastSyncedAt, 30000, 'done');
  const seen = (await tab.evaluate(() => window.statuses)).map((s) => s.initialSync);
  const progress = seen.filter((p) => p !== null);
  const received = [...new Set(progress.map((p) => p.received))];
  // 10 todos in pages of 3 (plus whatever else the user may read): at least
  // four pages, each adding to the count.
  assert.ok(received.length >= 4, `several pages reported: ${JSON.stringify(received)}`);
  assert.deepEqual([...received].sort((a, b) => a - b), received, 'the count only grows');
  assert.equal(received[0], 0, 'reported from the first request on');
  assert.ok(received.at(-1) >= 9, `every page but the last counted: ${received.at(-1)}`);
  assert.ok(progress.every((p) => p.total === null), 'protocol v1 gives no total');
  assert.equal(seen.at(-1), null, 'null when done');
  // A later catch-up is not an initial sync.
  await addTodo(w, { id: 'later', owner: user });
  await eventually(async () => (await todoIds(tab)).includes('later'), 30000, 'the catch-up');
  assert.equal((await status(tab)).initialSync, null);
});

/** An HS256 JWT for `sub`, valid until `exp` (seconds) plus the server's leeway. */
function jwt(sub, exp) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const unsigned = `${part({ alg: 'HS256', typ: 'JWT' })}.${part({ sub, exp })}`;
  return `${unsigned}.${createHmac('sha256', JWT_SECRET).update(unsigned).digest('base64url')}`;
}

test('an expired JWT: the next 401 asks the tab once, and sync goes on with the fresh token', async () => {
  const jwtServer = await startSyncServer('jwt', ['--jwt-secret', JWT_SECRET]);
  const dev = server;
  server = jwtServer;
  try {
    const laptop = await device();
    const user = 'kay';
    const nowS = () => Math.floor(Date.now() / 1000);
    // The first token is refused by the server 4–5 s after the tab asked for
    // it (timed from the ask, not from before the browser opened the page,
    // which may take seconds); the second one is good for an hour.
    let shortUntil;
    const calls = [];
    const page = await laptop.newTab();
    await page.exposeFunction('ferryToken', (who) => {
      calls.push({ who, at: Date.now() });
      if (calls.length > 1) return jwt(user, nowS() + 3600);
      shortUntil = nowS() + 5;
      return jwt(user, shortUntil - LEEWAY_S);
    });
    await page.goto(server.url);
    await page.waitForFunction(() => window.ready);
    assert.equal(await page.evaluate(() => window.openSynced({ user: 'kay', auth: 'exposed' })), null);
    await allConnected([page]);
    await addTodo(page, { id: 'jwt-1', owner: user });
    await page.evaluate(() => window.lastMutation.server);
    assert.equal(calls.length, 1, 'one token while it is good');

    // Wait until the server refuses the first token, then write.
    const wait = (shortUntil + 1) * 1000 - Date.now();
    if (wait > 0) await sleep(wait);
    await addTodo(page, { id: 'jwt-2', owner: user });
    await page.evaluate(() => window.lastMutation.server);
    assert.equal(calls.length, 2, 'exactly one refresh');
    assert.ok(calls.every((c) => c.who === user));
    await eventually(async () => (await status(page)).pendingMutations === 0, 30000, 'the outbox drains');
    assert.equal((await status(page)).error, null);
    assert.equal(calls.length, 2, 'and no more asks afterwards');
    assert.deepEqual((await page.evaluate(() => window.syncEvents)).filter((e) => e.type === 'unauthorized'), []);
    const log = await serverMutations();
    assertNoDuplicates(log);
    assert.deepEqual(
      log.map((m) => [m.id, m.outcome]),
      [[1, 'ok'], [2, 'ok']],
    );
  } finally {
    server = dev;
    // Killed: a graceful stop would wait for the tab's open realtime stream.
    await jwtServer.kill();
  }
});
