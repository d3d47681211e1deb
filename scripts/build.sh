#!/usr/bin/env bash
# Builds the npm package: release wasm → wasm-bindgen glue in pkg/ → wasm-opt -Oz
# → TypeScript in dist/. Run scripts/setup.sh first (npm run build does not).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build -q --release --target wasm32-unknown-unknown -p ferrydb
rm -rf pkg
wasm-bindgen --target web --out-dir pkg --out-name ferrydb \
  target/wasm32-unknown-unknown/release/ferrydb.wasm
# Kept with its function names for size profiling (`twiggy top` on it).
cp pkg/ferrydb_bg.wasm target/ferrydb_bg.names.wasm
# Debian's wasm-opt (108) produces modules that fail at runtime: use the npm one.
# --converge repeats -Oz until it stops shrinking the module (1.3 KB gzip).
node_modules/.bin/wasm-opt -Oz --converge --enable-bulk-memory --enable-nontrapping-float-to-int \
  --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue \
  pkg/ferrydb_bg.wasm -o pkg/ferrydb_bg.wasm
rm -rf dist
node_modules/.bin/tsc -p tsconfig.json
# The shipped JavaScript and the glue minified (7.8 KB gzip of the page,
# measured; bundlers minify again anyway), each source map chained back to
# the TypeScript; the declarations keep their comments, for editors.
# dist/spawn.js is left as tsc wrote it: bundlers read its `@vite-ignore`.
node_modules/.bin/esbuild pkg/ferrydb.js --minify --outfile=pkg/ferrydb.js \
  --allow-overwrite --log-level=warning
# The imports' hashed names made short in both files (scripts/short_imports.mjs).
node scripts/short_imports.mjs pkg/ferrydb_bg.wasm pkg/ferrydb.js
for file in dist/*.js; do
  [ "$file" = dist/spawn.js ] && continue
  node_modules/.bin/esbuild "$file" --minify --sourcemap --outfile="$file" \
    --allow-overwrite --log-level=warning
done
grep -q '@vite-ignore' dist/spawn.js
echo "build: pkg/ferrydb_bg.wasm $(wc -c < pkg/ferrydb_bg.wasm) bytes ($(gzip -9c pkg/ferrydb_bg.wasm | wc -c) gzip)"
node scripts/size.mjs
