-- PostgreSQL's version 4 adds the unindexed recent part of txns. SQLite
-- keeps one indexed table and has nothing to add: this version only keeps
-- the two dialects' version numbers in step.
SELECT 1;
