-- evstore journal schema: the only place DDL lives.
--
-- Layout of this file (read by eventstore/schema.py):
--   "-- backend: NAME"   starts the section of one journal backend.
--   "-- migration: N"    starts the block that upgrades a journal from
--                        schema version N-1 to N (SQLite: PRAGMA user_version).
-- A new journal runs every block of its backend in order; an older one runs
-- only the blocks it lacks, each in one transaction with its version bump.
-- Never edit a released block: add a new one.

-- backend: sqlite

-- migration: 1
-- The journal. seq is the rowid: without AUTOINCREMENT SQLite hands out
-- max(rowid)+1, and since rows are never deleted (triggers below) and writers
-- are serialized by BEGIN IMMEDIATE, a rolled-back append leaves no gap.
CREATE TABLE events (
    seq            INTEGER PRIMARY KEY,
    stream         TEXT    NOT NULL,
    version        INTEGER NOT NULL CHECK (version >= 1),
    type           TEXT    NOT NULL,
    data           TEXT    NOT NULL CHECK (json_valid(data)),
    meta           TEXT    NOT NULL CHECK (json_valid(meta)),
    recorded_at    TEXT    NOT NULL,
    event_id       TEXT    NOT NULL UNIQUE,
    schema_version INTEGER NOT NULL DEFAULT 1 CHECK (schema_version >= 1),
    UNIQUE (stream, version)
);

CREATE TRIGGER events_append_only_update
BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'evstore journal is append-only: UPDATE on events refused');
END;

CREATE TRIGGER events_append_only_delete
BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'evstore journal is append-only: DELETE on events refused');
END;

-- migration: 2
-- Projection checkpoints: where each (projection, session) stopped, the state
-- folded up to there (so the next run applies only newer events), and the
-- sha256 of the bytes last exported (so unchanged output is not rewritten).
CREATE TABLE checkpoints (
    projection      TEXT    NOT NULL,
    stream          TEXT    NOT NULL,
    seq             INTEGER NOT NULL CHECK (seq >= 0),
    state           BLOB    NOT NULL,
    exported_sha256 TEXT,
    exported_at     TEXT,
    PRIMARY KEY (projection, stream)
);

-- migration: 3
-- Catch-up reads ("this session's events after seq N", on every append and export)
-- range-scan this index instead of reading the whole session through UNIQUE(stream,
-- version) and sorting it.
CREATE INDEX events_stream_seq ON events (stream, seq);
