-- Per-payment division legs of a row (handoff.Txn.Legs): the market
-- operator's fee of a QR payment or refund (signed like the row) and the
-- insurance parts of a hospital bill (positive). Written in the same
-- transaction as their row and keyed by it; at most one leg of each kind.
-- The row's merchant and time are repeated here so that the clearing query
-- (legs per merchant, kind and payee over a window) reads this table alone
-- and does not depend on where the rows themselves are kept. No foreign key
-- to txns for the same reason; ingest is the only writer and writes a row
-- and its legs or neither.
CREATE TABLE txn_legs (
    source   text COLLATE "C" NOT NULL,
    lsn      bigint NOT NULL,
    kind     text NOT NULL CHECK (kind IN ('market_fee', 'ins_pooled', 'ins_personal')),
    payee    text COLLATE "C" NOT NULL,
    amount   bigint NOT NULL CHECK (amount <> 0),
    merchant text COLLATE "C" NOT NULL,  -- the row's merchant
    at       timestamptz NOT NULL,       -- the row's time
    PRIMARY KEY (source, lsn, kind)
);

CREATE INDEX txn_legs_at ON txn_legs (at);
