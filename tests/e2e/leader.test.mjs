// The leader-tab topology: three tabs of one profile syncing with the real
// server (in a browser without SharedWorker where the engine can start one,
// Chromium; elsewhere forced with `open({ topology: 'leader-tab' })`); the leader tab, which runs the
// worker host, is lost during a burst of writes: closed, its renderer
// crashed, or frozen. Each write is an `increment` of the tab's own counter,
// so a write applied twice shows in the count. Asserted: no write whose
// `durable` resolved is lost, none is applied twice (locally nor on the
// server), the other tabs' writes all land, and they keep reading, writing
// and syncing under the new leader.
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildTestSite, can, eventually, freshStore, launchProfile, root, startServer, syncTools, test } from './harness.mjs';

let site;
let storeDir;
let server;
const profiles = [];
const { status, syncedTab, allConnected, serverMutations, assertNoDuplicates } = syncTools(() => server);

before(async () => {
  site = await buildTestSite();
  storeDir = await mkdtemp(join(tmpdir(), 'ferrydb-leader-store-'));
  server = await startServer([
    '--app', join(root, 'tests', 'fixtures', 'app.json'),
    '--store', await freshStore(storeDir, 'leader'),
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

/**
 * Starts `count` increments of counter `id` in the page, one after another
 * (each sent once the last was applied); `window.burst` records how many
 * were applied and which are durable.
 */
function startBurst(page, id, count) {
  return page.evaluate(
    ({ id, count }) => {
      const burst = (window.burst = { applied: 0, durable: 0, done: false, error: null });
      void (async () => {
        const durable = [];
        for (let i = 0; i < count; i++) {
          const m = window.db.mutate.increment({ id, by: 1 });
          durable.push(m.durable.then(() => burst.durable++));
          await m.local;
          burst.applied++;
        }
        await Promise.all(durable);
        burst.done = true;
      })().catch((e) => (burst.error = `${e.code}: ${e.message}`));
    },
    { id, count },
  );
}

const burst = (page) => page.evaluate(() => window.burst);

async function counter(page, id) {
  const rows = await page.evaluate((id) => window.db.query('SELECT value FROM counters WHERE id = ?', [id]), id);
  return rows[0]?.value ?? 0;
}

/**
 * Three tabs of a profile in the leader-tab topology, the first of them the
 * leader: a browser without SharedWorker if the engine can start one (so
 * ferrydb finds it missing), else the topology forced.
 */
async function threeTabs(user, options) {
  const missing = can.disableSharedWorker;
  const profile = await launchProfile(undefined, { ...(missing && { sharedWorkers: false }), ...options });
  profiles.push(profile);
  const topology = missing ? undefined : 'leader-tab';
  const leader = await syncedTab(profile, user, { topology });
  const others = [await syncedTab(profile, user, { topology }), await syncedTab(profile, user, { topology })];
  for (const tab of [leader, ...others]) {
    if (missing) assert.equal(await tab.evaluate(() => 'SharedWorker' in window), false);
    assert.equal(await tab.evaluate(() => window.db.topology), 'leader-tab');
  }
  await allConnected([leader, ...others]);
  return { profile, leader, others };
}

const BURST = 40;

/**
 * The scenario: bursts in all three tabs; once each tab has applied a few,
 * `lose` takes the leader away; the other two finish their bursts on the
 * new leader, then write, read and sync.
 */
async function loseLeaderDuringBurst(user, lose, options) {
  const logBefore = (await serverMutations()).length;
  const { profile, leader, others } = await threeTabs(user, options);
  const [b, c] = others;
  // Counters are not per user: each test counts under its own names.
  const [ca, cb, cc, cafter] = ['a', 'b', 'c', 'after'].map((name) => `${user}-${name}`);
  await startBurst(leader, ca, BURST);
  await startBurst(b, cb, BURST);
  await startBurst(c, cc, BURST);
  for (const tab of [leader, b, c]) {
    await eventually(async () => (await burst(tab)).durable >= 5, 30000, 'writes under way');
  }
  const durableInLeader = (await burst(leader)).durable;
  await lose(profile, leader);

  for (const tab of [b, c]) {
    await eventually(async () => (await burst(tab)).done || (await burst(tab)).error, 60000, 'the burst done');
    assert.deepEqual(await burst(tab), { applied: BURST, durable: BURST, done: true, error: null });
  }
  // Every write of b and c exactly once; the lost leader's durable ones kept.
  assert.equal(await counter(b, cb), BURST);
  assert.equal(await counter(c, cc), BURST);
  const a = await counter(b, ca);
  assert.ok(a >= durableInLeader && a <= BURST, `a: ${a}, durable before the loss: ${durableInLeader}`);

  // The survivors keep writing, reading and syncing under the new leader.
  const after = await b.evaluate(async (id) => {
    const m = window.db.mutate.increment({ id, by: 1 });
    await m.durable;
    await m.server;
    return 'ok';
  }, cafter);
  assert.equal(after, 'ok');
  await eventually(async () => (await counter(c, cafter)) === 1, 10000, 'c reads the write of b');
  await eventually(async () => (await status(c)).pendingMutations === 0, 30000, 'the outbox drains');
  assert.equal((await status(b)).connected, true);

  // The server applied each write once: its log matches the counters it synced back.
  const log = (await serverMutations()).slice(logBefore);
  assertNoDuplicates(log);
  assert.ok(log.every((m) => m.name === 'increment' && m.outcome === 'ok'), JSON.stringify(log));
  assert.equal(log.length, 2 * BURST + a + 1, 'one server mutation per write');
  assert.equal(await counter(c, cb), BURST);
  assert.equal(await counter(c, ca), a);
  return { profile, b, c };
}

test('the leader tab closed during a burst of writes: another takes over, each write once', async () => {
  await loseLeaderDuringBurst('lea', async (_, leader) => {
    await leader.close();
  });
});

test("the leader tab's renderer crashed during a burst of writes: another takes over, each write once", { needs: 'crash' }, async () => {
  await loseLeaderDuringBurst('lec', (profile, leader) => profile.crash(leader));
});

test('the leader tab frozen during a burst of writes: its lock is taken over, and once thawed it follows the new leader', { needs: 'freeze' }, async () => {
  let leader;
  const { profile, b } = await loseLeaderDuringBurst(
    'lef',
    async (profile, tab) => {
      leader = tab;
      await profile.freeze(tab);
    },
    { freezable: true },
  );
  await profile.thaw(leader);
  // Thawed, the old leader is a follower of the new one: it reads the shared
  // replica and its writes go through the new leader.
  const wrote = await leader.evaluate(async () => {
    const m = window.db.mutate.increment({ id: 'lef-thawed', by: 1 });
    await m.durable;
    await m.server;
    return 'ok';
  });
  assert.equal(wrote, 'ok');
  await eventually(async () => (await counter(b, 'lef-thawed')) === 1, 10000, 'b reads the write of the thawed tab');
  assert.equal(await counter(leader, 'lef-b'), BURST);
});
