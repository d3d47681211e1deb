// The server going away under a sync, end to end (store from
// FERRYDB_E2E_STORE, see harness.freshStore): killed with SIGKILL while a
// burst of pushes and a multi-page pull are in flight, then started again on
// the same port and store; and a server slower than the client's request
// timeout for a while. Nothing may be lost or processed twice.
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildTestSite, eventually, freshStore, launchProfile, root, startServer, syncTools, test } from './harness.mjs';

/** The client's request deadline (`SyncConfig::default().request_timeout_ms`). */
const CLIENT_TIMEOUT_MS = 30_000;

let site;
let storeDir;
let server;
const profiles = [];
const { status, todoIds, syncedTab, allConnected, addTodo, faults, serverMutations, assertNoDuplicates } = syncTools(
  () => server,
);

function serverArgs(store) {
  return [
    '--app', join(root, 'tests', 'fixtures', 'app.json'),
    '--store', store,
    '--dev-auth',
    '--demo',
    '--page-size', '5',
    '--static', site,
  ];
}

before(async () => {
  site = await buildTestSite();
  storeDir = await mkdtemp(join(tmpdir(), 'ferrydb-sync-restart-'));
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

test('the server killed mid-sync and restarted on the same port and store: nothing lost, nothing twice', async () => {
  const store = await freshStore(storeDir, 'restart');
  server = await startServer(serverArgs(store));
  const [laptop, phone] = [await device(), await device()];
  const user = 'rita';
  const a1 = await syncedTab(laptop, user);
  await allConnected([a1]);
  const seeded = Array.from({ length: 20 }, (_, i) => `seed-${String(i).padStart(2, '0')}`);
  for (const id of seeded) await addTodo(a1, { id, owner: user });
  await eventually(async () => (await status(a1)).pendingMutations === 0, 30000, 'the seed rows are on the server');

  // The phone's initial sync pages slowly (20+ rows in pages of 5, a second
  // each); once its first page is in, every request is held at the server,
  // so the kill lands with a push and a page certainly in flight.
  await faults({ latencyMs: 1000 });
  const b1 = await syncedTab(phone, user);
  await eventually(async () => (await status(b1)).initialSync?.received > 0, 30000, 'the pull is under way');
  await faults({ latencyMs: 1000, hold: true });
  const burst = Array.from({ length: 30 }, (_, i) => `burst-${String(i).padStart(2, '0')}`);
  await a1.evaluate(async (ids) => {
    for (const id of ids) await window.db.mutate.addTodo({ id, listId: 'l1', owner: 'rita', title: id }).local;
  }, burst);
  await eventually(async () => (await status(a1)).uploading, 30000, 'the burst is being pushed');
  await eventually(async () => (await status(b1)).downloading, 30000, 'a page is being pulled');
  const [sa, sb] = [await status(a1), await status(b1)];
  assert.equal(sa.pendingMutations, burst.length, 'the burst is pending at the kill');
  assert.ok(sb.initialSync?.received > 0, 'the multi-page pull is part way at the kill');
  await server.kill();
  await eventually(async () => (await status(a1)).error?.code === 'network', 30000, 'the client sees the server gone');

  await sleep(1000);
  server = await startServer(serverArgs(store), { listen: `127.0.0.1:${server.port}` });
  const all = [...seeded, ...burst].sort();
  await eventually(async () => (await status(a1)).pendingMutations === 0, 60000, 'the outbox drains after the restart');
  await eventually(async () => (await todoIds(b1)).join() === all.join(), 60000, 'the other device converges').catch(
    async (e) => {
      // The evidence a flake needs: where the phone stands against the server.
      const cookie = await b1.evaluate(async () => window.db.query("SELECT value FROM _ferry_meta WHERE key = 'cookie'"));
      const rows = (await todoIds(b1)).length;
      throw new Error(`${e.message}; phone: ${rows} rows, cookie ${JSON.stringify(cookie)}, status ${JSON.stringify(await status(b1))}`);
    },
  );
  assert.deepEqual(await todoIds(a1), all);
  assert.equal((await status(b1)).initialSync, null);
  const log = await serverMutations();
  assertNoDuplicates(log);
  assert.equal(log.length, all.length, 'every mutation processed exactly once, across the crash');
  assert.ok(log.every((m) => m.outcome === 'ok'));
});

test('a server slower than the request timeout for a while: timeout, backoff, recovery, nothing twice', async () => {
  // A server of its own (the one above may be dead if that test failed);
  // killed, since a graceful stop would wait for the open realtime streams.
  await server?.kill();
  server = await startServer(serverArgs(await freshStore(storeDir, 'slow')));
  const laptop = await device();
  const user = 'sam';
  const a1 = await syncedTab(laptop, user);
  await allConnected([a1]);
  const before = (await serverMutations()).length;

  // Each request sleeps past the client's deadline, then is still processed:
  // the push the client gave up on lands on the server, and its retry must
  // be recognised as already processed.
  await faults({ latencyMs: CLIENT_TIMEOUT_MS + 3000 });
  let timedOutAt;
  try {
    await addTodo(a1, { id: 'slow-1', owner: user });
    await eventually(
      async () => (await status(a1)).error?.code === 'timeout',
      CLIENT_TIMEOUT_MS + 15000,
      'the timeout shows',
    );
    timedOutAt = Date.now();
    assert.equal((await status(a1)).pendingMutations, 1);
  } finally {
    await faults({ latencyMs: 0 });
  }
  await eventually(async () => (await status(a1)).pendingMutations === 0, 60000, 'the outbox drains');
  // Past the moment the abandoned request's sleep ends on the server.
  await sleep(Math.max(0, timedOutAt + 4000 - Date.now()));
  const after = await status(a1);
  assert.equal(after.error, null);
  assert.equal(after.connected, true);
  const log = await serverMutations();
  assertNoDuplicates(log);
  assert.equal(log.length, before + 1, 'processed once though pushed twice');
});
