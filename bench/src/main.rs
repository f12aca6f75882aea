//! Benchmarks the migration on generated legacy data: ours (`Migrator::up`, in a process of
//! its own so its peak memory is its own) against upstream's set-based SQL (with and without
//! the reverse index) and a naive per-deployment loop, on identical copies of the data.
//!
//! ```sh
//! cargo run --release -p bench -- --backend postgres --deployments 1000000
//! ```
//!
//! Results go to `bench/results/` as Markdown and JSON, with the machine and command line.

mod data;
mod measure;
mod naive;
mod queries;
mod standby;
mod sync_cost;
mod upstream;
mod writer;

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, Statement, TransactionTrait,
};
use serde::Serialize;
use tests::server::Server;

#[derive(Parser)]
#[command(about = "Benchmarks the deployment job agent migration")]
struct Cli {
    #[command(subcommand)]
    command: Option<Internal>,
    #[arg(long, value_enum, default_value = "postgres")]
    backend: Backend,
    /// Deployments to generate.
    #[arg(long, default_value_t = 100_000)]
    deployments: u64,
    /// Deployments for the naive loop (it is slow).
    #[arg(long, default_value_t = 10_000)]
    naive_deployments: u64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Calls per service query measured.
    #[arg(long, default_value_t = 1_000)]
    query_runs: usize,
    /// Server URL without a database (PostgreSQL, MariaDB); SQLite files go in `--out`.
    #[arg(long)]
    server: Option<String>,
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// Keep the benchmark's databases (`bench_*`) afterwards, to inspect them.
    #[arg(long)]
    keep: bool,
    /// Instead of the comparison: ours' peak memory on `--deployments` deployments plus one
    /// whose `job_agents` array holds this many MiB.
    #[arg(long)]
    huge_array_mib: Option<u64>,
    /// Instead of the comparison (PostgreSQL): the replay lag of this hot standby of
    /// `--server` (server URL, no database) and a reader's stalls on it, during upstream's
    /// statements, ours, and ours with `--max-replica-lag`.
    #[arg(long, requires = "server")]
    standby: Option<String>,
    /// With `--standby`: the maximum replica lag of ours' throttled run.
    #[arg(long, default_value = "1s", value_parser = migration::settings::parse_duration)]
    max_replica_lag: std::time::Duration,
    /// With `--standby`: also hold one query on `deployment` open on the standby this long
    /// from the start of each run (a report, a dump).
    #[arg(long, value_parser = migration::settings::parse_duration)]
    standby_long_query: Option<std::time::Duration>,
    /// With `--standby`: let it replay only this share of the time (a slower standby).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u8).range(1..=100))]
    standby_replay_percent: u8,
}

#[derive(Subcommand)]
enum Internal {
    /// Runs `Migrator::up` on one database (the measured child process).
    #[command(hide = true)]
    MigrateChild { url: String },
}

#[derive(Clone, Copy, ValueEnum, Serialize, Debug)]
enum Backend {
    Postgres,
    Mariadb,
    Sqlite,
}

/// One measured run.
#[derive(Serialize)]
struct Row {
    variant: &'static str,
    deployments: u64,
    links: u64,
    seconds: f64,
    links_per_second: f64,
    peak_rss_mib: Option<f64>,
    /// Wall time per step: per migration for ours, per statement for upstream.
    steps: Vec<measure::Step>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    if let Some(Internal::MigrateChild { url }) = cli.command {
        let db = Database::connect(&url).await?;
        // What `up` does, one migration at a time, to time each.
        for migration in Migrator::get_pending_migrations(&db).await? {
            let started = Instant::now();
            Migrator::up(&db, Some(1)).await?;
            let seconds = started.elapsed().as_secs_f64();
            println!("{}{} {seconds:.3}", measure::STEP_PREFIX, migration.name());
        }
        println!("{}{}", measure::PEAK_PREFIX, measure::own_peak_rss_kib());
        return Ok(());
    }
    // Read now: the work tree may change while a long run goes on.
    let measured_commit = commit();
    std::fs::create_dir_all(&cli.out)?;
    let bench = Bench::new(&cli);
    if let Some(mib) = cli.huge_array_mib {
        return huge_array(&bench, &cli, mib).await;
    }
    if let Some(standby) = &cli.standby {
        return beside_standby(&bench, &cli, standby, &measured_commit).await;
    }
    let mut rows = vec![];

    generate_source(&bench, &cli).await?;

    let url = bench.copy_of_source_url("ours").await?;
    let usage = run_ours(&url).await?;
    let ours = bench.connect("ours").await?;
    let links = count_links(&ours).await?;
    let rss = usage.peak_rss_kib as f64 / 1024.0;
    let row = Row::new(
        "ours",
        cli.deployments,
        links,
        usage.wall.as_secs_f64(),
        Some(rss),
    );
    rows.push(row.with_steps(usage.steps));
    eprintln!(
        "ours: {links} links in {:.1}s, peak RSS {rss:.1} MiB",
        usage.wall.as_secs_f64()
    );

    for (variant, with_index) in [("upstream", false), ("upstream + index", true)] {
        let db = bench.copy_of_source("up").await?;
        let (seconds, steps) = run_upstream(&db, with_index).await?;
        let links = count_links(&db).await?;
        let row = Row::new(variant, cli.deployments, links, seconds, None);
        rows.push(row.with_steps(steps));
        eprintln!("{variant}: {links} links in {seconds:.1}s");
    }

    // Separate runs, so that the writer's load does not change the times above.
    let mut stalls = vec![];
    if !matches!(cli.backend, Backend::Sqlite) {
        let url = bench.copy_of_source_url("stall").await?;
        let writer = writer::Writer::start(&url).await?;
        let seconds = run_ours(&url).await?.wall.as_secs_f64();
        stalls.push(writer.stop("ours", seconds).await?);

        let db = bench.copy_of_source("stall").await?;
        let writer = writer::Writer::start(&bench.url("stall")).await?;
        let (seconds, _) = run_upstream(&db, true).await?;
        stalls.push(writer.stop("upstream + index", seconds).await?);
        drop(db);
        bench.remove("stall").await?;
        for s in &stalls {
            eprintln!(
                "writer during {}: {} writes, longest {:.0} ms",
                s.during, s.writes, s.longest_ms
            );
        }
    }
    let url = bench.copy_of_source_url("sync").await?;
    let sync_costs = sync_cost::measure(&url, cli.query_runs).await?;
    bench.remove("sync").await?;
    let ours_url = bench.url("ours");
    let queries = queries::measure(&ours_url, cli.query_runs).await?;
    let upstream_links = link_set(&bench.connect("up").await?).await?;
    let agreement = compare(&ours, &upstream_links).await?;

    let naive_db = bench.fresh("naive").await?;
    data::generate(&naive_db, cli.naive_deployments, cli.seed).await?;
    // The join table, empty: the loop fills it.
    Migrator::up(&naive_db, Some(1)).await?;
    let naive = naive::run(&naive_db).await?;
    let seconds = naive.wall.as_secs_f64();
    rows.push(Row::new(
        "naive loop",
        cli.naive_deployments,
        naive.links,
        seconds,
        None,
    ));

    let report = Report {
        backend: cli.backend,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: machine().await,
        commit: measured_commit,
        server: server_version(&ours).await,
        rows,
        agreement,
        queries,
        sync_costs,
        stalls,
    };
    report.write(&cli.out)?;
    if !cli.keep {
        drop((ours, naive_db));
        for name in ["src", "ours", "up", "naive"] {
            bench.remove(name).await?;
        }
    }
    print!("{}", report.markdown());
    Ok(())
}

/// Generates the legacy data every variant starts from, as database `src`.
async fn generate_source(bench: &Bench, cli: &Cli) -> Result<(), DbErr> {
    let started = Instant::now();
    let source = bench.fresh("src").await?;
    data::generate(&source, cli.deployments, cli.seed).await?;
    eprintln!(
        "generated {} deployments in {:.1}s",
        cli.deployments,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Ours' peak memory beside one very large `job_agents` array.
async fn huge_array(bench: &Bench, cli: &Cli, mib: u64) -> Result<(), Box<dyn std::error::Error>> {
    let db = bench.fresh("huge").await?;
    data::generate(&db, cli.deployments, cli.seed).await?;
    let bytes = data::add_huge_deployment(&db, mib).await?;
    drop(db);
    let usage = run_ours(&bench.url("huge")).await?;
    let array_mib = bytes as f64 / (1 << 20) as f64;
    let peak_mib = usage.peak_rss_kib as f64 / 1024.0;
    println!(
        "{:?}: {} deployments plus one {array_mib:.1} MiB job_agents array: ours took {:.1}s, \
         peak RSS {peak_mib:.1} MiB ({:.2}x the array)",
        cli.backend,
        cli.deployments,
        usage.wall.as_secs_f64(),
        peak_mib / array_mib
    );
    if !cli.keep {
        bench.remove("huge").await?;
    }
    Ok(())
}

/// Upstream's statements, ours, and ours throttled, each on a fresh copy of the data, with the
/// standby's lag and a reader on it measured.
async fn beside_standby(
    bench: &Bench,
    cli: &Cli,
    standby: &str,
    commit: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    if !matches!(cli.backend, Backend::Postgres) {
        return Err("--standby is for PostgreSQL".into());
    }
    generate_source(bench, cli).await?;
    let throttled = format!(
        "ours, --max-replica-lag {}",
        migration::settings::format_duration(cli.max_replica_lag)
    );
    let mut reports = vec![];
    for variant in ["upstream + index", "ours", throttled.as_str()] {
        let url = bench.copy_of_source_url("sb").await?;
        let standby_url = format!("{standby}/bench_sb");
        let (long_query, replay) = (cli.standby_long_query, cli.standby_replay_percent);
        let monitor = standby::Monitor::start(&url, &standby_url, long_query, replay).await?;
        let seconds = match variant {
            "upstream + index" => run_upstream(&Database::connect(&url).await?, true).await?.0,
            "ours" => run_ours(&url).await?.wall.as_secs_f64(),
            _ => run_ours_with(&url, Some(cli.max_replica_lag))
                .await?
                .wall
                .as_secs_f64(),
        };
        let report = monitor.stop(variant, seconds).await?;
        eprintln!("{}", standby::row(&report));
        reports.push(report);
    }
    let server = server_version(&bench.connect("sb").await?).await;
    bench.remove("sb").await?;
    if !cli.keep {
        bench.remove("src").await?;
    }
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let heading = format!(
        "## PostgreSQL beside a hot standby, {} deployments\n\n`{command}` at commit {commit}\n\n{}; {server}\n\n",
        cli.deployments,
        machine().await
    );
    let markdown = heading + &standby::table(&reports);
    let name = format!("standby-{}", cli.deployments);
    std::fs::write(cli.out.join(format!("{name}.md")), &markdown)?;
    std::fs::write(
        cli.out.join(format!("{name}.json")),
        serde_json::to_string_pretty(&reports)?,
    )?;
    print!("{markdown}");
    Ok(())
}

/// Runs `Migrator::up` on `url` in a child process of its own.
async fn run_ours(url: &str) -> Result<measure::Usage, Box<dyn std::error::Error>> {
    run_ours_with(url, None).await
}

/// [`run_ours`], with the replica-lag throttle set to `max_replica_lag`.
async fn run_ours_with(
    url: &str,
    max_replica_lag: Option<std::time::Duration>,
) -> Result<measure::Usage, Box<dyn std::error::Error>> {
    let mut child = Command::new(std::env::current_exe()?);
    child.args(["migrate-child", url]);
    match max_replica_lag {
        Some(lag) => child.env(
            migration::settings::MAX_REPLICA_LAG_ENV,
            migration::settings::format_duration(lag),
        ),
        None => child.env_remove(migration::settings::MAX_REPLICA_LAG_ENV),
    };
    Ok(tokio::task::spawn_blocking(move || measure::run(child)).await??)
}

/// Runs upstream's statements in one transaction; returns the seconds they took in all and
/// per step.
async fn run_upstream(
    db: &DatabaseConnection,
    with_index: bool,
) -> Result<(f64, Vec<measure::Step>), DbErr> {
    let started = Instant::now();
    let mut steps: Vec<measure::Step> = vec![];
    let mut timed = |name: &str, since: Instant| match steps.last_mut() {
        Some(last) if last.name == name => last.seconds += since.elapsed().as_secs_f64(),
        _ => steps.push(measure::Step {
            name: name.to_owned(),
            seconds: since.elapsed().as_secs_f64(),
        }),
    };
    let txn = db.begin().await?;
    for (step, sql) in upstream::statements(db.get_database_backend(), with_index) {
        let since = Instant::now();
        txn.execute_unprepared(sql).await?;
        timed(step, since);
    }
    let since = Instant::now();
    txn.commit().await?;
    timed("commit", since);
    Ok((started.elapsed().as_secs_f64(), steps))
}

impl Row {
    fn new(
        variant: &'static str,
        deployments: u64,
        links: u64,
        seconds: f64,
        rss: Option<f64>,
    ) -> Self {
        Row {
            variant,
            deployments,
            links,
            seconds,
            links_per_second: links as f64 / seconds,
            peak_rss_mib: rss,
            steps: vec![],
        }
    }

    fn with_steps(self, steps: Vec<measure::Step>) -> Self {
        Row { steps, ..self }
    }
}

/// Where the benchmark's databases live: `bench_<name>` on the server, or in `--out`.
struct Bench {
    backend: Backend,
    server: Server,
}

impl Bench {
    fn new(cli: &Cli) -> Self {
        let (backend, default) = match cli.backend {
            Backend::Postgres => (
                tests::Backend::Postgres,
                "postgres://postgres@127.0.0.1:5432",
            ),
            Backend::Mariadb => (tests::Backend::MariaDb, "mysql://root@127.0.0.1:3306"),
            Backend::Sqlite => (tests::Backend::Sqlite, ""),
        };
        let location = match cli.backend {
            Backend::Sqlite => cli.out.display().to_string(),
            _ => cli.server.clone().unwrap_or_else(|| default.to_owned()),
        };
        Bench {
            backend: cli.backend,
            server: Server::new(backend, &location),
        }
    }

    fn url(&self, name: &str) -> String {
        self.server.url(&format!("bench_{name}"))
    }

    async fn connect(&self, name: &str) -> Result<DatabaseConnection, DbErr> {
        Database::connect(self.url(name)).await
    }

    /// An empty database called `name`.
    async fn fresh(&self, name: &str) -> Result<DatabaseConnection, DbErr> {
        self.recreate(name, None).await?;
        self.connect(name).await
    }

    /// Drops database `bench_<name>` and creates it again, empty or (on PostgreSQL) as a
    /// copy of `template`.
    async fn recreate(&self, name: &str, template: Option<&str>) -> Result<(), DbErr> {
        let name = format!("bench_{name}");
        self.server.recreate(&name, template).await
    }

    /// Drops database `bench_<name>`, or removes its file.
    async fn remove(&self, name: &str) -> Result<(), DbErr> {
        self.server.remove(&format!("bench_{name}")).await
    }

    /// A copy of the generated source data, as database `name`.
    async fn copy_of_source_url(&self, name: &str) -> Result<String, DbErr> {
        match self.backend {
            Backend::Postgres => self.recreate(name, Some("bench_src")).await?,
            Backend::Sqlite => {
                self.remove(name).await?;
                let file = |name: &str| self.server.file(&format!("bench_{name}"));
                std::fs::copy(file("src"), file(name)).map_err(|e| DbErr::Custom(e.to_string()))?;
            }
            Backend::Mariadb => data::copy_on_server(&self.fresh(name).await?, "bench_src").await?,
        }
        Ok(self.url(name))
    }

    async fn copy_of_source(&self, name: &str) -> Result<DatabaseConnection, DbErr> {
        let url = self.copy_of_source_url(name).await?;
        Database::connect(url).await
    }
}

async fn count_links(db: &DatabaseConnection) -> Result<u64, DbErr> {
    let sql = "SELECT COUNT(*) FROM deployment_job_agent";
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?;
    Ok(row
        .map(|r| r.try_get_by_index::<i64>(0))
        .transpose()?
        .unwrap_or(0) as u64)
}

async fn link_set(db: &DatabaseConnection) -> Result<HashSet<(uuid::Uuid, uuid::Uuid)>, DbErr> {
    let sql = "SELECT deployment_id, job_agent_id FROM deployment_job_agent";
    let rows = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get_by_index(0)?, r.try_get_by_index(1)?)))
        .collect()
}

/// How ours and upstream differ.
#[derive(Serialize)]
struct Agreement {
    /// Links both wrote.
    common: u64,
    /// Links only upstream wrote, by the reason our rules recorded instead.
    upstream_only_by_reason: Vec<(String, u64)>,
    /// Links only ours wrote (`job_agent_id` links, which upstream ignores).
    ours_only: u64,
}

async fn compare(
    ours: &DatabaseConnection,
    upstream: &HashSet<(uuid::Uuid, uuid::Uuid)>,
) -> Result<Agreement, DbErr> {
    let mine = link_set(ours).await?;
    let common = mine.intersection(upstream).count() as u64;
    let upstream_only: HashSet<_> = upstream.difference(&mine).collect();
    let sql = "SELECT deployment_id, reason, entry FROM deployment_job_agent_backfill_reject \
               WHERE legacy_column = 'job_agents'";
    let backend = ours.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => sql.replace("entry FROM", "CAST(entry AS text) FROM"),
        _ => sql.to_owned(),
    };
    let mut by_reason = std::collections::BTreeMap::<String, u64>::new();
    let mut explained = 0;
    for row in ours
        .query_all_raw(Statement::from_string(backend, sql))
        .await?
    {
        let deployment: uuid::Uuid = row.try_get_by_index(0)?;
        let reason: String = row.try_get_by_index(1)?;
        let entry: serde_json::Value =
            serde_json::from_str(&row.try_get_by_index::<String>(2)?).unwrap_or_default();
        let agent = entry["ref"]
            .as_str()
            .and_then(|r| uuid::Uuid::parse_str(r).ok());
        if let Some(agent) = agent
            && upstream_only.contains(&(deployment, agent))
        {
            *by_reason.entry(reason).or_default() += 1;
            explained += 1;
        }
    }
    let unexplained = upstream_only.len() as u64 - explained.min(upstream_only.len() as u64);
    if unexplained > 0 {
        by_reason.insert("(no reject row)".into(), unexplained);
    }
    Ok(Agreement {
        common,
        upstream_only_by_reason: by_reason.into_iter().collect(),
        ours_only: mine.difference(upstream).count() as u64,
    })
}

#[derive(Serialize)]
struct Report {
    backend: Backend,
    command: String,
    machine: String,
    commit: String,
    server: String,
    rows: Vec<Row>,
    agreement: Agreement,
    queries: Vec<queries::Latency>,
    /// A write's latency in the expand phase, with and without the sync.
    sync_costs: Vec<queries::Latency>,
    stalls: Vec<writer::Stalls>,
}

impl Report {
    fn markdown(&self) -> String {
        let mut out = format!(
            "## {:?}\n\n`{}` at commit {}\n\n{}; {}\n\n| variant | deployments | links | seconds | links/s | peak RSS (MiB) |\n|---|---:|---:|---:|---:|---:|\n",
            self.backend, self.command, self.commit, self.machine, self.server
        );
        for row in &self.rows {
            let rss = row
                .peak_rss_mib
                .map_or("".to_owned(), |r| format!("{r:.1}"));
            out.push_str(&format!(
                "| {} | {} | {} | {:.2} | {:.0} | {rss} |\n",
                row.variant, row.deployments, row.links, row.seconds, row.links_per_second
            ));
        }
        out.push_str("\n| variant | step | seconds |\n|---|---|---:|\n");
        for row in &self.rows {
            for step in &row.steps {
                out.push_str(&format!(
                    "| {} | {} | {:.2} |\n",
                    row.variant, step.name, step.seconds
                ));
            }
        }
        out.push_str("\n| service query (after ours) | runs | p50 ms | p99 ms | statements per call |\n|---|---:|---:|---:|---:|\n");
        for q in &self.queries {
            out.push_str(&format!(
                "| {} | {} | {:.3} | {:.3} | {:.1} |\n",
                q.query, q.runs, q.p50_ms, q.p99_ms, q.statements_per_call
            ));
        }
        out.push_str("\n| write in the expand phase (separate copy) | runs | p50 ms | p99 ms | statements per call |\n|---|---:|---:|---:|---:|\n");
        for q in &self.sync_costs {
            out.push_str(&format!(
                "| {} | {} | {:.3} | {:.3} | {:.1} |\n",
                q.query, q.runs, q.p50_ms, q.p99_ms, q.statements_per_call
            ));
        }
        if !self.stalls.is_empty() {
            out.push_str("\n| writer beside (separate run) | migration seconds | writes | failed | p50 ms | p99 ms | longest ms |\n|---|---:|---:|---:|---:|---:|---:|\n");
        }
        for s in &self.stalls {
            out.push_str(&format!(
                "| {} | {:.2} | {} | {} | {:.1} | {:.1} | {:.0} |\n",
                s.during, s.migration_seconds, s.writes, s.failed, s.p50_ms, s.p99_ms, s.longest_ms
            ));
        }
        out.push_str(&format!(
            "\nAgreement with upstream: {} links in common, {} only ours (`job_agent_id` links), upstream only: {:?}\n",
            self.agreement.common, self.agreement.ours_only, self.agreement.upstream_only_by_reason
        ));
        out
    }

    fn write(&self, dir: &std::path::Path) -> std::io::Result<()> {
        let name = format!("{:?}-{}", self.backend, self.rows[0].deployments).to_lowercase();
        std::fs::write(dir.join(format!("{name}.md")), self.markdown())?;
        let json = serde_json::to_string_pretty(self).expect("JSON");
        std::fs::write(dir.join(format!("{name}.json")), json)
    }
}

async fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned())
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024 / 1024);
    format!("{cores} cores, {memory} GiB")
}

/// The commit measured, marked `-dirty` when the code had uncommitted changes.
fn commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let head = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_default();
    // Only the code counts: results and prose change while runs go on.
    let status = [
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        ":(top,glob)**/*.rs",
        ":(top,glob)**/Cargo.toml",
        ":(top)Cargo.lock",
    ];
    match git(&status) {
        Some(changes) if !changes.is_empty() => format!("{head}-dirty"),
        _ => head,
    }
}

async fn server_version(db: &DatabaseConnection) -> String {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => "SELECT version()",
        DbBackend::MySql => "SELECT CONCAT('MariaDB/MySQL ', VERSION())",
        _ => "SELECT 'SQLite ' || sqlite_version()",
    };
    match db.query_one_raw(Statement::from_string(backend, sql)).await {
        Ok(Some(row)) => row.try_get_by_index::<String>(0).unwrap_or_default(),
        _ => String::new(),
    }
}
