import { memo, useState } from 'react';
import { useFerry, useQuery } from 'ferrydb/react';
import { useHeldSync } from './held.js';
import { newId, now, otherUser, tab, user } from './session.js';
import { track } from './tracked.js';

// Every list the user owns or was given a share of (the `myLists`
// subscription syncs them from open), whether it is shared with the other
// user, and the items the replica holds of it: only the open list's are
// synced (by its `listItems` subscription).
const LISTS_SQL = `SELECT l.id, l.name, l.owner, count(i.id) AS total, coalesce(sum(i.done), 0) AS done,
    EXISTS (SELECT 1 FROM members m WHERE m.list_id = l.id AND m.user_id = ?) AS shared
  FROM lists l LEFT JOIN items i ON i.list_id = l.id
  GROUP BY l.id ORDER BY l.created_at, l.id`;

const ITEMS_SQL = `SELECT id, title, done, position FROM items WHERE list_id = ? ORDER BY position, id`;

/** A one-line form: `onSubmit(text)` with the trimmed text, then clears. */
function AddForm({ id, placeholder, label, onSubmit }) {
  const [text, setText] = useState('');
  return (
    <form
      id={id}
      className="add"
      onSubmit={(event) => {
        event.preventDefault();
        const value = text.trim();
        if (!value) return;
        onSubmit(value);
        setText('');
      }}
    >
      <input value={text} onChange={(e) => setText(e.target.value)} placeholder={placeholder} aria-label={placeholder} />
      <button type="submit">{label}</button>
    </form>
  );
}

/** Text that turns into an input on click; Enter saves, Escape cancels. */
function Editable({ value, onSave, className }) {
  const [draft, setDraft] = useState(null);
  if (draft === null) {
    return (
      <button type="button" className={`editable ${className ?? ''}`} title="Click to edit" onClick={() => setDraft(value)}>
        {value}
      </button>
    );
  }
  const save = () => {
    const next = draft.trim();
    setDraft(null);
    if (next && next !== value) onSave(next);
  };
  return (
    <input
      className="edit"
      autoFocus
      value={draft}
      onChange={(e) => setDraft(e.target.value)}
      onBlur={save}
      onKeyDown={(e) => {
        if (e.key === 'Enter') save();
        if (e.key === 'Escape') setDraft(null);
      }}
    />
  );
}

// Rows keep their identity when unchanged, so memo skips re-rendering them.
const Item = memo(function Item({ item, first, last, run, onMove }) {
  return (
    <li className={item.done ? 'item done' : 'item'} data-id={item.id}>
      <input
        type="checkbox"
        checked={!!item.done}
        aria-label={`Done: ${item.title}`}
        onChange={() => run('toggleItem', { id: item.id, at: now(), by: tab })}
      />
      <Editable className="title" value={item.title} onSave={(title) => run('renameItem', { id: item.id, title, at: now(), by: tab })} />
      <span className="row-actions">
        <button type="button" className="icon up" aria-label="Move up" disabled={first} onClick={() => onMove(item, -1)}>
          ↑
        </button>
        <button type="button" className="icon down" aria-label="Move down" disabled={last} onClick={() => onMove(item, 1)}>
          ↓
        </button>
        <button type="button" className="icon delete" aria-label="Delete" onClick={() => run('deleteItem', { id: item.id })}>
          ×
        </button>
      </span>
    </li>
  );
});

/** The owner's controls: rename, share with the other user or unshare, delete. */
function OwnerHead({ list, run }) {
  return (
    <header className="card-head">
      <Editable className="list-name" value={list.name} onSave={(name) => run('renameList', { id: list.id, name })} />
      <span className="head-actions">
        {list.shared ? (
          <button type="button" className="link" id="unshare-list" onClick={() => run('unshareList', { listId: list.id, user: otherUser })}>
            Unshare from {otherUser}
          </button>
        ) : (
          <button type="button" className="link" id="share-list" onClick={() => run('shareList', { listId: list.id, user: otherUser })}>
            Share with {otherUser}
          </button>
        )}
        <button type="button" className="link danger" id="delete-list" onClick={() => run('deleteList', { id: list.id })}>
          Delete list
        </button>
      </span>
    </header>
  );
}

function Items({ list, run }) {
  const mine = list.owner === user;
  const sync = useHeldSync('listItems', { listId: list.id });
  const items = useQuery(ITEMS_SQL, [list.id]);
  const rows = items.rows ?? [];
  // Moving between two neighbours takes the midpoint of their positions, so
  // a move is one row's write and concurrent moves never collide.
  const move = (item, step) => {
    const at = rows.indexOf(item);
    const target = at + step;
    if (target < 0 || target >= rows.length) return;
    const beyond = rows[target + step];
    const edge = rows[target].position + step;
    const position = beyond ? (rows[target].position + beyond.position) / 2 : edge;
    run('moveItem', { id: item.id, position, at: now(), by: tab });
  };
  // Only a list's owner may write the list itself (the server checks the
  // row before and after): handing it away, or renaming another's list, is refused.
  const refused = mine
    ? ['giveList', { id: list.id, owner: otherUser }, `Hands this list to ${otherUser}`]
    : ['renameList', { id: list.id, name: `${list.name} (renamed by ${user})` }, `Renames ${list.owner}'s list`];
  return (
    <section className="items card">
      {mine ? (
        <OwnerHead list={list} run={run} />
      ) : (
        <header className="card-head">
          <span className="list-name">{list.name}</span>
          <span className="muted small" id="shared-by">
            shared by {list.owner}
          </span>
        </header>
      )}
      <AddForm
        id="add-item"
        placeholder="Add an item"
        label="Add"
        onSubmit={(title) => run('addItem', { id: newId(), listId: list.id, owner: user, title, at: now(), by: tab })}
      />
      {items.status === 'error' && <p className="error">{items.error.message}</p>}
      <ul className="item-list" id="items">
        {rows.map((item, i) => (
          <Item key={item.id} item={item} first={i === 0} last={i === rows.length - 1} run={run} onMove={move} />
        ))}
      </ul>
      {rows.length === 0 && sync.status === 'complete' && <p className="muted empty">No items yet.</p>}
      {sync.status === 'pending' && (
        <p className="muted empty">
          Syncing the items… {sync.synced} of {sync.total}
        </p>
      )}
      {sync.status === 'error' && <p className="error">{sync.error.message}</p>}
      <p className="muted small">
        <button
          type="button"
          className="link"
          id="forbidden-write"
          title={`${refused[2]}: it shows at once, then the server refuses it`}
          onClick={() => run(refused[0], refused[1])}
        >
          Try a write the server refuses
        </button>
      </p>
    </section>
  );
}

export function Lists({ onError }) {
  const db = useFerry();
  // Synced from open (`syncOnOpen`); held here too, so the inspector lists it.
  const sync = useHeldSync('myLists');
  const lists = useQuery(LISTS_SQL, [otherUser]);
  const [chosen, setChosen] = useState(null);
  const run = (name, args) => track(db, name, args, onError);
  const rows = lists.rows ?? [];
  // The chosen list, or the first one if it left (deleted, maybe in another
  // tab, or no longer shared with this user).
  const selected = rows.find((l) => l.id === chosen) ?? rows[0];
  return (
    <div className="lists">
      <nav className="card list-nav">
        {lists.status === 'error' && <p className="error">{lists.error.code}: {lists.error.message}</p>}
        <h2>Lists</h2>
        <ul id="lists">
          {rows.map((l) => (
            <li key={l.id}>
              <button
                type="button"
                className={l === selected ? 'list-link active' : 'list-link'}
                data-id={l.id}
                onClick={() => setChosen(l.id)}
              >
                <span className="name">{l.name}</span>
                {l.owner !== user && <span className="tag">from {l.owner}</span>}
                {l.owner === user && l.shared ? <span className="tag">shared</span> : null}
                {/* Only the open list's items are synced, so only its count is known. */}
                {l === selected && (
                  <span className="muted count">
                    {l.done}/{l.total}
                  </span>
                )}
              </button>
            </li>
          ))}
        </ul>
        <AddForm
          id="add-list"
          placeholder="New list"
          label="Create"
          onSubmit={(name) => {
            const id = newId();
            run('createList', { id, owner: user, name, at: now() });
            setChosen(id);
          }}
        />
      </nav>
      {selected ? (
        <Items key={selected.id} list={selected} run={run} />
      ) : (
        <section className="card items empty-state">
          <p>
            {lists.status === 'pending' || sync.status === 'pending'
              ? 'Opening the replica…'
              : `Create a list to start, then share it with ${otherUser}, or open this page in another tab.`}
          </p>
        </section>
      )}
    </div>
  );
}
