import { useEffect, useLayoutEffect, useRef, useState } from 'react';
import { useFerry, useQuery, useSyncStatus } from 'ferrydb/react';
import { now, rememberOffline, tab } from './session.js';

/** Re-renders every second, for "3 s ago". */
function useClock() {
  const [, setTick] = useState(0);
  useEffect(() => {
    const timer = setInterval(() => setTick((t) => t + 1), 1000);
    return () => clearInterval(timer);
  }, []);
}

const median = (samples) => {
  const sorted = samples.map((s) => s.ms).sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
};

/**
 * Time from a write in another tab (or browser) to its render here: each
 * item write carries its tab and a timestamp; when the newest stamp changes
 * to another tab's, the difference to now, taken as React commits the
 * update to the DOM, is one sample.
 */
function useRemoteWriteLatency() {
  const latest = useQuery('SELECT updated_at AS at, updated_by AS by FROM items ORDER BY updated_at DESC LIMIT 1');
  const newest = useRef(null);
  const [samples, setSamples] = useState([]);
  const row = latest.status === 'ok' ? latest.rows[0] : undefined;
  // A layout effect runs once React has written the DOM, before the browser
  // paints: the moment the write is on the page. (A passive effect would
  // add the scheduler's delay, a few ms, to every sample.)
  useLayoutEffect(() => {
    if (!row) return;
    const first = newest.current === null;
    if (!first && row.at <= newest.current) return;
    newest.current = row.at;
    // What the replica held at open, and this tab's own writes, are not remote writes.
    if (first || row.by === tab) return;
    const ms = now() - row.at;
    // A write replayed long after it was made (its device was offline) says
    // nothing about latency.
    if (ms > 30_000) return;
    setSamples((list) => [...list.slice(-19), { ms, from: row.by }]);
  }, [row]);
  return samples;
}

function connection(status) {
  if (status.paused) return ['paused', 'Offline (sync paused)'];
  if (status.connected) return ['ok', status.uploading ? 'Connected · uploading' : status.downloading ? 'Connected · downloading' : 'Connected'];
  if (status.error) return ['bad', `Not syncing: ${status.error.code}`];
  return ['wait', 'Connecting…'];
}

/** The demo server's fault switches (`/demo/faults`), shared by every client. */
function useServerFaults() {
  const [faults, setFaults] = useState(null);
  useEffect(() => {
    let stopped = false;
    const load = () =>
      fetch('/demo/faults')
        .then((r) => (r.ok ? r.json() : null))
        .then((f) => !stopped && setFaults(f))
        .catch(() => {});
    load();
    // Another browser may flip them: look again now and then.
    const timer = setInterval(load, 3000);
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }, []);
  const set = async (change) => {
    const next = { ...faults, ...change };
    const r = await fetch('/demo/faults', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(next) });
    if (r.ok) setFaults(next);
  };
  return [faults, set];
}

function Switch({ id, checked, disabled, onChange, children }) {
  return (
    <label className="switch">
      <input type="checkbox" id={id} checked={checked} disabled={disabled} onChange={(e) => onChange(e.target.checked)} />
      <span>{children}</span>
    </label>
  );
}

const SLOW_MS = 1500;

export function SyncPanel() {
  const db = useFerry();
  const status = useSyncStatus();
  const { storage } = status;
  const samples = useRemoteWriteLatency();
  const [faults, setFaults] = useServerFaults();
  useClock();
  const [tone, text] = connection(status);
  const progress = status.initialSync;
  const last = samples.at(-1);
  return (
    <section className="card sync-panel" aria-label="Sync status">
      <dl>
        <div>
          <dt>Connection</dt>
          <dd id="connection" data-tone={tone}>
            <span className={`dot ${tone}`} /> {text}
          </dd>
        </div>
        <div>
          <dt>Storage</dt>
          <dd id="storage">
            {storage ? (storage.error ? `${storage.backend} · ${storage.error.code}` : `${storage.backend} · saved #${storage.durableSeq}`) : '…'}
          </dd>
        </div>
        <div>
          <dt>Pending</dt>
          <dd id="pending">{status.pendingMutations}</dd>
        </div>
        <div>
          <dt>Last sync</dt>
          <dd id="last-sync">{status.lastSyncedAt ? `${Math.max(0, Math.round((Date.now() - status.lastSyncedAt) / 1000))} s ago` : 'never'}</dd>
        </div>
        <div>
          <dt>Write → render</dt>
          <dd id="latency" title="From a write in another tab or browser to its render in this tab">
            {last === undefined ? (
              <span className="muted">edit in another tab</span>
            ) : (
              <>
                <strong>{last.ms} ms</strong> <span className="muted">from tab {last.from}</span>
                <br />
                <span className="muted">
                  median {median(samples)} ms of {samples.length}
                </span>
              </>
            )}
          </dd>
        </div>
      </dl>
      {progress && (
        <div className="progress" id="initial-sync">
          <span>Initial sync: {progress.received.toLocaleString()} rows{progress.total ? ` of ${progress.total.toLocaleString()}` : ''}</span>
          <progress max={progress.total ?? undefined} value={progress.total ? progress.received : undefined} />
        </div>
      )}
      <div className="switches">
        <Switch id="offline" checked={!!status.paused} onChange={(off) => {
            rememberOffline(off);
            return off ? db.pauseSync() : db.resumeSync();
          }}>
          Offline (this browser)
        </Switch>
        <Switch
          id="slow-server"
          checked={!!faults?.latencyMs}
          disabled={!faults}
          onChange={(slow) => setFaults({ latencyMs: slow ? SLOW_MS : 0 })}
        >
          Slow server ({SLOW_MS / 1000} s)
        </Switch>
        <Switch
          id="failing-server"
          checked={!!faults?.failStatus}
          disabled={!faults}
          onChange={(fail) => setFaults({ failStatus: fail ? 500 : null })}
        >
          Server errors (500)
        </Switch>
      </div>
    </section>
  );
}
