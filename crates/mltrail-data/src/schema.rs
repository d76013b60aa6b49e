//! A dataset's schema: each column's name, how monitoring treats it (numeric, categorical, free
//! text, a date-time), whether it has missing values, and whether it holds personal data.
//! Inferred from the data and its profile, then refined by what the user declares.
//!
//! Stored with each dataset version as JSON (`[{"name", "type", "nullable", "pii"}, …]`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::profile::ColumnProfile;
use crate::table::{Table, Values, CATEGORICAL_INTEGER_MAX_DISTINCT};

/// How drift treats a column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnType {
    Numeric,
    Categorical,
    /// Free text: left out of drift.
    Text,
    /// A timestamp: left out of drift.
    Datetime,
    /// A type this version of mltrail does not know (a schema written by a newer one), kept as
    /// written so that comparing two schemas still sees it change.
    Other(String),
}

impl ColumnType {
    pub fn name(&self) -> &str {
        match self {
            ColumnType::Numeric => "numeric",
            ColumnType::Categorical => "categorical",
            ColumnType::Text => "text",
            ColumnType::Datetime => "datetime",
            ColumnType::Other(name) => name,
        }
    }

    fn parse(name: &str) -> Self {
        match name {
            "numeric" => ColumnType::Numeric,
            "categorical" => ColumnType::Categorical,
            "text" => ColumnType::Text,
            "datetime" => ColumnType::Datetime,
            other => ColumnType::Other(other.to_string()),
        }
    }
}

impl Serialize for ColumnType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for ColumnType {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(ColumnType::parse(&String::deserialize(deserializer)?))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchemaColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ColumnType,
    #[serde(default)]
    pub nullable: bool,
    #[serde(default)]
    pub pii: bool,
    /// The column naming the person each row is about (at most one per schema): models
    /// trained on the data seal their logged personal data per value of it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub subject: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DatasetSchema {
    pub columns: Vec<SchemaColumn>,
}

/// What a user declares about columns (`--schema schema.toml`: `[columns.age] type = "numeric"`,
/// `pii = true`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredSchema {
    #[serde(default)]
    pub columns: BTreeMap<String, DeclaredColumn>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredColumn {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub pii: bool,
    /// This column names the person each row is about (personal data itself).
    #[serde(default)]
    pub subject: bool,
}

/// A declaration that does not fit the data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("column `{0}` is not in the data")]
    NoSuchColumn(String),
    #[error("column `{0}` holds text; it cannot be numeric")]
    TextAsNumeric(String),
    #[error("column `{column}` has unknown type `{kind}` (numeric, categorical, text, datetime)")]
    UnknownType { column: String, kind: String },
    #[error("columns `{0}` and `{1}` are both marked `subject`: a row is about one person")]
    TwoSubjects(String, String),
}

/// One difference between two schemas, A to B.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaChange {
    Removed {
        column: String,
    },
    Retyped {
        column: String,
        from: ColumnType,
        to: ColumnType,
    },
    Added {
        column: String,
        kind: ColumnType,
    },
}

impl DatasetSchema {
    /// Column types as monitoring uses them: text, and integers with at most
    /// [`CATEGORICAL_INTEGER_MAX_DISTINCT`] distinct values, are categorical; other numbers are
    /// numeric. `profiles` are the table's, column for column.
    pub fn infer(table: &Table, profiles: &[ColumnProfile]) -> Self {
        let columns = table
            .columns
            .iter()
            .zip(profiles)
            .map(|(c, p)| {
                let kind = match &c.values {
                    Values::Text { .. } => ColumnType::Categorical,
                    Values::Numeric { integer: true, .. }
                        if p.distinct as usize <= CATEGORICAL_INTEGER_MAX_DISTINCT =>
                    {
                        ColumnType::Categorical
                    }
                    Values::Numeric { .. } => ColumnType::Numeric,
                };
                SchemaColumn {
                    name: c.name.clone(),
                    kind,
                    nullable: p.missing > 0,
                    pii: false,
                    subject: false,
                }
            })
            .collect();
        DatasetSchema { columns }
    }

    /// A stored schema; entries that are not columns (a schema from elsewhere, such as one
    /// `mlflow.log_input` recorded) are left out.
    pub fn from_json(value: &serde_json::Value) -> Self {
        let columns = value
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| serde_json::from_value(c.clone()).ok())
            .collect();
        DatasetSchema { columns }
    }

    pub fn column(&self, name: &str) -> Option<&SchemaColumn> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Applies what the user declared: every declared column must exist, every type must be
    /// known and fit the data.
    pub fn apply(&mut self, table: &Table, declared: &DeclaredSchema) -> Result<(), SchemaError> {
        for (name, decl) in &declared.columns {
            let data = table
                .column(name)
                .ok_or_else(|| SchemaError::NoSuchColumn(name.clone()))?;
            let entry = self
                .columns
                .iter_mut()
                .find(|c| &c.name == name)
                .ok_or_else(|| SchemaError::NoSuchColumn(name.clone()))?;
            if let Some(kind) = &decl.kind {
                entry.kind = match (kind.as_str(), &data.values) {
                    ("numeric", Values::Text { .. }) => {
                        return Err(SchemaError::TextAsNumeric(name.clone()))
                    }
                    ("numeric", _) => ColumnType::Numeric,
                    ("categorical", _) => ColumnType::Categorical,
                    ("text", _) => ColumnType::Text,
                    ("datetime", _) => ColumnType::Datetime,
                    (other, _) => {
                        return Err(SchemaError::UnknownType {
                            column: name.clone(),
                            kind: other.to_string(),
                        })
                    }
                };
            }
            entry.pii = decl.pii || decl.subject;
            entry.subject = decl.subject;
        }
        let mut subjects = self.columns.iter().filter(|c| c.subject);
        if let (Some(a), Some(b)) = (subjects.next(), subjects.next()) {
            return Err(SchemaError::TwoSubjects(a.name.clone(), b.name.clone()));
        }
        Ok(())
    }

    /// What changed from `self` (A) to `other` (B): removed and retyped columns in A's order,
    /// then added ones in B's.
    pub fn changes_to(&self, other: &DatasetSchema) -> Vec<SchemaChange> {
        let mut changes = Vec::new();
        for a in &self.columns {
            match other.column(&a.name) {
                None => changes.push(SchemaChange::Removed {
                    column: a.name.clone(),
                }),
                Some(b) if b.kind != a.kind => changes.push(SchemaChange::Retyped {
                    column: a.name.clone(),
                    from: a.kind.clone(),
                    to: b.kind.clone(),
                }),
                Some(_) => {}
            }
        }
        for b in other
            .columns
            .iter()
            .filter(|b| self.column(&b.name).is_none())
        {
            changes.push(SchemaChange::Added {
                column: b.name.clone(),
                kind: b.kind.clone(),
            });
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(columns: &[(&str, ColumnType)]) -> DatasetSchema {
        DatasetSchema {
            columns: columns
                .iter()
                .map(|(name, kind)| SchemaColumn {
                    name: name.to_string(),
                    kind: kind.clone(),
                    nullable: false,
                    pii: false,
                    subject: false,
                })
                .collect(),
        }
    }

    #[test]
    fn stored_json_round_trips_and_foreign_entries_are_skipped() {
        let stored = serde_json::json!([
            {"name": "age", "type": "numeric", "nullable": true, "pii": false},
            {"name": "city", "type": "categorical", "nullable": false, "pii": true},
            {"name": "when", "type": "someday", "nullable": false, "pii": false},
            {"mlflow_colspec": []}
        ]);
        let s = DatasetSchema::from_json(&stored);
        assert_eq!(s.columns.len(), 3);
        assert!(s.columns[0].nullable && s.columns[1].pii);
        assert_eq!(s.columns[2].kind, ColumnType::Other("someday".into()));
        let back = serde_json::to_value(&s).unwrap();
        assert_eq!(back[1], stored[1]);
        assert_eq!(back[2], stored[2], "an unknown type is kept as written");
    }

    #[test]
    fn changes_are_listed_in_order() {
        let a = schema(&[("x", ColumnType::Numeric), ("y", ColumnType::Categorical)]);
        let b = schema(&[("x", ColumnType::Categorical), ("z", ColumnType::Text)]);
        assert_eq!(
            a.changes_to(&b),
            vec![
                SchemaChange::Retyped {
                    column: "x".into(),
                    from: ColumnType::Numeric,
                    to: ColumnType::Categorical
                },
                SchemaChange::Removed { column: "y".into() },
                SchemaChange::Added {
                    column: "z".into(),
                    kind: ColumnType::Text
                },
            ]
        );
        assert!(a.changes_to(&a).is_empty());
    }
}
