-- 0005: the audit table's secondary indexes, narrower and without
-- deduplication, for less of the server's CPU a shipped row.
--
-- Every index entry a row adds is most of what shipping it costs the
-- server (a btree insert: a descent from the root, a binary search of
-- the leaf, a WAL record; about 7,500 instructions for a bigint key,
-- 12,000 to 14,000 for the text-led keys below, against about 16,000
-- for the row itself with COPY). So:
--
-- * The indexes by one id (external user, external workspace, sandbox,
--   secret) and by outcome end with ns, not (ns, id): a query's ORDER BY
--   ns DESC, id DESC reads them in ns order and sorts only rows of the
--   same ns (an incremental sort), and a page's cursor (ns, id) < (…)
--   bounds them by ns and checks id on the rows; the primary key
--   (tenant_id, ns, id) keeps the row's identity. audit_order, the
--   export's order across tenants (ns, id, tenant_id), is (ns) for the
--   same reason.
-- * None deduplicates (deduplicate_items = off): their keys end with ns,
--   unique but for rows of the same nanosecond, so a full page's
--   deduplication pass found nothing to merge and cost about 5% of the
--   server's CPU a row before the page split anyway.
-- * audit_outcome holds only rows with an outcome (admin rows have none,
--   and no query asks for a NULL outcome).
--
-- Measured (callgrind, PostgreSQL 15: the instructions of the backend
-- shipping BenchmarkShipAudit's rows, 512 requests a COPY, one tenant,
-- sandbox and secret; with audit_ship.go's writes into the partition):
-- 82,800 a row before, 78,400 after, the deduplication pass most of the
-- difference. At 1,000,000 rows (BenchmarkAuditQueriesAtSize) the table
-- with its indexes takes 851 MB against 1,038, and every query the API
-- sends still answers in 0.2 to 2.8 ms; a query by a secret keeps its
-- page's cursor outside the fence of the rows that used the secret
-- besides (audit.go), or PostgreSQL's plan for any secret and'ed them
-- with every row before the cursor in the small (ns) index.
--
-- The indexes are built again on every partition: dropping a partitioned
-- index drops its partitions' indexes, and creating one builds it on
-- each partition (partitions made later get them when attached). The
-- table is locked while it runs, so shipping waits: 15 s at 1,000,000
-- rows on a loaded 2-core machine.
DROP INDEX audit_ext_user;
DROP INDEX audit_ext_workspace;
DROP INDEX audit_sandbox;
DROP INDEX audit_secret;
DROP INDEX audit_outcome;
DROP INDEX audit_order;
CREATE INDEX audit_ext_user ON audit (tenant_id, external_user_id, ns)
    WITH (deduplicate_items = off) WHERE external_user_id IS NOT NULL;
CREATE INDEX audit_ext_workspace ON audit (tenant_id, external_workspace_id, ns)
    WITH (deduplicate_items = off) WHERE external_workspace_id IS NOT NULL;
CREATE INDEX audit_sandbox ON audit (tenant_id, sandbox_id, ns)
    WITH (deduplicate_items = off) WHERE sandbox_id IS NOT NULL;
CREATE INDEX audit_secret ON audit (tenant_id, secret_id, ns)
    WITH (deduplicate_items = off) WHERE secret_id IS NOT NULL;
CREATE INDEX audit_outcome ON audit (tenant_id, outcome, ns)
    WITH (deduplicate_items = off) WHERE outcome IS NOT NULL;
CREATE INDEX audit_order ON audit (ns) WITH (deduplicate_items = off);
