-- 0001: the ordered key-value store of vault/storage.
--
-- buckets: the names EnsureBuckets made (Bucket answers nil for others).
-- kv: every bucket's keys in one table. Its primary key (bucket, key) is
-- the B-tree that cursors walk with keyset pagination; bytea compares as
-- unsigned bytes with no collation, the order vault/storage promises. A
-- B-tree entry holds at most 2704 bytes: storage.MaxKeySize stays below.
-- No foreign key from kv to buckets: each insert would lock the bucket's
-- row (FOR KEY SHARE) and dirty it; only EnsureBuckets' names reach here.
CREATE TABLE buckets (
    name text PRIMARY KEY
);

CREATE TABLE kv (
    bucket text NOT NULL,
    key bytea NOT NULL CHECK (octet_length(key) > 0),
    value bytea NOT NULL,
    PRIMARY KEY (bucket, key)
);
