//! The web view's login links and browser sessions (tables `web_login_links`, `web_sessions`,
//! migration 0011), by the SHA-256 hashes of their tokens (`web/session.rs` hashes them).
//!
//! Architecture invariant: not engine state. Written straight through the pool, outside the
//! journal and the fencing epoch, by whichever replica the browser reached: a standby redeems
//! a link the leader made, and a session outlives a restart and a takeover. A link is used up
//! by the one statement that deletes it (`DELETE … RETURNING`), so it works once across
//! replicas too.

use sqlx::Row;

use super::{Store, db_ms, ms, with_pool};
use crate::Error;

/// The two tables, bounded the same way.
#[derive(Debug, Clone, Copy)]
enum Table {
    Links,
    Sessions,
}

impl Store {
    /// Stores a login link until `expires_at_ms`; drops expired links, and the oldest beyond
    /// `max`.
    pub async fn add_login_link(
        &self,
        hash: &str,
        expires_at_ms: u64,
        now: u64,
        max: usize,
    ) -> Result<(), Error> {
        self.add_bounded(Table::Links, hash, None, expires_at_ms, now, max)
            .await
    }

    /// Uses up a login link: it is deleted whether or not it has expired. True if it existed
    /// and had not expired at `now`.
    pub async fn take_login_link(&self, hash: &str, now: u64) -> Result<bool, Error> {
        with_pool!(self, |pool| {
            let row =
                sqlx::query("DELETE FROM web_login_links WHERE hash = $1 RETURNING expires_at_ms")
                    .bind(hash)
                    .fetch_optional(pool)
                    .await?;
            Ok(row.is_some_and(|r| ms(r.get(0)) > now))
        })
    }

    /// Stores a session until `expires_at_ms`; drops expired sessions, and the oldest beyond
    /// `max`.
    pub async fn add_web_session(
        &self,
        hash: &str,
        csrf: &str,
        expires_at_ms: u64,
        now: u64,
        max: usize,
    ) -> Result<(), Error> {
        self.add_bounded(Table::Sessions, hash, Some(csrf), expires_at_ms, now, max)
            .await
    }

    /// Inserts a row into `table` (with its CSRF token, for a session) in one transaction with
    /// the deletion of the expired rows and of the oldest beyond `max` (counting the new one).
    async fn add_bounded(
        &self,
        table: Table,
        hash: &str,
        csrf: Option<&str>,
        expires_at_ms: u64,
        now: u64,
        max: usize,
    ) -> Result<(), Error> {
        let (name, insert) = match table {
            Table::Links => (
                "web_login_links",
                "INSERT INTO web_login_links (hash, expires_at_ms) VALUES ($1, $2)",
            ),
            Table::Sessions => (
                "web_sessions",
                "INSERT INTO web_sessions (hash, expires_at_ms, csrf) VALUES ($1, $2, $3)",
            ),
        };
        let expired = format!("DELETE FROM {name} WHERE expires_at_ms <= $1");
        let oldest = format!(
            "DELETE FROM {name} WHERE hash NOT IN \
             (SELECT hash FROM {name} ORDER BY expires_at_ms DESC, hash LIMIT $1)"
        );
        with_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(&expired)
                .bind(db_ms(now))
                .execute(&mut *tx)
                .await?;
            sqlx::query(&oldest)
                .bind(db_ms(max.saturating_sub(1) as u64))
                .execute(&mut *tx)
                .await?;
            let mut q = sqlx::query(insert).bind(hash).bind(db_ms(expires_at_ms));
            if let Some(csrf) = csrf {
                q = q.bind(csrf);
            }
            q.execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// The CSRF token of the session, if it exists and has not expired at `now`.
    pub async fn web_session_csrf(&self, hash: &str, now: u64) -> Result<Option<String>, Error> {
        with_pool!(self, |pool| {
            let row =
                sqlx::query("SELECT csrf FROM web_sessions WHERE hash = $1 AND expires_at_ms > $2")
                    .bind(hash)
                    .bind(db_ms(now))
                    .fetch_optional(pool)
                    .await?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    /// Ends a session (nothing if there is none).
    pub async fn end_web_session(&self, hash: &str) -> Result<(), Error> {
        with_pool!(self, |pool| {
            sqlx::query("DELETE FROM web_sessions WHERE hash = $1")
                .bind(hash)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// How many links and sessions are stored (tests).
    #[cfg(test)]
    pub(crate) async fn web_counts(&self) -> (i64, i64) {
        with_pool!(self, |pool| {
            let links = sqlx::query("SELECT COUNT(*) FROM web_login_links")
                .fetch_one(pool)
                .await
                .unwrap()
                .get(0);
            let sessions = sqlx::query("SELECT COUNT(*) FROM web_sessions")
                .fetch_one(pool)
                .await
                .unwrap()
                .get(0);
            (links, sessions)
        })
    }
}
