/**
 * The leader-tab topology, where SharedWorker is missing (or forced with
 * `open({ topology: 'leader-tab' })`): the tab that holds the database's
 * Web Lock runs the worker host in a dedicated worker, and every tab (the
 * leader too) reaches it over one BroadcastChannel, the only channel
 * unrelated tabs share without a SharedWorker (a port cannot be sent over
 * it). Each message names its sender and addressee, so a tab hears only
 * the current leader's messages, and a woken old leader only what was sent
 * to it. The leader's own tab talks to its worker directly (`postMessage`
 * on the worker: a thread hop, where the channel goes through the browser
 * process), and follows only the worker it started while it has one, so
 * its messages never take two paths to one leader and overtake each other.
 *
 * When the leader goes, its lock goes to the next tab in line (a closed or
 * crashed tab releases its locks); a leader that stops answering (frozen)
 * has its lock stolen. Either way the new leader's worker recovers from
 * durable storage and announces itself, and each tab sends it again what
 * the old one held and had not answered (`Transport.resend`).
 */
import type { Port } from './transport.js';

/**
 * How often a tab asks who leads. A leader's worker answers from its event
 * loop, so one silent for `SILENT_BEATS` asks in a row is frozen (or stuck)
 * and is taken over; the fencing epoch keeps it from writing if it wakes.
 */
const BEAT_MS = 1000;
const SILENT_BEATS = 4;

/**
 * What goes over the channel: asks (`who`), a worker's answers (`beat` while
 * it opens the replica, then `leader`), and messages in both directions.
 */
export interface Envelope {
  leader?: string;
  /** The leader's fencing epoch: a tab follows only a leader at least as new as its current one. */
  epoch?: number;
  beat?: 1;
  who?: 1;
  fatal?: unknown;
  tab?: string;
  to?: string;
  from?: string;
  m?: unknown;
}

/**
 * Joins the election for the database whose channel is `name` as tab
 * `tab`: a port to whichever worker leads. `spawn` starts the worker when
 * this tab is elected; `onLeader` runs once a (new) leader is there.
 */
export function leaderTab(name: string, tab: string, spawn: () => Worker, onLeader: () => void): Port {
  const channel = new BroadcastChannel(name);
  let leader: string | undefined;
  let epoch = 0;
  let silent = 0;
  let worker: Worker | undefined;
  /** This tab's worker, once it announced itself (directly). */
  let own: string | undefined;
  let release = () => {};
  let closed = false;
  const port: Port = {
    onmessage: null,
    postMessage(m: unknown) {
      if (!leader) return;
      const envelope: Envelope = { tab, to: leader, m };
      if (worker && leader == own) worker.postMessage(envelope);
      else channel.postMessage(envelope);
    },
    close() {
      closed = true;
      clearInterval(beat);
      channel.close();
      worker?.terminate();
      release();
    },
  };
  const deliver = (data: unknown) => port.onmessage?.({ data } as MessageEvent);
  /** A message from the channel, or (`direct`) from this tab's own worker. */
  const receive = (data: Envelope, direct: boolean) => {
    if (direct && data.leader) own = data.leader;
    if (data.beat || data.leader == leader) silent = 0;
    // A woken old leader's worker may answer too, until it learns it was
    // fenced out: its epoch is older. A tab with a worker holds the lock:
    // its own worker leads.
    else if (data.leader && data.epoch! >= epoch && (direct || !worker)) {
      silent = 0;
      leader = data.leader;
      epoch = data.epoch!;
      onLeader();
    } else if (data.fatal) deliver(data.fatal);
    else if (data.to === tab && data.from === leader) deliver(data.m);
  };
  channel.onmessage = ({ data }: MessageEvent<Envelope>) => receive(data, false);
  const elect = (steal: boolean): void => {
    void navigator.locks
      .request(`${name}:leader`, { steal }, () => {
        if (closed) return;
        worker = spawn();
        worker.onmessage = ({ data }: MessageEvent<Envelope>) => receive(data, true);
        return new Promise<void>((resolve) => (release = resolve));
      })
      // Stolen (this tab was frozen): stand down, and queue again.
      .catch(() => {
        worker?.terminate();
        worker = undefined;
        if (!closed) elect(false);
      });
  };
  elect(false);
  const ask = () => channel.postMessage({ who: 1 } satisfies Envelope);
  const beat = setInterval(() => {
    if (!worker && ++silent > SILENT_BEATS) {
      silent = 0;
      elect(true);
    }
    ask();
  }, BEAT_MS);
  ask();
  return port;
}
