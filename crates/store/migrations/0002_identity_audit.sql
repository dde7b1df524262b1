-- Memberships (project roles) and the hash-chained audit log. Portable SQL.

CREATE TABLE memberships (
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    project     TEXT NOT NULL REFERENCES projects(name),
    role        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (user_id, project)
);
CREATE INDEX memberships_by_project ON memberships (project);

-- Append-only. seq runs from 1 without gaps; hash = SHA-256 over the
-- canonical encoding of the row and prev_hash (see strata_core::audit).
-- Times are fixed-width UTC text (microseconds), so they sort as text.
CREATE TABLE audit_events (
    seq          BIGINT PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    time         TEXT NOT NULL,
    actor_kind   TEXT NOT NULL,
    actor_id     TEXT NOT NULL,
    actor_name   TEXT NOT NULL,
    source_ip    TEXT,
    user_agent   TEXT,
    request_id   TEXT,
    project      TEXT,
    action       TEXT NOT NULL,
    target_kind  TEXT NOT NULL,
    target_id    TEXT,
    target_name  TEXT NOT NULL,
    result       TEXT NOT NULL,
    status       BIGINT NOT NULL,
    details      TEXT NOT NULL,
    prev_hash    TEXT NOT NULL,
    hash         TEXT NOT NULL
);
CREATE INDEX audit_events_by_project ON audit_events (project, seq);

-- The chain's head: one row, updated by every append. Appends update it
-- first, which serialises them (a row lock on PostgreSQL; SQLite's writers
-- are serialised by BEGIN IMMEDIATE already). It also lets verification see
-- events cut off the end of the chain.
CREATE TABLE audit_chain_head (
    id    BIGINT PRIMARY KEY,
    seq   BIGINT NOT NULL,
    hash  TEXT NOT NULL
);
INSERT INTO audit_chain_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
