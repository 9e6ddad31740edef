//! Postgres as the second store (issue 16, docs/postgres.md): the throw-away server the tests
//! use (`pg.rs`).

use sqlx::Connection;

use crate::pg;

/// The database a test gets answers queries, and it is its own: what one test creates another
/// does not see, and it is gone once the test is done with it.
#[tokio::test]
async fn each_test_gets_a_database_of_its_own() {
    let (a, b) = (pg::database().await, pg::database().await);
    let mut on_a = sqlx::PgConnection::connect(&a.url).await.unwrap();
    let mut on_b = sqlx::PgConnection::connect(&b.url).await.unwrap();
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut on_a)
        .await
        .unwrap();
    assert_eq!(one, 1);

    sqlx::query("CREATE TABLE t (x BIGINT)")
        .execute(&mut on_a)
        .await
        .unwrap();
    sqlx::query("INSERT INTO t VALUES ($1)")
        .bind(7_i64)
        .execute(&mut on_a)
        .await
        .unwrap();
    let x: i64 = sqlx::query_scalar("SELECT x FROM t")
        .fetch_one(&mut on_a)
        .await
        .unwrap();
    assert_eq!(x, 7);
    let in_b: Option<String> = sqlx::query_scalar("SELECT to_regclass('t')::text")
        .fetch_one(&mut on_b)
        .await
        .unwrap();
    assert_eq!(in_b, None, "a table of another test's database is visible");

    // Dropping the database closes the connections still open to it.
    let name_a: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut on_a)
        .await
        .unwrap();
    drop(a);
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_database WHERE datname = $1")
        .bind(&name_a)
        .fetch_one(&mut on_b)
        .await
        .unwrap();
    assert_eq!(left, 0, "{name_a} was not dropped");
    assert!(sqlx::query("SELECT 1").execute(&mut on_a).await.is_err());
}

/// A cluster of its own (as a test that stops its database will need) is stopped and its
/// directory removed when dropped.
#[tokio::test]
async fn a_cluster_is_stopped_and_removed_when_dropped() {
    if std::env::var_os(pg::URL_VAR).is_some() && !pg::installed() {
        eprintln!(
            "skipped: {} is set and Postgres is not installed here",
            pg::URL_VAR
        );
        return;
    }
    let cluster = tokio::task::spawn_blocking(pg::Cluster::start)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    let url = cluster.admin_url();
    let dir = cluster.dir().to_owned();
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(one, 1);
    assert!(dir.join("data/PG_VERSION").is_file());

    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .unwrap();
    assert!(!dir.exists(), "{dir:?} is still there");
    assert!(sqlx::PgConnection::connect(&url).await.is_err());
}

#[test]
fn a_url_names_another_database() {
    for (url, want) in [
        ("postgres://u@h/postgres", "postgres://u@h/weft_1"),
        (
            "postgres://u:p@h:5432/db?sslmode=disable",
            "postgres://u:p@h:5432/weft_1?sslmode=disable",
        ),
        ("postgres://h", "postgres://h/weft_1"),
        (
            "postgres://h?application_name=x",
            "postgres://h/weft_1?application_name=x",
        ),
    ] {
        assert_eq!(pg::with_database(url, "weft_1"), want, "{url}");
    }
}

#[test]
fn a_url_is_shown_without_its_password() {
    for (url, want) in [
        (
            "postgres://u:secret@h:5432/db",
            "postgres://u:***@h:5432/db",
        ),
        ("postgres://u:p@ss@h/db", "postgres://u:***@h/db"),
        ("postgres://u@h/db", "postgres://u@h/db"),
        ("postgres://h/db?password=x", "postgres://h/db?password=x"),
    ] {
        assert_eq!(pg::redact(url), want, "{url}");
    }
}
