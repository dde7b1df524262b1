-- Strata control-plane schema. Portable SQL: runs unchanged on SQLite and PostgreSQL.
-- Ids are UUIDs as text (v7 where order matters), times RFC 3339 text, JSON as text.

CREATE TABLE projects (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);

CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    username       TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    is_admin       BIGINT NOT NULL,
    created_at     TEXT NOT NULL
);

CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY,
    algorithm    TEXT NOT NULL,
    private_pem  TEXT NOT NULL,
    public_key   TEXT NOT NULL,
    created_at   TEXT NOT NULL
);

-- Instances of the local runtime (in Kubernetes mode they are custom resources).
CREATE TABLE instances (
    id                  TEXT PRIMARY KEY,
    project             TEXT NOT NULL REFERENCES projects(name),
    name                TEXT NOT NULL,
    version             TEXT NOT NULL,
    plan                TEXT NOT NULL,
    storage_gb          BIGINT NOT NULL,
    acl                 TEXT NOT NULL,
    labels              TEXT NOT NULL,
    phase               TEXT NOT NULL,
    message             TEXT NOT NULL,
    conditions          TEXT NOT NULL,
    storage_used_bytes  BIGINT,
    port                BIGINT NOT NULL UNIQUE,
    password            TEXT NOT NULL,
    generation          BIGINT NOT NULL,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    UNIQUE (project, name)
);

CREATE TABLE service_events (
    id           TEXT PRIMARY KEY,
    instance_id  TEXT NOT NULL,
    project      TEXT NOT NULL,
    instance     TEXT NOT NULL,
    time         TEXT NOT NULL,
    kind         TEXT NOT NULL,
    severity     TEXT NOT NULL,
    message      TEXT NOT NULL,
    from_phase   TEXT,
    to_phase     TEXT
);
CREATE INDEX service_events_by_instance ON service_events (instance_id, id);

CREATE TABLE idempotency_keys (
    project      TEXT NOT NULL,
    key          TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    status       BIGINT NOT NULL,
    body         TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (project, key)
);
