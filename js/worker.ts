/**
 * The worker entry, shared or dedicated. Ports that connect while the wasm
 * module is still loading are kept and handed over once it is ready: a
 * `connect` event that found no listener would be lost for good.
 *
 * As a dedicated worker it is the leader tab's (`leader.ts`): it reaches
 * the tabs over their BroadcastChannel and gives the host one port per tab,
 * relayed to and from the channel, so the host serves it like any port.
 */
import init, { openWorker, type FerryWorker } from '../pkg/ferrydb.js';
import type { Envelope } from './leader.js';

// The DOM and WebWorker type libraries conflict; this is all of the
// worker scope that the entry needs.
declare const self: {
  name: string;
  close(): void;
  onconnect?: unknown;
  postMessage(message: unknown): void;
  addEventListener(type: 'connect' | 'message', listener: (event: MessageEvent) => void): void;
};

const waiting: MessagePort[] = [];
let worker: FerryWorker | undefined;
const connect = (port: MessagePort) => (worker ? worker.connect(port) : waiting.push(port));

// The client names the worker `ferrydb:["<database>","<user>","<storage>"]`, so
// each database and user gets its own worker and storage.
const [name, user, storage] = JSON.parse(self.name.slice('ferrydb:'.length)) as [string, string, string];
const shared = 'onconnect' in self;

// A leader tab's worker keeps its log in OPFS, not IndexedDB: a frozen old
// leader's IndexedDB transaction would block the next leader from reading
// the log until it thaws, while OPFS files are published whole on close
// and read without a lock; and it fences out older leaders (`leader`).
const opened = init()
  .then(() => openWorker(name, user, shared || storage != 'auto' ? storage : 'opfs', !shared))
  .then((opened) => {
    worker = opened;
    for (const port of waiting.splice(0)) opened.connect(port);
  });
// Tell every tab that is waiting, so their calls fail instead of hanging.
const fatal = (error: unknown) => ({
  type: 'fatal',
  error: { code: 'worker_unavailable', message: String(error), retryable: false },
});

if (shared) {
  self.addEventListener('connect', (event) => event.ports[0] && connect(event.ports[0]));
  opened.catch((error: unknown) => {
    const message = fatal(error);
    for (const port of waiting.splice(0)) port.postMessage(message);
    self.addEventListener('connect', (event) => event.ports[0]?.postMessage(message));
  });
} else {
  const id = crypto.randomUUID();
  const channel = new BroadcastChannel(self.name);
  const post = (envelope: Envelope) => channel.postMessage(envelope);
  const tabs = new Map<string, MessagePort>();
  /** The tab that started this worker: it posts here directly, and hears back so. */
  let own: string | undefined;
  const announce = () => post(worker ? { leader: id, epoch: worker.epoch } : { beat: 1 });
  const relay = (data: Envelope) => {
    if (data.to !== id || !data.tab) return;
    let port = tabs.get(data.tab);
    if (!port) {
      const tab = data.tab;
      const pair = new MessageChannel();
      pair.port1.onmessage = (event) => {
        const envelope: Envelope = { to: tab, from: id, m: event.data };
        if (tab == own) self.postMessage(envelope);
        else post(envelope);
      };
      tabs.set(tab, (port = pair.port1));
      connect(pair.port2);
    }
    port.postMessage(data.m);
  };
  channel.onmessage = ({ data }: MessageEvent<Envelope>) => {
    if (data.who) return announce();
    // A newer leader took over while this one was frozen: stop (its tab ends it too).
    if (worker && data.epoch! > worker.epoch) self.close();
    relay(data);
  };
  self.addEventListener('message', ({ data }: MessageEvent<Envelope>) => {
    own = data.tab;
    relay(data);
  });
  opened.then(
    () => {
      self.postMessage({ leader: id, epoch: worker!.epoch } satisfies Envelope);
      announce();
    },
    (error: unknown) => post({ fatal: fatal(error) }),
  );
}
