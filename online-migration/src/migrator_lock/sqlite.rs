//! SQLite: an exclusive `flock` on the database file. SQLite's own locks are `fcntl`
//! locks, which Linux keeps apart from `flock`, so readers and writers of the file are not
//! disturbed; the lock ends when the file is closed, by the process or its death.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseExecutor, Statement};

/// The file of the main database; `None` for an in-memory or temporary one.
pub(super) async fn database_file(db: &DatabaseExecutor<'_>) -> Result<Option<PathBuf>, DbErr> {
    let statement = Statement::from_string(
        db.get_database_backend(),
        "SELECT file FROM pragma_database_list WHERE name = 'main'",
    );
    let file: Option<String> = match db.query_one_raw(statement).await? {
        Some(row) => row.try_get_by_index(0)?,
        None => None,
    };
    Ok(file.filter(|f| !f.is_empty()).map(PathBuf::from))
}

/// One attempt; `None` while another process holds it.
pub(super) fn try_lock(path: &Path) -> Result<Option<File>, DbErr> {
    let error = |e: std::io::Error| {
        DbErr::Migration(format!("the migrator lock on {}: {e}", path.display()))
    };
    let file = File::open(path).map_err(error)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(error(e)),
    }
}
