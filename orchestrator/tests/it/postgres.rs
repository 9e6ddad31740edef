//! Postgres as the second store (issue 16, docs/postgres.md): the throw-away server the tests
//! use (`pg.rs`), and the Postgres migrations kept equal to the SQLite ones.

use std::collections::BTreeSet;

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::{Connection, Row};

use crate::harness::WAIT;
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

/// Columns Postgres has that SQLite has implicitly: `rowid`, which the store orders edges by.
const POSTGRES_ONLY: [&str; 2] = ["column edges.rowid bigint not null", "identity edges.rowid"];

/// Every SQLite migration has its Postgres twin, under the same name.
#[test]
fn migrations_come_in_pairs() {
    let names = |dir: &str| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{dir:?}: {e}"))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(
        names("migrations"),
        names("migrations-postgres"),
        "each migration in orchestrator/migrations/ needs its twin in \
         orchestrator/migrations-postgres/ (docs/postgres.md)"
    );
}

/// The Postgres migrations make the schema the SQLite ones make: the same tables, columns (with
/// the types the store reads them as, nullability and defaults), identity columns, keys and
/// indexes. A migration added to one directory and not the other fails here.
#[tokio::test]
async fn the_postgres_schema_is_the_sqlite_schema() {
    let db = pg::database().await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    sqlx::migrate!("./migrations-postgres")
        .run(&pool)
        .await
        .unwrap();
    let mut postgres = postgres_schema(&pool).await;
    pool.close().await;
    for extra in POSTGRES_ONLY {
        assert!(postgres.remove(extra), "no `{extra}` in Postgres");
    }
    let sqlite = sqlite_schema().await;
    let only = |a: &BTreeSet<String>, b: &BTreeSet<String>| {
        a.difference(b).cloned().collect::<Vec<_>>().join("\n")
    };
    assert!(
        sqlite == postgres,
        "the schemas of orchestrator/migrations/ and orchestrator/migrations-postgres/ differ \
         (docs/postgres.md)\nonly in SQLite:\n{}\nonly in Postgres:\n{}",
        only(&sqlite, &postgres),
        only(&postgres, &sqlite)
    );
    // Not a vacuous pass.
    assert!(
        sqlite.contains("column events.body text not null"),
        "{sqlite:#?}"
    );
}

/// SQLite's declared column types, as the Postgres types that decode to the same Rust types.
fn postgres_type(sqlite: &str) -> String {
    match sqlite.to_ascii_uppercase().as_str() {
        "INTEGER" => "bigint".into(),
        "TEXT" => "text".into(),
        "BLOB" => "bytea".into(),
        "REAL" => "double precision".into(),
        other => format!("no Postgres type known for SQLite's {other}: add it here"),
    }
}

/// A default as both write it: Postgres adds a cast to a literal (`'[]'::text`).
fn default_text(d: &str) -> String {
    d.split("::").next().unwrap_or(d).to_owned()
}

/// One line per table, column, identity column, key and index, in Postgres's words.
async fn sqlite_schema() -> BTreeSet<String> {
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect("sqlite::memory:")
        .await
        .unwrap();
    sqlx::migrate!("./migrations").run(&pool).await.unwrap();
    let mut out = BTreeSet::new();
    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for (table, sql) in tables {
        out.insert(format!("table {table}"));
        let columns = sqlx::query(
            "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?) ORDER BY pk",
        )
        .bind(&table)
        .fetch_all(&pool)
        .await
        .unwrap();
        let mut key = Vec::new();
        for c in &columns {
            let name: String = c.get("name");
            let pk: i64 = c.get("pk");
            let not_null = c.get::<i64, _>("notnull") != 0 || pk > 0;
            let mut line = format!(
                "column {table}.{name} {}",
                postgres_type(c.get::<&str, _>("type"))
            );
            if not_null {
                line.push_str(" not null");
            }
            if let Some(d) = c.get::<Option<String>, _>("dflt_value") {
                line.push_str(&format!(" default {}", default_text(&d)));
            }
            out.insert(line);
            if pk > 0 {
                key.push(name);
            }
        }
        if key.len() == 1 && sql.to_ascii_uppercase().contains("AUTOINCREMENT") {
            out.insert(format!("identity {table}.{}", key[0]));
        }
        out.insert(format!("primary key {table} ({})", key.join(", ")));
        let fks: Vec<(String, String, String)> =
            sqlx::query_as("SELECT \"from\", \"table\", \"to\" FROM pragma_foreign_key_list(?)")
                .bind(&table)
                .fetch_all(&pool)
                .await
                .unwrap();
        for (from, to_table, to) in fks {
            out.insert(format!("foreign key {table}.{from} -> {to_table}.{to}"));
        }
        let indexes: Vec<(String, i64)> = sqlx::query_as(
            "SELECT name, partial FROM pragma_index_list(?) WHERE origin = 'c' ORDER BY name",
        )
        .bind(&table)
        .fetch_all(&pool)
        .await
        .unwrap();
        for (index, partial) in indexes {
            let columns: Vec<String> =
                sqlx::query_scalar("SELECT name FROM pragma_index_info(?) ORDER BY seqno")
                    .bind(&index)
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            out.insert(format!(
                "index {index} on {table} ({}){}",
                columns.join(", "),
                if partial != 0 { " partial" } else { "" }
            ));
        }
    }
    pool.close().await;
    out
}

/// The same lines from Postgres's catalog (the current schema).
async fn postgres_schema(pool: &sqlx::PgPool) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let columns = sqlx::query(
        "SELECT table_name::text AS t, column_name::text AS c, data_type::text AS ty, \
         is_nullable = 'NO' AS not_null, column_default::text AS d, is_identity = 'YES' AS id \
         FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for c in columns {
        let (table, name): (String, String) = (c.get("t"), c.get("c"));
        out.insert(format!("table {table}"));
        let mut line = format!("column {table}.{name} {}", c.get::<String, _>("ty"));
        if c.get::<bool, _>("not_null") {
            line.push_str(" not null");
        }
        if let Some(d) = c.get::<Option<String>, _>("d") {
            line.push_str(&format!(" default {}", default_text(&d)));
        }
        out.insert(line);
        if c.get::<bool, _>("id") {
            out.insert(format!("identity {table}.{name}"));
        }
    }
    let keys: Vec<(String, String)> = sqlx::query_as(
        "SELECT t.relname::text, string_agg(a.attname::text, ', ' ORDER BY k.ord) \
         FROM pg_constraint x \
         JOIN pg_class t ON t.oid = x.conrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace \
         CROSS JOIN LATERAL unnest(x.conkey) WITH ORDINALITY AS k(attnum, ord) \
         JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum \
         WHERE x.contype = 'p' AND n.nspname = current_schema() \
         AND t.relname <> '_sqlx_migrations' \
         GROUP BY t.relname",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for (table, columns) in keys {
        out.insert(format!("primary key {table} ({columns})"));
    }
    let fks: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT t.relname::text, a.attname::text, r.relname::text, ra.attname::text \
         FROM pg_constraint x \
         JOIN pg_class t ON t.oid = x.conrelid \
         JOIN pg_class r ON r.oid = x.confrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace \
         CROSS JOIN LATERAL unnest(x.conkey, x.confkey) AS k(attnum, refnum) \
         JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum \
         JOIN pg_attribute ra ON ra.attrelid = r.oid AND ra.attnum = k.refnum \
         WHERE x.contype = 'f' AND n.nspname = current_schema()",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for (table, from, to_table, to) in fks {
        out.insert(format!("foreign key {table}.{from} -> {to_table}.{to}"));
    }
    let indexes: Vec<(String, String, String, bool)> = sqlx::query_as(
        "SELECT i.relname::text, t.relname::text, \
         string_agg(a.attname::text, ', ' ORDER BY k.ord), x.indpred IS NOT NULL \
         FROM pg_index x \
         JOIN pg_class i ON i.oid = x.indexrelid \
         JOIN pg_class t ON t.oid = x.indrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace \
         CROSS JOIN LATERAL unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
         JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum \
         WHERE NOT x.indisprimary AND n.nspname = current_schema() \
         AND t.relname <> '_sqlx_migrations' \
         GROUP BY i.relname, t.relname, x.indpred IS NOT NULL",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for (index, table, columns, partial) in indexes {
        out.insert(format!(
            "index {index} on {table} ({columns}){}",
            if partial { " partial" } else { "" }
        ));
    }
    out
}

/// `weft serve` as a child process on `db`, with its data in `dir`; returns once it answers.
async fn serve(db: &str, dir: &std::path::Path, port: u16) -> tokio::process::Child {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_weft"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--db",
            db,
        ])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--api-token", "test-token", "--heartbeat-ms", "200"])
        .args(["--lost-grace-ms", "5000"])
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while http
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .is_err()
    {
        assert!(tokio::time::Instant::now() < deadline, "weft did not start");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    child
}

/// Calls the server with the test's API token; the JSON answer.
async fn call(port: u16, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let mut req = reqwest::Client::new()
        .request(method, format!("http://127.0.0.1:{port}{path}"))
        .bearer_auth("test-token");
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    resp.json().await.unwrap()
}

/// Waits until request `id` satisfies `done`; its view.
async fn wait_request(port: u16, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let v = call(
            port,
            reqwest::Method::GET,
            &format!("/v1/requests/{id}"),
            None,
        )
        .await;
        if done(&v) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never {what}: {v:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Postgres stops while a request runs: `weft serve` stops on its own (fail-stop) and exits
/// non-zero saying why. Once Postgres is back, `weft serve` started again resumes the request
/// (the agent, still running, delivers the result it kept) and it completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_gone_stops_the_server_and_a_restart_resumes() {
    if !pg::installed() {
        eprintln!("skipped: Postgres is not installed here (the test stops its own cluster)");
        return;
    }
    let cluster = tokio::task::spawn_blocking(pg::Cluster::start)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    let db = cluster.admin_url();
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = serve(&db, dir.path(), port).await;
    let device = call(
        port,
        reqwest::Method::POST,
        "/v1/devices",
        Some(json!({"name": "laptop", "kind": "laptop"})),
    )
    .await;
    let mut agent = tokio::process::Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["agent", "--server", &format!("http://127.0.0.1:{port}")])
        .args(["--name", "laptop", "--kind", "laptop"])
        .arg("--workdir")
        .arg(dir.path().join("work"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env("WEFT_DEVICE_TOKEN", device["token"].as_str().unwrap())
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let v = call(
        port,
        reqwest::Method::POST,
        "/v1/requests",
        Some(json!({"text": r#"on laptop run "sleep 2; echo back""#})),
    )
    .await;
    let id = v["id"].as_str().unwrap().to_owned();
    wait_request(port, &id, "running", |v| {
        v["tasks"][0]["status"] == "running"
    })
    .await;

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.stop().unwrap_or_else(|e| panic!("{e}"));
        cluster
    })
    .await
    .unwrap();
    // The result arrives while the database is gone: its commit fails, and the server stops
    // rather than acknowledge it — or, first, the leader's lease runs out unrenewed (a standby
    // could take over by then; docs/replicas.md), which stops it the same way.
    let out = tokio::time::timeout(Duration::from_secs(30), server.wait_with_output())
        .await
        .expect("weft kept running without its database")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}: {stderr}", out.status);
    assert!(
        stderr.contains("weft: stopped because a store write failed (fail-stop")
            || stderr.contains("weft: the leader's lease ran out without being renewed"),
        "{stderr}"
    );

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.start_again().unwrap_or_else(|e| panic!("{e}"));
        cluster
    })
    .await
    .unwrap();
    let mut server = serve(&db, dir.path(), port).await;
    let v = wait_request(port, &id, "done", |v| v["status"] == "succeeded").await;
    assert_eq!(v["tasks"][0]["output"]["data"]["stdout"], "back\n", "{v:#}");
    assert_eq!(
        v["tasks"][0]["attempts"].as_array().unwrap().len(),
        1,
        "the attempt was resumed, not redone: {v:#}"
    );
    let _ = agent.kill().await;
    let _ = server.kill().await;
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .unwrap();
}

/// `weft serve` on a Postgres that does not answer exits 2, naming the URL without its password
/// and saying why.
#[tokio::test]
async fn weft_serve_names_an_unreachable_database_without_its_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["serve", "--listen", "127.0.0.1:0", "--api-token", "t"])
        .arg("--db")
        .arg(format!("postgres://weft:s3cret@127.0.0.1:{port}/weft"))
        .arg("--data-dir")
        .arg(dir.path())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot reach the database postgres://weft:***@127.0.0.1:{port}/weft"
        )) && stderr.contains("Connection refused"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
}
