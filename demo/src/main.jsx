// The ferrydb demo: a small collaborative lists app written with
// `ferrydb/react`, syncing through the reference server in demo mode.
// Open it in several tabs and browsers to watch every write arrive everywhere.
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { open } from 'ferrydb';
import { FerryProvider } from 'ferrydb/react';
import app from '../app.json';
import { App, SignIn } from './App.jsx';
import { USERS, rememberedOffline, user } from './session.js';
import './style.css';

const root = createRoot(document.getElementById('root'));

if (!USERS.includes(user)) {
  root.render(
    <StrictMode>
      <SignIn />
    </StrictMode>,
  );
} else {
  // One replica per (database, user): the two demo users never share a
  // worker or storage, even in one browser. In demo mode the server takes
  // the user id as the bearer token.
  const db = open({ name: 'ferry-demo', user, app, server: `${location.origin}/sync`, auth: async () => user });
  if (rememberedOffline()) db.pauseSync();
  // For the console (and the end-to-end test): `ferry.query('SELECT ...')`.
  window.ferry = db;
  root.render(
    <StrictMode>
      <FerryProvider db={db}>
        <App />
      </FerryProvider>
    </StrictMode>,
  );
}
