-- 0003: the audit log in a table of its own (audit.go), partitioned by
-- day, instead of the vault's audit buckets in kv.
--
-- audit: one row per audit row. ns is the row's time in nanoseconds since
-- 1970 (UTC), the order of the log and the partition key: timestamptz
-- keeps microseconds only, and two rows within one microsecond must keep
-- their order. at is the same time as a timestamptz, for people reading
-- the table. data is the row as the vault encoded it (JSON, bytes kept
-- as they are: convert_from(data, 'UTF8')::jsonb reads it). The other
-- columns are what queries filter on; an id the row lacks is NULL, so
-- the partial indexes hold only rows that have one. use_secret_ids are
-- the secrets of a request's uses other than secret_id (usually none).
-- Every text column is COLLATE "C": ids order as their bytes, as the
-- vault's cursors do.
--
-- Partitions (audit_pYYYYMMDD, one per UTC day) are made as rows need
-- them, by CREATE TABLE ... (LIKE audit) and ATTACH PARTITION under an
-- advisory lock (replicas never race), which does not wait for writers
-- of other days; retention drops the partitions older than its cutoff.
--
-- The indexes serve QueryAudit (newest first within a tenant, by one id),
-- ExportAudit across tenants (audit_order), and the upsert of a row
-- written again (the primary key: a request's provisional row replaced
-- by its final one).
CREATE TABLE audit (
    tenant_id text COLLATE "C" NOT NULL,
    ns bigint NOT NULL,
    id text COLLATE "C" NOT NULL,
    at timestamptz NOT NULL,
    kind text COLLATE "C" NOT NULL,
    outcome text COLLATE "C",
    external_user_id text COLLATE "C",
    external_workspace_id text COLLATE "C",
    sandbox_id text COLLATE "C",
    secret_id text COLLATE "C",
    use_secret_ids text[] COLLATE "C",
    data bytea NOT NULL,
    PRIMARY KEY (tenant_id, ns, id)
) PARTITION BY RANGE (ns);

CREATE INDEX audit_ext_user ON audit (tenant_id, external_user_id, ns, id) WHERE external_user_id IS NOT NULL;
CREATE INDEX audit_ext_workspace ON audit (tenant_id, external_workspace_id, ns, id) WHERE external_workspace_id IS NOT NULL;
CREATE INDEX audit_sandbox ON audit (tenant_id, sandbox_id, ns, id) WHERE sandbox_id IS NOT NULL;
CREATE INDEX audit_secret ON audit (tenant_id, secret_id, ns, id) WHERE secret_id IS NOT NULL;
CREATE INDEX audit_use_secrets ON audit USING gin (use_secret_ids) WHERE use_secret_ids IS NOT NULL;
CREATE INDEX audit_outcome ON audit (tenant_id, outcome, ns, id);
CREATE INDEX audit_order ON audit (ns, id, tenant_id);
