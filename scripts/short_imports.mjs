// Renames the wasm's imports to short names, in the module and in the
// wasm-bindgen glue that provides them (run by scripts/build.sh after both
// are minified):  node scripts/short_imports.mjs pkg/ferrydb_bg.wasm pkg/ferrydb.js
//
// wasm-bindgen names each import after its JS function plus a 16-hex-digit
// hash (`__wbg_set_d2d33b52458e984a`), and both files carry every name: 176
// imports, ~5.8 KB of names in each, the hashes nearly incompressible.
// Short names (`$0`, `$1`, ...) change nothing else: the glue's imports
// object is the only place the names appear, and each must appear there as
// a key exactly once, or the build stops.
import { readFileSync, writeFileSync } from 'node:fs';

const [wasmPath, gluePath] = process.argv.slice(2);
const wasm = readFileSync(wasmPath);
let glue = readFileSync(gluePath, 'utf8');

let at = 8;
const uleb = () => {
  let value = 0;
  let shift = 0;
  let byte;
  do {
    byte = wasm[at++];
    value += (byte & 127) * 2 ** shift;
    shift += 7;
  } while (byte & 128);
  return value;
};
const encodeUleb = (value) => {
  const out = [];
  do {
    let byte = value % 128;
    value = Math.floor(value / 128);
    if (value > 0) byte |= 128;
    out.push(byte);
  } while (value > 0);
  return Buffer.from(out);
};
const name = (text) => Buffer.concat([encodeUleb(Buffer.byteLength(text)), Buffer.from(text)]);

const parts = [wasm.subarray(0, 8)];
let renamed = 0;
while (at < wasm.length) {
  const sectionStart = at;
  const id = wasm[at++];
  const length = uleb();
  const bodyStart = at;
  const end = bodyStart + length;
  if (id !== 2) {
    parts.push(wasm.subarray(sectionStart, end));
    at = end;
    continue;
  }
  const count = uleb();
  const body = [encodeUleb(count)];
  for (let i = 0; i < count; i++) {
    let len = uleb();
    const module = wasm.subarray(at, at + len).toString();
    at += len;
    len = uleb();
    const field = wasm.subarray(at, at + len).toString();
    at += len;
    // The import's description, copied as it is.
    const descStart = at;
    const kind = wasm[at++];
    if (kind === 0) uleb();
    else if (kind === 1) { at++; if (uleb() & 1) { uleb(); } uleb(); }
    else if (kind === 2) { if (uleb() & 1) { uleb(); } uleb(); }
    else if (kind === 3) at += 2;
    else if (kind === 4) { at++; uleb(); }
    else throw new Error(`unknown import kind ${kind} of ${field}`);
    const short = `$${(renamed++).toString(36)}`;
    const key = new RegExp(`(?<![\\w$])${field.replace(/\$/g, '\\$')}(?=:)`, 'g');
    const uses = glue.match(key)?.length ?? 0;
    const anywhere = glue.split(field).length - 1;
    if (uses !== 1 || anywhere !== 1) {
      throw new Error(`${field} appears ${anywhere} times in ${gluePath} (${uses} as a key); expected once, as a key`);
    }
    glue = glue.replace(key, short);
    body.push(name(module), name(short), wasm.subarray(descStart, at));
  }
  if (at !== end) throw new Error('the import section did not parse to its end');
  const bodyBytes = Buffer.concat(body);
  parts.push(Buffer.from([2]), encodeUleb(bodyBytes.length), bodyBytes);
}
writeFileSync(wasmPath, Buffer.concat(parts));
writeFileSync(gluePath, glue);
console.log(`short_imports: ${renamed} imports renamed`);
