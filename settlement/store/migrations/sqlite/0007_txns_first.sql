-- PostgreSQL's version 7 keeps the earliest time of its txns table, which
-- has no index leading with at. SQLite's txns_at index gives min(at) at
-- once: this version only keeps the two dialects' version numbers in step.
SELECT 1;
