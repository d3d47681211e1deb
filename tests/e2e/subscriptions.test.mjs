// Sync by subscription end to end (protocol v2): two users, ada and grace,
// each on a device of their own (a browser profile) with real tabs, the
// reference server on SQLite (or Postgres with FERRYDB_E2E_STORE), and the
// collaborative app of `tests/fixtures/collab.json`: lists shared through `members`,
// items synced per list by the `listItems` subscription.
// Assertions are about what each user's replica holds; how fast is the
// benchmark's business.
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildTestSite, eventually, freshStore, launchProfile, root, startServer, storeKind, test } from './harness.mjs';

let site;
let storeDir;
let server;
let app;
const profiles = [];

before(async () => {
  site = await buildTestSite();
  storeDir = await mkdtemp(join(tmpdir(), 'ferrydb-subscriptions-'));
  const appPath = join(root, 'tests', 'fixtures', 'collab.json');
  app = JSON.parse(await readFile(appPath, 'utf8'));
  server = await startServer(['--app', appPath, '--store', await freshStore(storeDir, 'collab'), '--dev-auth', '--static', site]);
});

after(async () => {
  for (const profile of profiles) await profile.close().catch(() => {});
  await server?.stop();
  if (storeDir) await rm(storeDir, { recursive: true, force: true });
});

/** A tab of a new or given device with the collaborative app open as `user`. */
async function tab(user, device) {
  if (!device) {
    device = await launchProfile();
    profiles.push(device);
  }
  const page = await device.newTab(server.url);
  await page.waitForFunction(() => window.ready);
  const failure = await page.evaluate((options) => window.openSynced(options), { user, app, name: 'collab' });
  assert.equal(failure, null, 'opened');
  return { page, device };
}

const count = (page, sql, params = []) =>
  page.evaluate(async ([sql, params]) => (await window.db.query(sql, params))[0].n, [sql, params]);
const itemTitles = (page, listId) =>
  page.evaluate(
    async (id) => (await window.db.query('SELECT title FROM items WHERE list_id = ? ORDER BY id', [id])).map((r) => r.title),
    listId,
  );

/** Runs mutator `name` in `page`; resolves once the server answered it. */
const mutate = (page, name, args) =>
  page.evaluate(
    async ([name, args]) => {
      const m = window.db.mutate[name](args);
      await m.local;
      return m.server.then(
        () => 'ok',
        (e) => e.code,
      );
    },
    [name, args],
  );

/** Subscribes the page to `listItems(listId)`, kept as `window.subs[key]`; resolves when complete. */
const subscribe = (page, key, listId, ttl) =>
  page.evaluate(
    async ([key, listId, ttl]) => {
      window.subs ??= {};
      const sub = window.db.sync('listItems', { list_id: listId }, { ttl });
      window.subs[key] = sub;
      await sub.complete;
      return sub.state;
    },
    [key, listId, ttl],
  );
const unsubscribe = (page, key) => page.evaluate((key) => window.subs[key].unsubscribe(), key);

test(`sharing, editing, unsubscribing and revoking a list between two users (${storeKind()})`, async () => {
  const { page: ada } = await tab('ada');
  const { page: grace1, device: graceDevice } = await tab('grace');
  const { page: grace2 } = await tab('grace', graceDevice);

  // Ada's private list never reaches grace.
  assert.equal(await mutate(ada, 'createList', { id: 'groceries', title: 'Groceries', owner: 'ada' }), 'ok');
  assert.equal(await mutate(ada, 'addItem', { id: 'i1', list_id: 'groceries', title: 'milk' }), 'ok');
  assert.equal(await mutate(ada, 'createList', { id: 'secret', title: 'Salary review', owner: 'ada' }), 'ok');
  await subscribe(ada, 'groceries', 'groceries');
  assert.deepEqual(await itemTitles(ada, 'groceries'), ['milk']);
  // Grace subscribes to the list before it is shared: it completes empty.
  await subscribe(grace1, 'groceries', 'groceries', 60_000);
  assert.equal(await count(grace1, 'SELECT count(*) AS n FROM items'), 0);
  assert.equal(await count(grace1, 'SELECT count(*) AS n FROM lists'), 0);

  // Ada shares it: the list (myLists, synced from open) and its items
  // (grace's subscription) appear in both of grace's tabs.
  assert.equal(await mutate(ada, 'addMember', { list_id: 'groceries', user_id: 'grace', role: 'editor' }), 'ok');
  for (const page of [grace1, grace2]) {
    await eventually(async () => (await itemTitles(page, 'groceries')).join() === 'milk', 30000, 'the shared items arrive');
    assert.equal(await count(page, "SELECT count(*) AS n FROM lists WHERE id = 'groceries'"), 1);
  }
  assert.equal(await count(grace1, "SELECT count(*) AS n FROM lists WHERE id = 'secret'"), 0, 'only what is shared');

  // Grace's second tab holds the same subscription; her edit reaches ada.
  await subscribe(grace2, 'groceries', 'groceries', 60_000);
  assert.equal(await mutate(grace2, 'editItem', { id: 'i1', title: 'oat milk' }), 'ok');
  await eventually(async () => (await itemTitles(ada, 'groceries')).join() === 'oat milk', 30000, "grace's edit reaches ada");

  // One tab lets go: the other still holds it, the rows stay.
  await unsubscribe(grace1, 'groceries');
  assert.equal(await count(grace1, 'SELECT count(*) AS n FROM items'), 1);

  // Offline, grace edits; ada unshares meanwhile. Back online, grace's edit
  // is rejected `forbidden` and the list with its items leaves her replica.
  await grace2.evaluate(() => window.db.pauseSync());
  const offlineEdit = grace2.evaluate(async () => {
    const m = window.db.mutate.editItem({ id: 'i1', title: 'almond milk' });
    await m.local;
    return m.server.then(
      () => 'ok',
      (e) => e.code,
    );
  });
  await eventually(async () => (await itemTitles(grace1, 'groceries')).join() === 'almond milk', 30000, 'the edit shows at once in both tabs');
  assert.equal(await mutate(ada, 'removeMember', { list_id: 'groceries', user_id: 'grace' }), 'ok');
  await grace2.evaluate(() => window.db.resumeSync());
  assert.equal(await offlineEdit, 'forbidden');
  for (const page of [grace1, grace2]) {
    await eventually(async () => (await count(page, 'SELECT count(*) AS n FROM items')) === 0, 30000, 'the items leave');
    assert.equal(await count(page, 'SELECT count(*) AS n FROM lists'), 0, 'the list leaves');
  }
  assert.deepEqual(await itemTitles(ada, 'groceries'), ['oat milk'], "ada's list is untouched by the rejected edit");
});

test(`an unsubscribed query's rows leave the replica after its TTL (${storeKind()})`, async () => {
  const { page: ada } = await tab('ada');
  assert.equal(await mutate(ada, 'createList', { id: 'ttl', title: 'TTL', owner: 'ada' }), 'ok');
  assert.equal(await mutate(ada, 'addItem', { id: 'ttl-1', list_id: 'ttl', title: 'one' }), 'ok');
  await subscribe(ada, 'ttl', 'ttl', 500);
  assert.deepEqual(await itemTitles(ada, 'ttl'), ['one']);
  await unsubscribe(ada, 'ttl');
  await eventually(async () => (await itemTitles(ada, 'ttl')).length === 0, 30000, 'the rows leave after the TTL');
  assert.equal(await count(ada, "SELECT count(*) AS n FROM lists WHERE id = 'ttl'"), 1, 'myLists still holds the list');
});

test(`a live query over a pending subscription's table says it is not complete, then that it is (${storeKind()})`, async () => {
  const { page: ada } = await tab('ada');
  assert.equal(await mutate(ada, 'createList', { id: 'chores', title: 'Chores', owner: 'ada' }), 'ok');
  assert.equal(await mutate(ada, 'addItem', { id: 'chores-1', list_id: 'chores', title: 'dishes' }), 'ok');
  await ada.evaluate(() => {
    window.items = window.db.watch("SELECT title FROM items WHERE list_id = 'chores' ORDER BY id");
  });
  await eventually(() => ada.evaluate(() => window.items.getSnapshot().status === 'ok'), 30000, 'the first result');
  // No subscription syncs `items` (myLists syncs `lists`): nothing is awaited.
  assert.equal(await ada.evaluate(() => window.items.getSnapshot().complete), true);

  // Paused, a new subscription over `items` stays pending: the query says so.
  await ada.evaluate(() => {
    window.itemStates = [];
    window.items.subscribe(() => window.itemStates.push(window.items.getSnapshot()));
  });
  await ada.evaluate(() => window.db.pauseSync());
  await ada.evaluate(() => {
    window.chores = window.db.sync('listItems', { list_id: 'chores' });
  });
  await eventually(() => ada.evaluate(() => window.items.getSnapshot().complete === false), 30000, 'incomplete while pending');
  assert.equal(await ada.evaluate(() => window.chores.state.status), 'pending');

  // Once the server answers, it is complete, with its rows in the same update.
  await ada.evaluate(() => window.db.resumeSync());
  await ada.evaluate(() => window.chores.complete);
  await eventually(() => ada.evaluate(() => window.items.getSnapshot().complete), 30000, 'complete once the subscription is');
  const states = await ada.evaluate(() =>
    window.itemStates.map((s) => ({ complete: s.complete, titles: s.rows?.map((r) => r.title) })),
  );
  // Rows may change meanwhile (the server's answer to ada's own writes);
  // completeness flips exactly twice, and is never true without the rows.
  const flips = states.filter((s, i) => s.complete !== (i === 0 ? true : states[i - 1].complete));
  assert.deepEqual(flips.map((s) => s.complete), [false, true]);
  assert.deepEqual(flips[1].titles, ['dishes']);
  assert.deepEqual(states.at(-1), { complete: true, titles: ['dishes'] });
});
