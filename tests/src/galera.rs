//! The three-node MariaDB Galera cluster that `scripts/galera` starts: a fresh database per
//! test, created on one node and replicated to the others, and a handle on each node.
//!
//! `TEST_GALERA_URLS` overrides the nodes (comma-separated server URLs; default the local
//! cluster on ports 4306-4308). A node that cannot be reached fails the test.

use std::path::PathBuf;

use sea_orm::{ConnectOptions, Database, DatabaseConnection};

use crate::server::Server;
use crate::{Backend, TestDb, database_name};

const DEFAULT_NODES: &str =
    "mysql://root@127.0.0.1:4306,mysql://root@127.0.0.1:4307,mysql://root@127.0.0.1:4308";

/// One test's database on the cluster, as seen from each node.
pub struct GaleraDb {
    /// The same database on node 1, 2 and 3, in that order.
    pub nodes: Vec<TestDb>,
}

impl GaleraDb {
    /// Drops any database left by an earlier run of this test and creates it anew (on the
    /// first node; DDL replicates in total order, so every node then has it).
    pub async fn create(test: &str) -> GaleraDb {
        let name = database_name(test);
        let servers = node_servers();
        let first = Server::new(Backend::MariaDb, &servers[0]);
        if let Err(error) = first.recreate(&name, None).await {
            panic!("cannot make {name} on the first Galera node: {error}");
        }
        let mut nodes = vec![];
        for server in servers {
            // The other nodes apply the `CREATE DATABASE` a moment later: a synced read
            // waits for it.
            let synced = synced_connection(&server).await;
            crate::exec(&synced, "SELECT 1 FROM information_schema.SCHEMATA").await;
            let url = format!("{server}/{name}");
            let conn = synced_connection(&url).await;
            nodes.push(TestDb {
                backend: Backend::MariaDb,
                url,
                conn,
            });
        }
        GaleraDb { nodes }
    }

    /// The node the migration runs on.
    pub fn first(&self) -> &TestDb {
        &self.nodes[0]
    }
}

/// The server URL of each node.
pub fn node_servers() -> Vec<String> {
    let urls = std::env::var("TEST_GALERA_URLS").unwrap_or_else(|_| DEFAULT_NODES.to_owned());
    let servers: Vec<String> = urls.split(',').map(|u| u.trim().to_owned()).collect();
    assert_eq!(
        servers.len(),
        3,
        "TEST_GALERA_URLS names three nodes: {urls}"
    );
    servers
}

/// A connection whose reads wait until the node has applied every write committed anywhere
/// in the cluster before them (`wsrep_sync_wait`), so comparing nodes compares committed
/// states, not replication lag.
pub async fn synced_connection(url: &str) -> DatabaseConnection {
    // One connection in the pool, so the session setting holds for every statement.
    let mut options = ConnectOptions::new(url);
    options.max_connections(1).min_connections(1);
    let conn = match Database::connect(options).await {
        Ok(conn) => conn,
        Err(error) => panic!("cannot reach the Galera node at {url}: {error}"),
    };
    crate::exec(&conn, "SET SESSION wsrep_sync_wait = 1").await;
    conn
}

/// Kills node `n` (1-3) the way a crash would (`SIGKILL`).
pub fn kill_node(n: usize) {
    let pid_file = format!("{}/node{n}.launch.pid", galera_base());
    let pid = std::fs::read_to_string(&pid_file)
        .unwrap_or_else(|e| panic!("no pid file {pid_file}: {e}"));
    let status = std::process::Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill node {n} (pid {})", pid.trim());
}

/// Starts whatever node of the cluster is down and waits until all three are synced
/// (`scripts/galera start`, bounded by its own timeout).
pub fn start_cluster() {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/galera");
    let output = std::process::Command::new(&script)
        .arg("start")
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    assert!(
        output.status.success(),
        "scripts/galera start failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn galera_base() -> String {
    std::env::var("GALERA_BASE").unwrap_or_else(|_| "/var/lib/mysql-galera".to_owned())
}
