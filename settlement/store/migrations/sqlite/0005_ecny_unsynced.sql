-- e-CNY "double offline" payments (rows with handoff.Txn.Unsynced) held
-- back from payout until the paying wallet syncs online, and the wallet
-- syncs. Ingest writes both in the same transaction as the rows; a sync
-- sets synced_at on the wallet's earlier receipts (in (at, source, lsn)
-- order) that have none. released_window is the window whose payout
-- carried the receipt: its own window when it had synced by the time that
-- window was settled, else the first window settled after its sync; it
-- is written in the same transaction as that window's settlements.
CREATE TABLE ecny_unsynced (
    source          TEXT NOT NULL,
    lsn             INTEGER NOT NULL,
    merchant        TEXT NOT NULL,
    account         TEXT NOT NULL,    -- the paying wallet
    at              INTEGER NOT NULL, -- the row's time
    amount          INTEGER NOT NULL CHECK (amount > 0),
    synced_at       INTEGER,          -- time of the wallet's sync, NULL until it syncs
    released_window TEXT,             -- window that paid it, NULL until paid
    PRIMARY KEY (source, lsn)
) STRICT;

CREATE INDEX ecny_unsynced_waiting ON ecny_unsynced (account) WHERE synced_at IS NULL;
CREATE INDEX ecny_unsynced_at ON ecny_unsynced (at);

-- Wallet syncs: handoff.Batch.Syncs and the rows that are syncs by
-- themselves (handoff.Txn.SyncsWallet). Kept so that a receipt ingested
-- after its wallet's later sync (another source's batch) is synced too.
CREATE TABLE ecny_syncs (
    source  TEXT NOT NULL,
    lsn     INTEGER NOT NULL,
    account TEXT NOT NULL,
    at      INTEGER NOT NULL,
    PRIMARY KEY (source, lsn, account)
) STRICT;

CREATE INDEX ecny_syncs_account ON ecny_syncs (account, at);

-- Per merchant and window: held receipts of the window (not in payable)
-- and earlier held receipts released in it (in payable).
ALTER TABLE merchant_settlements ADD COLUMN held INTEGER NOT NULL DEFAULT 0;
ALTER TABLE merchant_settlements ADD COLUMN released INTEGER NOT NULL DEFAULT 0;
