// A CPU profile of the SharedWorker during one initial sync, for finding
// where the time goes (not a benchmark):
//   node bench/profile_sync.mjs [--v2] [ROWS] [OUT.cpuprofile]   (after `node bench/run.mjs` built target/bench-site)
// `--v2`: through the subscriptions of bench/ferrydb-sync.js's `?list=` (protocol v2).
// Prints the top functions by self time; the .cpuprofile opens in Chrome DevTools.
import { writeFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { startServer, root } from '../tests/e2e/harness.mjs';
import { seedServer } from './sync_seed.mjs';
import { loadList } from './subscriptions_load.mjs';
import { workerSession, printSelfTime } from './cpu_profile.mjs';

const v2 = process.argv.includes('--v2');
const [rowsArg, outArg] = process.argv.slice(2).filter((a) => a !== '--v2');
const rows = Number(rowsArg ?? 100_000);
const out = outArg ?? join(root, 'target', 'initial-sync.cpuprofile');
const store = join(root, 'target', `profile-sync-${Date.now()}.db`);
const site = join(root, 'target', 'bench-site');
const server = await startServer(['--static', site, '--app', v2 ? join(root, 'tests', 'fixtures', 'collab.json') : join(root, 'bench', 'app.json'), '--store', `sqlite:${store}`, '--dev-auth', '--rate', '0']);
const dir = await mkdtemp(join(tmpdir(), 'ferrydb-profile-'));
const port = 9300 + Math.floor(Math.random() * 500);
const context = await chromium.launchPersistentContext(dir, {
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', `--remote-debugging-port=${port}`],
});
try {
  if (v2) await loadList(server.url, 'big', rows);
  else await seedServer(server.url, rows);
  const browser = await chromium.connectOverCDP(`http://127.0.0.1:${port}`);
  const cdp = await browser.newBrowserCDPSession();
  const page = await context.newPage();
  await page.goto(`${server.url}bench/ferrydb-sync.html?db=p${Date.now()}&rows=${rows}&wait=1${v2 ? '&list=big' : ''}`);
  await page.waitForFunction(() => window.go);
  await page.evaluate(() => window.go());
  let target;
  for (let i = 0; i < 200 && !target; i++) {
    const { targetInfos } = await cdp.send('Target.getTargets');
    target = targetInfos.find((t) => t.type === 'shared_worker');
    if (!target) await new Promise((r) => setTimeout(r, 20));
  }
  if (!target) throw new Error('no shared worker appeared');
  const send = await workerSession(cdp, target.targetId);
  await send('Profiler.enable');
  await send('Profiler.setSamplingInterval', { interval: 200 });
  await send('Profiler.start');
  const result = await page.waitForFunction(() => window.initialSync, null, { timeout: 180000 }).then((h) => h.jsonValue());
  const { result: { profile } } = await send('Profiler.stop');
  await writeFile(out, JSON.stringify(profile));
  console.log(JSON.stringify({ rows: result.rows, caughtUpMs: result.caughtUpMs, durableMs: result.durableMs }));
  const metrics = await (await fetch(`${server.url}metrics`)).text();
  console.log(metrics.split('\n').filter((l) => /pull/.test(l) && !l.startsWith('#')).join('\n'));
  printSelfTime('worker', profile, 40);
  await browser.close().catch(() => {});
} finally {
  await context.close();
  await server.stop();
  await rm(dir, { recursive: true, force: true });
  for (const f of [store, `${store}-wal`, `${store}-shm`]) await rm(f, { force: true });
}
