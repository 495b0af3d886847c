-- 0004: the audit table's partitions keep a tenth of each page free.
--
-- A request's final row replaces its provisional one (the same key;
-- audit_ship.go). When the provisional row was shipped in an earlier
-- batch, the final one is an update of it, and COPY has filled its page
-- since: the new version goes to another page, with a new entry in every
-- index. With room left on the page, and no indexed column changed (the
-- final row usually keeps the provisional one's outcome, sandbox and
-- secrets), it is a heap-only update: no index entry at all. Measured
-- with 100,000 rows and 5,000 of them written again (psql, fsync on):
-- 210 to 600 ms for the 5,000 at fillfactor 100, 88 to 115 ms at 90, the
-- partition 59 MB against 65 MB.
--
-- Partitions made from now on get it when they are made (audit.go); this
-- sets it on those made before (it applies to the pages written after).
DO $$
DECLARE
    p regclass;
BEGIN
    FOR p IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'audit'::regclass LOOP
        EXECUTE format('ALTER TABLE %s SET (fillfactor = 90)', p);
    END LOOP;
END $$;
