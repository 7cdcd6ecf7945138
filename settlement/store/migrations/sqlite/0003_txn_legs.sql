-- Per-payment division legs of a row (handoff.Txn.Legs): the market
-- operator's fee of a QR payment or refund (signed like the row) and the
-- insurance parts of a hospital bill (positive). Written in the same
-- transaction as their row and keyed by it; at most one leg of each kind.
-- The row's merchant and time are repeated so that the clearing query
-- (legs per merchant, kind and payee over a window) reads this table alone.
CREATE TABLE txn_legs (
    source   TEXT NOT NULL,
    lsn      INTEGER NOT NULL,
    kind     TEXT NOT NULL CHECK (kind IN ('market_fee', 'ins_pooled', 'ins_personal')),
    payee    TEXT NOT NULL,
    amount   INTEGER NOT NULL CHECK (amount <> 0),
    merchant TEXT NOT NULL,    -- the row's merchant
    at       INTEGER NOT NULL, -- the row's time
    PRIMARY KEY (source, lsn, kind)
) STRICT;

CREATE INDEX txn_legs_at ON txn_legs (at);
