-- Clearing: merchants, fee rates, settlement windows, per-merchant
-- settlements with their division legs, and reconciliation differences.
-- Rates are decimal strings (a fraction: '0.0038' is 0.38%) parsed with
-- shopspring/decimal; money is BIGINT fen.
CREATE TABLE merchants (
    id              text COLLATE "C" PRIMARY KEY,
    name            text NOT NULL,
    payee_account   text NOT NULL DEFAULT '',  -- the merchant's settlement account at the bank (never a card number)
    market_operator text COLLATE "C" NOT NULL DEFAULT '', -- payee of the market management fee, '' for none
    market_fee_rate text NOT NULL DEFAULT '0'  -- fraction of the window's net takings
);

-- merchant '*' is the scene's default rate.
CREATE TABLE fee_rates (
    merchant text COLLATE "C" NOT NULL,
    scene    text NOT NULL,
    rate     text NOT NULL,
    PRIMARY KEY (merchant, scene)
);

-- One window per Asia/Shanghai business date: [starts_at, cutoff_at).
CREATE TABLE windows (
    id         text COLLATE "C" PRIMARY KEY,  -- business date YYYY-MM-DD
    starts_at  timestamptz NOT NULL,
    cutoff_at  timestamptz NOT NULL,
    state      text NOT NULL CHECK (state IN ('OPEN', 'CLOSED', 'SETTLED')),
    closed_at  timestamptz,
    settled_at timestamptz,
    CHECK (starts_at < cutoff_at)
);

CREATE TABLE merchant_settlements (
    window_id      text COLLATE "C" NOT NULL REFERENCES windows (id),
    merchant       text COLLATE "C" NOT NULL,
    txn_count      bigint NOT NULL,
    gross          bigint NOT NULL,
    payments       bigint NOT NULL,
    reversals      bigint NOT NULL,
    reversal_count bigint NOT NULL,
    refunds        bigint NOT NULL,
    refund_count   bigint NOT NULL,
    net            bigint NOT NULL,  -- gross + reversals + refunds
    fee            bigint NOT NULL,
    payable        bigint NOT NULL,  -- net - fee - deducted divisions
    PRIMARY KEY (window_id, merchant)
);

CREATE TABLE settlement_divisions (
    window_id text COLLATE "C" NOT NULL,
    merchant  text COLLATE "C" NOT NULL,
    kind      text NOT NULL,
    payee     text COLLATE "C" NOT NULL,
    amount    bigint NOT NULL,
    PRIMARY KEY (window_id, merchant, kind, payee),
    FOREIGN KEY (window_id, merchant) REFERENCES merchant_settlements (window_id, merchant)
);

-- A difference is recorded, never corrected: one row per window,
-- merchant and field, updated with the latest values when seen again.
CREATE TABLE differences (
    window_id text COLLATE "C" NOT NULL,
    merchant  text COLLATE "C" NOT NULL,
    field     text NOT NULL,
    journal   bigint NOT NULL,
    store     bigint NOT NULL,
    found_at  timestamptz NOT NULL,
    seen_at   timestamptz NOT NULL,
    PRIMARY KEY (window_id, merchant, field)
);

-- The clearing query reads one window of every merchant. BRIN, not a
-- b-tree: rows arrive in nearly ascending time, so the block ranges are
-- tight, and a BRIN index costs ingest (COPY) almost nothing.
CREATE INDEX txns_at_brin ON txns USING brin (at);
