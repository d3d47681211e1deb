// Shared pieces of the browser tests: the real reference server serving the
// built demo site, and Debian's Chromium driven by playwright-core. Several
// pages of one persistent context are several tabs of one browser profile.
import { spawn } from 'node:child_process';
import { cp, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Starts `ferrydb-server` on a free loopback port; resolves to `{url, stop}`. */
export async function startServer(args = ['--static', join(root, 'demo', 'build')]) {
  const binary = join(root, 'target', 'release', 'ferrydb-server');
  const child = spawn(binary, ['--listen', '127.0.0.1:0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn' },
  });
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const url = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`server did not start: ${stderr}`)), 15000);
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
  return {
    url,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', resolve);
        child.kill('SIGINT');
      }),
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
 * A browser profile; its pages are tabs sharing one SharedWorker. Pass the
 * `dir` of an earlier profile to restart the browser on it (its OPFS and
 * IndexedDB included); `close({ keep: true })` leaves the directory for that.
 */
export async function launchProfile(dir) {
  dir ??= await mkdtemp(join(tmpdir(), 'ferrydb-profile-'));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
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
      await context.close();
      if (!keep) await rm(dir, { recursive: true, force: true });
    },
  };
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
