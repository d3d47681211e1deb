// The contract's selectors for engines that are not Playwright: CSS plus
// Playwright's text pseudo-classes, resolved in the page.

/**
 * Runs in the page: the elements matching `selector` (CSS, with
 * `:has-text("t")`, `:text("t")` and `:text-is("t")` after a compound
 * selector, as in `#list li:has-text("milk") .delete`), in document order;
 * only the visible ones if `visible`. Self-contained: engines send its
 * source to the page.
 */
export function queryAll(selector, visible) {
  const normal = (s) => s.replace(/\s+/g, ' ').trim();
  const pseudo = /:(has-text|text-is|text)\("((?:[^"\\]|\\.)*)"\)/g;
  const tests = {
    'has-text': (e, t) => normal(e.textContent).toLowerCase().includes(t.toLowerCase()),
    text: (e, t) => normal(e.textContent).toLowerCase().includes(t.toLowerCase()),
    'text-is': (e, t) => normal(e.textContent) === t,
  };
  // `found` null: the document; else the elements matched so far, whose
  // descendants (`:scope …`) the next CSS part selects from.
  let found = null;
  const select = (css) => {
    if (!css) return;
    if (found === null) found = [...document.querySelectorAll(css)];
    else found = [...new Set(found.flatMap((e) => [...e.querySelectorAll(`:scope${css}`)]))];
  };
  let rest = 0;
  for (const m of selector.matchAll(pseudo)) {
    select(selector.slice(rest, m.index));
    if (found === null) throw new Error(`selector ${selector}: a text pseudo-class must follow a CSS selector`);
    const text = m[2].replace(/\\(.)/g, '$1');
    found = found.filter((e) => tests[m[1]](e, text));
    rest = m.index + m[0].length;
  }
  select(selector.slice(rest));
  found ??= [];
  found.sort((a, b) => (a.compareDocumentPosition(b) & Node.DOCUMENT_POSITION_FOLLOWING ? -1 : 1));
  if (!visible) return found;
  return found.filter((e) => {
    const box = e.getBoundingClientRect();
    return box.width > 0 && box.height > 0 && getComputedStyle(e).visibility !== 'hidden';
  });
}

/**
 * Runs in the page: `value` with every plain object and array copied, so
 * no object is reachable twice. WebDriver BiDi sends an object met a second
 * time as a bare reference (`internalId`), which puppeteer turns into
 * `undefined`: two statuses sharing one `initialSync` object would arrive
 * with the second one's missing. Playwright copies each occurrence.
 */
export function unshare(value) {
  const copy = (v, path) => {
    if (v === null || typeof v !== 'object') return v;
    if (path.includes(v)) throw new Error('evaluate: the result refers to itself');
    const inner = [...path, v];
    if (Array.isArray(v)) return v.map((item) => copy(item, inner));
    const proto = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) return v; // Date, typed arrays, Map…: as they are
    return Object.fromEntries(Object.entries(v).map(([k, item]) => [k, copy(item, inner)]));
  };
  return copy(value, []);
}
