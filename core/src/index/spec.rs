//! What an index is: its name, fields and flags. Specs travel in the log (`CreateIndex`) and in
//! snapshots, so they are plain serializable data.

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;

/// Most fields in one compound index.
pub const INDEX_FIELDS_MAX: usize = 8;
/// Most secondary indexes on one collection.
pub const INDEXES_PER_COLLECTION_MAX: usize = 32;

/// One field of an index: a dotted path and its direction.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IndexField {
    /// Dotted path into the document, e.g. `"address.city"`.
    pub path: String,
    /// Descending order for this field.
    #[serde(default)]
    pub desc: bool,
}

/// A secondary index over one or more fields.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IndexSpec {
    /// Unique within its collection.
    pub name: String,
    /// The fields, most significant first.
    pub fields: Vec<IndexField>,
    /// No two documents may have the same key.
    #[serde(default)]
    pub unique: bool,
    /// Documents missing every indexed field are left out of the index (and so out of its
    /// uniqueness check). Without `sparse`, a missing field is indexed as `null`.
    #[serde(default)]
    pub sparse: bool,
}

/// Why an index spec was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexSpecError {
    #[error("index name `{0}` is invalid: use 1-64 characters from [A-Za-z0-9_.-]")]
    InvalidName(String),
    #[error("an index needs 1 to {INDEX_FIELDS_MAX} fields")]
    FieldCount,
    #[error("index field path `{0}` is invalid")]
    InvalidPath(String),
    #[error("index field `{0}` appears twice")]
    DuplicateField(String),
}

impl ErrorCode for IndexSpecError {
    fn code(&self) -> &'static str {
        "invalid_index"
    }
}

impl IndexSpec {
    /// A single-field ascending index.
    pub fn single(name: &str, path: &str) -> IndexSpec {
        IndexSpec {
            name: name.to_string(),
            fields: vec![IndexField {
                path: path.to_string(),
                desc: false,
            }],
            unique: false,
            sparse: false,
        }
    }

    /// A compound index over `(path, descending)` fields, most significant first.
    pub fn compound(name: &str, fields: &[(&str, bool)]) -> IndexSpec {
        IndexSpec {
            name: name.to_string(),
            fields: fields
                .iter()
                .map(|(path, desc)| IndexField {
                    path: path.to_string(),
                    desc: *desc,
                })
                .collect(),
            unique: false,
            sparse: false,
        }
    }

    /// The same spec, unique.
    #[must_use]
    pub fn unique(mut self) -> IndexSpec {
        self.unique = true;
        self
    }

    /// The same spec, sparse.
    #[must_use]
    pub fn sparse(mut self) -> IndexSpec {
        self.sparse = true;
        self
    }

    /// Checks the name and the fields.
    pub fn validate(&self) -> Result<(), IndexSpecError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !name_ok {
            return Err(IndexSpecError::InvalidName(self.name.clone()));
        }
        if self.fields.is_empty() || self.fields.len() > INDEX_FIELDS_MAX {
            return Err(IndexSpecError::FieldCount);
        }
        for (i, field) in self.fields.iter().enumerate() {
            if !valid_path(&field.path) {
                return Err(IndexSpecError::InvalidPath(field.path.clone()));
            }
            if self.fields[..i].iter().any(|f| f.path == field.path) {
                return Err(IndexSpecError::DuplicateField(field.path.clone()));
            }
        }
        Ok(())
    }
}

/// A dotted path: non-empty segments, none starting with `$`, at most 256 bytes.
pub fn valid_path(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 256
        && path
            .split('.')
            .all(|seg| !seg.is_empty() && !seg.starts_with('$'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates() {
        assert!(IndexSpec::single("by_age", "age").validate().is_ok());
        assert!(
            IndexSpec::single("by_city", "address.city")
                .unique()
                .validate()
                .is_ok()
        );
        assert!(IndexSpec::single("", "a").validate().is_err());
        assert!(IndexSpec::single("x y", "a").validate().is_err());
        assert!(IndexSpec::single("x", "a..b").validate().is_err());
        assert!(IndexSpec::single("x", "$a").validate().is_err());
        let mut dup = IndexSpec::single("d", "a");
        dup.fields.push(IndexField {
            path: "a".into(),
            desc: true,
        });
        assert_eq!(
            dup.validate(),
            Err(IndexSpecError::DuplicateField("a".into()))
        );
        let none = IndexSpec {
            fields: vec![],
            ..IndexSpec::single("n", "a")
        };
        assert_eq!(none.validate(), Err(IndexSpecError::FieldCount));
    }
}
