//! A throw-away Postgres for tests (issue 16, docs/postgres.md): one cluster per run of the test
//! binary, started on first use, and a fresh database per test ([`database`]).
//!
//! The cluster is Debian's Postgres (`/usr/lib/postgresql/<version>/bin`, else `initdb` on
//! PATH): `initdb` in a temporary directory, then `pg_ctl start` on a free loopback port, TCP
//! only, no Unix socket. `initdb` refuses to run as root, so as root both run as the `postgres`
//! user Debian's package creates (else `nobody`), which owns the directory. The cluster is no
//! system service: a reaper process stops it (`pg_ctl stop -m immediate`) and removes its
//! directory once the [`Cluster`] is dropped or the test process is gone, however it ended (the
//! pipe the reaper reads closes with the process).
//!
//! With `WEFT_TEST_POSTGRES_URL` set (`postgres://user:password@host:port/db`, a role that may
//! create databases), tests use that server instead: each test's database is created there,
//! named `weft_test_<pid>_<n>_<random>`, and dropped at the end of the test.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use sqlx::Connection;

/// Names an existing server to use instead of a throw-away cluster.
pub const URL_VAR: &str = "WEFT_TEST_POSTGRES_URL";

/// How long a cluster may take to start accepting connections.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The cluster's superuser (`initdb -U`); it authenticates by `trust` on loopback only.
const SUPERUSER: &str = "weft";

/// A fresh, empty database for one test. Dropping it drops the database, closing any
/// connection still open to it.
#[derive(Debug)]
pub struct TestDb {
    /// `postgres://…/weft_test_…`, for sqlx (and later `weft serve --db`).
    pub url: String,
    name: String,
    admin: String,
}

/// Creates a database for one test in the shared server (started on first use).
pub async fn database() -> TestDb {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let admin = tokio::task::spawn_blocking(|| match server() {
        Ok(server) => server.admin_url(),
        Err(e) => panic!("{e}"),
    })
    .await
    .unwrap();
    let name = format!(
        "weft_test_{}_{}_{:08x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    );
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", redact(&admin)));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
    let _ = conn.close().await;
    TestDb {
        url: with_database(&admin, &name),
        name,
        admin,
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let drop_it = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // `drop` cannot await: a thread with a runtime of its own does it, whatever runtime (if
        // any) the test is in.
        let dropped = std::thread::spawn(move || -> Result<(), String> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&admin).await?;
                sqlx::query(&drop_it).execute(&mut conn).await?;
                conn.close().await
            })
            .map_err(|e| e.to_string())
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("cannot drop test database {}: {e}", self.name),
            Err(_) => eprintln!(
                "cannot drop test database {}: the thread panicked",
                self.name
            ),
        }
    }
}

/// Where test databases are made.
#[derive(Debug)]
enum Server {
    /// `WEFT_TEST_POSTGRES_URL`.
    Given(String),
    Cluster(Cluster),
}

impl Server {
    fn admin_url(&self) -> String {
        match self {
            Server::Given(url) => url.clone(),
            Server::Cluster(c) => c.admin_url(),
        }
    }
}

/// The server of this test run: the one `WEFT_TEST_POSTGRES_URL` names, or a cluster started on
/// first use and kept until the process ends (its reaper then stops and removes it).
fn server() -> &'static Result<Server, String> {
    static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
    SERVER.get_or_init(|| match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => Ok(Server::Given(url)),
        _ => Cluster::start().map(Server::Cluster),
    })
}

/// A Postgres cluster of its own in a temporary directory, stopped and removed when dropped.
#[derive(Debug)]
pub struct Cluster {
    port: u16,
    dir: PathBuf,
    /// Where `pg_ctl` is, and whom it runs as: to stop and start the server again.
    bin: PathBuf,
    user: Option<User>,
    /// Waits for its stdin to close (this value dropped, or the process gone), then stops the
    /// server and removes `dir`.
    reaper: Child,
}

impl Cluster {
    /// `initdb`, then `pg_ctl start` on a free loopback port; returns once the server accepts
    /// connections. The error says what is missing or what failed, with the server's log.
    pub fn start() -> Result<Self, String> {
        let bin = bin_dir()?;
        let user = if is_root() {
            Some(unprivileged_user()?)
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("weft-pg-")
            .tempdir()
            .map_err(|e| format!("cannot make a directory for Postgres: {e}"))?
            .keep();
        let reaper = Command::new("sh")
            .args([
                "-c",
                r#"cat >/dev/null; "$@" stop -D "$WEFT_PG_DIR/data" -m immediate -w -t 30 >/dev/null 2>&1; rm -rf "$WEFT_PG_DIR""#,
                "sh",
            ])
            .args(as_user(user.as_ref(), &bin.join("pg_ctl")))
            .env("WEFT_PG_DIR", &dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Out of the test's process group: a Ctrl-C must not stop it before it cleans up.
            .process_group(0)
            .spawn();
        let reaper = match reaper {
            Ok(r) => r,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(format!("cannot start sh: {e}"));
            }
        };
        // From here on, dropping `cluster` (on any error too) cleans up.
        let mut cluster = Cluster {
            port: 0,
            dir,
            bin: bin.clone(),
            user,
            reaper,
        };
        let user = cluster.user.as_ref();
        if let Some(user) = user {
            std::os::unix::fs::chown(&cluster.dir, Some(user.uid), Some(user.gid))
                .map_err(|e| format!("cannot give {:?} to {}: {e}", cluster.dir, user.name))?;
        }
        let data = cluster.dir.join("data");
        run(command(user, &bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--locale=C"])
            // Durability across an OS crash is no concern of a test cluster: no fsync (a killed
            // server still loses nothing it acknowledged; the OS has the pages).
            .arg("--no-sync"))?;
        // The port is free when asked for, but another process may take it before the server
        // binds it: try a few.
        let mut last = String::new();
        for _ in 0..4 {
            let port = free_port()?;
            cluster.port = port;
            match cluster.pg_ctl_start() {
                Ok(()) => {
                    wait_accepting(port)?;
                    return Ok(cluster);
                }
                Err(e) => last = e,
            }
        }
        Err(format!("Postgres did not start: {last}"))
    }

    /// The cluster's `postgres` database as its superuser (no password: `trust` on loopback).
    pub fn admin_url(&self) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/postgres", self.port)
    }

    /// The temporary directory holding the cluster (data and log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `pg_ctl start` on the cluster's port; the error has the server's log.
    fn pg_ctl_start(&self) -> Result<(), String> {
        let log = self.dir.join("log");
        run(command(self.user.as_ref(), &self.bin.join("pg_ctl"))
            .arg("start")
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t"])
            .arg(READY_TIMEOUT.as_secs().to_string())
            .arg("-o")
            .arg(format!(
                "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories='' \
                 -c fsync=off -c max_connections=300",
                self.port
            )))
        .map_err(|e| {
            format!(
                "{e}\nserver log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        })
    }

    /// Stops the server as an operator or a failure would (`pg_ctl stop -m fast`: open
    /// connections are cut), keeping its data.
    pub fn stop(&self) -> Result<(), String> {
        self.stop_mode("fast")
    }

    /// Stops the server as a crash would (`pg_ctl stop -m immediate`: every process quits at
    /// once, without a checkpoint; the next start recovers from the WAL), keeping its data.
    pub fn kill(&self) -> Result<(), String> {
        self.stop_mode("immediate")
    }

    fn stop_mode(&self, mode: &str) -> Result<(), String> {
        run(command(self.user.as_ref(), &self.bin.join("pg_ctl"))
            .arg("stop")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", mode, "-w"]))
    }

    /// Starts a stopped server again, on the same port and data.
    pub fn start_again(&self) -> Result<(), String> {
        self.pg_ctl_start()?;
        wait_accepting(self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // End of input for the reaper: it stops the server and removes the directory.
        drop(self.reaper.stdin.take());
        let _ = self.reaper.wait();
    }
}

/// Whether Postgres's server binaries are here (a [`Cluster`] can start).
pub fn installed() -> bool {
    bin_dir().is_ok()
}

/// Where `initdb` and `pg_ctl` are: Debian's newest `/usr/lib/postgresql/<version>/bin`, else
/// the directory of `initdb` on PATH.
fn bin_dir() -> Result<PathBuf, String> {
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .max();
    if let Some((_, bin)) = debian {
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
        .ok_or_else(|| {
            format!(
                "Postgres is not installed: README's test command (.ci/test) installs Debian's \
                 `postgresql`; or set {URL_VAR} to a server the tests may create databases in"
            )
        })
}

/// The account the cluster runs as when the tests run as root.
#[derive(Debug)]
struct User {
    name: String,
    uid: u32,
    gid: u32,
}

/// `postgres` (made by Debian's package), else `nobody`, from /etc/passwd.
fn unprivileged_user() -> Result<User, String> {
    let passwd = std::fs::read_to_string("/etc/passwd")
        .map_err(|e| format!("cannot read /etc/passwd: {e}"))?;
    let find = |want: &str| {
        passwd.lines().find_map(|line| {
            let mut f = line.split(':');
            let name = f.next()?;
            let (uid, gid) = (f.nth(1)?.parse().ok()?, f.next()?.parse().ok()?);
            (name == want).then(|| User {
                name: name.to_owned(),
                uid,
                gid,
            })
        })
    };
    find("postgres")
        .or_else(|| find("nobody"))
        .ok_or_else(|| "running as root, and neither `postgres` nor `nobody` exists".to_owned())
}

/// `program`, run as `user` if one is given (through `runuser`).
fn as_user(user: Option<&User>, program: &Path) -> Vec<std::ffi::OsString> {
    let mut argv = Vec::new();
    if let Some(user) = user {
        argv.extend(["runuser", "-u", &user.name, "--"].map(Into::into));
    }
    argv.push(program.as_os_str().to_owned());
    argv
}

fn command(user: Option<&User>, program: &Path) -> Command {
    let argv = as_user(user, program);
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).stdin(Stdio::null());
    cmd
}

/// Runs `cmd` to its end; its output in the error if it failed.
fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

/// Waits until the server's port takes a connection (`pg_ctl -w` has already seen it ready).
fn wait_accepting(port: u16) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + READY_TIMEOUT;
    while TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
        if Instant::now() > deadline {
            return Err(format!("Postgres does not accept connections on {addr}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// `url` naming database `name` instead of its own (query parameters kept).
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..]
        .find('/')
        .map_or(base.len(), |i| authority + i);
    let mut out = format!("{}/{name}", &base[..path]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// `url` without its password, for messages.
pub use weft_orchestrator::store::redact;

/// Whether the tests run as root (some tools refuse to, or run their workers as `nobody`).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|l| l.split_whitespace().next() == Some("0"))
        })
        .unwrap_or(false)
}
