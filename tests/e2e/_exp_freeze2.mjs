import { startServer, buildTestSite } from './harness.mjs';
import { chromium } from 'playwright-core';
import { mkdtemp } from 'node:fs/promises';
const server = await startServer(['--static', await buildTestSite()]);
const ignore = process.argv[2] === 'all' ? ['--disable-renderer-backgrounding', '--disable-background-timer-throttling', '--disable-backgrounding-occluded-windows'] : process.argv.slice(2);
const context = await chromium.launchPersistentContext(await mkdtemp('/tmp/fa/prof-'), {
  executablePath: '/usr/bin/chromium', headless: process.env.HL !== 'old' ? true : true, ...(process.env.HL === 'old' ? { channel: undefined } : {}), ignoreDefaultArgs: ignore,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const a = await context.newPage();
let ticks = 0;
await a.exposeFunction('tick', () => ticks++);
await a.goto(server.url);
await a.waitForFunction(() => window.ready);
await a.evaluate(() => { window.openDb({ name: 'x' }); });
await a.evaluate(() => { window.ev = []; for (const e of ['freeze','resume','visibilitychange','pagehide']) document.addEventListener(e, () => window.ev.push(e + ':' + document.visibilityState)); setInterval(() => window.tick(), 100); });
const b = await context.newPage(); await b.goto(server.url);
const cdp = await context.newCDPSession(a);
await new Promise((r) => setTimeout(r, 500));
console.log(await cdp.send('Page.setWebLifecycleState', { state: 'frozen' }));
const t0 = ticks;
await new Promise((r) => setTimeout(r, 2000));
console.log('ticks during freeze', ticks - t0);
await cdp.send('Page.setWebLifecycleState', { state: 'active' });
const t1 = ticks;
await new Promise((r) => setTimeout(r, 1000));
console.log('ticks after thaw', ticks - t1, await a.evaluate(() => window.ev));
await context.close();
await server.stop();
