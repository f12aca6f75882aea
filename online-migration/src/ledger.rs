//! Where a migration keeps its own records: the migrator lock's table and keys, and the
//! phase record's table. The migration's policy names them (they outlive any one version of
//! the code: a rolling deploy's replicas must agree on them).
//!
//! ```
//! use online_migration::ledger::Ledger;
//!
//! const LEDGER: Ledger = Ledger {
//!     lock_table: "billing_split_migrator",
//!     phase_table: "billing_split_phase",
//!     advisory_key: 0x6269_6c6c_5f73_706c,
//!     server_lock_name: "billing_split_migrator",
//! };
//! assert_eq!(LEDGER.lock_table, "billing_split_migrator");
//! ```

/// The names of a migration's own records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ledger {
    /// The table whose row says who holds the migrator lock (on MariaDB, the lease itself).
    pub lock_table: &'static str,
    /// The phase record's table (see [`crate::phase`]).
    pub phase_table: &'static str,
    /// PostgreSQL: the session advisory lock's key (advisory locks are per database).
    pub advisory_key: i64,
    /// MariaDB: the name of the `GET_LOCK` beside the lease (the database's name follows).
    pub server_lock_name: &'static str,
}
