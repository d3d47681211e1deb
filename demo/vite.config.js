// Builds the demo into demo/build with the package as an app gets it: `ferrydb`
// and `ferrydb/react` resolve to the built dist/ (run scripts/build.sh first),
// and Vite emits the SharedWorker and the wasm from their `new URL(...)`s.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const dist = (file) => fileURLToPath(new URL(`../dist/${file}`, import.meta.url));

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: './',
  logLevel: 'warn',
  esbuild: { jsx: 'automatic' },
  resolve: {
    alias: [
      { find: /^ferrydb$/, replacement: dist('index.js') },
      { find: /^ferrydb\/react$/, replacement: dist('react.js') },
    ],
  },
  build: { outDir: 'build', emptyOutDir: true },
});
