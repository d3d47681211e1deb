// Who this tab is: the signed-in demo user (from the URL, so one browser can
// hold tabs of both users) and a short tab id that each write carries, so the
// other tabs can tell a remote write from their own and time it.

export const USERS = ['ada', 'grace'];

export const user = new URLSearchParams(location.search).get('user');

export const otherUser = USERS.find((u) => u !== user);

export const tab = crypto.randomUUID().slice(0, 4);

/**
 * Wall-clock milliseconds: the one clock every tab and browser on a machine
 * shares, so a stamp written in one tab can be subtracted from it in another.
 * (`performance.timeOrigin + performance.now()` is finer, but each renderer
 * process maps it to the wall clock on its own and they drift apart by
 * milliseconds.)
 */
export const now = () => Date.now();

export const newId = () => crypto.randomUUID();

// The offline switch, remembered by this browser: the SDK's pause lasts as
// long as the worker, and the worker ends when the last tab closes.
const OFFLINE_KEY = `ferry-demo:offline:${user}`;
export const rememberedOffline = () => localStorage.getItem(OFFLINE_KEY) === '1';
export const rememberOffline = (offline) => localStorage.setItem(OFFLINE_KEY, offline ? '1' : '0');

/** A link to this page signed in as `who` (or signed out). */
export function pageFor(who) {
  const url = new URL(location.href);
  if (who) url.searchParams.set('user', who);
  else url.searchParams.delete('user');
  return url.toString();
}
