// Shared pieces of the browser tests: the real reference server serving the
// built demo site, and a browser chosen by FERRYDB_BROWSER:
//
//   chromium (default)        Debian's Chromium, playwright-core    engines/chromium.mjs
//   chromium-no-sharedworker  the same, --disable-shared-workers    engines/chromium.mjs
//   firefox                   Firefox ESR, puppeteer-core (BiDi)    engines/firefox.mjs
//   webkit                    WebKitGTK, selenium-webdriver         engines/webkit.mjs
//
// THE ENGINE CONTRACT. An engine module exports `can` (`freeze`, `quota`,
// `crash`, `disableSharedWorker` and `abortClosesConnection`,
// the capabilities below, each true or false; the harness adds
// `sharedWorker`, false for chromium-no-sharedworker) and `launch(dir, { env, freezable,
// sharedWorkers })`, resolving to a browser on profile directory `dir`:
//
//   browser.dir                the profile directory (launch again on it to restart)
//   browser.errors             uncaught page errors and console errors, as strings
//   browser.newTab(url?)       a new tab of this browser (same profile: it shares the
//                              SharedWorker, OPFS, IndexedDB, Web Locks), at `url` if
//                              given, loaded; resolves to a Tab
//   browser.close({ keep })    ends the browser; deletes `dir` unless keep
//   browser.kill()             SIGKILL to every process of it at once; `dir` stays
//   browser.freeze(tab), browser.thaw(tab)      only if can.freeze
//   browser.setQuota(tab, origin, bytes?)       only if can.quota (undefined: lifted)
//   browser.crash(tab)         only if can.crash: the tab's renderer dies at once
//
// launch options: `env` replaces the browser's environment; `freezable`
// asks for tabs `freeze` works on; `sharedWorkers: false` starts a browser
// without SharedWorker (only if can.disableSharedWorker).
//
// A Tab is the subset of Playwright's Page API the tests use, with
// Playwright's signatures and semantics (Chromium's tab is the Page itself):
//
//   goto(url), reload()        navigate, resolve on the load event
//   close()                    closes the tab without running beforeunload
//   evaluate(fn, arg?)         runs fn(arg) in the page, awaits it; arg and result
//                              are JSON-like values (no DOM nodes, no functions; an
//                              object reachable twice arrives as two equal copies)
//   waitForFunction(fn, arg?, { timeout? })     until fn(arg) is truthy (polled)
//   waitForSelector(selector, { timeout? })     until a visible match exists
//   click(selector), fill(selector, value), press(selector, key)
//                              wait for the element, then act as a user would
//                              (real input events)
//   textContent(selector)      waits for the element; its textContent
//   exposeFunction(name, fn)   window[name] calls fn in Node (call before goto)
//   setViewportSize({ width, height }), bringToFront()
//   screenshot({ path?, fullPage?, clip? })     resolves to the PNG as a Buffer
//
// Selectors are CSS plus Playwright's text pseudo-classes `:has-text("t")`
// (the element's text contains t, case-insensitive), `:text("t")` (the
// same, here), `:text-is("t")` (its trimmed text is exactly t); see
// engines/dom.mjs for engines that are not Playwright. Default timeout 30 s.
//
// Tests that need a capability say so: `test(name, { needs: 'freeze' }, fn)`
// is skipped, with the reason printed, on an engine without it.
import { spawn } from 'node:child_process';
import { cp, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test as nodeTest } from 'node:test';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Each browser test's own time limit (see `test`). */
export const TEST_TIMEOUT_MS = 120_000;

/** FERRYDB_BROWSER's engine module and the launch options it implies. */
const BROWSERS = {
  chromium: { engine: 'chromium', options: {} },
  'chromium-no-sharedworker': { engine: 'chromium', options: { sharedWorkers: false } },
  firefox: { engine: 'firefox', options: {} },
  webkit: { engine: 'webkit', options: {} },
};
/** The browser the tests run on: a key of BROWSERS. */
export const browserName = process.env.FERRYDB_BROWSER ?? 'chromium';
const chosen = BROWSERS[browserName];
if (!chosen) throw new Error(`FERRYDB_BROWSER=${browserName}: not one of ${Object.keys(BROWSERS).join(', ')}`);
const engine = await import(`./engines/${chosen.engine}.mjs`);

/** What the chosen browser can do beyond the tab contract. */
export const can = { ...engine.can, sharedWorker: chosen.options.sharedWorkers !== false };

/** Why a test needing a capability cannot run without it. */
const NEEDS = {
  freeze: 'freezing a tab needs CDP Page.setWebLifecycleState',
  quota: "overriding a site's storage quota needs CDP Storage.overrideQuotaForOrigin",
  sharedWorker: 'this test needs SharedWorker',
  crash: "crashing a tab's renderer needs CDP Page.crash",
  disableSharedWorker: 'launching a browser without SharedWorker needs a Chromium flag (--disable-shared-workers)',
  abortClosesConnection:
    "an aborted streaming fetch's connection at times stays open (docs/architecture.md, Browser engines, open items)",
};

/**
 * `test(name, fn)` or `test(name, { needs: 'freeze' | [...] }, fn)`: a
 * browser test with its own time limit, so a hung step fails that test and
 * not its neighbours. (Node 20's `--test-timeout` limits a whole file: with
 * it at 120 s, a file of slow-but-fine tests failed under load. The command
 * line gives each file a generous cap instead.) A test whose `needs` the
 * browser lacks is skipped with the reason.
 */
export function test(name, options, fn) {
  if (typeof options === 'function') [options, fn] = [{}, options];
  const missing = [options.needs ?? []].flat().filter((need) => {
    if (!(need in NEEDS)) throw new Error(`test "${name}": unknown need ${need}`);
    return !can[need];
  });
  const skip = missing.length > 0 && `not on ${browserName}: ${missing.map((m) => NEEDS[m]).join('; ')}`;
  return nodeTest(name, { timeout: TEST_TIMEOUT_MS, skip }, fn);
}

/** Servers still running: killed when the test process exits (one listener for all). */
const serversAlive = new Set();
process.once('exit', () => serversAlive.forEach((child) => child.kill('SIGKILL')));
// A test process stopped by a signal (Ctrl-C, `kill`, a load loop ending)
// exits through 'exit' too, so its servers and browsers (WebKit's drivers:
// engines/webkit.mjs) go with it; by default a signal skips 'exit'.
for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]]) process.once(signal, () => process.exit(code));

/**
 * Starts `ferrydb-server` on `listen` (default: a free loopback port);
 * resolves to `{url, port, stop, kill}`. `stop` is a graceful SIGINT; `kill`
 * is SIGKILL, a crash with requests in flight. Start another with the same
 * `listen` and store to restart it.
 */
export async function startServer(
  args = ['--static', join(root, 'demo', 'build')],
  { listen = '127.0.0.1:0', binary = join(root, 'target', 'release', 'ferrydb-server') } = {},
) {
  const child = spawn(binary, ['--listen', listen, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn' },
  });
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const url = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`server did not start: ${stderr}`)), 60000);
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const match = out.match(/listening on (http:\/\/\S+)/);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    child.on('exit', (code) => reject(new Error(`server exited with ${code}: ${stderr}`)));
  });
  // A server never keeps a test file's process alive, nor outlives it: a
  // file whose teardown did not run (a test timed out) must still end.
  for (const handle of [child, child.stdout, child.stderr]) handle.unref();
  serversAlive.add(child);
  child.once('exit', () => serversAlive.delete(child));
  const gone = () => child.exitCode !== null || child.signalCode !== null;
  const exited = (signal) =>
    new Promise((resolve) => {
      if (gone()) return resolve();
      child.once('exit', resolve);
      child.kill(signal);
    });
  return {
    url,
    port: Number(new URL(url).port),
    // Graceful, but bounded: the server ends its realtime streams at once and
    // bounds its own wait for requests in flight; this bound is for a server
    // that hangs regardless, which a test's teardown must not wait on.
    stop: async () => {
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited('SIGINT');
      clearTimeout(timer);
    },
    kill: () => exited('SIGKILL'),
  };
}

/**
 * A site with the built package under `ferrydb/` and the test page at `/`,
 * whose `window.openDb(options)` opens a database.
 */
export async function buildTestSite() {
  const site = join(root, 'target', 'test-site');
  await rm(site, { recursive: true, force: true });
  await mkdir(join(site, 'ferrydb'), { recursive: true });
  await cp(join(root, 'dist'), join(site, 'ferrydb', 'dist'), { recursive: true });
  await cp(join(root, 'pkg'), join(site, 'ferrydb', 'pkg'), { recursive: true });
  await cp(join(root, 'tests', 'e2e', 'site'), site, { recursive: true });
  // The sample app definition, for pages that open a synced database.
  await cp(join(root, 'tests', 'fixtures', 'app.json'), join(site, 'app.json'));
  return site;
}

/**
 * A browser profile of the chosen engine (see the contract above); its tabs
 * share one SharedWorker. Pass the `dir` of an earlier profile to restart
 * the browser on it (its OPFS and IndexedDB included); `close({ keep: true
 * })` leaves the directory for that, and so does `kill()`, a crash.
 * `sharedWorkers: false` asks for a browser without SharedWorker (where
 * ferrydb runs its leader-tab topology), on engines that can (`can.disableSharedWorker`).
 */
export async function launchProfile(dir, { freezable = false, env, sharedWorkers } = {}) {
  dir ??= await mkdtemp(join(tmpdir(), 'ferrydb-profile-'));
  return engine.launch(dir, { ...chosen.options, freezable, env, ...(sharedWorkers === false && { sharedWorkers }) });
}

/** The textContent of each element matching CSS `selector` in `tab`, in document order. */
export const texts = (tab, selector) =>
  tab.evaluate((s) => [...document.querySelectorAll(s)].map((e) => e.textContent), selector);

/** How many elements match CSS `selector` in `tab`. */
export const count = (tab, selector) => tab.evaluate((s) => document.querySelectorAll(s).length, selector);

/** Polls `fn` until it returns a truthy value or `ms` pass; returns that value. */
export async function eventually(fn, ms = 5000, what = 'condition') {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await fn();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}; last value: ${JSON.stringify(last)}`);
}

// ---- Sync suites: the server's store chosen by the environment, and a
// server a test can crash and start again.

let storeCount = 0;

/**
 * A fresh, empty store URL for one server. By default a SQLite file `name.db`
 * in `dir`; with `FERRYDB_E2E_STORE=postgres://…/db` a new database on that
 * cluster (created with psql), so no server sees another's data. Creating
 * it fails loudly when the cluster is not there: a Postgres run never
 * quietly tests SQLite instead.
 */
export async function freshStore(dir, name) {
  const base = process.env.FERRYDB_E2E_STORE;
  if (!base || base.startsWith('sqlite')) return `sqlite:${join(dir, `${name}.db`)}`;
  if (!/^postgres(ql)?:\/\//.test(base)) throw new Error(`FERRYDB_E2E_STORE: not sqlite or postgres: ${base}`);
  const database = `ferry_e2e_${process.pid}_${++storeCount}_${name.replace(/\W/g, '_')}`.toLowerCase();
  return newPostgresDatabase(base, database);
}

/** Creates the empty database `database` on the cluster of `base` (with psql); its URL. */
export async function newPostgresDatabase(base, database) {
  await new Promise((resolve, reject) => {
    const psql = spawn('psql', [base, '-v', 'ON_ERROR_STOP=1', '-qc', `CREATE DATABASE "${database}"`], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    psql.stderr.on('data', (chunk) => (stderr += chunk));
    psql.on('error', reject);
    psql.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`CREATE DATABASE failed: ${stderr}`))));
  });
  const url = new URL(base);
  url.pathname = `/${database}`;
  return url.toString();
}

/** The store kind the sync suites run on, for test names and logs. */
export const storeKind = () => (process.env.FERRYDB_E2E_STORE?.startsWith('postgres') ? 'postgres' : 'sqlite');

/** Sync helpers for tests of a synced app against `server` (from `startServer`). */
export function syncTools(getServer) {
  const status = (page) => page.evaluate(() => window.db.syncStatus);
  return {
    status,
    todoIds: (page) =>
      page.evaluate(async () => (await window.db.query('SELECT id FROM todos ORDER BY id')).map((r) => r.id)),
    /** A tab of `profile` with the sample app (or `app`, another build's) open as `user`. */
    async syncedTab(profile, user, { auth = 'user', name, app, topology } = {}) {
      const page = await profile.newTab(getServer().url);
      await page.waitForFunction(() => window.ready);
      const failure = await page.evaluate((options) => window.openSynced(options), { user, auth, name, app, topology });
      if (failure) throw new Error(`opening failed: ${JSON.stringify(failure)}`);
      return page;
    },
    async allConnected(tabs, ms = 30000) {
      for (const tab of tabs) await eventually(async () => (await status(tab)).connected, ms, 'connected');
    },
    /** Runs `addTodo` in `page`, waits for `local` and `durable`; the mutation is `window.lastMutation`. */
    addTodo: (page, todo) =>
      page.evaluate(async (t) => {
        const m = window.db.mutate.addTodo({ listId: 'l1', title: t.id, ...t });
        window.lastMutation = m;
        const id = await m.local;
        await m.durable;
        return id;
      }, todo),
    async faults(body) {
      const response = await fetch(`${getServer().url}demo/faults`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      if (response.status !== 200) throw new Error(`faults: ${response.status} ${await response.text()}`);
    },
    async serverMutations() {
      const response = await fetch(`${getServer().url}demo/mutations`);
      return (await response.json()).mutations;
    },
    /** Throws if any (client, mutation id) pair was processed twice. */
    assertNoDuplicates(log) {
      const seen = new Set();
      for (const m of log) {
        const key = `${m.clientID}/${m.id}`;
        if (seen.has(key)) throw new Error(`mutation ${key} was processed twice`);
        seen.add(key);
      }
    },
  };
}
