/**
 * The SharedWorker entry. Ports that connect while the wasm module is still
 * loading are kept and handed over once it is ready: a `connect` event that
 * found no listener would be lost for good.
 */
import init, { openWorker, type FerryWorker } from '../pkg/ferrydb.js';

// The DOM and WebWorker type libraries conflict; this is all of the
// SharedWorkerGlobalScope that the entry needs.
declare const self: {
  name: string;
  addEventListener(type: 'connect', listener: (event: MessageEvent) => void): void;
};

const waiting: MessagePort[] = [];
let worker: FerryWorker | undefined;

self.addEventListener('connect', (event) => {
  const port = event.ports[0];
  if (!port) return;
  if (worker) worker.connect(port);
  else waiting.push(port);
});

// The client names the worker `ferrydb:["<database>","<user>","<storage>"]`, so
// each database and user gets its own worker and storage.
const [name, user, storage] = JSON.parse(self.name.slice('ferrydb:'.length)) as [string, string, string];

const ready = init()
  .then(() => openWorker(name, user, storage))
  .then((opened) => {
    worker = opened;
    for (const port of waiting.splice(0)) opened.connect(port);
  });

ready.catch((error: unknown) => {
  // Tell every tab that is waiting, so their calls fail instead of hanging.
  const message = {
    type: 'fatal',
    error: { code: 'worker_unavailable', message: String(error), retryable: false },
  };
  for (const port of waiting.splice(0)) port.postMessage(message);
  self.addEventListener('connect', (event) => event.ports[0]?.postMessage(message));
});
