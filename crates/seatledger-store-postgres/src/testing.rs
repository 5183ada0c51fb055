//! A PostgreSQL server for tests, found or started, with a fresh database
//! for each test. Used by this crate's tests and by other crates' tests.
//!
//! [`fresh_database`] looks, in order, for:
//! 1. `initdb` and `pg_ctl` (on `PATH`, else in `/usr/lib/postgresql/*/bin`):
//!    it starts one private server per test process in a temporary
//!    directory, on a free 127.0.0.1 port, with trust authentication for the
//!    `postgres` superuser. A watchdog process stops it and removes the
//!    directory when the test process exits, however it exits. As root,
//!    `initdb` and `pg_ctl` run as the `postgres` user (PostgreSQL refuses
//!    to run as root).
//! 2. `SEATLEDGER_TEST_POSTGRES_URL` (`postgres://user:password@host:port/db`):
//!    a server someone else runs; the user needs CREATEDB. Each database
//!    made on it is dropped when its [`TestDatabase`] is.
//! 3. Neither: a loud banner on stderr and `None`, so that the test returns
//!    early, or a panic when `CI=true`, so that CI never passes by skipping.
//!
//! The machine's own server on port 5432 is never used implicitly.
//!
//! Setup failures panic with what went wrong: these are test helpers.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use tokio_postgres::NoTls;

/// The variable naming an existing server to test against.
pub const URL_VARIABLE: &str = "SEATLEDGER_TEST_POSTGRES_URL";

/// A role that the private test servers authenticate by password
/// (SCRAM-SHA-256 over TCP) rather than trust, for tests of bad credentials.
/// Create it with a password first: `CREATE ROLE … LOGIN PASSWORD '…'`.
pub const PASSWORD_ROLE: &str = "seatledger_password_test";

/// Skip the rest of a test when there is no PostgreSQL server to test
/// against: `let db = seatledger_store_postgres::fresh_database_or_skip!("name");`.
#[macro_export]
macro_rules! fresh_database_or_skip {
    ($hint:expr) => {
        match $crate::testing::fresh_database($hint).await {
            Some(db) => db,
            None => return,
        }
    };
}

/// One empty database made for one test, and the server it lives on.
#[derive(Debug)]
pub struct TestDatabase {
    url: String,
    name: String,
    /// For a database on someone else's server: where to drop it from.
    external_admin_url: Option<String>,
}

impl TestDatabase {
    /// The database's URL, for [`PostgresStore::connect`](crate::PostgresStore::connect).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the database lives on a private server this process started
    /// (where the user is the superuser and [`PASSWORD_ROLE`] exists in
    /// `pg_hba.conf`), rather than on `SEATLEDGER_TEST_POSTGRES_URL`.
    pub fn is_private_server(&self) -> bool {
        self.external_admin_url.is_none()
    }

    /// A plain client on this database (superuser on a private server), for
    /// tests that look behind the store's back.
    ///
    /// # Panics
    /// When it cannot connect.
    pub async fn admin(&self) -> tokio_postgres::Client {
        connect_admin(&self.url).await
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // A private server is removed whole when the process exits; on
        // someone else's server, clean up after ourselves.
        let Some(admin_url) = self.external_admin_url.take() else { return };
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async move {
                let (client, connection) = tokio_postgres::connect(&admin_url, NoTls).await.ok()?;
                tokio::spawn(connection);
                client.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await.ok()
            })
        });
        if !matches!(dropped.join(), Ok(Some(()))) {
            eprintln!("note: could not drop test database {} on {URL_VARIABLE}", self.name);
        }
    }
}

/// A fresh, empty, UTF-8 database for one test, or `None` (after a banner on
/// stderr) when no server can be had. See the module documentation.
///
/// # Panics
/// When `CI=true` and there is no server, or when a server was found but a
/// database could not be made on it.
pub async fn fresh_database(name_hint: &str) -> Option<TestDatabase> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = format!("sl_{}_{}_{}", sanitize(name_hint), std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
    if find_tools().is_some() {
        let server = tokio::task::spawn_blocking(shared_server)
            .await
            .unwrap_or_else(|e| panic!("starting the test PostgreSQL server panicked: {e}"));
        let server = server.as_ref().unwrap_or_else(|e| panic!("starting the test PostgreSQL server failed: {e}"));
        create_database(&server.url("postgres"), &name).await;
        return Some(TestDatabase { url: server.url(&name), name, external_admin_url: None });
    }
    if let Some(url) = std::env::var(URL_VARIABLE).ok().filter(|u| !u.trim().is_empty()) {
        let db_url = with_database(&url, &name)
            .unwrap_or_else(|| panic!("{URL_VARIABLE} must be a postgres://user@host:port/database URL"));
        create_database(&url, &name).await;
        return Some(TestDatabase { url: db_url, name, external_admin_url: Some(url) });
    }
    skip("no initdb/pg_ctl and SEATLEDGER_TEST_POSTGRES_URL unset");
    None
}

/// A PostgreSQL server of a test's own, that it may stop and start again
/// (for tests of a server going away). Needs `initdb` and `pg_ctl`; stopped
/// and removed on drop, or by a watchdog if the process dies first.
#[derive(Debug)]
pub struct TestServer {
    server: LocalServer,
}

impl TestServer {
    /// Start a private server, or `None` (after a banner) when `initdb` and
    /// `pg_ctl` are missing.
    ///
    /// # Panics
    /// When `CI=true` and the tools are missing, or when the server fails to start.
    pub async fn start(name_hint: &str) -> Option<TestServer> {
        let Some(tools) = find_tools() else {
            skip("a dedicated server needs initdb and pg_ctl, which were not found");
            return None;
        };
        let hint = sanitize(name_hint);
        let server = tokio::task::spawn_blocking(move || LocalServer::start_new(tools, &hint))
            .await
            .unwrap_or_else(|e| panic!("starting a dedicated PostgreSQL server panicked: {e}"))
            .unwrap_or_else(|e| panic!("starting a dedicated PostgreSQL server failed: {e}"));
        Some(TestServer { server })
    }

    /// Make an empty database on this server and return its URL.
    pub async fn create_database(&self, name: &str) -> String {
        create_database(&self.server.url("postgres"), name).await;
        self.server.url(name)
    }

    /// The URL of a database on this server.
    pub fn url(&self, database: &str) -> String {
        self.server.url(database)
    }

    /// The port the server listens on (the same after a restart).
    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// Stop the server (`pg_ctl stop -m fast`: connections are terminated).
    pub async fn stop(&self) {
        let server = self.server.clone();
        tokio::task::spawn_blocking(move || server.stop("fast"))
            .await
            .unwrap_or_else(|e| panic!("stopping the test server panicked: {e}"))
            .unwrap_or_else(|e| panic!("stopping the test server failed: {e}"));
    }

    /// Start the server again after [`TestServer::stop`], on the same port.
    pub async fn restart(&self) {
        let server = self.server.clone();
        tokio::task::spawn_blocking(move || server.start())
            .await
            .unwrap_or_else(|e| panic!("restarting the test server panicked: {e}"))
            .unwrap_or_else(|e| panic!("restarting the test server failed: {e}"));
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.server.stop("immediate");
        let _ = std::fs::remove_dir_all(&self.server.dir);
    }
}

fn skip(why: &str) {
    let line = "=".repeat(78);
    let message = format!(
        "\n{line}\n  PostgreSQL tests SKIPPED: {why}.\n  Install PostgreSQL (initdb, pg_ctl) or set \
         {URL_VARIABLE}=postgres://user@host:port/db\n{line}\n"
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{message}  (CI=true: refusing to pass by skipping)");
    }
    let _ = std::io::stderr().write_all(message.as_bytes());
}

fn sanitize(hint: &str) -> String {
    let mut out: String =
        hint.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).take(24).collect();
    if out.is_empty() {
        out.push('t');
    }
    out
}

async fn connect_admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to the test server at {}: {e}", crate::connect::redact_url(url)));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

async fn create_database(admin_url: &str, name: &str) {
    let client = connect_admin(admin_url).await;
    client
        .batch_execute(&format!(
            "CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
        ))
        .await
        .unwrap_or_else(|e| panic!("creating test database {name}: {}", crate::connect::describe(&e)));
}

/// The same server URL naming another database.
fn with_database(url: &str, database: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "postgres" && scheme != "postgresql" {
        return None;
    }
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let query = tail.find('?').map_or("", |at| &tail[at..]);
    Some(format!("{scheme}://{authority}/{database}{query}"))
}

#[derive(Debug, Clone)]
struct Tools {
    initdb: PathBuf,
    pg_ctl: PathBuf,
}

fn find_tools() -> Option<Tools> {
    let both = |dir: &Path| {
        let (initdb, pg_ctl) = (dir.join("initdb"), dir.join("pg_ctl"));
        (initdb.is_file() && pg_ctl.is_file()).then_some(Tools { initdb, pg_ctl })
    };
    if let Some(path) = std::env::var_os("PATH") {
        if let Some(tools) = std::env::split_paths(&path).find_map(|dir| both(&dir)) {
            return Some(tools);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort();
    versions.into_iter().rev().find_map(|(_, bin)| both(&bin))
}

fn shared_server() -> &'static Result<LocalServer, String> {
    static SERVER: OnceLock<Result<LocalServer, String>> = OnceLock::new();
    SERVER.get_or_init(|| {
        let tools = find_tools().ok_or_else(|| "initdb and pg_ctl disappeared".to_owned())?;
        LocalServer::start_new(tools, "shared")
    })
}

/// A server in a temporary directory, run by `pg_ctl`.
#[derive(Debug, Clone)]
struct LocalServer {
    tools: Tools,
    dir: PathBuf,
    data: PathBuf,
    port: u16,
    /// Who runs the server when this process is root.
    user: Option<String>,
}

impl LocalServer {
    fn start_new(tools: Tools, hint: &str) -> Result<LocalServer, String> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "seatledger-pg-{hint}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let user = server_user()?;
        if let Some(user) = &user {
            run(Command::new("chown").arg("-R").arg(user).arg(&dir), "chown of the server directory")?;
        }
        let mut server = LocalServer { tools, data: dir.join("data"), dir, port: 0, user };
        server.watchdog()?;
        server.initdb()?;
        let mut last_error = String::new();
        for _ in 0..5 {
            server.port = free_port()?;
            match server.start() {
                Ok(()) => return Ok(server),
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    fn command(&self, tool: &Path) -> Command {
        match &self.user {
            Some(user) => {
                let mut command = Command::new(runuser());
                command.arg("-u").arg(user).arg("--").arg(tool);
                command
            }
            None => Command::new(tool),
        }
    }

    fn initdb(&self) -> Result<(), String> {
        let mut command = self.command(&self.tools.initdb);
        command.arg("-D").arg(&self.data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        run(&mut command, "initdb")?;
        // Password authentication for one role, so that bad credentials can
        // be tested; trust for everyone else.
        let hba = self.data.join("pg_hba.conf");
        let rest = std::fs::read_to_string(&hba).map_err(|e| format!("reading {}: {e}", hba.display()))?;
        let text = format!("host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n{rest}");
        std::fs::write(&hba, text).map_err(|e| format!("writing {}: {e}", hba.display()))
    }

    fn start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=300",
            self.port,
            self.dir.display()
        );
        let mut command = self.command(&self.tools.pg_ctl);
        command
            .arg("start")
            .args(["-w", "-t", "60", "-D"])
            .arg(&self.data)
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .arg("-o")
            .arg(options);
        run(&mut command, "pg_ctl start").map_err(|e| {
            let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            format!("{e}\nserver log (last lines, newest first):\n{}", tail.join("\n"))
        })
    }

    fn stop(&self, mode: &str) -> Result<(), String> {
        let mut command = self.command(&self.tools.pg_ctl);
        command.arg("stop").args(["-w", "-t", "60", "-m", mode, "-D"]).arg(&self.data);
        run(&mut command, "pg_ctl stop")
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A process of its own (its own process group, so Ctrl-C on the tests
    /// does not reach it) that waits for this process to end, then stops
    /// the server and removes its directory.
    fn watchdog(&self) -> Result<(), String> {
        let script = r#"
            while kill -0 "$0" 2>/dev/null; do sleep 1; done
            if [ -n "$4" ]; then "$5" -u "$4" -- "$2" stop -D "$3" -m immediate -s
            else "$2" stop -D "$3" -m immediate -s; fi
            rm -rf "$1"
        "#;
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(script)
            .arg(std::process::id().to_string())
            .arg(&self.dir)
            .arg(&self.tools.pg_ctl)
            .arg(&self.data)
            .arg(self.user.as_deref().unwrap_or(""))
            .arg(runuser())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt as _;
            command.process_group(0);
        }
        command.spawn().map(drop).map_err(|e| format!("starting the server's watchdog: {e}"))
    }
}

/// Run a setup command, with its output in the error when it fails.
fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let output = command.stdin(Stdio::null()).output().map_err(|e| format!("running {what}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

/// PostgreSQL refuses to run as root: as root, run it as `postgres` (or `nobody`).
fn server_user() -> Result<Option<String>, String> {
    let uid = Command::new("id").arg("-u").output().map_err(|e| format!("running id -u: {e}"))?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Ok(None);
    }
    for user in ["postgres", "nobody"] {
        if Command::new("id").arg("-u").arg(user).output().is_ok_and(|o| o.status.success()) {
            return Ok(Some(user.to_owned()));
        }
    }
    Err("running as root, and neither a postgres nor a nobody user exists to run the server as".to_owned())
}

fn runuser() -> PathBuf {
    ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("runuser"))
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(|e| format!("finding a free port: {e}"))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| format!("finding a free port: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_get_another_database() {
        assert_eq!(
            with_database("postgres://u:p@h:5/x?sslmode=disable", "y").unwrap(),
            "postgres://u:p@h:5/y?sslmode=disable"
        );
        assert_eq!(with_database("postgresql://u@h", "y").unwrap(), "postgresql://u@h/y");
        assert!(with_database("host=h user=u", "y").is_none());
        assert_eq!(sanitize("Fault: kill/writer!"), "fault__kill_writer_");
    }
}
