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
    let server =
        std::env::var("TEST_POSTGRES_URL").unwrap_or("postgres://postgres@127.0.0.1:5432".into());
    let database = "jat_cli_no_password";
    let admin = format!("{server}/postgres");
    exec_sql(
        &admin,
        &format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"),
    );
    exec_sql(&admin, &format!("CREATE DATABASE {database}"));
    let with_password = server.replacen("://postgres@", &format!("://postgres:{secret}@"), 1);
    let output = Command::new(env!("CARGO_BIN_EXE_migration"))
        .args(["-v", "-u", &format!("{with_password}/{database}"), "up"])
        .current_dir(&dir)
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", show(&output));
    assert!(!show(&output).contains(secret), "{}", show(&output));
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

    let postgres =
        std::env::var("TEST_POSTGRES_URL").unwrap_or("postgres://postgres@127.0.0.1:5432".into());
    let admin = format!("{postgres}/postgres");
    exec_sql(
        &admin,
        &format!("DROP DATABASE IF EXISTS {role} WITH (FORCE)"),
    );
    exec_sql(&admin, &format!("CREATE DATABASE {role}"));
    let owner = format!("{postgres}/{role}");
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
