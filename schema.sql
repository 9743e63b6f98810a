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

-- migration: 4
-- Proof that the journal is the one it was, unbroken (docs/design.md §3). SQLite cannot
-- stop a deleted WAL or a replaced file from taking acknowledged events with it; these
-- let evstore notice. journal_id names this journal; chain_from is the head when
-- chaining began (events up to it, written before this migration, carry no link).
CREATE TABLE journal_meta (
    singleton  INTEGER PRIMARY KEY CHECK (singleton = 1),
    journal_id TEXT    NOT NULL,
    chain_from INTEGER NOT NULL CHECK (chain_from >= 0)
);
INSERT INTO journal_meta (singleton, journal_id, chain_from)
SELECT 1, lower(hex(randomblob(16))), coalesce(max(seq), 0) FROM events;

-- Each event's link: sha256 of the previous event's link (journal_id for the first)
-- and the event's own columns (eventstore/chain.py), written by the append.
ALTER TABLE events ADD COLUMN chain TEXT;

-- The event a checkpoint was folded up to, so a checkpoint naming an event the journal
-- no longer holds at that seq is refolded, not trusted.
ALTER TABLE checkpoints ADD COLUMN event_id TEXT;

-- The last few renderings exported per projection: a file equal to one of them is
-- behind (another host's export, an older run), not edited by hand.
CREATE TABLE export_digests (
    projection  TEXT    NOT NULL,
    stream      TEXT    NOT NULL,
    sha256      TEXT    NOT NULL,
    seq         INTEGER NOT NULL CHECK (seq >= 0),
    exported_at TEXT    NOT NULL,
    PRIMARY KEY (projection, stream, sha256)
);

-- migration: 5
-- A checkpoint's folded state, apart from its position (docs/design.md §5): the position
-- moves on every export, the state (on a big backlog the whole document) is saved only
-- when a snapshot is due, so exporting one event neither rewrites nor grows it. `seq` is
-- the event the state is folded up to; a run folds on from there.
CREATE TABLE checkpoint_states (
    projection TEXT    NOT NULL,
    stream     TEXT    NOT NULL,
    seq        INTEGER NOT NULL CHECK (seq >= 0),
    state      BLOB    NOT NULL,
    PRIMARY KEY (projection, stream)
);
INSERT INTO checkpoint_states (projection, stream, seq, state)
SELECT projection, stream, seq, state FROM checkpoints;
UPDATE checkpoints SET state = x'';
-- size:mtime_ns:inode of the file as exported: the same on the next export means the
-- file was not touched since, and its bytes need not be read again to know it.
ALTER TABLE checkpoints ADD COLUMN exported_stat TEXT;
-- Where a session exports is its latest SessionCreated or SessionMoved: every export
-- asks, and every new claim on an export dir compares it with all sessions' dirs. A
-- partial index holds only those few events, so both are index reads however long the
-- journal. Queries must repeat its predicate verbatim for SQLite to use it.
CREATE INDEX events_export_dir ON events (stream, seq)
    WHERE type IN ('SessionCreated', 'SessionMoved');

-- migration: 6
-- What validating an update needs, kept beside the events (docs/design.md §3): a
-- projection's lookup entries per stream (for the backlog: each item's depth, status
-- and parent, by id), written in the append's transaction, so checking one update reads
-- a few rows instead of the whole folded state. The entry under the empty key is the
-- stream version the others are current at: behind the stream (an append that did not
-- keep them), they are not trusted and the next append rebuilds them from the state.
-- Keyed stream first: an append takes the mark off its stream's entries of every other
-- projection, `WHERE stream = ? AND key = ''`, a point read of the key, never a scan.
CREATE TABLE lookups (
    projection TEXT NOT NULL,
    stream     TEXT NOT NULL,
    key        TEXT NOT NULL,
    entry      TEXT NOT NULL,
    PRIMARY KEY (stream, key, projection)
) WITHOUT ROWID;


-- backend: postgresql
-- ==========================================================================
-- The same journal on PostgreSQL (docs/design.md §12), read by eventstore/pgjournal.py.
-- Blocks 1..3 mirror the SQLite ones above. Statements are split on ';'
-- outside quotes, comments and $$ bodies (eventstore/schema.py).
-- The schema version lives in evstore_schema (PostgreSQL has no user_version);
-- the journal code bumps it after each block, in the block's transaction.
-- ==========================================================================

-- migration: 1
-- The schema version: one row, created empty here and written by the migrator.
CREATE TABLE evstore_schema (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version   integer NOT NULL CHECK (version >= 1)
);

-- The journal. seq has no default on purpose: the appender assigns max(seq)+1
-- while it holds the journal's append lock (pg_advisory_xact_lock), so writers
-- commit one at a time in seq order. A sequence or identity column would hand
-- out numbers at INSERT and let a later number commit first: a reader taking
-- "seq > checkpoint" could then skip the earlier one for ever.
-- data and meta are `json`, not `jsonb`: json keeps the text as written (key
-- order included) and still refuses what is not JSON, like json_valid().
CREATE TABLE events (
    seq            bigint  PRIMARY KEY CHECK (seq >= 1),
    stream         text    NOT NULL,
    version        integer NOT NULL CHECK (version >= 1),
    type           text    NOT NULL,
    data           json    NOT NULL,
    meta           json    NOT NULL,
    recorded_at    text    NOT NULL,
    event_id       text    NOT NULL UNIQUE,
    schema_version integer NOT NULL DEFAULT 1 CHECK (schema_version >= 1),
    UNIQUE (stream, version)
);

-- Append-only: UPDATE, DELETE and TRUNCATE are refused for every role that does
-- not disable triggers. SQLSTATE 23000 (integrity_constraint_violation), as
-- SQLite's RAISE(ABORT) in a trigger is a constraint failure.
CREATE FUNCTION evstore_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'evstore journal is append-only: % on events refused', TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$;

CREATE TRIGGER events_append_only
BEFORE UPDATE OR DELETE OR TRUNCATE ON events
FOR EACH STATEMENT EXECUTE FUNCTION evstore_events_append_only();

-- migration: 2
-- Projection checkpoints, as in SQLite: last applied seq, the folded state, the
-- sha256 of the bytes last exported.
CREATE TABLE checkpoints (
    projection      text   NOT NULL,
    stream          text   NOT NULL,
    seq             bigint NOT NULL CHECK (seq >= 0),
    state           bytea  NOT NULL,
    exported_sha256 text,
    exported_at     text,
    PRIMARY KEY (projection, stream)
);

-- migration: 3
-- Catch-up reads ("this session's events after seq N") range-scan this index.
CREATE INDEX events_stream_seq ON events (stream, seq);

-- migration: 4
-- As SQLite's block 4: the journal's identity, each event's chain link, the event a
-- checkpoint names, and the last exported renderings per projection.
CREATE TABLE journal_meta (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    journal_id text    NOT NULL,
    chain_from bigint  NOT NULL CHECK (chain_from >= 0)
);
INSERT INTO journal_meta (singleton, journal_id, chain_from)
SELECT true, md5(random()::text || clock_timestamp()::text), coalesce(max(seq), 0) FROM events;

ALTER TABLE events ADD COLUMN chain text;

ALTER TABLE checkpoints ADD COLUMN event_id text;

CREATE TABLE export_digests (
    projection  text   NOT NULL,
    stream      text   NOT NULL,
    sha256      text   NOT NULL,
    seq         bigint NOT NULL CHECK (seq >= 0),
    exported_at text   NOT NULL,
    PRIMARY KEY (projection, stream, sha256)
);

-- migration: 5
-- As SQLite's block 5: states apart from positions, and the exported file's stat.
CREATE TABLE checkpoint_states (
    projection text   NOT NULL,
    stream     text   NOT NULL,
    seq        bigint NOT NULL CHECK (seq >= 0),
    state      bytea  NOT NULL,
    PRIMARY KEY (projection, stream)
);
INSERT INTO checkpoint_states (projection, stream, seq, state)
SELECT projection, stream, seq, state FROM checkpoints;
UPDATE checkpoints SET state = ''::bytea;
ALTER TABLE checkpoints ADD COLUMN exported_stat text;
-- Each session's export dir events (SessionCreated, SessionMoved), as in SQLite.
CREATE INDEX events_export_dir ON events (stream, seq)
    WHERE type IN ('SessionCreated', 'SessionMoved');

-- migration: 6
-- As SQLite's block 6: lookup entries for validation, the version under the empty key.
CREATE TABLE lookups (
    projection text NOT NULL,
    stream     text NOT NULL,
    key        text NOT NULL,
    entry      text NOT NULL,
    PRIMARY KEY (stream, key, projection)
);
