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
  const { sessionId } = await cdp.send('Target.attachToTarget', { targetId: target.targetId, flatten: false });
  let nextId = 1;
  const waiting = new Map();
  cdp.on('Target.receivedMessageFromTarget', (event) => {
    const message = JSON.parse(event.message);
    if (message.id && waiting.has(message.id)) {
      waiting.get(message.id)(message);
      waiting.delete(message.id);
    }
  });
  const send = (method, params = {}) =>
    new Promise((resolve) => {
      const id = nextId++;
      waiting.set(id, resolve);
      cdp.send('Target.sendMessageToTarget', { sessionId, message: JSON.stringify({ id, method, params }) });
    });
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
  for (const [label, prof] of [['worker', profile], ['page', pageProfile]]) {
    const self = new Map();
    const byId = new Map(prof.nodes.map((n) => [n.id, n]));
    let total = 0;
    prof.samples.forEach((id, i) => {
      const { functionName, url } = byId.get(id).callFrame;
      const name = `${functionName || '(anonymous)'} ${url.split('/').pop()}`;
      self.set(name, (self.get(name) ?? 0) + (prof.timeDeltas[i] ?? 0));
      total += prof.timeDeltas[i] ?? 0;
    });
    console.log(`== ${label}: ${(total / 1000).toFixed(0)} ms sampled`);
    for (const [name, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 25)) {
      console.log(`${((100 * us) / total).toFixed(1).padStart(5)}%  ${(us / 1000).toFixed(1).padStart(7)} ms  ${name}`);
    }
  }
  await browser.close().catch(() => {});
} finally {
  await context.close();
  await server.stop();
  await rm(dir, { recursive: true, force: true });
  for (const file of [store, `${store}-wal`, `${store}-shm`]) await rm(file, { force: true });
}
