import { useState } from 'react';
import { useFerry, usePendingMutations, useRejections } from 'ferrydb/react';
import { useTrackedMutations } from './tracked.js';

const STAGES = ['local', 'durable', 'server'];

function Stage({ name, state }) {
  const label = state === 'ok' ? '✓' : state === 'pending' ? '…' : '✗';
  return (
    <span className={`stage ${state === 'ok' ? 'ok' : state === 'pending' ? 'wait' : 'bad'}`} title={`${name}: ${state}`}>
      {name} {label}
      {state !== 'ok' && state !== 'pending' && <small> {state}</small>}
    </span>
  );
}

function summary(args) {
  const value = typeof args === 'string' ? JSON.parse(args) : args;
  const { title, name, by, position } = value ?? {};
  if (title ?? name) return `“${title ?? name}”`;
  if (position !== undefined) return `to ${position}`;
  if (typeof by === 'number') return `+${by}`;
  return '';
}

const age = (ms) => `${Math.max(0, Math.round((Date.now() - ms) / 1000))} s ago`;

function TabMutations() {
  const entries = useTrackedMutations();
  if (entries.length === 0) return <p className="muted small">Mutations made in this tab show here with their three stages.</p>;
  return (
    <ol className="log" id="tab-mutations">
      {entries.map((e) => (
        <li key={e.key}>
          <span className="op">
            {e.name} <span className="muted">{summary(e.args)}</span>
          </span>
          <span className="stages">
            {STAGES.map((stage) => (
              <Stage key={stage} name={stage} state={e[stage]} />
            ))}
          </span>
        </li>
      ))}
    </ol>
  );
}

function Outbox() {
  const pending = usePendingMutations();
  const rows = pending.status === 'ok' ? pending.rows : [];
  if (rows.length === 0) return <p className="muted small">The outbox is empty: the server has every write.</p>;
  return (
    <ol className="log" id="outbox">
      {rows.map((m) => (
        <li key={m.id}>
          <span className="op">
            #{m.id} {m.name} <span className="muted">{summary(m.args)}</span>
          </span>
          <span className="muted small">{age(m.createdAt)}</span>
        </li>
      ))}
    </ol>
  );
}

function Rejected() {
  const db = useFerry();
  const rejections = useRejections();
  const rows = rejections.status === 'ok' ? rejections.rows : [];
  if (rows.length === 0) return <p className="muted small">Nothing rejected. Try “a write the server refuses”.</p>;
  return (
    <>
      <ol className="log" id="rejections">
        {rows.map((r) => (
          <li key={r.mutationId}>
            <span className="op">
              #{r.mutationId} {r.name} <span className="muted">{summary(r.args)}</span>
            </span>
            <span className="reason">
              <code>{r.code}</code> {r.message}
            </span>
          </li>
        ))}
      </ol>
      <button type="button" className="link" id="clear-rejections" onClick={() => db.clearRejections()}>
        Dismiss all
      </button>
    </>
  );
}

export function Inspector() {
  const pending = usePendingMutations();
  const rejections = useRejections();
  const [view, setView] = useState('tab');
  const count = (state) => (state.status === 'ok' ? state.rows.length : 0);
  const views = [
    ['tab', 'This tab'],
    ['outbox', `Outbox (${count(pending)})`],
    ['rejected', `Rejected (${count(rejections)})`],
  ];
  return (
    <section className="card inspector">
      <h2>Inspector</h2>
      <div className="tabs" role="tablist">
        {views.map(([key, label]) => (
          <button key={key} type="button" role="tab" id={`view-${key}`} aria-selected={view === key} onClick={() => setView(key)}>
            {label}
          </button>
        ))}
      </div>
      {view === 'tab' && <TabMutations />}
      {view === 'outbox' && <Outbox />}
      {view === 'rejected' && <Rejected />}
    </section>
  );
}
