-- Ingest lands handed-off rows in txns_recent: the columns of txns, no
-- keys and no indexes, so a batch costs about what a bare COPY costs.
-- MoveRecent (the clearing scheduler calls it at window close, when the
-- part passes store.RecentRowsMax rows, and on start) moves rows into the
-- indexed txns in one statement. Exactly once does not rest on a key here:
-- a batch starting past the source's high water (read under FOR UPDATE)
-- cannot overlap a stored row, and a re-cut batch checks both parts.
-- Every read goes through txns_all, which sees both parts.
CREATE TABLE txns_recent (LIKE txns INCLUDING DEFAULTS INCLUDING CONSTRAINTS);

CREATE VIEW txns_all AS
    SELECT * FROM txns
    UNION ALL
    SELECT * FROM txns_recent;

-- The rows' division legs likewise: ingest copies them into the unindexed
-- txn_legs_recent, MoveRecent moves them (by the row time they repeat)
-- into txn_legs in the same transaction as the rows, and reads go through
-- txn_legs_all.
CREATE TABLE txn_legs_recent (LIKE txn_legs INCLUDING DEFAULTS INCLUDING CONSTRAINTS);

CREATE VIEW txn_legs_all AS
    SELECT * FROM txn_legs
    UNION ALL
    SELECT * FROM txn_legs_recent;
