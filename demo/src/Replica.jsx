import { useQuery } from 'ferrydb/react';
import { useHolds } from './held.js';

// What this browser's replica holds: the subscriptions this tab holds, with
// the server's word on each (rows synced of its total), and the rows of
// each table. The rows are exactly what the subscriptions select, plus
// this browser's writes the server has not answered yet.
const TABLES = ['lists', 'members', 'items', 'counters'];
const COUNTS_SQL = `SELECT ${TABLES.map((t) => `(SELECT count(*) FROM ${t}) AS ${t}`).join(', ')}`;

const argsText = (args) =>
  Object.entries(JSON.parse(args))
    .map(([name, value]) => `${name}: ${String(value).slice(0, 8)}`)
    .join(', ');

export function Replica() {
  const holds = useHolds();
  const counts = useQuery(COUNTS_SQL);
  const held = counts.status === 'ok' ? counts.rows[0] : {};
  return (
    <section className="card replica">
      <h2>Replica</h2>
      <ol className="log" id="subscriptions">
        {holds.map(({ query, args, state }) => (
          <li key={`${query} ${args}`} data-query={query} data-state={state.status}>
            <span className="op">
              {query}({argsText(args)})
            </span>
            <span className={`stage ${state.status === 'complete' ? 'ok' : state.status === 'pending' ? 'wait' : 'bad'}`}>
              {state.status === 'error' ? state.error.code : state.status} · {state.synced}/{state.total} rows
            </span>
          </li>
        ))}
      </ol>
      <dl className="tables" id="replica-tables">
        {TABLES.map((table) => (
          <div key={table}>
            <dt>{table}</dt>
            <dd id={`rows-${table}`}>{held[table] ?? '…'}</dd>
          </div>
        ))}
      </dl>
    </section>
  );
}
