// PGlite's multi-tab worker (leader-elected among tabs), on its OPFS access
// handle pool file system: PGlite's documented fast browser configuration.
import { PGlite } from '../peers/pglite/index.js';
import { worker } from '../peers/pglite/worker/index.js';

worker({
  async init(options) {
    return await PGlite.create(`opfs-ahp://bench-${options.meta.db}`);
  },
});
