// This tab's recent mutations and the three stages of each, for the
// inspector: `local` (applied to the replica), `durable` (on disk) and
// `server` (confirmed, or rejected with the server's code).
import { useSyncExternalStore } from 'react';

const LIMIT = 12;
let entries = [];
const listeners = new Set();

function publish(next) {
  entries = next;
  for (const listener of listeners) listener();
}

function update(key, stage, value) {
  publish(entries.map((e) => (e.key === key ? { ...e, [stage]: value } : e)));
}

let nextKey = 0;

/**
 * Runs `db.mutate[name](args)` and records its stages. Returns the mutation,
 * so a caller can still await any stage. `onError` hears a local failure
 * (the mutator threw, or its arguments were wrong).
 */
export function track(db, name, args, onError) {
  const key = nextKey++;
  publish([{ key, name, args, local: 'pending', durable: 'pending', server: 'pending' }, ...entries].slice(0, LIMIT));
  const mutation = db.mutate[name](args);
  const settle = (stage) =>
    mutation[stage].then(
      () => update(key, stage, 'ok'),
      (error) => {
        update(key, stage, error.code ?? 'error');
        if (stage === 'local') onError?.(error);
      },
    );
  settle('local');
  settle('durable');
  settle('server');
  return mutation;
}

const subscribe = (listener) => {
  listeners.add(listener);
  return () => listeners.delete(listener);
};

export function useTrackedMutations() {
  return useSyncExternalStore(subscribe, () => entries, () => entries);
}
