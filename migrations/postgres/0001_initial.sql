-- onepush's store in PostgreSQL, schema version 1 (SPEC R8).
--
-- Every table mirrors one of the embedded store's: a record keeps the
-- store's encoding (a version byte, then JSON) in `rec`, and the fields the
-- use cases search on are columns with their indexes. Keys compare in "C"
-- order (bytes), as the embedded store's do, so ranges and pages agree.

CREATE TABLE contracts (k text COLLATE "C" PRIMARY KEY, rec bytea NOT NULL);

-- k is "contract_no/user_id": a contract's users are the range "c/" .. "c0".
CREATE TABLE users (k text COLLATE "C" PRIMARY KEY, rec bytea NOT NULL);

-- provision_expires_at is set only while the token waits for its
-- registration (unbound, not revoked): what the sweeper expires.
CREATE TABLE tokens (
    k text COLLATE "C" PRIMARY KEY,
    rec bytea NOT NULL,
    public_key text COLLATE "C" NOT NULL UNIQUE,
    provision_expires_at bigint
);
CREATE INDEX tokens_provision_expiry ON tokens (provision_expires_at, k) WHERE provision_expires_at IS NOT NULL;

CREATE TABLE challenges (
    k text COLLATE "C" PRIMARY KEY,
    rec bytea NOT NULL,
    token_id text COLLATE "C" NOT NULL,
    created_at bigint NOT NULL,
    expires_at bigint NOT NULL,
    pending boolean NOT NULL
);
-- The sweeper's expiry, a phone's pending requests (and max_pending_per_user),
-- and the operator statistics by creation time.
CREATE INDEX challenges_expiry ON challenges (expires_at, k) WHERE pending;
CREATE INDEX challenges_pending_by_token ON challenges (token_id, created_at, k) WHERE pending;
CREATE INDEX challenges_by_time ON challenges (created_at, k);

-- live_hash: the SHA-256 of a key not revoked (NULL once revoked).
CREATE TABLE rp_keys (k text COLLATE "C" PRIMARY KEY, rec bytea NOT NULL, live_hash text COLLATE "C" UNIQUE);

CREATE TABLE operators (k text COLLATE "C" PRIMARY KEY, rec bytea NOT NULL);
CREATE TABLE notices (k text COLLATE "C" PRIMARY KEY, rec bytea NOT NULL);
-- "system", "demo_contracts", the signed audit head and its markers.
CREATE TABLE meta (k text COLLATE "C" PRIMARY KEY, rec bytea NOT NULL);

-- The hash-chained audit log. Appends are serialised across nodes by the
-- writers' transaction-level advisory lock (see src/store/pg.rs).
CREATE TABLE audit (
    seq bigint PRIMARY KEY,
    rec bytea NOT NULL,
    contract_no text COLLATE "C",
    user_id text COLLATE "C" NOT NULL DEFAULT '',
    event_type text COLLATE "C" NOT NULL
);
CREATE INDEX audit_by_subject ON audit (contract_no, user_id, seq) WHERE contract_no IS NOT NULL;
CREATE INDEX audit_by_type ON audit (event_type, seq);

CREATE TABLE fraud_reports (
    reported_at bigint NOT NULL,
    challenge_id text COLLATE "C" NOT NULL,
    rec bytea NOT NULL,
    PRIMARY KEY (reported_at, challenge_id)
);

-- Brute-force windows (sign-in, bootstrap, registration, provisioning),
-- shared by every node.
CREATE TABLE rate_limits (k text COLLATE "C" PRIMARY KEY, window_start bigint NOT NULL, attempts integer NOT NULL);
CREATE INDEX rate_limits_by_start ON rate_limits (window_start, k);
