// Debian's Firefox ESR, driven by puppeteer-core over WebDriver BiDi (no
// geckodriver). A Tab wraps puppeteer's Page in the contract of ../harness.mjs.
import { rm } from 'node:fs/promises';
import puppeteer from 'puppeteer-core';
import { queryAll, unshare } from './dom.mjs';
import { killBrowser } from './processes.mjs';

/** BiDi has no command to freeze a tab or override an origin's quota. */
export const can = { freeze: false, quota: false, abortClosesConnection: true, crash: false, disableSharedWorker: false };

/** Playwright's default time limit for a wait. */
const TIMEOUT_MS = 30_000;
/** How often a wait checks again. */
const POLL_MS = 20;

/**
 * Polls `check` (which resolves to a value, or undefined while not there)
 * from Node, not from the page: Firefox throttles a background tab's timers
 * (to 1 s and less) and runs no animation frames there, and every tab but
 * the selected one is in the background.
 */
async function poll(check, timeout, what) {
  const deadline = Date.now() + timeout;
  for (;;) {
    let value;
    try {
      value = await check();
    } catch (e) {
      // The page navigated while a check ran in it (Firefox: `no such
      // frame`, its browsing context discarded, seen with a reload during a
      // script 5 of 5): check again, in the new page, as Playwright's waits do.
      if (!/no such frame/.test(e?.message ?? '')) throw e;
    }
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`waiting for ${what}: ${timeout} ms exceeded`);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

class Tab {
  #page;
  constructor(page) {
    this.#page = page;
  }
  async goto(url) {
    await this.#page.goto(url, { waitUntil: 'load' });
  }
  async reload() {
    await this.#page.reload({ waitUntil: 'load' });
  }
  close() {
    return this.#page.close({ runBeforeUnload: false });
  }
  /** `fn(arg)` in the page; its result arrives as Playwright's would (see `unshare`). */
  evaluate(fn, arg) {
    const call = new Function('arg', `return Promise.resolve((${fn})(arg)).then(${unshare});`);
    return this.#page.evaluate(call, arg);
  }
  async waitForFunction(fn, arg, { timeout = TIMEOUT_MS } = {}) {
    await poll(async () => ((await this.evaluate(fn, arg)) ? true : undefined), timeout, String(fn));
  }
  /** The first element matching `selector` (visible ones only if `visible`), once there is one. */
  #element(selector, { visible = true, timeout = TIMEOUT_MS } = {}) {
    const expression = `(${queryAll})(${JSON.stringify(selector)}, ${visible})[0]`;
    return poll(
      async () => {
        const handle = await this.#page.evaluateHandle(expression);
        const element = handle.asElement();
        if (element) return element;
        await handle.dispose();
      },
      timeout,
      `${visible ? 'a visible ' : ''}${selector}`,
    );
  }
  async #with(selector, options, act) {
    const element = await this.#element(selector, options);
    try {
      return await act(element);
    } finally {
      await element.dispose();
    }
  }
  async waitForSelector(selector, options) {
    await (await this.#element(selector, options)).dispose();
  }
  /**
   * A real click at the element's centre. Not puppeteer's `click`: it waits
   * for an IntersectionObserver, which in a background tab of Firefox fires
   * on a refresh timer that backs off exponentially (1, 2, 4, 8 … s).
   */
  click(selector) {
    return this.#with(selector, {}, async (e) => {
      const { x, y } = await e.evaluate((node) => {
        node.scrollIntoView({ block: 'center', inline: 'center', behavior: 'instant' });
        const box = node.getBoundingClientRect();
        return { x: box.x + box.width / 2, y: box.y + box.height / 2 };
      });
      await this.#page.mouse.click(x, y);
    });
  }
  fill(selector, value) {
    return this.#with(selector, {}, async (e) => {
      await e.evaluate((input) => {
        input.focus();
        input.select();
      });
      if (value === '') await this.#page.keyboard.press('Backspace');
      else await this.#page.keyboard.type(value);
    });
  }
  press(selector, key) {
    return this.#with(selector, {}, (e) => e.press(key));
  }
  textContent(selector) {
    return this.#with(selector, { visible: false }, (e) => e.evaluate((node) => node.textContent));
  }
  exposeFunction(name, fn) {
    return this.#page.exposeFunction(name, fn);
  }
  setViewportSize({ width, height }) {
    return this.#page.setViewport({ width, height });
  }
  bringToFront() {
    return this.#page.bringToFront();
  }
  async screenshot({ path, fullPage = false, clip } = {}) {
    return Buffer.from(await this.#page.screenshot({ path, fullPage, clip }));
  }
}

/** A browser on profile `dir` (see harness `launchProfile`). */
export async function launch(dir, { env, sharedWorkers = true } = {}) {
  if (!sharedWorkers) throw new Error('firefox: every Firefox has SharedWorker; sharedWorkers: false is for Chromium');
  const browser = await puppeteer.launch({
    browser: 'firefox',
    executablePath: process.env.FIREFOX ?? '/usr/bin/firefox-esr',
    headless: true,
    userDataDir: dir,
    ...(env ? { env } : {}),
  });
  const errors = [];
  return {
    dir,
    errors,
    async newTab(url) {
      const page = await browser.newPage();
      page.on('pageerror', (e) => errors.push(String(e)));
      page.on('console', (msg) => {
        if (msg.type() === 'error') errors.push(msg.text());
      });
      const tab = new Tab(page);
      if (url) await tab.goto(url);
      return tab;
    },
    async close({ keep = false } = {}) {
      await browser.close();
      if (!keep) await rm(dir, { recursive: true, force: true });
    },
    // Firefox's main process names the profile (`--profile DIR`); its
    // content processes are its children.
    kill: () => killBrowser((args) => args.some((a, i) => a === dir && /^--?profile$/.test(args[i - 1])), dir),
  };
}
