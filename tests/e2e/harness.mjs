// Shared pieces of the browser tests: the real reference server serving the
// built demo site, and Debian's Chromium driven by playwright-core. Several
// pages of one persistent context are several tabs of one browser profile.
import { spawn } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test as nodeTest } from 'node:test';
import { chromium } from 'playwright-core';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * A browser test with its own time limit, so a hung step fails that test
 * and not its neighbours. (Node 20's `--test-timeout` limits a whole file:
 * with it at 120 s, a file of slow-but-fine tests failed under load. The
 * command line gives each file a generous cap instead.)
 */
export const TEST_TIMEOUT_MS = 120_000;
export function test(name, fn) {
  return nodeTest(name, { timeout: TEST_TIMEOUT_MS }, fn);
}

/** Servers still running: killed when the test process exits (one listener for all). */
const serversAlive = new Set();
process.once('exit', () => serversAlive.forEach((child) => child.kill('SIGKILL')));

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

const NO_SHARED_WORKERS = process.env.FERRYDB_BROWSER === 'chromium-no-sharedworker';

const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * A browser profile; its pages are tabs sharing one SharedWorker. Pass the
 * `dir` of an earlier profile to restart the browser on it (its OPFS and
 * IndexedDB included); `close({ keep: true })` leaves the directory for that,
 * and so does `kill()`, a crash. `env` replaces the browser's environment.
 *
 * `sharedWorkers: false` launches Chromium without SharedWorker
 * (`--disable-shared-workers`), where ferrydb runs its leader-tab topology;
 * env `FERRYDB_BROWSER=chromium-no-sharedworker` makes that every launch's default.
 *
 * `freezable`: tabs the browser can really hide and freeze (CDP
 * `Page.setWebLifecycleState`). Playwright keeps every page it launches
 * "visibly captured" (`Emulation.setFocusEmulationEnabled`), which makes a
 * freeze a no-op; so this starts Chromium itself and attaches with
 * `connectOverCDP(..., { noDefaults: true })`, under which Playwright leaves
 * the pages of the default context alone.
 */
export async function launchProfile(dir, { freezable = false, env, sharedWorkers = !NO_SHARED_WORKERS } = {}) {
  dir ??= await mkdtemp(join(tmpdir(), 'ferrydb-profile-'));
  const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
  const args = sharedWorkers ? CHROMIUM_ARGS : [...CHROMIUM_ARGS, '--disable-shared-workers'];
  let context;
  let stopChromium;
  if (freezable) {
    const child = spawn(
      executablePath,
      ['--headless', '--remote-debugging-port=0', `--user-data-dir=${dir}`, ...args, 'about:blank'],
      { stdio: ['ignore', 'ignore', 'pipe'], ...(env ? { env } : {}) },
    );
    const endpoint = await new Promise((resolve, reject) => {
      let stderr = '';
      // Read for the browser's whole life, so its pipe never fills.
      child.stderr.on('data', (chunk) => {
        stderr += chunk;
        const match = stderr.match(/DevTools listening on (ws:\/\/\S+)/);
        if (match) resolve(match[1]);
      });
      child.on('exit', (code) => reject(new Error(`chromium exited with ${code}: ${stderr}`)));
    });
    const browser = await chromium.connectOverCDP(endpoint, { noDefaults: true });
    context = browser.contexts()[0];
    stopChromium = async () => {
      await browser.close();
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill();
        await exited;
      }
    };
  } else {
    context = await chromium.launchPersistentContext(dir, {
      executablePath,
      headless: true,
      ...(env ? { env } : {}),
      args,
    });
  }
  const errors = [];
  context.on('weberror', (e) => errors.push(String(e.error())));
  return {
    context,
    dir,
    /** Uncaught page errors seen so far: a test can assert there were none. */
    errors,
    async newTab(url) {
      const page = await context.newPage();
      page.on('console', (msg) => {
        if (msg.type() === 'error') errors.push(msg.text());
      });
      if (url) await page.goto(url);
      return page;
    },
    async close({ keep = false } = {}) {
      if (freezable) await stopChromium();
      else await context.close();
      if (!keep) await rm(dir, { recursive: true, force: true });
    },
    /**
     * The browser crashes: SIGKILL to every process of it at once (no
     * unload, no flush), resolving once all are gone. The profile
     * directory stays, to launch again on.
     */
    async kill() {
      const pids = await browserProcesses(dir);
      if (pids.length === 0) throw new Error(`no browser process found for ${dir}`);
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch (e) {
          if (e.code !== 'ESRCH') throw e;
        }
      }
      await eventually(async () => (await Promise.all(pids.map(alive))).every((a) => !a), 10000, 'the browser gone');
    },
  };
}

/** `/proc/<pid>/stat`'s fields after the command name, or null if gone. */
async function procStat(pid) {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** Running, as opposed to gone or a zombie waiting to be reaped. */
async function alive(pid) {
  const stat = await procStat(pid);
  return stat !== null && stat[0] !== 'Z' && stat[0] !== 'X';
}

/**
 * Every process of the Chromium running on profile `dir`: those whose
 * command line names the profile (the browser and its helpers), and
 * everything in their process groups or below them.
 */
async function browserProcesses(dir) {
  const flag = `--user-data-dir=${dir}`;
  const all = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const stat = await procStat(name);
    if (!stat) continue;
    const cmdline = await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '');
    // Chromium rewrites its helpers' command lines with spaces between the arguments.
    const ours = [`${flag}\0`, `${flag} `].some((f) => cmdline.includes(f)) || cmdline.endsWith(flag);
    all.push({ pid: Number(name), ppid: Number(stat[1]), pgid: Number(stat[2]), ours });
  }
  const self = all.find((p) => p.pid === process.pid);
  const pids = new Set(all.filter((p) => p.ours).map((p) => p.pid));
  // Playwright starts the browser in a process group of its own; never this one's.
  const groups = new Set(all.filter((p) => p.ours && p.pgid !== self?.pgid).map((p) => p.pgid));
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of all) {
      if (!pids.has(p.pid) && (groups.has(p.pgid) || pids.has(p.ppid))) {
        pids.add(p.pid);
        grew = true;
      }
    }
  }
  return [...pids];
}

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
    async syncedTab(profile, user, { auth = 'user', name, app } = {}) {
      const page = await profile.newTab(getServer().url);
      await page.waitForFunction(() => window.ready);
      const failure = await page.evaluate((options) => window.openSynced(options), { user, auth, name, app });
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
