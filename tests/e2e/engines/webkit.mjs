// WebKitGTK, driven by selenium-webdriver through WebKitWebDriver (run the
// tests under `xvfb-run -a`: WebKitGTK has no headless mode). The browser is
// webkit_launcher.py, a WebKitGTK browser with a persistent profile and the
// storage features Safari has on (see there).
//
// One WebDriver session drives every tab, one command at a time: each Tab
// method takes the session, switches to its own window, then acts. An
// evaluation that waits on the page (a promise that settles later) must not
// hold the session meanwhile, or two tabs waiting on each other would
// deadlock: it runs in the page as a stored promise, and the session waits
// on it in slices, letting other commands through in between.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:http';
import { rm } from 'node:fs/promises';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Builder, Key, error } from 'selenium-webdriver';
import { browserSockets, killBrowser } from './processes.mjs';
import { queryAll } from './dom.mjs';

/** What this engine can do beyond the tab contract (see harness `test(name, { needs }, fn)`). */
export const can = {
  /** WebKitGTK has no page lifecycle a driver can set: a hidden tab keeps running. */
  freeze: false,
  /** WebKitGTK sets quotas once, as ratios of the disk, when the browser starts. */
  quota: false,
  /**
   * At times (2 of ~40 suite runs) an aborted streaming fetch's TCP
   * connection stays open in WebKitNetworkProcess; cause not found
   * (docs/architecture.md, Browser engines, WebKit).
   */
  abortClosesConnection: false,
  crash: false,
  disableSharedWorker: false,
};

const LAUNCHER = join(dirname(fileURLToPath(import.meta.url)), 'webkit_launcher.py');
const DRIVER = process.env.WEBKIT_WEBDRIVER ?? '/usr/bin/WebKitWebDriver';
/** The browser name the launcher reports to the session (see webkit_launcher.py). */
const BROWSER_NAME = 'ferrydb-webkit';
const DEFAULT_TIMEOUT_MS = 30_000;
/**
 * How long a navigation may take before a command waiting on it fails
 * (WebDriver's default is 300 s). Once in CI a command in the demo's setup
 * waited out the whole page-load timeout; not seen here in 60 tries of it.
 */
const PAGE_LOAD_TIMEOUT_MS = 60_000;
/** How long one turn of waiting on a page's promise holds the session. */
const WAIT_SLICE_MS = 50;

/** Page function sources: whether `selector` matches, and its first match. */
const PRESENT = `({ selector, visible }) => (${queryAll})(selector, visible).length > 0`;
const FIRST = `return (${queryAll})(arguments[0], arguments[1])[0] ?? null`;

const KEYS = { Enter: Key.ENTER, Tab: Key.TAB, Escape: Key.ESCAPE, Backspace: Key.BACK_SPACE };

/** A free loopback port for the driver (it cannot pick one itself and say which). */
async function freePort() {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  await once(server, 'close');
  return port;
}

/** Resolves once the driver on `port` answers, or rejects if it exits first. */
async function driverReady(child, port, stderr) {
  const exited = once(child, 'exit').then(([code]) => {
    throw new Error(`WebKitWebDriver exited with ${code}: ${stderr()}`);
  });
  const deadline = Date.now() + 30_000;
  const up = (async () => {
    for (;;) {
      try {
        if ((await fetch(`http://127.0.0.1:${port}/status`)).ok) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`WebKitWebDriver did not answer: ${stderr()}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  })();
  await Promise.race([up, exited]);
}

/**
 * Page functions exposed with `exposeFunction` call back into Node over
 * HTTP: WebDriver classic has no binding from a page to its client. One
 * loopback server per browser; the page posts `{name, args}` as text/plain
 * (a simple request, no CORS preflight).
 */
async function callbackServer() {
  const functions = new Map();
  const server = createServer(async (request, response) => {
    response.setHeader('access-control-allow-origin', '*');
    let body = '';
    for await (const chunk of request) body += chunk;
    try {
      const { name, args } = JSON.parse(body);
      const result = await functions.get(name)(...args);
      response.end(JSON.stringify({ result }));
    } catch (e) {
      response.end(JSON.stringify({ error: String(e?.message ?? e) }));
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  server.unref();
  return { functions, url: `http://127.0.0.1:${server.address().port}/`, close: () => server.close() };
}

/** The page-side half of `exposeFunction`: defines `window[name]` calling Node at `url`. */
const exposeScript = (url, name) => `
  window[${JSON.stringify(name)}] = async (...args) => {
    const response = await fetch(${JSON.stringify(url)}, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: JSON.stringify({ name: ${JSON.stringify(name)}, args }),
    });
    const { result, error } = await response.json();
    if (error !== undefined) throw new Error(error);
    return result;
  };`;

/**
 * Starts `fn(arg)` in the page (fn: a function's source, or an expression),
 * its outcome kept in `window.__ferryEval[id]`; waits up to `ms` for it.
 * Resolves `arguments`' callback to `{ done, json }` or `{ done, error }`.
 */
const START = `
  const [id, source, argJson, isFunction, ms, done] = arguments;
  const slots = (window.__ferryEval ??= {});
  const slot = (slots[id] = { settled: false });
  slot.promise = (async () => {
    const fn = isFunction ? (0, eval)('(' + source + ')') : null;
    return isFunction ? fn(argJson == null ? undefined : JSON.parse(argJson)) : (0, eval)(source);
  })().then(
    (value) => Object.assign(slot, { settled: true, json: value === undefined ? undefined : JSON.stringify(value) }),
    (e) => Object.assign(slot, { settled: true, error: e instanceof Error ? e.name + ': ' + e.message : String(e) }),
  );
  ${waitBody('slot')}`;

/** Waits up to `ms` more for evaluation `id` (see START). */
const WAIT = `
  const [id, ms, done] = arguments;
  const slot = window.__ferryEval?.[id];
  if (!slot) return done({ done: true, navigated: true });
  ${waitBody('slot')}`;

function waitBody(slot) {
  return `
  let reported = false;
  const report = () => {
    if (reported) return;
    reported = true;
    if (!${slot}.settled) return done({ done: false });
    delete window.__ferryEval[id];
    done({ done: true, json: ${slot}.json, error: ${slot}.error });
  };
  if (${slot}.settled) return report();
  const timer = setTimeout(report, ms);
  ${slot}.promise.then(() => { clearTimeout(timer); report(); });`;
}

/** Drivers still running: killed with their browsers when the test process exits, so none outlives it. */
const driversAlive = new Set();
process.once('exit', () => driversAlive.forEach((child) => process.kill(-child.pid, 'SIGKILL')));

let evalCount = 0;

/** An evaluation ended by its page going away (a navigation, a reload, the tab closed). */
class Navigated extends Error {
  constructor() {
    super('Execution context was destroyed: the page navigated or closed');
  }
}

/**
 * A browser on profile `dir` (see harness `launchProfile`). `freezable` is
 * accepted and means nothing here (`can.freeze` is false); WebKit always
 * has SharedWorker.
 */
export async function launch(dir, { env, sharedWorkers = true } = {}) {
  if (!sharedWorkers) throw new Error('WebKit cannot be started without SharedWorker');
  const port = await freePort();
  const driverProcess = spawn(DRIVER, [`--port=${port}`], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: env ?? process.env,
    // A process group of its own, which the browser it starts joins: all
    // of it can be ended at once when the test process exits.
    detached: true,
  });
  driversAlive.add(driverProcess);
  driverProcess.once('exit', () => driversAlive.delete(driverProcess));
  const errors = [];
  const launched = Date.now();
  // The browser's console goes to the driver's stderr, a line a message:
  // `URL:LINE:COLUMN: CONSOLE ERROR text` for console.error and
  // `CONSOLE JS ERROR text` for uncaught errors and unhandled rejections.
  let log = '';
  let partial = '';
  driverProcess.stderr.on('data', (chunk) => {
    const text = partial + chunk;
    const lines = text.split('\n');
    partial = lines.pop();
    for (const line of lines) {
      log = (log + line + '\n').slice(-20_000);
      const match = line.match(/CONSOLE (?:JS )?ERROR (.*)$/);
      if (match) {
        // When, from where, and the lines before it (WebKit's security and
        // network messages among them): a failed test's clues to the cause.
        const seconds = ((Date.now() - launched) / 1000).toFixed(1);
        const source = line.slice(0, match.index).replace(/:\s*$/, '') || 'no source';
        const before = log.split('\n').slice(-7, -2).join(' | ');
        errors.push(`${match[1]} [${seconds} s after launch; at ${source}; after: ${before}]`);
      }
    }
  });
  const driverGone = () => driverProcess.exitCode !== null || driverProcess.signalCode !== null;
  const isOurs = (args) => args.some((a, i) => a === '--profile' && args[i + 1] === dir);
  /** A WebDriver timeout, told with what the browser was doing then: its log's last lines and its connections. */
  async function explained(e) {
    if (!(e instanceof error.TimeoutError)) return e;
    const sockets = await browserSockets(isOurs).catch((why) => `(not read: ${why.message})`);
    const lastLines = log.split('\n').slice(-40).join('\n');
    return new Error(
      `WebKitWebDriver timed out (a page load may take ${PAGE_LOAD_TIMEOUT_MS} ms)\n` +
        `--- the browser's last log lines:\n${lastLines}\n--- its TCP connections:\n${sockets}`,
      { cause: e },
    );
  }
  try {
    await driverReady(driverProcess, port, () => log + partial);
  } catch (e) {
    if (!driverGone()) driverProcess.kill('SIGKILL');
    throw e;
  }
  const driver = await new Builder()
    .usingServer(`http://127.0.0.1:${port}`)
    .withCapabilities({
      browserName: BROWSER_NAME,
      'webkitgtk:browserOptions': { binary: LAUNCHER, args: ['--profile', dir] },
    })
    .build();
  // Its first window stays open and blank for the session's life: closing a
  // browser's last window ends the browser.
  await driver.manage().setTimeouts({ pageLoad: PAGE_LOAD_TIMEOUT_MS });
  const home = await driver.getWindowHandle();
  const callbacks = await callbackServer();

  // The session, one command sequence at a time.
  let queue = Promise.resolve();
  const session = (fn) => {
    const turn = queue.then(fn).catch(async (e) => {
      throw await explained(e);
    });
    queue = turn.catch(() => {});
    return turn;
  };
  let current = home;
  const inWindow = (handle, fn) =>
    session(async () => {
      if (current !== handle) {
        await driver.switchTo().window(handle);
        current = handle;
      }
      return fn();
    });

  /** `fn(arg)` in the tab's page, awaited without holding the session while it waits. */
  async function evaluate(handle, fn, arg) {
    const id = ++evalCount;
    const isFunction = typeof fn === 'function';
    const source = isFunction ? fn.toString() : String(fn);
    const argJson = arg === undefined ? undefined : JSON.stringify(arg);
    const run = (...args) =>
      inWindow(handle, () =>
        driver.executeAsyncScript(...args).catch((e) => {
          // The page navigated away while the script ran: WebKit says
          // "Callback was not called before the unload event", as `no such
          // frame` (seen with a reload during the script: 3 of 3) or as a
          // JavaScript error. Only the first was missed before, and failed
          // the demo's sign-in test once in CI (a click that navigates).
          if (e instanceof error.WebDriverError && /unload/.test(e.message)) return { done: true, navigated: true };
          throw e;
        }),
      );
    let outcome = await run(START, id, source, argJson, isFunction, WAIT_SLICE_MS);
    while (!outcome.done) outcome = await run(WAIT, id, WAIT_SLICE_MS);
    if (outcome.navigated) throw new Navigated();
    if (outcome.error !== undefined && outcome.error !== null) throw new Error(outcome.error);
    return outcome.json === undefined || outcome.json === null ? undefined : JSON.parse(outcome.json);
  }

  /**
   * Polls `fn(arg)` in the page until truthy or `timeout` ms pass; its
   * value. A navigation meanwhile starts it again in the new page, as in
   * Playwright.
   */
  function waitForFunction(handle, fn, arg, { timeout = DEFAULT_TIMEOUT_MS } = {}) {
    return waitForSource(handle, typeof fn === 'function' ? fn.toString() : `() => (${fn})`, arg, timeout);
  }

  /** `waitForFunction` for a function's source. */
  async function waitForSource(handle, source, arg, timeout) {
    const deadline = Date.now() + timeout;
    for (;;) {
      try {
        return await pollInPage(handle, source, arg, Math.max(deadline - Date.now(), 0));
      } catch (e) {
        if (!(e instanceof Navigated)) throw e;
      }
    }
  }

  function pollInPage(handle, source, arg, timeout) {
    return evaluate(
      handle,
      ([source, arg, timeout]) => {
        const fn = (0, eval)(`(${source})`);
        const deadline = Date.now() + timeout;
        return new Promise((resolve, reject) => {
          const poll = async () => {
            try {
              const value = await fn(arg);
              if (value) return resolve(value);
            } catch (e) {
              return reject(e);
            }
            if (Date.now() > deadline) return reject(new Error(`waitForFunction: timeout ${timeout} ms exceeded`));
            setTimeout(poll, 16);
          };
          poll();
        });
      },
      [source, arg, timeout],
    );
  }

  /**
   * Until the page's load event, as Playwright's `goto`: WebKitWebDriver's
   * navigation may return before the page's module scripts ran.
   */
  const loaded = (handle) => waitForFunction(handle, () => document.readyState === 'complete');

  /** Waits for an element matching `selector`, visible unless `state` is 'attached'. */
  async function element(handle, selector, { timeout = DEFAULT_TIMEOUT_MS, state = 'visible' } = {}) {
    await waitForSource(handle, PRESENT, { selector, visible: state === 'visible' }, timeout).catch((e) => {
      throw new Error(`waiting for ${state} ${selector}: ${e.message}`);
    });
  }

  /**
   * Waits for `selector`, then runs `action` on the element in one session
   * turn. An element the page replaced in between (a re-render) is looked
   * up again, as Playwright does for its actions.
   */
  async function act(handle, selector, action, { state = 'visible', timeout = DEFAULT_TIMEOUT_MS } = {}) {
    const deadline = Date.now() + timeout;
    for (;;) {
      await element(handle, selector, { state, timeout: Math.max(deadline - Date.now(), 0) });
      try {
        return await inWindow(handle, async () => {
          const found = await find(selector, state);
          if (!found) throw new error.StaleElementReferenceError(`${selector} went away`);
          return await action(found);
        });
      } catch (e) {
        if (!(e instanceof error.StaleElementReferenceError)) throw e;
      }
    }
  }

  const find = (selector, state = 'visible') =>
    driver.executeScript(FIRST, selector, state === 'visible');

  const exposed = new Map();
  const reexpose = async () => {
    for (const name of exposed.keys()) await driver.executeScript(exposeScript(callbacks.url, name));
  };

  function tab(handle) {
    return {
      async goto(url) {
        await inWindow(handle, async () => {
          await driver.get(url);
          await reexpose();
        });
        await loaded(handle);
      },
      async reload() {
        await inWindow(handle, async () => {
          await driver.navigate().refresh();
          await reexpose();
        });
        await loaded(handle);
      },
      async close() {
        await inWindow(handle, async () => {
          await driver.close();
          await driver.switchTo().window(home);
          current = home;
        });
      },
      evaluate: (fn, arg) => evaluate(handle, fn, arg),
      waitForFunction: (fn, arg, options) => waitForFunction(handle, fn, arg, options),
      waitForSelector: (selector, options) => element(handle, selector, options),
      click: (selector) => act(handle, selector, (el) => el.click()),
      // Typed over the selected old value, as Playwright's fill: WebDriver's
      // Element Clear would blur the input, which an app may act on.
      fill: (selector, value) =>
        act(handle, selector, async (el) => {
          await driver.executeScript('arguments[0].focus(); arguments[0].select()', el);
          await el.sendKeys(value === '' ? Key.BACK_SPACE : value);
        }),
      press: (selector, key) => act(handle, selector, (el) => el.sendKeys(KEYS[key] ?? key)),
      textContent: (selector, options) =>
        act(handle, selector, (el) => driver.executeScript('return arguments[0].textContent', el), {
          ...options,
          state: 'attached',
        }),
      async exposeFunction(name, fn) {
        exposed.set(name, fn);
        callbacks.functions.set(name, fn);
        await inWindow(handle, () => driver.executeScript(exposeScript(callbacks.url, name)));
      },
      async setViewportSize({ width, height }) {
        // Under Xvfb there is no window manager: the window is the viewport.
        await inWindow(handle, () => driver.manage().window().setRect({ width, height }));
      },
      bringToFront: () => inWindow(handle, () => driver.switchTo().window(handle)),
      async screenshot({ path, fullPage = false, clip } = {}) {
        // WebKit photographs the last frame drawn: wait for one drawn after
        // now (an image just decoded is not in it yet), as Playwright does.
        const drawn = () =>
          driver.executeAsyncScript('requestAnimationFrame(() => requestAnimationFrame(arguments[0]))');
        const png = await inWindow(handle, async () => {
          if (!fullPage) return (await drawn(), driver.takeScreenshot());
          const rect = await driver.manage().window().getRect();
          const height = await driver.executeScript('return document.documentElement.scrollHeight');
          await driver.manage().window().setRect({ width: rect.width, height: Math.max(height, rect.height) });
          try {
            await drawn();
            return await driver.takeScreenshot();
          } finally {
            await driver.manage().window().setRect({ width: rect.width, height: rect.height });
          }
        });
        let bytes = Buffer.from(png, 'base64');
        if (clip) bytes = await crop(bytes, clip);
        if (path) await (await import('node:fs/promises')).writeFile(path, bytes);
        return bytes;
      },
    };
  }

  /** The part `clip` of a PNG, cut by the browser (a canvas in the blank home window). */
  async function crop(png, clip) {
    const dataUrl = await evaluate(
      home,
      async ([src, { x, y, width, height }]) => {
        const image = new Image();
        image.src = src;
        await image.decode();
        const canvas = document.createElement('canvas');
        canvas.width = Math.round(width);
        canvas.height = Math.round(height);
        canvas.getContext('2d').drawImage(image, x, y, width, height, 0, 0, width, height);
        return canvas.toDataURL('image/png');
      },
      [`data:image/png;base64,${png.toString('base64')}`, clip],
    );
    return Buffer.from(dataUrl.slice(dataUrl.indexOf(',') + 1), 'base64');
  }

  const stopDriver = async () => {
    callbacks.close();
    if (!driverGone()) {
      const exited = once(driverProcess, 'exit');
      driverProcess.kill('SIGKILL');
      await exited;
    }
  };
  return {
    dir,
    errors,
    async newTab(url) {
      const handle = await session(async () => {
        await driver.switchTo().newWindow('tab');
        current = await driver.getWindowHandle();
        return current;
      });
      const t = tab(handle);
      if (url) await t.goto(url);
      return t;
    },
    async close({ keep = false } = {}) {
      // Quitting closes every window; the last one closed, the browser ends itself.
      await session(() => driver.quit());
      await stopDriver();
      if (!keep) await rm(dir, { recursive: true, force: true });
    },
    async kill() {
      await killBrowser(isOurs, dir);
      await stopDriver();
    },
  };
}
