// Sync by subscription under load (protocol v2), against the reference server
// over loopback, per store, with the collaborative app (`tests/fixtures/collab.json`):
//   node bench/subscriptions_load.mjs [--quick] [--postgres URL] [--users N] [--rows N]
//     [--writes N] [--server PATH]
// - `users` users (1,000 by default) each own one list with a few items, hold
//   the realtime channel of their client group open, and are subscribed to
//   their lists (`myLists`) and their list's items (`listItems`);
// - one of them writes an item, `writes` times (21 by default): how many
//   channels each write pokes (only the writer's own group can see it) and
//   how long until the writer's other device is poked and its pull has the
//   row (write → data on another device; median and slowest);
// - the cost of a pull after a commit that concerns nothing the group
//   subscribed to (time and patch length; the patch must be empty);
// - initial sync through a subscription: one list of `rows` items, paged.
// `--server PATH` runs another build of the server (say, main's, to compare).
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { startServer, newPostgresDatabase, root } from '../tests/e2e/harness.mjs';

const APP = join(root, 'tests', 'fixtures', 'collab.json');
const V2 = 2;

async function post(url, path, user, body) {
  const response = await fetch(`${url}sync/${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${user}` },
    body: JSON.stringify(body),
  });
  const json = await response.json();
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status} ${JSON.stringify(json)}`);
  return json;
}

/** A client group of `user` speaking v2: push, pull with its subscriptions, its cookie. */
function group(url, user, id, subscriptions) {
  let cookie = null;
  let nextMutation = 1;
  return {
    id,
    async push(name, args) {
      const reply = await post(url, 'push', user, {
        protocolVersion: V2, schemaVersion: 1, clientGroupID: id, clientID: id,
        mutations: [{ id: nextMutation++, name, args, timestamp: Date.now() }],
      });
      if (reply.results?.[0]?.type !== 'ok') throw new Error(`${name} not ok: ${JSON.stringify(reply)}`);
    },
    /** Pulls until `more` is false; returns the patch ops received. */
    async pull() {
      const ops = [];
      for (;;) {
        const reply = await post(url, 'pull', user, {
          protocolVersion: V2, schemaVersion: 1, clientGroupID: id, clientID: id, cookie, subscriptions,
        });
        if (reply.type !== 'ok') throw new Error(`pull: ${JSON.stringify(reply)}`);
        ops.push(...reply.patch);
        cookie = reply.cookie;
        if (!reply.more) return ops;
      }
    },
  };
}

/** Opens the group's realtime channel; `onPoke` for each poke after the first. */
async function listen(url, user, groupId, onPoke, signal) {
  const response = await fetch(`${url}sync/events?clientGroupID=${encodeURIComponent(groupId)}`, {
    headers: { authorization: `Bearer ${user}` },
    signal,
  });
  if (!response.ok) throw new Error(`events: HTTP ${response.status}`);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let first = true;
  const connected = new Promise((resolve) => {
    (async () => {
      let buffer = '';
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return;
          buffer += value;
          let end;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            const frame = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            if (!frame.split('\n').some((l) => l.startsWith('data: '))) continue;
            if (first) {
              first = false;
              resolve();
            } else onPoke();
          }
        }
      } catch {
        // aborted at the end of the check
      }
    })();
  });
  return connected;
}

const subscriptionsOf = (list) => [
  { query: 'myLists', args: {} },
  { query: 'listItems', args: { list_id: list } },
];

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
};

/** Pushes list `list` of user `bulk` with `rows` items (`b0000000`, …), a thousand a request. */
export async function loadList(url, list, rows) {
  await group(url, 'bulk', `${list}-owner`, []).push('createList', { id: list, title: list, owner: 'bulk' });
  for (let i = 0; i < rows; ) {
    const mutations = [];
    for (let k = 0; k < 1000 && i < rows; k++, i++) mutations.push({ name: 'addItem', args: { id: `b${String(i).padStart(7, '0')}`, list_id: list, title: `row ${i}` } });
    await post(url, 'push', 'bulk', {
      protocolVersion: V2, schemaVersion: 1, clientGroupID: `${list}-loader`, clientID: `${list}-loader`,
      mutations: mutations.map((m, k) => ({ id: i - mutations.length + k + 1, ...m, timestamp: 0 })),
    });
  }
}

/** Times the initial sync of list `list`'s items (every page) by the new group `reader` of `bulk`: rows/s. */
export async function subscriptionSyncRowsPerSecond(url, list, rows, reader) {
  const g = group(url, 'bulk', reader, subscriptionsOf(list));
  const started = performance.now();
  const got = (await g.pull()).filter((op) => op.type === 'put' && op.table === 'items').length;
  const rowsPerSecond = got / ((performance.now() - started) / 1000);
  if (got < rows) throw new Error(`initial sync got ${got} of ${rows} items`);
  return rowsPerSecond;
}

export async function subscriptionsOneStore(
  store,
  { quick, users = quick ? 100 : 1000, rows = quick ? 5000 : 100_000, writes = quick ? 5 : 21, binary },
) {
  const server = await startServer(
    ['--app', APP, '--store', store, '--dev-auth', '--max-realtime', '5000', '--rate', '0'],
    binary ? { binary } : undefined,
  );
  const controller = new AbortController();
  try {
    const url = server.url;
    // Setup: every user's list with three items; each user's group subscribed and caught up.
    const groups = [];
    for (let u = 0; u < users; u++) {
      const g = group(url, `user${u}`, `g${u}`, subscriptionsOf(`list${u}`));
      await g.push('createList', { id: `list${u}`, title: `List ${u}`, owner: `user${u}` });
      for (let i = 0; i < 3; i++) await g.push('addItem', { id: `item${u}-${i}`, list_id: `list${u}`, title: `item ${i}` });
      await g.pull();
      groups.push(g);
    }
    const pokes = new Array(users).fill(0);
    await Promise.all(groups.map((g, u) => listen(url, `user${u}`, g.id, () => pokes[u]++, controller.signal)));
    // The writer's other device: same user, its own group, subscribed alike.
    const other = group(url, 'user0', 'g0-other', subscriptionsOf('list0'));
    await other.pull();
    let otherPoked = () => {};
    await listen(url, 'user0', other.id, () => otherPoked(), controller.signal);

    const latencies = [];
    const pokedPerWrite = [];
    for (let w = 0; w < writes; w++) {
      pokes.fill(0);
      const poked = new Promise((resolve) => (otherPoked = resolve));
      const t0 = performance.now();
      await groups[0].push('addItem', { id: `hot${w}`, list_id: 'list0', title: 'hot' });
      await poked;
      const ops = await other.pull();
      latencies.push(performance.now() - t0);
      if (!ops.some((op) => op.type === 'put' && op.row.id === `hot${w}`)) throw new Error('the other device did not get the row');
      // Pokes are in flight to everyone a commit concerns; wait for quiet.
      await new Promise((r) => setTimeout(r, quick ? 200 : 500));
      pokedPerWrite.push(pokes.filter((n) => n > 0).length);
    }
    const poked_channels = median(pokedPerWrite);
    const poked_channels_max = Math.max(...pokedPerWrite);
    const write_to_data_ms = median(latencies);
    const write_to_data_max_ms = Math.max(...latencies);

    // A pull after a commit that concerns nothing user1 subscribed to.
    await groups[0].push('addItem', { id: 'unrelated', list_id: 'list0', title: 'hot2' });
    const p0 = performance.now();
    const unrelated = await groups[1].pull();
    const unrelated_pull_ms = performance.now() - p0;
    if (unrelated.length !== 0) throw new Error(`an unrelated pull carried ${unrelated.length} ops`);

    // Initial sync through a subscription.
    await loadList(url, 'big', rows);
    const initial_sync_rows_per_s = await subscriptionSyncRowsPerSecond(url, 'big', rows, 'bulk-reader');

    return { users, writes, poked_channels, poked_channels_max, write_to_data_ms, write_to_data_max_ms, unrelated_pull_ms, unrelated_pull_ops: unrelated.length, initial_sync_rows: rows, initial_sync_rows_per_s };
  } finally {
    controller.abort();
    await server.stop();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = process.argv.slice(2);
  const option = (name) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
  const quick = args.includes('--quick');
  const { mkdtemp } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const dir = await mkdtemp(join(tmpdir(), 'ferrydb-subs-load-'));
  const stores = { sqlite: `sqlite:${join(dir, 'subs.db')}` };
  const postgres = option('--postgres');
  if (postgres) stores.postgres = await newPostgresDatabase(postgres, `ferrydb_subs_${process.pid}`);
  const options = { quick };
  if (option('--users')) options.users = Number(option('--users'));
  if (option('--rows')) options.rows = Number(option('--rows'));
  if (option('--writes')) options.writes = Number(option('--writes'));
  if (option('--server')) options.binary = option('--server');
  for (const [name, store] of Object.entries(stores)) {
    console.log(name, JSON.stringify(await subscriptionsOneStore(store, options)));
  }
}
