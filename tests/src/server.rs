//! Where a backend's databases live, and how one is dropped and made anew: one helper for
//! the tests (a fresh database per test) and the benchmark (its copies of generated data).

use std::path::PathBuf;

use sea_orm::{ConnectionTrait, Database, DbErr};

use crate::Backend;

/// A database server (its URL without a database), or for SQLite the directory of files.
pub struct Server {
    pub backend: Backend,
    location: String,
}

impl Server {
    /// The server at `url` (no database), or for SQLite the directory `url` names.
    pub fn new(backend: Backend, url: &str) -> Server {
        Server {
            backend,
            location: url.trim_end_matches('/').to_owned(),
        }
    }

    /// The server the tests use: `TEST_POSTGRES_URL` / `TEST_MARIADB_URL` or the local
    /// services; SQLite files in `target/test-sqlite`.
    pub fn for_tests(backend: Backend) -> Server {
        let location = match backend {
            Backend::Postgres => {
                crate::server_url("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
            }
            Backend::MariaDb => {
                crate::server_url("TEST_MARIADB_URL", "mysql://root@127.0.0.1:3306")
            }
            Backend::Sqlite => {
                let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-sqlite");
                std::fs::create_dir_all(&dir).expect("create the SQLite test directory");
                dir.display().to_string()
            }
        };
        Server::new(backend, &location)
    }

    /// The URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        match self.backend {
            Backend::Sqlite => format!("sqlite://{}?mode=rwc", self.file(name).display()),
            _ => format!("{}/{name}", self.location),
        }
    }

    /// SQLite: the file of database `name`.
    pub fn file(&self, name: &str) -> PathBuf {
        PathBuf::from(&self.location).join(format!("{name}.sqlite"))
    }

    /// Drops database `name` if it exists and creates it again: empty, or (PostgreSQL) a
    /// copy of database `template`.
    pub async fn recreate(&self, name: &str, template: Option<&str>) -> Result<(), DbErr> {
        self.remove(name).await?;
        let create = match (self.backend, template) {
            (Backend::Sqlite, _) => return Ok(()),
            // FILE_COPY: a copy made from WAL records loses its visibility map on a
            // standby (index-only scans there would read the heap).
            (Backend::Postgres, Some(template)) => {
                format!(
                    "CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY",
                    self.quoted(name),
                    self.quoted(template)
                )
            }
            (_, None) => format!("CREATE DATABASE {}", self.quoted(name)),
            (Backend::MariaDb, Some(_)) => {
                return Err(DbErr::Custom("MariaDB has no template databases".into()));
            }
        };
        self.admin_execute(&create).await
    }

    /// Drops database `name` (ending its sessions), or removes its files.
    pub async fn remove(&self, name: &str) -> Result<(), DbErr> {
        let drop = match self.backend {
            Backend::Sqlite => {
                let path = self.file(name);
                for suffix in ["", "-wal", "-shm", "-journal"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
                return Ok(());
            }
            Backend::Postgres => {
                format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.quoted(name))
            }
            Backend::MariaDb => format!("DROP DATABASE IF EXISTS {}", self.quoted(name)),
        };
        self.admin_execute(&drop).await
    }

    /// `name` as an identifier; only plain names are accepted (they are ours).
    fn quoted(&self, name: &str) -> String {
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "database names are plain identifiers: {name}"
        );
        match self.backend {
            Backend::MariaDb => format!("`{name}`"),
            _ => format!("\"{name}\""),
        }
    }

    async fn admin_execute(&self, sql: &str) -> Result<(), DbErr> {
        let admin = match self.backend {
            Backend::Postgres => format!("{}/postgres", self.location),
            _ => self.location.clone(),
        };
        let conn = Database::connect(&admin).await?;
        conn.execute_unprepared(sql).await.map(drop)
    }
}
