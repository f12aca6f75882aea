//! The migration command as operators run it.

use std::path::Path;
use std::process::{Command, Output};

fn migration(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_migration"))
        .args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("RUST_LOG")
        .output()
        .expect("run the migration binary")
}

fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn without_a_url_it_migrates_a_sqlite_file_in_the_current_directory() {
    let dir = scratch_dir("cli_default_sqlite");
    let up = migration(&dir, &["up"]);
    let stdout = String::from_utf8_lossy(&up.stdout);
    let stderr = String::from_utf8_lossy(&up.stderr);
    assert!(up.status.success(), "{stdout}\n{stderr}");
    let first = stdout.lines().next().unwrap_or_default();
    assert!(
        first.contains("./deployments.sqlite"),
        "first line: {first}"
    );
    assert!(dir.join("deployments.sqlite").is_file());
    assert!(stderr.contains("backfill: 0 deployments read"), "{stderr}");

    let status = migration(&dir, &["status"]);
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert!(status.status.success(), "{stderr}");
    assert!(
        stderr.contains("m20261125_000004_drop_legacy_job_agent_columns"),
        "{stderr}"
    );
}

#[test]
fn the_standard_commands_that_write_files_work_without_a_database() {
    let dir = scratch_dir("cli_init_generate");
    let init = migration(&dir, &["init"]);
    let stderr = String::from_utf8_lossy(&init.stderr);
    assert!(init.status.success(), "{stderr}");
    assert!(dir.join("src/lib.rs").is_file(), "{stderr}");

    let generate = migration(&dir, &["generate", "add_audit_log"]);
    let stderr = String::from_utf8_lossy(&generate.stderr);
    assert!(generate.status.success(), "{stderr}");
    let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
    assert!(lib.contains("_add_audit_log"), "{lib}");
    assert!(
        !dir.join("deployments.sqlite").exists(),
        "a database was opened"
    );
}

fn assert_fails_with_one_line(output: &Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(expected),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_malformed_url_is_one_clear_error() {
    let dir = scratch_dir("cli_malformed_url");
    let output = migration(&dir, &["-u", "not a url", "up"]);
    assert_fails_with_one_line(&output, "cannot connect");
}

#[test]
fn an_unreachable_server_is_one_clear_error() {
    let dir = scratch_dir("cli_unreachable");
    let output = migration(&dir, &["-u", "postgres://nobody@127.0.0.1:9/none", "up"]);
    assert_fails_with_one_line(&output, "cannot connect");
}

#[test]
fn a_wrong_password_is_one_clear_error() {
    let dir = scratch_dir("cli_wrong_password");
    let server = std::env::var("TEST_MARIADB_URL").unwrap_or("mysql://root@127.0.0.1:3306".into());
    let url = server.replacen("://root@", "://root:certainly-wrong@", 1) + "/mysql";
    let output = migration(&dir, &["-u", &url, "up"]);
    assert_fails_with_one_line(&output, "Access denied");
}

#[test]
fn a_foreign_deployment_table_is_refused_and_nothing_changes() {
    use sea_orm_migration::sea_orm::{ConnectionTrait, Database};
    let dir = scratch_dir("cli_foreign_table");
    let url = format!("sqlite://{}/other.sqlite?mode=rwc", dir.display());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let schema = || {
        runtime.block_on(async {
            let db = Database::connect(&url).await.unwrap();
            let sql = "SELECT group_concat(sql, ';') FROM sqlite_master";
            let statement =
                sea_orm_migration::sea_orm::Statement::from_string(db.get_database_backend(), sql);
            let row = db.query_one_raw(statement).await.unwrap().unwrap();
            row.try_get_by_index::<String>(0).unwrap()
        })
    };
    runtime.block_on(async {
        let db = Database::connect(&url).await.unwrap();
        db.execute_unprepared("CREATE TABLE deployment (id INTEGER PRIMARY KEY, title TEXT)")
            .await
            .unwrap();
        db.execute_unprepared("INSERT INTO deployment (title) VALUES ('not ours')")
            .await
            .unwrap();
    });
    let before = schema();
    let output = migration(&dir, &["-u", &url, "up"]);
    assert_fails_with_one_line(&output, "`deployment` exists but is not the legacy shape");
    assert_eq!(schema(), before, "the database changed");
}

/// Runs `work` on a connection to `url`, from a synchronous test.
fn on_database<T>(
    url: &str,
    work: impl AsyncFnOnce(&sea_orm_migration::sea_orm::DatabaseConnection) -> T,
) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let db = sea_orm_migration::sea_orm::Database::connect(url)
            .await
            .unwrap();
        work(&db).await
    })
}

/// Runs fixed SQL on any database the test names by URL.
fn exec_sql(url: &str, sql: &str) {
    use sea_orm_migration::sea_orm::ConnectionTrait;
    on_database(url, async |db| db.execute_unprepared(sql).await.map(|_| ())).unwrap();
}

/// The first column of the first row of `sql`, a count.
fn scalar(url: &str, sql: &str) -> i64 {
    use sea_orm_migration::sea_orm::{ConnectionTrait, Statement};
    on_database(url, async |db| {
        let statement = Statement::from_string(db.get_database_backend(), sql.to_owned());
        let row = db.query_one_raw(statement).await.unwrap().unwrap();
        row.try_get_by_index(0).unwrap()
    })
}

#[test]
fn fresh_refresh_and_reset_refuse_to_drop_rows_unless_told() {
    let dir = scratch_dir("cli_fresh_refused");
    let url = format!("sqlite://{}/data.sqlite?mode=rwc", dir.display());
    let up = migration(&dir, &["-u", &url, "up"]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    exec_sql(
        &url,
        "INSERT INTO workspace (id, name) VALUES (X'00000000000000000000000000000077', 'prod'); \
         CREATE TABLE audit_log (line TEXT); INSERT INTO audit_log VALUES ('a'), ('b');",
    );
    for command in ["fresh", "refresh", "reset"] {
        let refused = migration(&dir, &["-u", &url, command]);
        assert_fails_with_one_line(&refused, &format!("refusing to `{command}`"));
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.contains("audit_log (2 rows)") && stderr.contains("workspace (1 rows)"),
            "{stderr}"
        );
        assert_eq!(
            scalar(&url, "SELECT COUNT(*) FROM workspace"),
            1,
            "{command} changed data"
        );
        assert_eq!(
            scalar(&url, "SELECT COUNT(*) FROM audit_log"),
            2,
            "{command} changed data"
        );
    }
    let forced = migration(&dir, &["-u", &url, "fresh", "--discard-data"]);
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    assert_eq!(scalar(&url, "SELECT COUNT(*) FROM workspace"), 0);
}

/// A fresh PostgreSQL database on the test server, dropped first if an earlier run left it;
/// its URL.
fn fresh_postgres_database(name: &str) -> String {
    let server =
        std::env::var("TEST_POSTGRES_URL").unwrap_or("postgres://postgres@127.0.0.1:5432".into());
    let admin = format!("{server}/postgres");
    exec_sql(
        &admin,
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    );
    exec_sql(&admin, &format!("CREATE DATABASE {name}"));
    format!("{server}/{name}")
}

/// A fresh MariaDB database on the test server, dropped first if an earlier run left it;
/// its URL.
fn fresh_mariadb_database(name: &str) -> String {
    let server = std::env::var("TEST_MARIADB_URL").unwrap_or("mysql://root@127.0.0.1:3306".into());
    let admin = format!("{server}/mysql");
    exec_sql(&admin, &format!("DROP DATABASE IF EXISTS {name}"));
    exec_sql(&admin, &format!("CREATE DATABASE {name}"));
    format!("{server}/{name}")
}

/// Right after `up` on an empty database only the migration's own bookkeeping holds rows
/// (the applied migrations, the baseline's and the drop's records): nothing a user would
/// lose, so nothing to refuse. Then, with a row of the user's, the override given the way
/// `sea-orm-cli migrate` passes it (the environment) drops it, with one warning line.
#[test]
fn fresh_refresh_and_reset_run_on_a_database_that_holds_only_bookkeeping() {
    let dir = scratch_dir("cli_fresh_bookkeeping");
    let sqlite = format!("sqlite://{}/empty.sqlite?mode=rwc", dir.display());
    let postgres = fresh_postgres_database("jat_cli_fresh_bookkeeping");
    let mariadb = fresh_mariadb_database("jat_cli_fresh_bookkeeping");
    for url in [sqlite, postgres, mariadb] {
        let up = migration(&dir, &["-u", &url, "up"]);
        assert!(
            up.status.success(),
            "{}",
            String::from_utf8_lossy(&up.stderr)
        );
        let recorded = scalar(
            &url,
            "SELECT COUNT(*) FROM deployment_job_agent_legacy_column",
        );
        assert_eq!(recorded, 3, "the drop's record is there: {url}");
        for command in ["fresh", "refresh", "reset", "up"] {
            let run = migration(&dir, &["-u", &url, command]);
            let stderr = String::from_utf8_lossy(&run.stderr);
            assert!(run.status.success(), "{command} on {url}: {stderr}");
            assert!(!stderr.contains("warning"), "{command} on {url}: {stderr}");
        }

        // MariaDB keeps a uuid in BINARY(16); PostgreSQL and SQLite take its text.
        let deployment_id = if url.starts_with("mysql") {
            "X'd0000000000040008000000000000001'"
        } else {
            "'d0000000-0000-4000-8000-000000000001'"
        };
        exec_sql(
            &url,
            &format!(
                "INSERT INTO deployment_job_agent_backfill_reject \
                 (deployment_id, legacy_column, entry, reason) \
                 VALUES ({deployment_id}, 'job_agents', '42', 'malformed_entry')"
            ),
        );
        let refused = migration(&dir, &["-u", &url, "fresh"]);
        assert_fails_with_one_line(&refused, "deployment_job_agent_backfill_reject (1 rows)");
        let refused = String::from_utf8_lossy(&refused.stderr);
        assert!(refused.contains("MIGRATION_DISCARD_DATA=1"), "{refused}");

        let forced = Command::new(env!("CARGO_BIN_EXE_migration"))
            .args(["fresh"])
            .current_dir(&dir)
            .env("DATABASE_URL", &url)
            .env("MIGRATION_DISCARD_DATA", "1")
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&forced.stderr);
        assert!(forced.status.success(), "{url}: {stderr}");
        let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("warning")).collect();
        assert_eq!(
            warnings,
            [
                "warning: `fresh` drops data in deployment_job_agent_backfill_reject (1 rows) \
              (told to discard it)"
            ],
            "{stderr}"
        );
        let rejects = "SELECT COUNT(*) FROM deployment_job_agent_backfill_reject";
        assert_eq!(scalar(&url, rejects), 0, "{url}");
    }
}

/// The tool users drive: `sea-orm-cli migrate` runs this crate's binary with `cargo run`
/// and passes on no flag of ours, so the override is the environment, as sea-orm-cli users
/// give `DATABASE_URL`. (The test script installs sea-orm-cli when it is missing.)
#[test]
fn through_sea_orm_cli_fresh_is_refused_then_forced_by_the_environment() {
    let dir = scratch_dir("cli_sea_orm_cli_fresh");
    let url = format!("sqlite://{}/data.sqlite?mode=rwc", dir.display());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let sea_orm_cli = |command: &str, discard: bool| {
        let mut run = Command::new("sea-orm-cli");
        run.args(["migrate", command, "-u", &url])
            .current_dir(workspace)
            .env_remove("DATABASE_URL")
            .env_remove("RUST_LOG");
        if discard {
            run.env("MIGRATION_DISCARD_DATA", "1");
        }
        let output = run
            .output()
            .expect("sea-orm-cli on PATH (cargo install sea-orm-cli)");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    };
    let (ok, text) = sea_orm_cli("up", false);
    assert!(ok, "{text}");
    exec_sql(
        &url,
        "INSERT INTO workspace (id, name) VALUES (X'00000000000000000000000000000077', 'prod')",
    );
    let (ok, text) = sea_orm_cli("fresh", false);
    assert!(!ok && text.contains("refusing to `fresh`"), "{text}");
    assert_eq!(scalar(&url, "SELECT COUNT(*) FROM workspace"), 1);
    let (ok, text) = sea_orm_cli("fresh", true);
    assert!(ok, "{text}");
    assert!(
        text.contains("warning: `fresh` drops data in workspace (1 rows)"),
        "{text}"
    );
    assert_eq!(scalar(&url, "SELECT COUNT(*) FROM workspace"), 0);
}

#[test]
fn no_output_shows_a_password() {
    let dir = scratch_dir("cli_no_password");
    let secret = "pa55-w0rd-never-shown";
    let show = |output: &Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    };

    // --help with the URL in the environment.
    let help = Command::new(env!("CARGO_BIN_EXE_migration"))
        .arg("--help")
        .env(
            "DATABASE_URL",
            format!("postgres://app:{secret}@db.internal/app"),
        )
        .output()
        .unwrap();
    assert!(help.status.success());
    assert!(!show(&help).contains(secret), "{}", show(&help));

    // A URL that cannot be parsed, percent-encoded or not.
    for url in [
        format!("postgres://app:{secret}@db.internal:notaport/app"),
        format!(
            "postgres://app:{}@db.internal:notaport/app",
            secret.replace('-', "%2D")
        ),
    ] {
        let output = migration(&dir, &["-u", &url, "status"]);
        assert_eq!(output.status.code(), Some(1), "{}", show(&output));
        assert!(!show(&output).contains(secret), "{}", show(&output));
        assert!(!show(&output).contains("%2D"), "{}", show(&output));
    }

    // A real run at the most verbose level (the local PostgreSQL trusts local connections,
    // so any password is accepted and travels through the whole command).
    let url = fresh_postgres_database("jat_cli_no_password");
    let with_password = url.replacen("://postgres@", &format!("://postgres:{secret}@"), 1);
    let output = Command::new(env!("CARGO_BIN_EXE_migration"))
        .args(["-v", "-u", &with_password, "up"])
        .current_dir(&dir)
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", show(&output));
    assert!(!show(&output).contains(secret), "{}", show(&output));

    // MariaDB's driver logs inside the connect span, whose fields hold the whole connect
    // options: a user with a real password, at debug level (`-v`) and at trace.
    let server = std::env::var("TEST_MARIADB_URL").unwrap_or("mysql://root@127.0.0.1:3306".into());
    let database = "jat_cli_no_password";
    let admin = format!("{server}/mysql");
    exec_sql(&admin, &format!("DROP DATABASE IF EXISTS {database}"));
    exec_sql(&admin, &format!("CREATE DATABASE {database}"));
    for host in ["%", "localhost"] {
        exec_sql(
            &admin,
            &format!("DROP USER IF EXISTS '{database}'@'{host}'"),
        );
        exec_sql(
            &admin,
            &format!(
                "CREATE USER '{database}'@'{host}' IDENTIFIED BY '{secret}'; \
                 GRANT ALL ON {database}.* TO '{database}'@'{host}'"
            ),
        );
    }
    let with_password = server.replacen("://root@", &format!("://{database}:{secret}@"), 1);
    for (flag, level) in [("-v", "debug"), ("-v", "trace")] {
        let output = Command::new(env!("CARGO_BIN_EXE_migration"))
            .args([flag, "-u", &format!("{with_password}/{database}"), "up"])
            .current_dir(&dir)
            .env("RUST_LOG", level)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", show(&output));
        if level == "trace" {
            assert!(show(&output).contains("connect{"), "the span is logged");
        }
        assert!(!show(&output).contains(secret), "{}", show(&output));
    }
}

/// Production roles often carry a `statement_timeout`. Set on the database (so every new
/// session has it) far below what building and checking the join table's keys takes, `up`
/// still finishes: only its lock waits are bounded, by its own lock timeout.
#[test]
fn a_database_wide_statement_timeout_does_not_stop_up() {
    let dir = scratch_dir("cli_statement_timeout");
    let database = "jat_cli_statement_timeout";
    let url = fresh_postgres_database(database);
    let baseline = migration(&dir, &["-u", &url, "up", "-n", "1"]);
    assert!(
        baseline.status.success(),
        "{}",
        String::from_utf8_lossy(&baseline.stderr)
    );
    exec_sql(
        &url,
        "INSERT INTO job_agent (id, name) VALUES ('6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b', 'k8s'); \
         INSERT INTO deployment (id, name, job_agent_config, job_agents) \
         SELECT gen_random_uuid(), 'd' || n, '{}', \
           '[{\"ref\": \"6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b\"}]' \
         FROM generate_series(1, 20000) n",
    );
    exec_sql(
        &url,
        &format!("ALTER DATABASE {database} SET statement_timeout = '1ms'"),
    );
    let up = migration(&dir, &["-u", &url, "up"]);
    exec_sql(
        &url,
        &format!("ALTER DATABASE {database} RESET statement_timeout"),
    );
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert_eq!(
        scalar(&url, "SELECT COUNT(*) FROM deployment_job_agent"),
        20000
    );
}

/// PostgreSQL answers every `IF EXISTS` / `IF NOT EXISTS` that found nothing to do with a
/// notice; even at debug level the log says what the migration did, not what the server
/// skipped.
#[test]
fn the_log_holds_no_server_notices() {
    let dir = scratch_dir("cli_no_notices");
    let url = fresh_postgres_database("jat_cli_no_notices");
    for args in [&["-v", "up"][..], &["-v", "down", "-n", "4"], &["-v", "up"]] {
        let output = Command::new(env!("CARGO_BIN_EXE_migration"))
            .args(args)
            .current_dir(&dir)
            .env("DATABASE_URL", &url)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{args:?}: {stderr}");
        assert!(
            stderr.contains("Applying") || stderr.contains("Rolling back"),
            "{stderr}"
        );
        for notice in ["skipping", "already exists", "does not exist"] {
            assert!(!stderr.contains(notice), "{args:?}: {stderr}");
        }
    }
}

/// A legacy database and a role with row privileges only; `up` as that role must name every
/// missing privilege in one line and create nothing, not even the migrator's own table.
#[test]
fn a_role_without_the_privileges_hears_of_all_of_them_before_anything_changes() {
    let dir = scratch_dir("cli_weak_role");
    let legacy = "CREATE TABLE workspace (id CHAR(36) PRIMARY KEY, name TEXT); \
                  CREATE TABLE job_agent (id CHAR(36) PRIMARY KEY, workspace_id CHAR(36), \
                    name TEXT); \
                  CREATE TABLE deployment (id CHAR(36) PRIMARY KEY, name TEXT NOT NULL, \
                    job_agent_id CHAR(36), job_agent_config TEXT NOT NULL, \
                    resource_selector TEXT, workspace_id CHAR(36), job_agents TEXT NOT NULL)";
    let role = "jat_cli_weak_role";

    let owner = fresh_postgres_database(role);
    exec_sql(&owner, legacy);
    exec_sql(
        &owner,
        &format!(
            "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN; \
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"
        ),
    );
    let weak = owner.replacen("://postgres@", &format!("://{role}@"), 1);
    let refused = migration(&dir, &["-u", &weak, "up"]);
    assert_fails_with_one_line(&refused, "lacks: owner of table deployment");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("CREATE on schema public"), "{stderr}");
    let tables = "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public'";
    assert_eq!(scalar(&owner, tables), 3, "nothing may be created");

    let mariadb = std::env::var("TEST_MARIADB_URL").unwrap_or("mysql://root@127.0.0.1:3306".into());
    exec_sql(&mariadb, &format!("DROP DATABASE IF EXISTS {role}"));
    exec_sql(&mariadb, &format!("CREATE DATABASE {role}"));
    let owner = format!("{mariadb}/{role}");
    exec_sql(&owner, legacy);
    for host in ["%", "localhost"] {
        exec_sql(&owner, &format!("DROP USER IF EXISTS '{role}'@'{host}'"));
        exec_sql(&owner, &format!("CREATE USER '{role}'@'{host}'"));
        exec_sql(
            &owner,
            &format!("GRANT SELECT, INSERT, UPDATE, DELETE ON {role}.* TO '{role}'@'{host}'"),
        );
    }
    let weak = owner.replacen("://root@", &format!("://{role}@"), 1);
    let refused = migration(&dir, &["-u", &weak, "up"]);
    assert_fails_with_one_line(&refused, "lacks: ");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    for privilege in ["ALTER", "CREATE", "DROP", "INDEX", "REFERENCES", "TRIGGER"] {
        assert!(
            stderr.contains(&format!("{privilege} on database {role}")),
            "{stderr}"
        );
    }
    assert!(!stderr.contains("SELECT on"), "{stderr}");
    let tables =
        format!("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{role}'");
    assert_eq!(scalar(&owner, &tables), 3, "nothing may be created");
}
