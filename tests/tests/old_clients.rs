//! Old SQLite clients beside the migration. The old application version runs on whatever
//! SQLite its platform has (Debian 12: 3.40.1, its `sqlite3` shell and Python's `sqlite3`),
//! and a client refuses the whole file when one object in its schema does not parse. At
//! every step up and down, each old client opens the file, reads `deployment`, and, while
//! the legacy columns exist, writes them as the old version does; where the sync is on, the
//! write reaches the links through triggers that ran inside the old client.
//!
//! The clients: the distribution's `sqlite3` shell, and a shell on SQLite 3.37.0, the oldest
//! release this crate supports (`scripts/sqlite-3.37`; the test script installs the one and
//! builds the other).

#[cfg(feature = "runtime-tokio")]
mod sqlite {
    use std::path::PathBuf;
    use std::process::Command;

    use migration::{Migrator, MigratorTrait};
    use tests::legacy::{Legacy, LegacySchema};
    use tests::read::{self, LinkRow};
    use tests::{Backend, TestDb};
    use uuid::Uuid;

    const WORKSPACE: Uuid = Uuid::from_u128(0x51);
    const AGENT: Uuid = Uuid::from_u128(0xa1);

    /// An SQLite client the project did not build: its name and how to run SQL with it.
    struct OldClient {
        name: &'static str,
        program: PathBuf,
        version: &'static str,
    }

    impl OldClient {
        fn all() -> Vec<OldClient> {
            let built = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/sqlite-3.37/release/sqlite-3-37");
            vec![
                OldClient {
                    name: "the distribution's sqlite3 shell",
                    program: "sqlite3".into(),
                    version: "3.",
                },
                OldClient {
                    name: "SQLite 3.37.0",
                    program: built,
                    version: "3.37.0",
                },
            ]
        }

        /// Runs `sql` on `file`; its output, or the client's error.
        fn run(&self, file: &str, sql: &str) -> Result<String, String> {
            let mut command = Command::new(&self.program);
            if self.program.as_os_str() == "sqlite3" {
                command.args(["-bail", "-cmd", ".timeout 5000"]);
            }
            let output = command.args([file, sql]).output().unwrap_or_else(|e| {
                panic!(
                    "{} ({}) cannot run: {e}; scripts/test installs and builds the old \
                     clients",
                    self.name,
                    self.program.display()
                )
            });
            let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            match output.status.success() {
                true => Ok(stdout),
                false => Err(String::from_utf8_lossy(&output.stderr).into_owned()),
            }
        }

        fn check_version(&self) {
            let output = Command::new(&self.program)
                .arg("--version")
                .output()
                .unwrap_or_else(|e| panic!("{} cannot run: {e}", self.name));
            let version = String::from_utf8_lossy(&output.stdout);
            assert!(
                version.starts_with(self.version),
                "{}: {version}",
                self.name
            );
        }
    }

    /// Where the database is after a step, and what an old client may expect there.
    struct Step {
        name: &'static str,
        /// The triggers carry a legacy write to the links.
        synced: bool,
    }

    #[tokio::test]
    async fn old_clients_open_read_and_write_at_every_step() {
        let clients = OldClient::all();
        for client in &clients {
            client.check_version();
        }
        let db = TestDb::create(Backend::Sqlite, "lite_old_clients").await;
        let legacy = Legacy::build(&db, LegacySchema::HandBuilt).await;
        legacy.workspace(WORKSPACE).await;
        legacy.agent(AGENT, Some(WORKSPACE)).await;
        let entries = format!(r#"[{{"ref": "{AGENT}", "config": {{"n": 1}}}}]"#);
        legacy
            .deployment(Uuid::from_u128(0xd0), Some(WORKSPACE), None, "{}", &entries)
            .await;
        let file = db
            .url
            .trim_start_matches("sqlite://")
            .trim_end_matches("?mode=rwc")
            .to_owned();

        let mut written = 0u128;
        let mut visit = async |step: Step| {
            for client in &clients {
                written += 1;
                old_version_works(&db, client, &file, &step, Uuid::from_u128(0x5000 + written))
                    .await;
            }
        };
        visit(Step {
            name: "legacy",
            synced: false,
        })
        .await;
        let up = ["up 1", "up 2", "up 3", "up 4"];
        for (n, name) in up.into_iter().enumerate() {
            Migrator::up(&db.conn, Some(1)).await.expect(name);
            visit(Step {
                name,
                synced: n == 2,
            })
            .await;
        }
        let down = ["down to 3", "down to 2", "down to 1", "down to 0"];
        for (n, name) in down.into_iter().enumerate() {
            Migrator::down(&db.conn, Some(1)).await.expect(name);
            visit(Step {
                name,
                synced: n == 0,
            })
            .await;
        }
    }

    /// `client` opens the file, counts the deployments as we do, and, while the legacy
    /// columns exist, inserts deployment `id` as the old version does.
    async fn old_version_works(db: &TestDb, client: &OldClient, file: &str, step: &Step, id: Uuid) {
        let context = format!("{} after {}", client.name, step.name);
        let count = client
            .run(file, "SELECT count(*) FROM deployment")
            .unwrap_or_else(|e| panic!("{context}: cannot read deployment: {e}"));
        assert_eq!(
            count,
            read::count(db, "deployment").await.to_string(),
            "{context}"
        );
        let legacy_columns =
            (read::columns(db, "deployment").await.iter()).any(|c| c == "job_agents");
        if !legacy_columns {
            return;
        }
        let insert = format!(
            "INSERT INTO deployment (id, name, workspace_id, job_agent_config, job_agents) \
             VALUES ('{id}', 'old version {id}', '{WORKSPACE}', '{{}}', \
             '[{{\"ref\": \"{AGENT}\", \"config\": {{\"via\": \"old client\"}}}}, 42]')"
        );
        client
            .run(file, &insert)
            .unwrap_or_else(|e| panic!("{context}: the old version's write failed: {e}"));
        if step.synced {
            let link = LinkRow::new(id, AGENT, serde_json::json!({"via": "old client"}));
            let links = read::links(db).await;
            assert!(links.contains(&link), "{context}: no link: {links:?}");
        }
    }
}
