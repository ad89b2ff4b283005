//! The database schema, as numbered migrations embedded in the binary and applied at start.
//!
//! One table, `records`, holds every log's lines in one global order (`id`): the same lines the
//! JSONL files hold, so export and import are copies. Audit records (events, nodes, commands,
//! scans) cannot be updated or deleted — a trigger refuses it, whoever asks; heartbeats, which
//! are telemetry, may be deleted by retention, as rotated JSONL segments are. `seen_requests`
//! (migration 2) holds the digests of signed agent requests accepted within the replay window.
//! `history_5m` and `history_1h` (migration 3) hold the closed history buckets ([`super::tiers`]).

use tokio_postgres::{Client, GenericClient};

/// Serializes migrations of several instances starting at once.
const MIGRATION_LOCK: i64 = 0x7661_756c_746d_0001;

/// `(version, sql)`, applied in order, each once, in one transaction with its version row.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        r#"
CREATE TABLE records (
    id      bigserial PRIMARY KEY,
    log     text NOT NULL,
    kind    text NOT NULL,
    ts      timestamptz NOT NULL,
    node_id uuid,
    line    text NOT NULL,
    point   text
);
COMMENT ON TABLE records IS 'VaultMesh logs: every line of every log, in one global order (id).';
COMMENT ON COLUMN records.line IS 'The JSONL line exactly as the file store writes it, without its newline.';
COMMENT ON COLUMN records.point IS 'Heartbeats: the history point, so a restart reads no whole heartbeat but the last.';
CREATE INDEX records_by_log ON records (log, id);
CREATE INDEX records_heartbeats_by_node ON records (node_id, id) WHERE log = 'heartbeats';
CREATE INDEX records_events_by_node ON records (node_id, id) WHERE log = 'events';
CREATE INDEX records_heartbeats_by_ts ON records (ts) WHERE log = 'heartbeats';

CREATE TABLE heartbeat_nodes (
    node_id uuid PRIMARY KEY,
    total   bigint NOT NULL
);
COMMENT ON TABLE heartbeat_nodes IS 'Heartbeats received per node (what a restart needs besides the last lines).';

CREATE FUNCTION vaultmesh_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND OLD.log = 'heartbeats' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'vaultmesh: % records are append-only (% refused)',
        COALESCE(OLD.log, 'these'), TG_OP;
END $$;
CREATE TRIGGER records_append_only BEFORE UPDATE OR DELETE ON records
    FOR EACH ROW EXECUTE FUNCTION vaultmesh_append_only();
CREATE TRIGGER records_no_truncate BEFORE TRUNCATE ON records
    FOR EACH STATEMENT EXECUTE FUNCTION vaultmesh_append_only();
"#,
    ),
    (
        2,
        r#"
CREATE TABLE seen_requests (
    digest  bytea PRIMARY KEY,
    seen_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE seen_requests IS 'Signed agent requests accepted within the replay window (SHA-256 of node id and signature), shared by every instance so a request is accepted at most once.';
CREATE INDEX seen_requests_by_time ON seen_requests (seen_at);
"#,
    ),
    (
        3,
        r#"
CREATE TABLE history_5m (
    node_id uuid        NOT NULL,
    start   timestamptz NOT NULL,
    metrics json        NOT NULL,
    PRIMARY KEY (node_id, start)
);
COMMENT ON TABLE history_5m IS 'Closed 5-minute history buckets, one row per node and bucket (the first copy stored wins); kept --history-5m-retention.';
COMMENT ON COLUMN history_5m.metrics IS 'Each metric: [min, avg, max, samples], as the JSONL store''s history files hold it (json: the text as written, half the size of jsonb).';
CREATE TABLE history_1h (
    node_id uuid        NOT NULL,
    start   timestamptz NOT NULL,
    metrics json        NOT NULL,
    PRIMARY KEY (node_id, start)
);
COMMENT ON TABLE history_1h IS 'Closed 1-hour history buckets, one row per node and bucket (the first copy stored wins); kept --history-1h-retention.';
COMMENT ON COLUMN history_1h.metrics IS 'Each metric: [min, avg, max, samples], as the JSONL store''s history files hold it (json: the text as written, half the size of jsonb).';
-- A start reads each node's heartbeats since its newest stored buckets (the open buckets and
-- raw samples): a range of this index, however long heartbeats are retained.
CREATE INDEX records_heartbeats_by_node_ts ON records (node_id, ts) WHERE log = 'heartbeats';
"#,
    ),
];

/// The newest schema version this binary knows.
pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// Applies the migrations this database lacks. Refuses a database migrated by a newer binary.
pub async fn migrate(client: &mut Client) -> Result<i32, super::PgError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS vaultmesh_schema (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await?;
    let current = readable_version(&tx).await?;
    for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO vaultmesh_schema (version) VALUES ($1)",
            &[version],
        )
        .await?;
        tracing::info!(version, "Applied a database migration.");
    }
    tx.commit().await?;
    Ok(latest())
}

/// Checks, without changing anything, that the database holds a schema this binary reads.
pub async fn require(client: &Client, url: &str) -> Result<i32, super::PgError> {
    let present: bool = client
        .query_one("SELECT to_regclass('vaultmesh_schema') IS NOT NULL", &[])
        .await?
        .get(0);
    if !present {
        return Err(super::PgError::Transfer(format!(
            "{} holds no VaultMesh store (no vaultmesh_schema table); check the database name",
            super::redact(url)
        )));
    }
    readable_version(client).await
}

/// The recorded schema version; refused if a newer binary migrated the database.
async fn readable_version(client: &impl GenericClient) -> Result<i32, super::PgError> {
    let found: i32 = client
        .query_one(
            "SELECT COALESCE(max(version), 0) FROM vaultmesh_schema",
            &[],
        )
        .await?
        .get(0);
    if found > latest() {
        return Err(super::PgError::NewerSchema {
            found,
            known: latest(),
        });
    }
    Ok(found)
}
