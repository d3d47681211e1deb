// CPU profiles of the SharedWorker and the page during N mutations (not a
// benchmark), for finding where a write's time goes:
//   node bench/profile_mutations.mjs [N] [insertOne|insertDurable]   (after scripts/build.sh)
// Prints the top functions by self time of each thread and writes the
// worker's profile to target/mutations.cpuprofile (opens in Chrome DevTools).
// With NAMES=1 the wasm keeps its function names (target/ferrydb_bg.names.wasm).
import { writeFile, mkdtemp, rm, cp, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { startServer, root } from '../tests/e2e/harness.mjs';
import { workerSession, printSelfTime } from './cpu_profile.mjs';

const count = Number(process.argv[2] ?? 1000);
const scenario = process.argv[3] ?? 'insertOne';
const site = join(root, 'target', 'profile-site');
await rm(site, { recursive: true, force: true });
await mkdir(join(site, 'ferrydb'), { recursive: true });
await cp(join(root, 'dist'), join(site, 'ferrydb', 'dist'), { recursive: true });
await cp(join(root, 'pkg'), join(site, 'ferrydb', 'pkg'), { recursive: true });
if (process.env.NAMES) {
  await cp(join(root, 'target', 'ferrydb_bg.names.wasm'), join(site, 'ferrydb', 'pkg', 'ferrydb_bg.wasm'));
}
await cp(join(root, 'bench'), join(site, 'bench'), { recursive: true });
const store = join(root, 'target', `profile-mutations-${Date.now()}.db`);
const server = await startServer(['--static', site, '--app', join(root, 'bench', 'app.json'), '--store', `sqlite:${store}`, '--dev-auth']);
const dir = await mkdtemp(join(tmpdir(), 'ferrydb-profile-'));
const port = 9300 + Math.floor(Math.random() * 500);
const context = await chromium.launchPersistentContext(dir, {
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', `--remote-debugging-port=${port}`],
});
try {
  const browser = await chromium.connectOverCDP(`http://127.0.0.1:${port}`);
  const cdp = await browser.newBrowserCDPSession();
  const page = await context.newPage();
  await page.goto(`${server.url}bench/ferrydb.html?db=p${Date.now()}`);
  await page.waitForFunction(() => window.bench);
  await page.evaluate(() => window.bench.ready());
  // Warm up: the first mutations of a page are its slowest.
  await page.evaluate(([s]) => window.bench[s](200), [scenario]);
  // The mutations go to the app database's worker (`-app`).
  const { targetInfos } = await cdp.send('Target.getTargets');
  const target = targetInfos.find((t) => t.type === 'shared_worker' && t.title.includes('-app"'));
  const send = await workerSession(cdp, target.targetId);
  const pageCdp = await context.newCDPSession(page);
  for (const profiler of [send, (m, p) => pageCdp.send(m, p)]) {
    await profiler('Profiler.enable');
    await profiler('Profiler.setSamplingInterval', { interval: 50 });
    await profiler('Profiler.start');
  }
  const samples = await page.evaluate(([s, n]) => window.bench[s](n), [scenario, count]);
  const { result: { profile } } = await send('Profiler.stop');
  const { profile: pageProfile } = await pageCdp.send('Profiler.stop');
  samples.sort((a, b) => a - b);
  const at = (q) => samples[Math.floor(samples.length * q)].toFixed(2);
  console.log(`${scenario} x ${count}: median ${at(0.5)} ms, p95 ${at(0.95)} ms`);
  await writeFile(join(root, 'target', 'mutations.cpuprofile'), JSON.stringify(profile));
  printSelfTime('worker', profile, 25);
  printSelfTime('page', pageProfile, 25);
  await browser.close().catch(() => {});
} finally {
  await context.close();
  await server.stop();
  await rm(dir, { recursive: true, force: true });
  for (const file of [store, `${store}-wal`, `${store}-shm`]) await rm(file, { force: true });
}
