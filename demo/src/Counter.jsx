import { useState } from 'react';
import { useFerry, useQuery } from 'ferrydb/react';
import { useHeldSync } from './held.js';
import { user } from './session.js';
import { track } from './tracked.js';

// The conflict scene. `increment` adds to the stored value in SQL, so the
// server re-runs each device's increments against its own total: taps made
// offline in two browsers add up instead of overwriting each other.
const COUNTER_ID = `${user}:votes`;
const TAPS_KEY = `ferry-demo:taps:${user}`;

export function Counter({ onError }) {
  const db = useFerry();
  // Synced from open (`syncOnOpen`); held here too, so the inspector lists it.
  useHeldSync('myCounters');
  const counter = useQuery('SELECT value FROM counters WHERE id = ?', [COUNTER_ID]);
  // Taps from this browser, kept across reloads, to check the total against.
  const [taps, setTaps] = useState(() => Number(localStorage.getItem(TAPS_KEY)) || 0);
  const value = counter.status === 'ok' ? (counter.rows[0]?.value ?? 0) : '…';
  const tap = () => {
    track(db, 'increment', { id: COUNTER_ID, owner: user, by: 1 }, onError);
    localStorage.setItem(TAPS_KEY, String(taps + 1));
    setTaps(taps + 1);
  };
  return (
    <section className="card counter">
      <h2>Counter <span className="muted">· all of {user}'s devices</span></h2>
      <p className="muted small">
        Go offline in two browsers, tap in each, then come back online: every device ends on the sum of all taps.
      </p>
      <div className="counter-row">
        <output id="counter" aria-label="Counter total">
          {value}
        </output>
        <button type="button" className="primary" id="increment" onClick={tap}>
          +1
        </button>
      </div>
      <p className="muted small">
        <span id="taps">{taps}</span> taps from this browser
      </p>
    </section>
  );
}
