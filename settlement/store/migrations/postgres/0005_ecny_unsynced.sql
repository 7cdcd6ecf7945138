-- e-CNY "double offline" payments (rows with handoff.Txn.Unsynced) held
-- back from payout until the paying wallet syncs online, and the wallet
-- syncs. Ingest writes both in the same transaction as the rows; a sync
-- sets synced_at on the wallet's earlier receipts (in (at, source, lsn)
-- order) that have none. released_window is the window whose payout
-- carried the receipt: its own window when it had synced by the time that
-- window was settled, else the first window settled after its sync; it
-- is written in the same transaction as that window's settlements.
-- Small tables beside txns: the rows themselves stay where ingest puts
-- them (txns_recent, then txns).
CREATE TABLE ecny_unsynced (
    source          text COLLATE "C" NOT NULL,
    lsn             bigint NOT NULL,
    merchant        text COLLATE "C" NOT NULL,
    account         text COLLATE "C" NOT NULL,  -- the paying wallet
    at              timestamptz NOT NULL,       -- the row's time
    amount          bigint NOT NULL CHECK (amount > 0),
    synced_at       timestamptz,                -- time of the wallet's sync, NULL until it syncs
    released_window text,                       -- window that paid it, NULL until paid
    PRIMARY KEY (source, lsn)
);

CREATE INDEX ecny_unsynced_waiting ON ecny_unsynced (account) WHERE synced_at IS NULL;
CREATE INDEX ecny_unsynced_at ON ecny_unsynced (at);

-- Wallet syncs: handoff.Batch.Syncs and the rows that are syncs by
-- themselves (handoff.Txn.SyncsWallet). Kept so that a receipt ingested
-- after its wallet's later sync (another source's batch) is synced too.
CREATE TABLE ecny_syncs (
    source  text COLLATE "C" NOT NULL,
    lsn     bigint NOT NULL,
    account text COLLATE "C" NOT NULL,
    at      timestamptz NOT NULL,
    PRIMARY KEY (source, lsn, account)
);

CREATE INDEX ecny_syncs_account ON ecny_syncs (account, at);

-- Per merchant and window: held receipts of the window (not in payable)
-- and earlier held receipts released in it (in payable).
ALTER TABLE merchant_settlements
    ADD COLUMN held bigint NOT NULL DEFAULT 0,
    ADD COLUMN released bigint NOT NULL DEFAULT 0;
