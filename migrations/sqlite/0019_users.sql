-- People and scripts that use the API, what they may do, and what they did.

-- A user: a person (password, sessions) or a script (tokens). `role` is one of
-- access::Role; a user with rows in user_customers sees only those customers.
CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    -- An argon2id PHC string; NULL: no password login (tokens only).
    password_hash TEXT,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);

CREATE TABLE user_customers (
    user_id INTEGER NOT NULL REFERENCES users (id),
    customer TEXT NOT NULL,
    PRIMARY KEY (user_id, customer)
);

-- API tokens and login sessions: only the SHA-256 of the secret is kept.
CREATE TABLE tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users (id),
    -- `api` (a bearer token) or `session` (a login's cookie).
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER,
    last_used_at INTEGER
);
CREATE INDEX tokens_of_user ON tokens (user_id);

-- Every change made through the API, and every login, refused or not. Append-only.
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    token_id INTEGER,
    address TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    status INTEGER NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_at ON audit (at);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

-- The webhook-ids of helpdesk events taken in, to refuse a replay within the signature window.
CREATE TABLE webhook_seen (
    helpdesk TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (helpdesk, webhook_id)
);
