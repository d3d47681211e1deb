//! Durable storage for the replica: an in-memory page store whose committed
//! transactions are persisted as frames of an append-only log (see
//! `docs/architecture.md`). The skeleton keeps the database purely in memory.
