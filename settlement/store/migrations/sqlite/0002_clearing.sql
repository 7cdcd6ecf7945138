-- Clearing: merchants, fee rates, settlement windows, per-merchant
-- settlements with their division legs, and reconciliation differences.
-- Rates are decimal strings (a fraction: '0.0038' is 0.38%); money is
-- integer fen; times are Unix microseconds UTC (0 = not yet).
CREATE TABLE merchants (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    payee_account   TEXT NOT NULL DEFAULT '',
    market_operator TEXT NOT NULL DEFAULT '',
    market_fee_rate TEXT NOT NULL DEFAULT '0'
) STRICT;

CREATE TABLE fee_rates (
    merchant TEXT NOT NULL,  -- '*' is the scene's default rate
    scene    TEXT NOT NULL,
    rate     TEXT NOT NULL,
    PRIMARY KEY (merchant, scene)
) STRICT;

CREATE TABLE windows (
    id         TEXT PRIMARY KEY,  -- business date YYYY-MM-DD
    starts_at  INTEGER NOT NULL,
    cutoff_at  INTEGER NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('OPEN', 'CLOSED', 'SETTLED')),
    closed_at  INTEGER NOT NULL DEFAULT 0,
    settled_at INTEGER NOT NULL DEFAULT 0,
    CHECK (starts_at < cutoff_at)
) STRICT;

CREATE TABLE merchant_settlements (
    window_id      TEXT NOT NULL REFERENCES windows (id),
    merchant       TEXT NOT NULL,
    txn_count      INTEGER NOT NULL,
    gross          INTEGER NOT NULL,
    payments       INTEGER NOT NULL,
    reversals      INTEGER NOT NULL,
    reversal_count INTEGER NOT NULL,
    refunds        INTEGER NOT NULL,
    refund_count   INTEGER NOT NULL,
    net            INTEGER NOT NULL,
    fee            INTEGER NOT NULL,
    payable        INTEGER NOT NULL,
    PRIMARY KEY (window_id, merchant)
) STRICT;

CREATE TABLE settlement_divisions (
    window_id TEXT NOT NULL,
    merchant  TEXT NOT NULL,
    kind      TEXT NOT NULL,
    payee     TEXT NOT NULL,
    amount    INTEGER NOT NULL,
    PRIMARY KEY (window_id, merchant, kind, payee)
) STRICT;

CREATE TABLE differences (
    window_id TEXT NOT NULL,
    merchant  TEXT NOT NULL,
    field     TEXT NOT NULL,
    journal   INTEGER NOT NULL,
    store     INTEGER NOT NULL,
    found_at  INTEGER NOT NULL,
    seen_at   INTEGER NOT NULL,
    PRIMARY KEY (window_id, merchant, field)
) STRICT;

-- The clearing query reads one window of every merchant.
CREATE INDEX txns_at ON txns (at);
