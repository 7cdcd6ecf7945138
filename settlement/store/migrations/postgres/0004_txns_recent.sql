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
