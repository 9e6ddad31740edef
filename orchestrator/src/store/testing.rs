//! Stores for unit tests in either dialect: SQLite by default, Postgres with
//! `WEFT_TEST_STORE=postgres` (a fresh database on the integration tests' throw-away cluster,
//! or on the server `WEFT_TEST_POSTGRES_URL` names; docs/postgres.md).

use super::Store;

/// The integration tests' Postgres for tests (`orchestrator/tests/it/pg.rs`), shared.
#[allow(dead_code, unreachable_pub)]
#[path = "../../tests/it/pg.rs"]
pub mod pg;

/// Whether tests run on Postgres (`WEFT_TEST_STORE=postgres`).
pub fn postgres() -> bool {
    std::env::var("WEFT_TEST_STORE").is_ok_and(|v| v == "postgres")
}

/// A store for one test and what keeps its database: SQLite at `sqlite` (a path or URL), or a
/// fresh Postgres database, dropped with the returned guard.
pub async fn store(sqlite: &str) -> (Store, Option<pg::TestDb>) {
    if postgres() {
        let db = pg::database().await;
        (Store::open(&db.url).await.unwrap(), Some(db))
    } else {
        (Store::open(sqlite).await.unwrap(), None)
    }
}
