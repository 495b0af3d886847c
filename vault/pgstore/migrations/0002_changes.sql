-- 0002: the change log behind storage.ChangeFeed (feed.go).
--
-- changes: a row per Publish, inserted by the publishing Update, whose
-- NOTIFY on the schema's channel carries the row's seq. Every Update holds
-- the store's update lock from before it publishes until it has
-- committed, so seq order is commit order: a listener that has read every
-- row up to seq n has missed none below it (a rolled back Publish leaves
-- a gap, never a row). at is when the row was written, near the commit:
-- the listener's lag metric and pruning use it. origin is the publishing
-- Store's own id; its listener skips its own rows.
--
-- changes_pruned: one row, the highest seq that pruning deleted. A
-- listener that had seen less cannot tell what it missed, and tells its
-- subscribers that everything may have changed.
CREATE TABLE changes (
    seq bigserial PRIMARY KEY,
    topic text NOT NULL,
    origin text NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX changes_at ON changes (at);

CREATE TABLE changes_pruned (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    through bigint NOT NULL
);

INSERT INTO changes_pruned (through) VALUES (0);
