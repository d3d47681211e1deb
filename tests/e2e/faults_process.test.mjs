// Faults of the browser's process and its surroundings, with sync on, against
// the real server (store from FERRYDB_E2E_STORE, see harness.freshStore):
// - the whole browser killed with SIGKILL during a burst of writes;
// - an old and a new build of the app open at once during an upgrade;
// - the wall clock stepped back and forward an hour while syncing.
// Each ends in a defined state, asserted; nothing acknowledged is lost and
// nothing reaches the server twice.
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { buildTestSite, eventually, freshStore, launchProfile, root, startServer, syncTools, test } from './harness.mjs';

/** The client's longest backoff step (`SyncConfig::default().backoff_max_ms`). */
const BACKOFF_MAX_MS = 60_000;
const HOUR_MS = 3_600_000;

let site;
let storeDir;
let server;
const profiles = [];
const { status, todoIds, syncedTab, allConnected, addTodo, faults, serverMutations, assertNoDuplicates } = syncTools(
  () => server,
);

function serverArgs(store, app = join(root, 'tests', 'fixtures', 'app.json')) {
  return ['--app', app, '--store', store, '--dev-auth', '--demo', '--static', site];
}

before(async () => {
  site = await buildTestSite();
  storeDir = await mkdtemp(join(tmpdir(), 'ferrydb-faults-process-'));
});

after(async () => {
  for (const profile of profiles) await profile.close().catch(() => {});
  // Killed: a graceful stop would wait for the tabs' open realtime streams.
  await server?.kill();
  if (storeDir) await rm(storeDir, { recursive: true, force: true });
});

async function device(dir, options) {
  const profile = await launchProfile(dir, options);
  profiles.push(profile);
  return profile;
}

function forget(profile) {
  profiles.splice(profiles.indexOf(profile), 1);
}

/** A fresh server of its own for each test, so one test's failure cannot leak into the next. */
async function freshServer(name, app) {
  await server?.kill();
  server = await startServer(serverArgs(await freshStore(storeDir, name), app));
}

/** The server's log entries for the client(s) of `user`'s replica in `page`. */
async function clientLog(page) {
  const clientID = await page.evaluate(
    async () => (await window.db.query("SELECT value FROM _ferry_meta WHERE key = 'client_id'"))[0].value,
  );
  return (await serverMutations()).filter((m) => m.clientID === clientID);
}

test('the browser killed with SIGKILL mid-burst: every durable write survives and reaches the server exactly once', async () => {
  await freshServer('sigkill');
  const user = 'kim';
  const laptop = await device();
  let tab = await syncedTab(laptop, user);
  await allConnected([tab]);

  // Writes one after another (each `local` awaited, so they commit in
  // order), recording which ones `durable` acknowledged; the push of each
  // goes out as it is made.
  await tab.evaluate((owner) => {
    window.issued = [];
    window.durable = [];
    (async () => {
      for (let i = 0; i < 100_000; i++) {
        const id = `k-${String(i).padStart(5, '0')}`;
        const m = window.db.mutate.addTodo({ id, listId: 'l1', owner, title: id });
        window.issued.push(id);
        m.durable.then(() => window.durable.push(id), () => {});
        await m.local;
      }
    })();
  }, user);
  // Until some are on disk and some on the server: the kill lands with
  // pushes and storage writes in flight. How far the burst runs ahead of
  // the disk at that moment is up to timing; what is asserted holds for any.
  await eventually(async () => (await clientLog(tab)).length >= 20, 30000, 'pushes reaching the server');
  await eventually(() => tab.evaluate(() => window.durable.length >= 50), 30000, 'durable writes');
  const { durable, issued } = await tab.evaluate(() => ({ durable: [...window.durable], issued: window.issued.length }));
  await laptop.kill();
  forget(laptop);

  const again = await device(laptop.dir);
  tab = await syncedTab(again, user);
  const recovered = await todoIds(tab);
  console.log(
    `# read before the kill: ${issued} issued, ${durable.length} durable; ` +
      `after the restart: ${recovered.length} in the replica, ${(await clientLog(tab)).length} on the server`,
  );
  const missing = durable.filter((id) => !recovered.includes(id));
  assert.deepEqual(missing, [], 'every write acknowledged durable is in the replica after the restart');

  // A write after the restart: it must not be mistaken for one the server
  // already has from before the crash.
  await addTodo(tab, { id: 'after-restart', owner: user });
  await tab.evaluate(() => window.lastMutation.server);
  await eventually(async () => (await status(tab)).pendingMutations === 0, 60000, 'the outbox drains');

  const log = await clientLog(tab);
  assertNoDuplicates(log);
  assert.ok(log.every((m) => m.outcome === 'ok' && m.name === 'addTodo'), JSON.stringify(log.filter((m) => m.outcome !== 'ok')));
  assert.deepEqual(
    log.map((m) => m.id),
    Array.from({ length: log.length }, (_, i) => i + 1),
    'mutation ids 1..n, each processed once, none skipped',
  );
  const burst = Array.from({ length: log.length - 1 }, (_, i) => `k-${String(i).padStart(5, '0')}`);
  const expected = [...burst, 'after-restart'].sort();
  assert.deepEqual(await todoIds(tab), expected, 'the replica: an unbroken prefix of the burst, then the new write');
  assert.ok(burst.length >= durable.length, 'nothing durable was dropped on the way to the server');

  // What the server holds, as a device that never saw the crash gets it.
  const other = await device();
  const fresh = await syncedTab(other, user);
  await eventually(async () => (await todoIds(fresh)).length === expected.length, 60000, 'the other device converges');
  assert.deepEqual(await todoIds(fresh), expected);
});

// ---- An upgrade: the server and a new build of the app, while old tabs are open.

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

const events = (page, type) => page.evaluate((type) => window.syncEvents.filter((e) => e.type === type), type);

/** The sample app's next version: a new table and a mutator writing it (what the server takes on in place). */
function nextVersion(app) {
  return {
    ...app,
    version: app.version + 1,
    tables: [
      ...app.tables,
      {
        name: 'comments',
        columns: [
          { name: 'id', type: 'text' },
          { name: 'owner', type: 'text' },
          { name: 'body', type: 'text' },
        ],
        primaryKey: ['id'],
        access: { read: 'owner = :user_id', write: 'owner = :user_id' },
      },
    ],
    mutators: [
      ...app.mutators,
      {
        name: 'addComment',
        params: [
          { name: 'id', type: 'text' },
          { name: 'owner', type: 'text' },
          { name: 'body', type: 'text' },
        ],
        sql: 'INSERT INTO comments (id, owner, body) VALUES (:id, :owner, :body)',
      },
    ],
  };
}

test('an old and a new build open at once during an upgrade: the new one works, the old one is told to reload, no write lost or twice', async () => {
  const v1 = JSON.parse(await readFile(join(root, 'tests', 'fixtures', 'app.json'), 'utf8'));
  const v2 = nextVersion(v1);
  const v2Path = join(storeDir, 'app-v2.json');
  await writeFile(v2Path, JSON.stringify(v2));
  const store = await freshStore(storeDir, 'upgrade');
  await server?.kill();
  server = await startServer(serverArgs(store));
  const user = 'uma';
  const laptop = await device();
  const old = await syncedTab(laptop, user);
  await allConnected([old]);
  await addTodo(old, { id: 'v1-synced', owner: user });
  await eventually(async () => (await status(old)).pendingMutations === 0, 30000, 'synced on version 1');

  // The deploy, server first: it restarts on version 2, same port and store.
  await server.kill();
  server = await startServer(serverArgs(store, v2Path), { listen: `127.0.0.1:${server.port}` });
  // The old build's next write reaches it and is served: version 2 only adds
  // a table, so the server serves version 1 as it is (a rolling deploy
  // stops no client; `updateApp` is for changes it cannot serve).
  await addTodo(old, { id: 'v1-queued', owner: user });
  await old.evaluate(() => {
    window.queuedOutcome = null;
    window.lastMutation.server.then(
      () => (window.queuedOutcome = 'ok'),
      (e) => (window.queuedOutcome = e.code),
    );
  });
  await eventually(
    async () => (await old.evaluate(() => window.queuedOutcome)) !== null,
    BACKOFF_MAX_MS + 10_000,
    'the old build served by the new server',
  );
  assert.equal(await old.evaluate(() => window.queuedOutcome), 'ok');
  assert.deepEqual(await events(old, 'updateNeeded'), [], 'an additive change asks no client to update');
  assert.equal((await status(old)).error, null);

  // The new build opens in another tab of the same browser, while the old one is open.
  const fresh = await syncedTab(laptop, user, { app: v2 });
  await eventually(async () => (await events(old, 'appOutdated')).length > 0, 10000, 'the old tab told to reload');
  assert.deepEqual(await events(old, 'appOutdated'), [{ type: 'appOutdated', schemaVersion: 2 }]);
  const outdated = { name: 'FerryError', code: 'app_outdated' };
  assert.deepEqual(
    await thrown(old, () => window.db.mutate.addTodo({ id: 'v1-late', listId: 'l1', owner: 'uma', title: 'x' }).local),
    outdated,
    'a write of the old build after the upgrade is refused, not applied',
  );
  assert.deepEqual(await thrown(old, () => window.db.query('SELECT 1')), outdated);

  // The new build works at once, its new mutator included, against the new server.
  await fresh.evaluate(async (owner) => {
    await window.db.mutate.addComment({ id: 'c1', owner, body: 'hello' }).server;
  }, user);
  await eventually(async () => (await status(fresh)).pendingMutations === 0, 60000, 'the outbox drains');
  assert.equal(await old.evaluate(() => window.queuedOutcome), 'ok', "the old tab's queued write settled");
  const s = await status(fresh);
  assert.equal(s.error, null);
  assert.ok(s.connected);
  assert.deepEqual(await todoIds(fresh), ['v1-queued', 'v1-synced']);
  const comments = (page) => page.evaluate(async () => (await window.db.query('SELECT id FROM comments')).map((r) => r.id));
  assert.deepEqual(await comments(fresh), ['c1']);

  const log = await clientLog(fresh);
  assertNoDuplicates(log);
  assert.deepEqual(
    log.map((m) => [m.id, m.name, m.outcome]),
    [
      [1, 'addTodo', 'ok'],
      [2, 'addTodo', 'ok'],
      [3, 'addComment', 'ok'],
    ],
    'each write once, in order, the old build\'s queued one included',
  );

  // Another device on the new build gets all of it from the server.
  const phone = await device();
  const other = await syncedTab(phone, user, { app: v2 });
  await eventually(async () => (await todoIds(other)).length === 2 && (await comments(other)).length === 1, 60000, 'the other device');
  assert.deepEqual(await todoIds(other), ['v1-queued', 'v1-synced']);

  // The user reloads the old tab: it is the new build now.
  await old.reload();
  await old.waitForFunction(() => window.ready);
  assert.equal(await old.evaluate((options) => window.openSynced(options), { user, app: v2 }), null);
  assert.deepEqual(await comments(old), ['c1']);
});

// ---- The wall clock stepping, as NTP or a user setting the time would.

/**
 * The browser runs with `tests/e2e/clock/wall_clock_shift.c` preloaded,
 * which adds an offset to the wall clock (CLOCK_REALTIME, gettimeofday,
 * time) of every browser process; the monotonic clock is untouched. The
 * offset lives in a file the test rewrites in place.
 */
async function wallClockBrowser() {
  const library = join(root, 'target', 'wall_clock_shift.so');
  const source = join(root, 'tests', 'e2e', 'clock', 'wall_clock_shift.c');
  // `cc` is there wherever cargo builds: rustc links with it.
  await promisify(execFile)(process.env.CC ?? 'cc', ['-shared', '-fPIC', '-O2', '-o', library, source, '-ldl']);
  const file = join(storeDir, 'wall-clock-offset');
  const handle = await open(file, 'w+');
  const setOffset = async (ms) => {
    const bytes = Buffer.alloc(16);
    bytes.writeBigInt64LE(BigInt(ms), 0);
    bytes.writeBigInt64LE(BigInt(ms), 8);
    await handle.write(bytes, 0, 16, 0); // in place: the browser has it mapped
  };
  await setOffset(0);
  const profile = await device(undefined, {
    env: { ...process.env, LD_PRELOAD: library, FERRYDB_WALL_CLOCK_FILE: file },
  });
  return { profile, setOffset, done: () => handle.close() };
}

test('the wall clock set back and forward an hour: retries and sync go on within the backoff, timestamps follow the clock', async () => {
  await freshServer('clock');
  const user = 'tess';
  const clock = await wallClockBrowser();
  try {
    const tab = await syncedTab(clock.profile, user);
    await allConnected([tab]);
    await addTodo(tab, { id: 'before', owner: user });
    await tab.evaluate(() => window.lastMutation.server);

    // The server fails: the client backs off, a retry waits on a timer.
    await faults({ failStatus: 503 });
    await addTodo(tab, { id: 'failing', owner: user });
    await eventually(async () => (await status(tab)).error?.code === 'server_error', 30000, 'the failure shows');

    // The clock goes back an hour while the retry waits.
    await clock.setOffset(-HOUR_MS);
    await addTodo(tab, { id: 'after-back', owner: user });
    const createdAt = await tab.evaluate(
      async () => (await window.db.query("SELECT json_extract(args, '$.id') AS id, created_at AS at FROM _ferry_outbox")),
    );
    const stamped = createdAt.find((r) => r.id === 'after-back').at;
    assert.ok(
      Math.abs(stamped - (Date.now() - HOUR_MS)) < 60_000,
      `the worker's wall clock is an hour back (mutation stamped ${new Date(stamped).toISOString()})`,
    );
    assert.deepEqual(
      await tab.evaluate(() => window.syncEvents),
      [],
      'nothing for the app to act on',
    );

    // The server recovers: the pending retry goes out on its own timer, not an hour late.
    const recovered = Date.now();
    await faults({ failStatus: null });
    await eventually(
      async () => (await status(tab)).pendingMutations === 0,
      BACKOFF_MAX_MS + 10_000,
      'the outbox drains within the longest backoff step',
    );
    console.log(`# drained ${Date.now() - recovered} ms after the server recovered`);
    const back = await status(tab);
    assert.equal(back.error, null);
    assert.ok(
      Math.abs(back.lastSyncedAt - (Date.now() - HOUR_MS)) < 60_000,
      'lastSyncedAt in the clock\'s new (earlier) time',
    );

    // The clock jumps two hours forward (an hour ahead of true time), with sync running.
    const statusesBefore = await tab.evaluate(() => window.statuses.length);
    await clock.setOffset(HOUR_MS);
    await addTodo(tab, { id: 'after-forward', owner: user });
    await tab.evaluate(() => window.lastMutation.server);
    await eventually(
      async () => {
        const s = await status(tab);
        return s.pendingMutations === 0 && s.lastSyncedAt > Date.now() + HOUR_MS - 60_000;
      },
      30000,
      'synced, and stamped in the clock\'s new (later) time',
    );
    const since = (await tab.evaluate(() => window.statuses)).slice(statusesBefore);
    assert.deepEqual(
      since.filter((s) => s.error).map((s) => s.error.code),
      [],
      'no request counted as timed out because the clock jumped',
    );

    const log = await clientLog(tab);
    assertNoDuplicates(log);
    assert.deepEqual(
      log.map((m) => [m.id, m.outcome]),
      [[1, 'ok'], [2, 'ok'], [3, 'ok'], [4, 'ok']],
    );
    assert.deepEqual(await todoIds(tab), ['after-back', 'after-forward', 'before', 'failing']);
  } finally {
    await clock.setOffset(0);
    await clock.done();
  }
});
