// The npm package as users get it: `npm pack`, installed into fresh Vite apps
// (React and Vue) generated here, built with Vite without any config, served
// and driven in the browser.
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { count, eventually, launchProfile, root, startServer, test } from './harness.mjs';

const versions = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')).devDependencies;
let workdir;
let tarball;
let profile;
const servers = [];

function run(cmd, args, cwd) {
  return execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

async function buildApp(framework, deps, serverArgs = []) {
  const dir = join(workdir, framework);
  await cp(join(root, 'tests', 'e2e', 'apps', framework), dir, { recursive: true });
  await cp(join(root, 'tests', 'e2e', 'apps', 'index.html'), join(dir, 'index.html'));
  await cp(join(root, 'tests', 'fixtures', 'app.json'), join(dir, 'app.json'));
  const dependencies = { ferrydb: `file:${tarball}` };
  for (const name of deps) dependencies[name] = versions[name];
  await writeFile(
    join(dir, 'package.json'),
    JSON.stringify({ name: `fresh-${framework}-app`, private: true, type: 'module', dependencies, devDependencies: { vite: versions.vite } }),
  );
  run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], dir);
  run('node_modules/.bin/vite', ['build', '--logLevel', 'warn'], dir);
  const server = await startServer([...serverArgs, '--static', join(dir, 'dist')]);
  servers.push(server);
  return server.url;
}

before(async () => {
  workdir = await mkdtemp(join(tmpdir(), 'ferrydb-apps-'));
  const packed = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', workdir], root));
  tarball = join(workdir, packed[0].filename);
  profile = await launchProfile();
});

after(async () => {
  await profile?.close();
  for (const s of servers) await s.stop();
  await rm(workdir, { recursive: true, force: true });
});

test('the packed tarball ships only the package files', async () => {
  const listing = run('tar', ['-tzf', tarball], root).trim().split('\n').sort();
  assert.ok(listing.includes('package/pkg/ferrydb_bg.wasm'));
  assert.ok(listing.includes('package/dist/index.js'));
  assert.ok(listing.includes('package/dist/react.d.ts'));
  const stray = listing.filter((f) => !/^package\/(dist\/|pkg\/|package\.json$|README\.md$)/.test(f));
  assert.deepEqual(stray, []);
  assert.ok(!listing.some((f) => f.endsWith('.map') || f.includes('/src/')), 'no sources or maps');
});

test('importing the package on the server (SSR) starts nothing and throws nothing', async () => {
  const dir = join(workdir, 'ssr');
  await cp(join(root, 'tests', 'e2e', 'apps', 'index.html'), join(dir, 'index.html'));
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'ssr', private: true, type: 'module' }));
  run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', tarball, `react@${versions.react}`, `vue@${versions.vue}`], dir);
  const out = run(
    'node',
    ['--input-type=module', '-e', "const m = await import('ferrydb'); await import('ferrydb/react'); await import('ferrydb/vue'); console.log(typeof m.open, typeof globalThis.SharedWorker);"],
    dir,
  );
  assert.equal(out.trim(), 'function undefined');
});

test('a fresh Vite + React app (StrictMode): live data renders, a write updates it, two tabs stay in sync', async () => {
  const url = await buildApp('react', ['react', 'react-dom']);
  const a = await profile.newTab(url);
  const b = await profile.newTab(url);
  for (const tab of [a, b]) await tab.waitForSelector('#status:text("ok")');

  const stats = await a.evaluate(() => window.ferry.stats());
  assert.equal(stats.liveQueries, 2, 'two distinct queries, shared by both tabs');
  assert.equal(stats.subscriptions, 4, 'StrictMode double rendering did not start extra queries');

  await a.click('#add');
  for (const tab of [a, b]) {
    await eventually(async () => (await count(tab, '#todos li')) === 1, 5000, 'the new todo');
  }
  const before = await b.evaluate(() => ({ ...window.renders }));
  await a.evaluate(() => window.ferry.exec("INSERT INTO notes (body) VALUES ('x')"));
  await eventually(async () => (await b.textContent('#notes')) === '1', 5000, 'the note count');
  const after = await b.evaluate(() => ({ ...window.renders }));
  assert.equal(after.todos, before.todos, 'the todo list did not re-render for an unrelated write');
  assert.ok(after.notes > before.notes);

  await b.click('#add');
  await eventually(async () => (await count(a, '#todos li')) === 2, 5000, 'the second todo in tab A');
  const rowRenders = await a.evaluate(() => window.renders.rows);
  // StrictMode renders twice: the first row twice at first, then only the new row.
  assert.ok(rowRenders <= 6, `unchanged rows were not re-rendered (row renders: ${rowRenders})`);
  await Promise.all([a.close(), b.close()]);
});

/** Builds `framework` (a sync app) served by a reference server with the sample app; checks its sync bindings. */
async function checkSyncApp(framework, deps) {
  const store = join(workdir, `${framework}.db`);
  const appJson = join(root, 'tests', 'fixtures', 'app.json');
  const url = await buildApp(framework, deps, ['--app', appJson, '--store', `sqlite:${store}`, '--dev-auth']);
  const tab = await profile.newTab(url);
  await tab.waitForSelector('#connected:text("connected")', { timeout: 30000 });
  await tab.click('#add');
  await eventually(async () => (await count(tab, '#todos li')) === 1, 30000, 'the new todo');
  await eventually(async () => (await tab.textContent('#pending')) === '0', 30000, 'the outbox to drain');
  await tab.click('#add-forbidden');
  await eventually(async () => (await tab.textContent('#rejections')) === 'forbidden', 30000, 'the rejection');
  await eventually(async () => (await count(tab, '#todos li')) === 1, 30000, 'the rejected todo to go');
  assert.equal(await tab.textContent('#pending'), '0');
  await tab.close();
}

test('a fresh Vite + React app syncing: useSyncStatus, useMutate, usePendingMutations, useRejections', async () => {
  await checkSyncApp('react-sync', ['react', 'react-dom']);
});

test('a fresh Vite + Vue app syncing: the same composables', async () => {
  await checkSyncApp('vue-sync', ['vue']);
});

test('a fresh Vite + Vue app: live data renders, a write updates it, unmount releases the query', async () => {
  const url = await buildApp('vue', ['vue']);
  const a = await profile.newTab(url);
  const b = await profile.newTab(url);
  for (const tab of [a, b]) await tab.waitForSelector('#status:text("ok")');
  await b.click('#add');
  for (const tab of [a, b]) {
    await eventually(async () => (await count(tab, '#todos li')) === 1, 5000, 'the new todo');
  }
  assert.equal((await a.evaluate(() => window.ferry.stats())).subscriptions, 2);

  await a.click('#toggle');
  await eventually(
    async () => (await a.evaluate(() => window.ferry.stats())).subscriptions === 1,
    5000,
    'the unmounted list to release its query',
  );
  await Promise.all([a.close(), b.close()]);
  assert.deepEqual(profile.errors, []);
});
