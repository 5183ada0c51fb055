//! Read models in PostgreSQL tables, for reporting tools to query directly.
//!
//! The ledger (any backend: SQLite, PostgreSQL, KurrentDB) is read page by
//! page, in global order. Each page is folded by the same projections the CLI
//! uses ([`AuditLog`], [`ChangeLog`]) and by the invoice documents carried in
//! `InvoiceIssued` / `CreditNoteIssued` / `DebitNoteIssued` events, and its
//! rows are written in ONE transaction together with the checkpoint: the
//! tables and the checkpoint never disagree, whatever fails or whoever kills
//! the process. Two runners at once are safe too: the checkpoint row is
//! locked (`FOR UPDATE`) for the page's transaction, and events at or below
//! the checkpoint a runner finds there are skipped.
//!
//! Tables (schema `seatledger_read`, created and versioned at start-up):
//! - `audit_log`: one row per event: who, when (both times), what, entities.
//! - `licence_changes`: one row per licence quantity change, with its reason.
//! - `invoice_documents` and `invoice_lines`: every issued invoice and
//!   credit/debit note, amounts as `numeric` in the document's currency.
//! - `checkpoints`: the last position folded, and which ledger it came from
//!   (its first event id), so that tables built from one ledger are never
//!   continued from another.

#![forbid(unsafe_code)]

use seatledger_app::decode_stored;
use seatledger_domain::invoice::{InvoiceLine, TaxLine};
use seatledger_domain::Event;
use seatledger_projections::audit::AuditLog;
use seatledger_projections::change_log::ChangeLog;
use seatledger_projections::Projection;
use seatledger_store::{EventStore, StoreError, StoredEvent};
use std::time::Duration;
use tokio_postgres::{Client, NoTls, Transaction};

/// The schema holding every read-model table.
pub const SCHEMA: &str = "seatledger_read";
/// The checkpoint row of these read models.
const CHECKPOINT: &str = "ledger";
/// Events read and written per transaction.
pub const PAGE: usize = 1_000;
/// How long connecting may take before it is reported as a failure.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Schema migrations, applied in order, each once, at start-up.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE seatledger_read.checkpoints (
    name TEXT PRIMARY KEY,
    position BIGINT NOT NULL,
    source_first_event UUID,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO seatledger_read.checkpoints (name, position) VALUES ('ledger', 0);
CREATE TABLE seatledger_read.audit_log (
    position BIGINT PRIMARY KEY,
    event_id UUID NOT NULL UNIQUE,
    stream TEXT NOT NULL,
    stream_version BIGINT NOT NULL,
    workspace TEXT,
    event_type TEXT NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    effective_at TIMESTAMPTZ NOT NULL,
    actor TEXT NOT NULL,
    channel TEXT NOT NULL,
    entities TEXT[] NOT NULL,
    summary TEXT NOT NULL
);
CREATE INDEX audit_log_workspace ON seatledger_read.audit_log (workspace, position);
CREATE INDEX audit_log_entities ON seatledger_read.audit_log USING GIN (entities);
CREATE TABLE seatledger_read.licence_changes (
    event_id UUID PRIMARY KEY,
    position BIGINT NOT NULL,
    workspace TEXT NOT NULL,
    subscription TEXT NOT NULL,
    sku TEXT NOT NULL,
    organization TEXT,
    from_quantity INTEGER NOT NULL,
    to_quantity INTEGER NOT NULL,
    reason TEXT NOT NULL,
    trigger_event UUID,
    effective_at TIMESTAMPTZ NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    ordered_by TEXT NOT NULL,
    actor TEXT NOT NULL,
    channel TEXT NOT NULL,
    order_reference TEXT,
    order_thru TEXT
);
CREATE INDEX licence_changes_pool ON seatledger_read.licence_changes (workspace, sku, position);
CREATE TABLE seatledger_read.invoice_documents (
    number TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('invoice', 'credit', 'debit')),
    corrects TEXT,
    workspace TEXT NOT NULL,
    account TEXT NOT NULL,
    period TEXT NOT NULL,
    currency TEXT NOT NULL,
    subtotal NUMERIC NOT NULL,
    tax NUMERIC NOT NULL,
    total NUMERIC NOT NULL,
    computed_at_position BIGINT NOT NULL,
    inputs_digest TEXT NOT NULL,
    position BIGINT NOT NULL,
    event_id UUID NOT NULL,
    issued_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX invoice_documents_account ON seatledger_read.invoice_documents (workspace, account, period);
CREATE TABLE seatledger_read.invoice_lines (
    number TEXT NOT NULL REFERENCES seatledger_read.invoice_documents (number),
    line_no INTEGER NOT NULL,
    key TEXT NOT NULL,
    description TEXT NOT NULL,
    sku TEXT,
    subscription TEXT,
    rule TEXT NOT NULL,
    formula TEXT NOT NULL,
    quantity NUMERIC NOT NULL,
    unit_price NUMERIC NOT NULL,
    discount_percent NUMERIC NOT NULL,
    amount NUMERIC NOT NULL,
    currency TEXT NOT NULL,
    taxable BOOLEAN NOT NULL,
    PRIMARY KEY (number, line_no)
);
"#,
    r#"
ALTER TABLE seatledger_read.checkpoints ADD COLUMN source_first_position BIGINT;
"#,
];

/// Every table the read models fill, emptied by a rebuild (children first).
const TABLES: &[&str] = &["invoice_lines", "invoice_documents", "licence_changes", "audit_log"];

/// Why the read models could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum ReadModelError {
    /// The read-model database could not be reached or answered with an error.
    #[error("read-model database: {0}")]
    Database(String),
    /// Reading the ledger failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored event could not be decoded.
    #[error("cannot fold {0}")]
    Decode(String),
    /// The tables were built from another ledger, or from this ledger on
    /// another store whose positions differ (after a migration to KurrentDB).
    #[error(
        "the read models in this database were built from another ledger or store (its first event is {} at \
         position {}, this store's is {} at position {}); rebuild them to switch",
        .built_from.0, .built_from.1, .this_ledger.0, .this_ledger.1
    )]
    OtherLedger { built_from: (uuid::Uuid, u64), this_ledger: (uuid::Uuid, u64) },
}

fn db(context: &str) -> impl Fn(tokio_postgres::Error) -> ReadModelError + '_ {
    move |e| ReadModelError::Database(format!("{context}: {e}"))
}

/// What one run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncReport {
    /// Events folded by this run.
    pub events: u64,
    /// The checkpoint after the run.
    pub position: u64,
}

/// The read models of one PostgreSQL database.
#[derive(Debug)]
pub struct PgReadModels {
    client: Client,
}

impl PgReadModels {
    /// Connect (within [`CONNECT_TIMEOUT`]) and bring the schema up to date.
    pub async fn connect(url: &str) -> Result<Self, ReadModelError> {
        let connecting = tokio_postgres::connect(url, NoTls);
        let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| {
                ReadModelError::Database(format!(
                    "no answer within {} s from {}",
                    CONNECT_TIMEOUT.as_secs(),
                    seatledger_store::redact_url(url)
                ))
            })?
            .map_err(|e| {
                ReadModelError::Database(format!("connecting to {}: {e}", seatledger_store::redact_url(url)))
            })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "read-model database connection ended");
            }
        });
        let mut models = Self { client };
        models.migrate().await?;
        Ok(models)
    }

    async fn migrate(&mut self) -> Result<(), ReadModelError> {
        let tx = self.client.transaction().await.map_err(db("starting the schema migration"))?;
        // One process migrates at a time; the others wait and find it done.
        tx.execute("SELECT pg_advisory_xact_lock(hashtext('seatledger_read migrations'))", &[])
            .await
            .map_err(db("locking the schema migration"))?;
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {SCHEMA};
             CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_migrations (
                 version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now());"
        ))
        .await
        .map_err(db("creating the schema"))?;
        let applied: i32 = tx
            .query_one(&format!("SELECT coalesce(max(version), 0) FROM {SCHEMA}.schema_migrations"), &[])
            .await
            .map_err(db("reading the schema version"))?
            .get(0);
        for (index, sql) in MIGRATIONS.iter().enumerate() {
            let version = index as i32 + 1;
            if version <= applied {
                continue;
            }
            tx.batch_execute(sql).await.map_err(|e| ReadModelError::Database(format!("migration {version}: {e}")))?;
            tx.execute(&format!("INSERT INTO {SCHEMA}.schema_migrations (version) VALUES ($1)"), &[&version])
                .await
                .map_err(db("recording the schema version"))?;
        }
        tx.commit().await.map_err(db("committing the schema migration"))
    }

    /// The schema version in the database.
    pub async fn schema_version(&self) -> Result<i32, ReadModelError> {
        Ok(self
            .client
            .query_one(&format!("SELECT max(version) FROM {SCHEMA}.schema_migrations"), &[])
            .await
            .map_err(db("reading the schema version"))?
            .get(0))
    }

    /// The last ledger position folded into the tables.
    pub async fn position(&self) -> Result<u64, ReadModelError> {
        let row = self
            .client
            .query_one(&format!("SELECT position FROM {SCHEMA}.checkpoints WHERE name = $1"), &[&CHECKPOINT])
            .await
            .map_err(db("reading the checkpoint"))?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    async fn check_ledger(&self, store: &dyn EventStore) -> Result<(), ReadModelError> {
        let row = self
            .client
            .query_one(
                &format!("SELECT source_first_event, source_first_position FROM {SCHEMA}.checkpoints WHERE name = $1"),
                &[&CHECKPOINT],
            )
            .await
            .map_err(db("reading the checkpoint"))?;
        same_ledger(row.get(0), row.get(1), store).await.map(|_| ())
    }

    /// Fold every event after the checkpoint, page by page; at most
    /// `max_events` when given. `progress(position, head)` after each page.
    pub async fn catch_up(
        &mut self,
        store: &dyn EventStore,
        max_events: Option<u64>,
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<SyncReport, ReadModelError> {
        let head = store.head_position().await?;
        self.check_ledger(store).await?;
        let mut report = SyncReport { events: 0, position: self.position().await? };
        loop {
            let room = max_events.map_or(PAGE as u64, |m| (m - report.events).min(PAGE as u64));
            if room == 0 {
                break;
            }
            let page = store.read_all(report.position, room as usize).await?;
            if page.is_empty() {
                break;
            }
            let (position, folded) = self.apply_page(store, page).await?;
            report.position = position;
            report.events += folded;
            progress(position, head.max(position));
        }
        Ok(report)
    }

    /// Empty every table and fold the whole ledger again.
    pub async fn rebuild(
        &mut self,
        store: &dyn EventStore,
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<SyncReport, ReadModelError> {
        let tx = self.client.transaction().await.map_err(db("starting the rebuild"))?;
        let tables: Vec<String> = TABLES.iter().map(|t| format!("{SCHEMA}.{t}")).collect();
        tx.batch_execute(&format!("TRUNCATE {}", tables.join(", "))).await.map_err(db("emptying the tables"))?;
        tx.execute(
            &format!("UPDATE {SCHEMA}.checkpoints SET position = 0, source_first_event = NULL, source_first_position = NULL, updated_at = now() WHERE name = $1"),
            &[&CHECKPOINT],
        )
        .await
        .map_err(db("resetting the checkpoint"))?;
        tx.commit().await.map_err(db("committing the rebuild's reset"))?;
        self.catch_up(store, None, progress).await
    }

    /// Keep the tables current: catch up, then fold new events as they are
    /// appended, until `stop` resolves.
    pub async fn follow(
        &mut self,
        store: &dyn EventStore,
        poll: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<SyncReport, ReadModelError> {
        let mut watch = store.head_watch();
        let mut total = SyncReport::default();
        tokio::pin!(stop);
        loop {
            watch.borrow_and_update();
            let report = self.catch_up(store, None, &mut |_, _| {}).await?;
            total.events += report.events;
            total.position = report.position;
            tokio::select! {
                _ = &mut stop => return Ok(total),
                _ = watch.changed() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Fold one page and write its rows and the checkpoint in one transaction.
    /// Returns the new checkpoint and how many events were folded.
    async fn apply_page(
        &mut self,
        store: &dyn EventStore,
        page: Vec<StoredEvent>,
    ) -> Result<(u64, u64), ReadModelError> {
        let Some(last) = page.last().map(|e| e.position) else { return Ok((self.position().await?, 0)) };
        let tx = self.client.transaction().await.map_err(db("starting a page"))?;
        let row = tx
            .query_one(
                &format!(
                    "SELECT position, source_first_event, source_first_position FROM {SCHEMA}.checkpoints \
                     WHERE name = $1 FOR UPDATE"
                ),
                &[&CHECKPOINT],
            )
            .await
            .map_err(db("locking the checkpoint"))?;
        let at = row.get::<_, i64>(0) as u64;
        let first = same_ledger(row.get(1), row.get(2), store).await?;
        let (first_event, first_position) = (first.map(|f| f.0), first.map(|f| f.1 as i64));
        let mut audit = AuditLog::default();
        let mut changes = ChangeLog::default();
        let mut folded = 0;
        for stored in page.into_iter().filter(|e| e.position > at) {
            folded += 1;
            let Some(decoded) = decode_stored(stored).map_err(ReadModelError::Decode)? else { continue };
            let recorded = decoded.recorded();
            audit.apply(&recorded);
            changes.apply(&recorded);
            if let Some(document) = Document::of(&decoded.event) {
                let stored = &decoded.stored;
                write_document(&tx, &document, stored.position, stored.id, stored.recorded_at).await?;
            }
        }
        write_audit(&tx, &audit).await?;
        write_changes(&tx, &changes).await?;
        let position = last.max(at);
        tx.execute(
            &format!(
                "UPDATE {SCHEMA}.checkpoints SET position = $2, source_first_event = coalesce(source_first_event, $3), \
                 source_first_position = coalesce(source_first_position, $4), updated_at = now() WHERE name = $1"
            ),
            &[&CHECKPOINT, &(position as i64), &first_event, &first_position],
        )
        .await
        .map_err(db("saving the checkpoint"))?;
        tx.commit().await.map_err(db("committing a page"))?;
        Ok((position, folded))
    }
}

/// The store's first event (id and position), refusing a store other than
/// the one the tables were built from: another ledger (another first event),
/// or the same ledger migrated to a store that numbers positions differently
/// (the checkpoint would mean something else there). A ledger copied between
/// SQLite and PostgreSQL keeps both, and the tables carry on.
async fn same_ledger(
    built_from_event: Option<uuid::Uuid>,
    built_from_position: Option<i64>,
    store: &dyn EventStore,
) -> Result<Option<(uuid::Uuid, u64)>, ReadModelError> {
    let first = store.read_all(0, 1).await?.first().map(|e| (e.id, e.position));
    match (built_from_event, first) {
        (Some(event), Some(this_ledger))
            if event != this_ledger.0 || built_from_position.is_some_and(|p| p as u64 != this_ledger.1) =>
        {
            let position = built_from_position.map_or(0, |p| p as u64);
            Err(ReadModelError::OtherLedger { built_from: (event, position), this_ledger })
        }
        _ => Ok(first),
    }
}

async fn write_audit(tx: &Transaction<'_>, audit: &AuditLog) -> Result<(), ReadModelError> {
    if audit.entries.is_empty() {
        return Ok(());
    }
    let insert = tx
        .prepare(&format!(
            "INSERT INTO {SCHEMA}.audit_log (position, event_id, stream, stream_version, workspace, event_type, \
             recorded_at, effective_at, actor, channel, entities, summary) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .await
        .map_err(db("preparing the audit insert"))?;
    for e in &audit.entries {
        let entities: Vec<&str> = e.entities.iter().map(|label| label.as_str()).collect();
        tx.execute(
            &insert,
            &[
                &(e.position as i64),
                &e.event_id,
                &e.stream.as_str(),
                &(e.stream_version as i64),
                &e.workspace.as_deref(),
                &e.event_type.as_str(),
                &e.recorded_at,
                &e.effective_at,
                &e.actor.as_str(),
                &e.channel.as_str(),
                &entities,
                &e.summary,
            ],
        )
        .await
        .map_err(|err| ReadModelError::Database(format!("writing the audit row of position {}: {err}", e.position)))?;
    }
    Ok(())
}

async fn write_changes(tx: &Transaction<'_>, changes: &ChangeLog) -> Result<(), ReadModelError> {
    if changes.entries.is_empty() {
        return Ok(());
    }
    let insert = tx
        .prepare(&format!(
            "INSERT INTO {SCHEMA}.licence_changes (event_id, position, workspace, subscription, sku, organization, \
             from_quantity, to_quantity, reason, trigger_event, effective_at, recorded_at, ordered_by, actor, \
             channel, order_reference, order_thru) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
        ))
        .await
        .map_err(db("preparing the licence change insert"))?;
    for c in &changes.entries {
        tx.execute(
            &insert,
            &[
                &c.event_id,
                &(c.position as i64),
                &c.workspace,
                &c.subscription,
                &c.sku,
                &c.organization,
                &(c.from as i32),
                &(c.to as i32),
                &c.reason,
                &c.trigger_event,
                &c.effective_at,
                &c.recorded_at,
                &c.ordered_by,
                &c.actor,
                &c.channel,
                &c.order_reference,
                &c.order_thru,
            ],
        )
        .await
        .map_err(|e| ReadModelError::Database(format!("writing the licence change of position {}: {e}", c.position)))?;
    }
    Ok(())
}

/// An invoice or a note, as the tables keep it.
struct Document<'a> {
    number: &'a str,
    kind: &'static str,
    corrects: Option<&'a str>,
    workspace: String,
    account: String,
    period: String,
    currency: String,
    subtotal: String,
    tax: String,
    total: String,
    computed_at_position: u64,
    inputs_digest: &'a str,
    lines: &'a [InvoiceLine],
}

impl<'a> Document<'a> {
    fn of(event: &'a Event) -> Option<Self> {
        let tax = |taxes: &[TaxLine]| taxes.iter().map(|t| t.tax.amount).sum::<rust_decimal::Decimal>().to_string();
        match event {
            Event::InvoiceIssued { invoice: d } => Some(Document {
                number: &d.number,
                kind: "invoice",
                corrects: None,
                workspace: d.workspace.to_string(),
                account: d.account.to_string(),
                period: d.period.to_string(),
                currency: d.currency.to_string(),
                subtotal: d.subtotal.amount.to_string(),
                tax: tax(&d.taxes),
                total: d.total.amount.to_string(),
                computed_at_position: d.computed_at_position,
                inputs_digest: &d.inputs_digest,
                lines: &d.lines,
            }),
            Event::CreditNoteIssued { note: d } | Event::DebitNoteIssued { note: d } => Some(Document {
                number: &d.number,
                kind: d.kind.as_str(),
                corrects: Some(&d.original),
                workspace: d.workspace.to_string(),
                account: d.account.to_string(),
                period: d.period.to_string(),
                currency: d.currency.to_string(),
                subtotal: d.subtotal.amount.to_string(),
                tax: tax(&d.taxes),
                total: d.total.amount.to_string(),
                computed_at_position: d.computed_at_position,
                inputs_digest: &d.inputs_digest,
                lines: &d.lines,
            }),
            _ => None,
        }
    }
}

async fn write_document(
    tx: &Transaction<'_>,
    d: &Document<'_>,
    position: u64,
    event_id: uuid::Uuid,
    issued_at: chrono::DateTime<chrono::Utc>,
) -> Result<(), ReadModelError> {
    let context = |e: tokio_postgres::Error| ReadModelError::Database(format!("writing document {}: {e}", d.number));
    // Amounts go in as decimal text and are cast by the database: exact.
    tx.execute(
        &format!(
            "INSERT INTO {SCHEMA}.invoice_documents (number, kind, corrects, workspace, account, period, currency, \
             subtotal, tax, total, computed_at_position, inputs_digest, position, event_id, issued_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::numeric, $9::text::numeric, $10::text::numeric, \
             $11, $12, $13, $14, $15)"
        ),
        &[
            &d.number,
            &d.kind,
            &d.corrects,
            &d.workspace,
            &d.account,
            &d.period,
            &d.currency,
            &d.subtotal,
            &d.tax,
            &d.total,
            &(d.computed_at_position as i64),
            &d.inputs_digest,
            &(position as i64),
            &event_id,
            &issued_at,
        ],
    )
    .await
    .map_err(context)?;
    let insert = tx
        .prepare(&format!(
            "INSERT INTO {SCHEMA}.invoice_lines (number, line_no, key, description, sku, subscription, rule, formula, \
             quantity, unit_price, discount_percent, amount, currency, taxable) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::numeric, $10::text::numeric, $11::text::numeric, \
             $12::text::numeric, $13, $14)"
        ))
        .await
        .map_err(context)?;
    for (index, line) in d.lines.iter().enumerate() {
        tx.execute(
            &insert,
            &[
                &d.number,
                &(index as i32 + 1),
                &line.key,
                &line.description,
                &line.sku.as_ref().map(ToString::to_string),
                &line.subscription.as_ref().map(ToString::to_string),
                &line.rule,
                &line.formula,
                &line.quantity.to_string(),
                &line.unit_price.amount.to_string(),
                &line.discount.value().to_string(),
                &line.amount.amount.to_string(),
                &line.amount.currency.to_string(),
                &line.taxable,
            ],
        )
        .await
        .map_err(context)?;
    }
    Ok(())
}
