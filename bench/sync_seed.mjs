// Seeds a bench server (bench/app.json) with `rows` items through the protocol
// itself: pushes of the app's `putItem` mutator, 1,000 per push (the server's
// default limit). Ids `i0000000`…; used by run.mjs and profile_sync.mjs.
export async function seedServer(url, rows) {
  const batch = 1000;
  const client = `seeder-${Date.now()}`;
  for (let start = 0; start < rows; start += batch) {
    const mutations = [];
    for (let i = start; i < Math.min(rows, start + batch); i++) {
      const id = `i${String(i).padStart(7, '0')}`;
      mutations.push({ id: i + 1, name: 'putItem', args: { id, title: `item ${i}`, done: i % 2, n: i, updatedAt: 1_700_000_000_000 + i }, timestamp: 0 });
    }
    const response = await fetch(`${url}sync/push`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer seeder' },
      body: JSON.stringify({ protocolVersion: 1, schemaVersion: 1, clientGroupID: client, clientID: client, mutations }),
    });
    const reply = await response.json();
    if (!response.ok || reply.results?.some((r) => r.type !== 'ok')) {
      throw new Error(`seeding the bench server failed: HTTP ${response.status} ${JSON.stringify(reply).slice(0, 300)}`);
    }
  }
}
