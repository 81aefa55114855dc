-- Schema version 2: what a single node kept in memory, shared by every node
-- (SPEC R8). Written at once (autocommit), not through the batching writer:
-- neither is an audited record, and a lost row costs one sign-in.

-- Operator sessions: k is the SHA-256 of the cookie value, never the value.
CREATE TABLE admin_sessions (
    k text COLLATE "C" PRIMARY KEY,
    operator text COLLATE "C" NOT NULL,
    created_at bigint NOT NULL,
    last_seen bigint NOT NULL
);
CREATE INDEX admin_sessions_operator ON admin_sessions (operator);

-- The one-time code that creates the first operator: at most one row, the
-- code's SHA-256, spent by the DELETE that accepts it.
CREATE TABLE bootstrap_code (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    code_hash text NOT NULL,
    made_at bigint NOT NULL
);
