// Playwright's selectors for a browser that only has `querySelectorAll`:
// CSS plus the text pseudo-classes the tests use, `:has-text("t")` and
// `:text("t")` (the element's text contains t, case-insensitive) and
// `:text-is("t")` (its trimmed text is exactly t), anywhere in the selector.

/**
 * Runs in the page (by its source): the first element matching
 * `selector` (and visible, if `visible`): the element itself if `element`,
 * else true; null if none.
 */
export function findElement({ selector, visible, element }) {
  const TEXT = /:(has-text|text-is|text)\((["'])(.*?)\2\)/y;
  // Steps of [css, filters]: each step's css is matched below the last's elements.
  const steps = [];
  let css = '';
  let filters = [];
  for (let i = 0; i < selector.length; ) {
    TEXT.lastIndex = i;
    const text = TEXT.exec(selector);
    if (text) {
      filters.push({ kind: text[1], value: text[3] });
      i = TEXT.lastIndex;
      // The rest of this compound selector (up to a combinator) is a filter too.
      let rest = '';
      const isText = () => ((TEXT.lastIndex = i), TEXT.test(selector));
      while (i < selector.length && !/[\s>+~]/.test(selector[i]) && !isText()) rest += selector[i++];
      if (rest) filters.push({ kind: 'css', value: rest });
      continue;
    }
    if (filters.length > 0) {
      steps.push([css, filters]);
      [css, filters] = ['', []];
    }
    const quote = selector[i] === '"' || selector[i] === "'" ? selector[i] : null;
    if (quote) {
      const end = selector.indexOf(quote, i + 1);
      css += selector.slice(i, end + 1);
      i = end + 1;
    } else css += selector[i++];
  }
  steps.push([css, filters]);

  const normal = (s) => s.replace(/\s+/g, ' ').trim();
  const passes = (el, { kind, value }) => {
    if (kind === 'css') return el.matches(`*${value}`);
    const text = normal(el.textContent ?? '');
    if (kind === 'text-is') return text === normal(value);
    return text.toLowerCase().includes(normal(value).toLowerCase());
  };
  let found = [document];
  steps.forEach(([css, filters], n) => {
    const scoped = n === 0 ? css : `:scope ${css}`;
    const next = [];
    for (const root of found) {
      const all = css.trim() === '' ? [root] : root.querySelectorAll(scoped);
      for (const el of all) if (!next.includes(el) && filters.every((f) => passes(el, f))) next.push(el);
    }
    found = next;
  });
  const shown = (el) => {
    const box = el.getBoundingClientRect();
    return box.width > 0 && box.height > 0 && getComputedStyle(el).visibility !== 'hidden';
  };
  const match = found.find((el) => el !== document && (!visible || shown(el)));
  if (!match) return null;
  return element ? match : true;
}
