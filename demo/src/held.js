// The subscriptions this tab's components hold (`useSync`), with their
// states, for the inspector. The worker shares one subscription per query
// and arguments among all holders; this only lists this tab's holds.
import { useEffect, useId, useSyncExternalStore } from 'react';
import { useSync } from 'ferrydb/react';

let holds = new Map();
const listeners = new Set();

function publish(id, hold) {
  holds = new Map(holds);
  if (hold) holds.set(id, hold);
  else holds.delete(id);
  for (const listener of listeners) listener();
}

/** `useSync(query, args)`, listed in the inspector while the component holds it. */
export function useHeldSync(query, args = {}) {
  const state = useSync(query, args);
  const id = useId();
  const key = JSON.stringify(args);
  useEffect(() => publish(id, { query, args: key, state }), [id, query, key, state]);
  useEffect(() => () => publish(id, null), [id]);
  return state;
}

const subscribe = (listener) => {
  listeners.add(listener);
  return () => listeners.delete(listener);
};

/** This tab's holds, one entry per distinct query and arguments. */
export function useHolds() {
  const all = useSyncExternalStore(subscribe, () => holds, () => holds);
  const distinct = new Map();
  for (const hold of all.values()) distinct.set(`${hold.query} ${hold.args}`, hold);
  return [...distinct.values()];
}
