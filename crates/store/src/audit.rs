//! The hash-chained audit log: appends inside a write transaction, filtered
//! reads, and a walk over the whole chain that names the first broken link.

use sqlx::Row;
use sqlx::any::AnyRow;
use strata_core::audit::{BrokenLink, ChainReport, GENESIS_HASH, format_time, truncate_time};
use strata_core::{Actor, AuditEvent, NewAuditEvent, Outcome, OutcomeResult, Target};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Result, Store, StoreError, Tx, parse_time};

const COLUMNS: &str = "seq, id, time, actor_kind, actor_id, actor_name, source_ip, user_agent, request_id, project, action, target_kind, target_id, target_name, result, status, details, prev_hash, hash";

/// Which events of a project to list. Empty strings match everything.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub project: String,
    pub instance: Option<String>,
    pub action: Option<String>,
    /// The actor's name.
    pub actor: Option<String>,
    /// Inclusive.
    pub since: Option<OffsetDateTime>,
    /// Exclusive.
    pub until: Option<OffsetDateTime>,
}

fn event_from_row(r: &AnyRow) -> Result<AuditEvent> {
    let id: String = r.try_get("id")?;
    let result: String = r.try_get("result")?;
    let status: i64 = r.try_get("status")?;
    let details: String = r.try_get("details")?;
    Ok(AuditEvent {
        seq: r.try_get("seq")?,
        id: Uuid::parse_str(&id).map_err(|e| StoreError::Corrupt(format!("id {id:?}: {e}")))?,
        time: parse_time(&r.try_get::<String, _>("time")?)?,
        actor: Actor {
            kind: r.try_get("actor_kind")?,
            id: r.try_get("actor_id")?,
            name: r.try_get("actor_name")?,
        },
        source_ip: r.try_get("source_ip")?,
        user_agent: r.try_get("user_agent")?,
        request_id: r.try_get("request_id")?,
        project: r.try_get("project")?,
        action: r.try_get("action")?,
        target: Target {
            kind: r.try_get("target_kind")?,
            id: r.try_get("target_id")?,
            name: r.try_get("target_name")?,
        },
        outcome: Outcome {
            result: OutcomeResult::parse(&result)
                .ok_or_else(|| StoreError::Corrupt(format!("result {result:?}")))?,
            status: u16::try_from(status)
                .map_err(|_| StoreError::Corrupt(format!("status {status}")))?,
        },
        details: serde_json::from_str(&details)
            .map_err(|e| StoreError::Corrupt(format!("details: {e}")))?,
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
    })
}

impl Tx {
    /// Appends an audit event to the chain, in this transaction: it commits
    /// with the change it records, or not at all. Logged (target `audit`)
    /// once the transaction commits.
    pub async fn append_audit(&mut self, new: NewAuditEvent) -> Result<AuditEvent> {
        // Taking the head first serialises appends: on PostgreSQL the UPDATE
        // holds the row lock until commit; on SQLite the transaction already
        // holds the write lock (BEGIN IMMEDIATE).
        let head = sqlx::query(
            "UPDATE audit_chain_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash",
        )
        .fetch_one(&mut *self.inner)
        .await?;
        let seq: i64 = head.try_get("seq")?;
        let prev_hash: String = head.try_get("hash")?;
        let mut e = AuditEvent {
            seq,
            id: Uuid::now_v7(),
            time: truncate_time(OffsetDateTime::now_utc()),
            actor: new.actor,
            source_ip: new.source_ip,
            user_agent: new.user_agent,
            request_id: new.request_id,
            project: new.project,
            action: new.action,
            target: new.target,
            outcome: new.outcome,
            details: new.details,
            prev_hash,
            hash: String::new(),
        };
        e.hash = e.compute_hash();
        sqlx::query("INSERT INTO audit_events (seq, id, time, actor_kind, actor_id, actor_name, source_ip, user_agent, request_id, project, action, target_kind, target_id, target_name, result, status, details, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)")
            .bind(e.seq)
            .bind(e.id.to_string())
            .bind(format_time(e.time))
            .bind(&e.actor.kind)
            .bind(&e.actor.id)
            .bind(&e.actor.name)
            .bind(e.source_ip.clone())
            .bind(e.user_agent.clone())
            .bind(e.request_id.clone())
            .bind(e.project.clone())
            .bind(&e.action)
            .bind(&e.target.kind)
            .bind(e.target.id.clone())
            .bind(&e.target.name)
            .bind(e.outcome.result.as_str())
            .bind(i64::from(e.outcome.status))
            .bind(e.details.to_string())
            .bind(&e.prev_hash)
            .bind(&e.hash)
            .execute(&mut *self.inner)
            .await?;
        sqlx::query("UPDATE audit_chain_head SET hash = $1 WHERE id = 1")
            .bind(&e.hash)
            .execute(&mut *self.inner)
            .await?;
        self.audits.push(e.clone());
        Ok(e)
    }
}

impl Store {
    /// Appends one audit event in a transaction of its own.
    pub async fn append_audit(&self, new: NewAuditEvent) -> Result<AuditEvent> {
        let mut tx = self.begin().await?;
        let e = tx.append_audit(new).await?;
        tx.commit().await?;
        Ok(e)
    }

    /// A project's audit events, newest first, with `seq` below `before`.
    pub async fn audit_events(
        &self,
        filter: &AuditFilter,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM audit_events WHERE project = $1 AND ($2 = '' OR action = $2) AND ($3 = '' OR actor_name = $3) AND ($4 = '' OR (target_kind = 'instance' AND target_name = $4)) AND ($5 = '' OR time >= $5) AND ($6 = '' OR time < $6) AND seq < $7 ORDER BY seq DESC LIMIT $8")))
            .bind(&filter.project)
            .bind(filter.action.clone().unwrap_or_default())
            .bind(filter.actor.clone().unwrap_or_default())
            .bind(filter.instance.clone().unwrap_or_default())
            .bind(filter.since.map(format_time).unwrap_or_default())
            .bind(filter.until.map(format_time).unwrap_or_default())
            .bind(before.unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// Every event (all projects and platform-wide ones), in chain order,
    /// with `seq` after `after`: for exports.
    pub async fn audit_chain(&self, after: i64, limit: u32) -> Result<Vec<AuditEvent>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2"
        )))
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// Walks the whole chain in order and checks, for every event, that its
    /// sequence number follows the previous one, that it names the previous
    /// hash, and that its own hash matches its contents; then that the chain
    /// head names the last event. Reports the first link that does not hold.
    pub async fn verify_audit_chain(&self) -> Result<ChainReport> {
        let mut expected_seq = 1_i64;
        let mut prev = GENESIS_HASH.to_owned();
        let mut checked = 0_i64;
        let broken = |seq: i64, id: Option<String>, reason: String, events: i64| ChainReport {
            ok: false,
            events,
            first_broken: Some(BrokenLink { seq, id, reason }),
        };
        loop {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM audit_events WHERE seq >= $1 ORDER BY seq LIMIT 500"
            )))
            .bind(expected_seq)
            .fetch_all(&self.pool)
            .await?;
            let done = rows.len() < 500;
            for r in &rows {
                let seq: i64 = r.try_get("seq")?;
                let id: Option<String> = r.try_get("id").ok();
                if seq != expected_seq {
                    return Ok(broken(
                        expected_seq,
                        None,
                        format!("event {expected_seq} is missing (the next one is {seq})"),
                        checked,
                    ));
                }
                let e = match event_from_row(r) {
                    Ok(e) => e,
                    Err(err) => {
                        return Ok(broken(seq, id, format!("unreadable: {err}"), checked));
                    }
                };
                if e.prev_hash != prev {
                    return Ok(broken(
                        seq,
                        id,
                        "prev_hash does not match the previous event's hash".into(),
                        checked,
                    ));
                }
                if e.compute_hash() != e.hash {
                    return Ok(broken(
                        seq,
                        id,
                        "hash does not match the event's contents (edited)".into(),
                        checked,
                    ));
                }
                checked += 1;
                expected_seq += 1;
                prev = e.hash;
            }
            if done {
                break;
            }
        }
        let head = sqlx::query("SELECT seq, hash FROM audit_chain_head WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        let (head_seq, head_hash): (i64, String) = match head {
            Some(h) => (h.try_get("seq")?, h.try_get("hash")?),
            None => {
                return Ok(broken(0, None, "the chain head is missing".into(), checked));
            }
        };
        if head_seq != expected_seq - 1 || head_hash != prev {
            return Ok(broken(
                expected_seq,
                None,
                format!(
                    "the chain head names event {head_seq}, the log ends at {}: events were removed from the end",
                    expected_seq - 1
                ),
                checked,
            ));
        }
        Ok(ChainReport {
            ok: true,
            events: checked,
            first_broken: None,
        })
    }
}
