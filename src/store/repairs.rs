//! Repair records and attachments in the embedded store. An attachment's row and its file are
//! made together: the file is written (and synced) under a temporary name, the row inserted,
//! the file renamed to the row's id, and only then is the row committed; a failure on the way
//! leaves neither.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::tickets::{Entry, append};
use super::{Store, StoreError, from_ms, ms, named};
use crate::tickets::Event;
use crate::tickets::model::BillingClass;
use crate::tickets::repair::{Attachment, AttachmentKind, Charge, Repair, RepairRecord};

const ATTACHMENT_COLUMNS: &str = "id, kind, content_type, size, sha256, uploaded_by, uploaded_at";

/// What an attachment belongs to: a ticket, or a visit (a work order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Ticket(i64),
    Visit(i64),
}

impl Owner {
    fn table(self) -> &'static str {
        match self {
            Owner::Ticket(_) => "attachments",
            Owner::Visit(_) => "visit_attachments",
        }
    }

    fn column(self) -> &'static str {
        match self {
            Owner::Ticket(_) => "ticket_id",
            Owner::Visit(_) => "work_order_id",
        }
    }

    fn id(self) -> i64 {
        match self {
            Owner::Ticket(id) | Owner::Visit(id) => id,
        }
    }

    /// Its folder beside the database: a ticket's by its id (as 0026 made them), a visit's
    /// `visit-ID`.
    fn dir(self) -> String {
        match self {
            Owner::Ticket(id) => id.to_string(),
            Owner::Visit(id) => format!("visit-{id}"),
        }
    }
}

fn attachment(owner: Owner, r: &sqlx::sqlite::SqliteRow) -> Result<Attachment, StoreError> {
    Ok(Attachment {
        id: r.try_get("id")?,
        ticket_id: matches!(owner, Owner::Ticket(_)).then_some(owner.id()),
        work_order_id: matches!(owner, Owner::Visit(_)).then_some(owner.id()),
        kind: named(r, "kind", AttachmentKind::parse)?,
        content_type: r.try_get("content_type")?,
        size: r.try_get("size")?,
        sha256: r.try_get("sha256")?,
        uploaded_by: r.try_get("uploaded_by")?,
        uploaded_at: from_ms(r.try_get("uploaded_at")?)?,
    })
}

/// A new attachment.
#[derive(Debug)]
pub struct NewAttachment<'a> {
    pub owner: Owner,
    pub kind: AttachmentKind,
    pub content_type: &'static str,
    pub bytes: &'a [u8],
    pub by: &'a str,
    /// The most a ticket (or a visit) holds.
    pub max_per_ticket: i64,
}

fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::File { path: path.display().to_string(), source }
}

impl Store {
    fn attachment_path(&self, owner: Owner, id: i64) -> std::path::PathBuf {
        self.files.join(owner.dir()).join(id.to_string())
    }

    /// Keeps an attachment of a ticket or a visit; `None` when it holds as many as it may.
    pub async fn add_attachment(
        &self,
        a: NewAttachment<'_>,
        now: DateTime<Utc>,
    ) -> Result<Option<Attachment>, StoreError> {
        let digest: String = Sha256::digest(a.bytes).iter().map(|b| format!("{b:02x}")).collect();
        let (owner, table, column) = (a.owner, a.owner.table(), a.owner.column());
        let dir = self.files.join(owner.dir());
        tokio::fs::create_dir_all(&dir).await.map_err(io(&dir))?;
        let tmp = dir.join(format!(".upload-{digest}-{}", now.timestamp_nanos_opt().unwrap_or_default()));
        let write = async {
            let mut f = tokio::fs::File::create(&tmp).await?;
            tokio::io::AsyncWriteExt::write_all(&mut f, a.bytes).await?;
            f.sync_all().await
        };
        write.await.map_err(io(&tmp))?;
        let kept = async {
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
            let count = format!("SELECT COUNT(*) FROM {table} WHERE {column} = $1");
            let held: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(count)).bind(owner.id()).fetch_one(&mut *tx).await?;
            if held >= a.max_per_ticket {
                return Ok(None);
            }
            let sql = format!(
                "INSERT INTO {table} ({column}, kind, content_type, size, sha256, uploaded_by, uploaded_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {ATTACHMENT_COLUMNS}"
            );
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(owner.id())
                .bind(a.kind.as_str())
                .bind(a.content_type)
                .bind(a.bytes.len() as i64)
                .bind(&digest)
                .bind(a.by)
                .bind(ms(now))
                .fetch_one(&mut *tx)
                .await?;
            let att = attachment(owner, &row)?;
            let path = self.attachment_path(owner, att.id);
            tokio::fs::rename(&tmp, &path).await.map_err(io(&path))?;
            if let Err(e) = tx.commit().await {
                let _ = tokio::fs::remove_file(&path).await;
                return Err(e.into());
            }
            Ok(Some(att))
        };
        let r: Result<Option<Attachment>, StoreError> = kept.await;
        // Gone already when it was renamed; a leftover otherwise.
        let _ = tokio::fs::remove_file(&tmp).await;
        r
    }

    /// A ticket's attachments, oldest first.
    pub async fn attachments(&self, ticket: i64) -> Result<Vec<Attachment>, StoreError> {
        self.attachments_of(Owner::Ticket(ticket)).await
    }

    /// A ticket's or a visit's attachments, oldest first.
    pub async fn attachments_of(&self, owner: Owner) -> Result<Vec<Attachment>, StoreError> {
        let (table, column) = (owner.table(), owner.column());
        let sql = format!("SELECT {ATTACHMENT_COLUMNS} FROM {table} WHERE {column} = $1 ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(owner.id()).fetch_all(&self.pool).await?;
        rows.iter().map(|r| attachment(owner, r)).collect()
    }

    /// One attachment of a ticket with its bytes.
    pub async fn attachment(&self, ticket: i64, id: i64) -> Result<Option<(Attachment, Vec<u8>)>, StoreError> {
        self.attachment_of(Owner::Ticket(ticket), id).await
    }

    /// One attachment of a ticket or a visit with its bytes.
    pub async fn attachment_of(&self, owner: Owner, id: i64) -> Result<Option<(Attachment, Vec<u8>)>, StoreError> {
        let (table, column) = (owner.table(), owner.column());
        let sql = format!("SELECT {ATTACHMENT_COLUMNS} FROM {table} WHERE {column} = $1 AND id = $2");
        let Some(row) =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(owner.id()).bind(id).fetch_optional(&self.pool).await?
        else {
            return Ok(None);
        };
        let att = attachment(owner, &row)?;
        let path = self.attachment_path(owner, id);
        let bytes = tokio::fs::read(&path).await.map_err(io(&path))?;
        Ok(Some((att, bytes)))
    }

    /// Records (or replaces) a ticket's repair record, with a timeline line for the helpdesk,
    /// and takes the spare parts it used from stock: `spares` are (model, part, quantity) of
    /// the record's parts kept as spares, and the (model, part) the catalogue keeps for the
    /// device's model (`None`: its model is unknown, stock is left alone); a replaced record
    /// moves only the difference.
    /// `Ok(Err(why))` when the record names an attachment the ticket does not hold as that kind.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_repair(
        &self,
        ticket: i64,
        record: &RepairRecord,
        class: BillingClass,
        charge: &Charge,
        spares: Option<super::spares::Taken<'_>>,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Result<(), String>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let named = record.confirmation.as_ref().and_then(|c| c.signature).map(|s| (s, AttachmentKind::Signature));
        for (id, kind) in record.photos.iter().map(|p| (*p, AttachmentKind::Photo)).chain(named) {
            let held: Option<String> =
                sqlx::query_scalar("SELECT kind FROM attachments WHERE ticket_id = $1 AND id = $2")
                    .bind(ticket)
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if held.as_deref() != Some(kind.as_str()) {
                return Ok(Err(format!("ticket {ticket} holds no {kind} attachment {id}")));
            }
        }
        sqlx::query(
            "INSERT INTO repairs (ticket_id, record, class, charge, recorded_by, recorded_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (ticket_id) DO UPDATE SET record = excluded.record, class = excluded.class, \
             charge = excluded.charge, recorded_by = excluded.recorded_by, recorded_at = excluded.recorded_at",
        )
        .bind(ticket)
        .bind(to_json(record)?)
        .bind(class.as_str())
        .bind(to_json(charge)?)
        .bind(by)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
        let note = record.summary(class, charge);
        append(&mut tx, ticket, now, Entry::note(Event::Repair, by, &note)).await?;
        if let Some(t) = spares {
            super::spares::take(&mut tx, ticket, t.parts, t.catalogued, by, now).await?;
        }
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// A ticket's repair record, if one was made.
    pub async fn repair(&self, ticket: i64) -> Result<Option<Repair>, StoreError> {
        let Some(r) =
            sqlx::query("SELECT record, class, charge, recorded_by, recorded_at FROM repairs WHERE ticket_id = $1")
                .bind(ticket)
                .fetch_optional(&self.pool)
                .await?
        else {
            return Ok(None);
        };
        let text: String = r.try_get("record")?;
        let record: RepairRecord =
            serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("repair record of {ticket}: {e}")))?;
        let charge: String = r.try_get("charge")?;
        let charge: Charge =
            serde_json::from_str(&charge).map_err(|e| StoreError::Corrupt(format!("charge of {ticket}: {e}")))?;
        Ok(Some(Repair {
            record,
            class: named(&r, "class", BillingClass::parse)?,
            charge,
            recorded_by: r.try_get("recorded_by")?,
            recorded_at: from_ms(r.try_get("recorded_at")?)?,
        }))
    }
}

/// A value kept as JSON text.
fn to_json<T: Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(format!("as JSON: {e}")))
}
