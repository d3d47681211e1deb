// Debian's Chromium, driven by playwright-core. A tab is Playwright's Page
// itself: the contract in ../harness.mjs is a subset of its API.
import { spawn } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { chromium } from 'playwright-core';
import { killBrowser } from './processes.mjs';

/** What this engine can do beyond the tab contract (see harness `test(name, { needs }, fn)`). */
export const can = {
  /** Hide and freeze a tab, then thaw it (CDP Page.setWebLifecycleState). */
  freeze: true,
  /** Override an origin's storage quota (CDP Storage.overrideQuotaForOrigin). */
  quota: true,
  /** An aborted streaming fetch closes its connection. */
  abortClosesConnection: true,
  /** Crash a tab's renderer (CDP Page.crash). */
  crash: true,
  /** Launch without SharedWorker (`--disable-shared-workers`). */
  disableSharedWorker: true,
};

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
 * A browser on profile `dir` (see harness `launchProfile`).
 *
 * `freezable`: tabs the browser can really hide and freeze. Playwright keeps
 * every page it launches "visibly captured"
 * (`Emulation.setFocusEmulationEnabled`), which makes a freeze a no-op; so
 * this starts Chromium itself and attaches with `connectOverCDP(..., {
 * noDefaults: true })`, under which Playwright leaves the pages of the
 * default context alone.
 *
 * `sharedWorkers: false`: launched with `--disable-shared-workers`, the
 * stand-in for browsers without SharedWorker.
 */
export async function launch(dir, { env, freezable = false, sharedWorkers = true } = {}) {
  const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
  const args = [...CHROMIUM_ARGS, ...(sharedWorkers ? [] : ['--disable-shared-workers'])];
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
  // One session per tab, kept: what a session set (a freeze, a quota
  // override) may end with it.
  const sessions = new Map();
  const cdp = async (tab, method, params) => {
    if (!sessions.has(tab)) sessions.set(tab, await context.newCDPSession(tab));
    return sessions.get(tab).send(method, params);
  };
  // Chromium rewrites its helpers' command lines with spaces between the arguments.
  const flag = `--user-data-dir=${dir}`;
  const isOurs = (args) => args.some((a) => a === flag || a.includes(`${flag} `) || a.endsWith(` ${flag}`));
  return {
    dir,
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
    kill: () => killBrowser(isOurs, dir),
    freeze: (tab) => cdp(tab, 'Page.setWebLifecycleState', { state: 'frozen' }),
    async thaw(tab) {
      await cdp(tab, 'Page.setWebLifecycleState', { state: 'active' });
      await tab.bringToFront();
    },
    /** The tab's renderer dies at once; resolves once the tab no longer answers. */
    async crash(tab) {
      // Page.crash never answers: the renderer is gone.
      void cdp(tab, 'Page.crash').catch(() => {});
      while (await tab.evaluate(() => true).catch(() => false)) await new Promise((r) => setTimeout(r, 25));
    },
    /** `bytes` undefined: the quota is the browser's own again. */
    setQuota: (tab, origin, bytes) => cdp(tab, 'Storage.overrideQuotaForOrigin', { origin, quotaSize: bytes }),
  };
}
