//! Ids as the legacy database stores them.
//!
//! Old databases store UUIDs in whatever their application chose: `uuid` on PostgreSQL,
//! `BINARY(16)`, `CHAR(36)` or `UUID` on MariaDB, 16-byte blobs or text (any case) on SQLite.
//! The backfill never rewrites an id: it copies the parent's stored value into the join table
//! ([`StoredId`]) so foreign keys and joins keep working, and it compares ids by what they
//! mean ([`IdKey`]), so `ABC…` in a JSON document finds the agent stored as `abc…`.

use std::fmt;

use sea_orm_migration::sea_orm::Value;
use uuid::Uuid;

/// An id value exactly as read from the database.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum StoredId {
    /// A native UUID column (PostgreSQL `uuid`).
    Uuid(Uuid),
    /// Text: `CHAR(36)`, MariaDB `UUID`, SQLite text, in whatever case it was written.
    Text(String),
    /// Raw bytes: `BINARY(16)`, SQLite blobs.
    Bytes(Vec<u8>),
}

impl StoredId {
    /// What the id means: a UUID when it is one in any stored form.
    pub fn key(&self) -> IdKey {
        match self {
            Self::Uuid(uuid) => IdKey::Uuid(*uuid),
            Self::Bytes(bytes) if bytes.len() == 16 => {
                IdKey::Uuid(Uuid::from_slice(bytes).expect("16 bytes are a UUID"))
            }
            Self::Bytes(bytes) => IdKey::from_text(&String::from_utf8_lossy(bytes)),
            Self::Text(text) => IdKey::from_text(text),
        }
    }

    /// The value to bind so that the database sees the same stored id again.
    pub fn to_value(&self) -> Value {
        match self {
            Self::Uuid(uuid) => Value::Uuid(Some(*uuid)),
            Self::Text(text) => Value::String(Some(text.clone())),
            Self::Bytes(bytes) => Value::Bytes(Some(bytes.clone())),
        }
    }
}

/// An id by meaning: equal keys name the same row whatever their stored spelling.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum IdKey {
    /// An id that is a UUID, whatever its stored spelling.
    Uuid(Uuid),
    /// An id that is not a UUID (kept as text so it can still be compared and reported).
    Other(String),
}

impl IdKey {
    fn from_text(text: &str) -> Self {
        match Uuid::parse_str(text.trim()) {
            Ok(uuid) => Self::Uuid(uuid),
            Err(_) => Self::Other(text.to_owned()),
        }
    }

    /// The UUID, when the id is one.
    pub fn uuid(&self) -> Option<Uuid> {
        match self {
            Self::Uuid(uuid) => Some(*uuid),
            Self::Other(_) => None,
        }
    }
}

impl fmt::Display for IdKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Uuid(uuid) => uuid.hyphenated().fmt(f),
            Self::Other(text) => f.write_str(text),
        }
    }
}

/// The error for a row whose primary key is NULL (a table without a real primary key).
pub(crate) fn null_id() -> sea_orm_migration::DbErr {
    sea_orm_migration::DbErr::Migration("a row has a NULL primary key id".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b";

    #[test]
    fn every_stored_spelling_of_a_uuid_has_the_same_key() {
        let uuid = Uuid::parse_str(ID).unwrap();
        let spellings = [
            StoredId::Uuid(uuid),
            StoredId::Text(ID.to_owned()),
            StoredId::Text(ID.to_uppercase()),
            StoredId::Bytes(uuid.as_bytes().to_vec()),
            StoredId::Bytes(ID.as_bytes().to_vec()),
        ];
        for id in spellings {
            assert_eq!(id.key(), IdKey::Uuid(uuid), "{id:?}");
        }
    }

    #[test]
    fn a_non_uuid_id_keeps_its_text() {
        let key = StoredId::Text("agent-7".into()).key();
        assert_eq!(key, IdKey::Other("agent-7".into()));
        assert_eq!(key.uuid(), None);
        assert_eq!(key.to_string(), "agent-7");
    }
}
