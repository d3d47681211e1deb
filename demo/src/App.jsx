import { useEffect, useState } from 'react';
import { useFerry } from 'ferrydb/react';
import { Counter } from './Counter.jsx';
import { Inspector } from './Inspector.jsx';
import { Lists } from './Lists.jsx';
import { Replica } from './Replica.jsx';
import { SyncPanel } from './SyncPanel.jsx';
import { USERS, otherUser, pageFor, tab, user } from './session.js';

export function SignIn() {
  return (
    <main className="sign-in">
      <h1>ferrydb demo</h1>
      <p>
        Sign in as one of the two demo users. Each has their own lists and sees only those, even in one browser, until they
        share one with the other: then both edit it live, each from their own browser.
      </p>
      <div className="users">
        {USERS.map((who) => (
          <a key={who} className="button primary" href={pageFor(who)} data-user={who}>
            Sign in as {who}
          </a>
        ))}
      </div>
    </main>
  );
}

/** Short-lived notices: server rejections and local mutation errors. */
function useNotices() {
  const db = useFerry();
  const [notices, setNotices] = useState([]);
  const notify = (text) => {
    const id = Math.random();
    setNotices((list) => [...list, { id, text }]);
    setTimeout(() => setNotices((list) => list.filter((n) => n.id !== id)), 6000);
  };
  useEffect(
    () =>
      db.on('rejected', ({ rejections }) => {
        for (const r of rejections) notify(`The server rejected ${r.name}: ${r.code}`);
      }),
    [db],
  );
  return [notices, notify];
}

function useUpdateNeeded() {
  const db = useFerry();
  const [needed, setNeeded] = useState(false);
  useEffect(() => db.on('updateNeeded', () => setNeeded(true)), [db]);
  return needed;
}

export function App() {
  const [notices, notify] = useNotices();
  const updateNeeded = useUpdateNeeded();
  const onError = (error) => notify(`${error.code}: ${error.message}`);
  return (
    <div className="app">
      <header className="top">
        <h1>
          ferrydb <span className="muted">demo</span>
        </h1>
        <div className="who">
          <span className="badge" id="user">
            {user}
          </span>
          <span className="muted">tab {tab}</span>
          <a href={pageFor(user)} target="_blank" rel="noreferrer">
            Open another tab
          </a>
          <a href={pageFor(otherUser)}>Switch to {otherUser}</a>
        </div>
      </header>
      {updateNeeded && (
        <p className="banner" role="status" id="update-needed">
          The server runs a newer version of this app. Your writes are kept; <a href={pageFor(user)}>reload</a> when
          convenient.
        </p>
      )}
      <SyncPanel />
      <div className="layout">
        <Lists onError={onError} />
        <aside className="side">
          <Counter onError={onError} />
          <Replica />
          <Inspector />
        </aside>
      </div>
      <div className="notices" aria-live="polite">
        {notices.map((n) => (
          <p key={n.id} className="notice">
            {n.text}
          </p>
        ))}
      </div>
    </div>
  );
}
