//! The catalog a ranking deployment checks every served item against: a dataset version
//! (`mltrail data add catalog.csv --name catalog`), the newest followed while serving. An item
//! is in the catalog when it is listed, and available when an availability column says so.
//! Items out of the catalog are flagged in the impression's record, or filtered out of the
//! answer (`CatalogMode`).

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use mltrail_data::table::{Table, Values, MISSING};

use crate::deployment::{ModelSource, SourceError};

/// What a ranking does with an item the catalog does not hold (or holds unavailable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogMode {
    /// Served as scored; the record and the answer name it.
    Flag,
    /// Left out of the answer; the record and the answer name it.
    Filter,
}

impl CatalogMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CatalogMode::Flag => "flag",
            CatalogMode::Filter => "filter",
        }
    }
}

/// Which dataset is the catalog and how to read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogSpec {
    /// The dataset's name; its newest version is the catalog.
    pub name: String,
    /// The catalog's column of item ids.
    pub item_column: String,
    /// A column saying whether each item is available (booleans, 0/1, or true/false text);
    /// `None`: every listed item is.
    pub available_column: Option<String>,
    pub mode: CatalogMode,
}

/// Why a catalog version could not be used (the one before stays in force).
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("catalog {version}: {source}")]
    Table {
        version: String,
        #[source]
        source: mltrail_data::table::DataError,
    },
    #[error("catalog {version} has no column `{column}` (it has {columns})")]
    Column {
        version: String,
        column: String,
        columns: String,
    },
    #[error("catalog {version}: row {row} of `{column}` is {value}, beyond 2^53: ids that large cannot be compared exactly as numbers; store them as text")]
    LargeId {
        version: String,
        column: String,
        row: usize,
        value: f64,
    },
    #[error(
        "catalog {version}: row {row} of `{column}` is `{value}`, not a boolean (true/false, 1/0)"
    )]
    Availability {
        version: String,
        column: String,
        row: usize,
        value: String,
    },
}

/// One catalog version in memory: the ids of its available items, as text (an integer id in
/// decimal, as `crate::ranking::item_text` compares served ids).
#[derive(Debug, Clone, PartialEq)]
pub struct Catalog {
    /// `NAME@VERSION`.
    pub version: String,
    /// Where its file is stored (it changes with the content).
    pub path: String,
    available: HashSet<String>,
    /// Rows listed, available or not.
    pub listed: usize,
}

/// A cell as an item id, or `None` when missing; the row of a number too large to be an
/// exact id otherwise.
fn id_texts(values: &Values) -> Result<Vec<Option<String>>, (usize, f64)> {
    match values {
        Values::Numeric { values, .. } => values
            .iter()
            .enumerate()
            .map(|(row, v)| match *v {
                v if v.is_nan() => Ok(None),
                v if v.abs() > 9.007_199_254_740_992e15 => Err((row, v)),
                // As the tables name categories: a whole number without a fraction (`7`).
                v => Ok(Some(v.to_string())),
            })
            .collect(),
        Values::Text { .. } => Ok(values.categories()),
    }
}

impl Catalog {
    /// The catalog `spec` reads from `table`, dataset version `version` stored at `path`.
    pub fn from_table(
        spec: &CatalogSpec,
        version: String,
        path: String,
        table: &Table,
    ) -> Result<Self, CatalogError> {
        let column = |name: &str| {
            table.column(name).ok_or_else(|| CatalogError::Column {
                version: version.clone(),
                column: name.to_string(),
                columns: table
                    .columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        };
        let ids = id_texts(&column(&spec.item_column)?.values).map_err(|(row, value)| {
            CatalogError::LargeId {
                version: version.clone(),
                column: spec.item_column.clone(),
                row,
                value,
            }
        })?;
        let available: Vec<bool> = match &spec.available_column {
            None => vec![true; table.rows],
            Some(name) => {
                let bad = |row: usize, value: String| CatalogError::Availability {
                    version: version.clone(),
                    column: name.clone(),
                    row,
                    value,
                };
                match &column(name)?.values {
                    Values::Numeric { values, .. } => values
                        .iter()
                        .enumerate()
                        .map(|(row, &v)| {
                            if v == 1.0 {
                                Ok(true)
                            } else if v == 0.0 || v.is_nan() {
                                Ok(false)
                            } else {
                                Err(bad(row, v.to_string()))
                            }
                        })
                        .collect::<Result<_, _>>()?,
                    Values::Text { labels, codes } => codes
                        .iter()
                        .enumerate()
                        .map(|(row, code)| {
                            if *code == MISSING {
                                return Ok(false);
                            }
                            match labels[*code as usize].as_str() {
                                "true" | "True" | "TRUE" | "1" => Ok(true),
                                "false" | "False" | "FALSE" | "0" => Ok(false),
                                other => Err(bad(row, other.to_string())),
                            }
                        })
                        .collect::<Result<_, _>>()?,
                }
            }
        };
        Ok(Catalog {
            version,
            path,
            available: ids
                .into_iter()
                .zip(available)
                .filter_map(|(id, yes)| id.filter(|_| yes))
                .collect(),
            listed: table.rows,
        })
    }

    /// Whether item `id` is in the catalog and available.
    pub fn contains(&self, id: &str) -> bool {
        self.available.contains(id)
    }

    /// How many items are available.
    pub fn available(&self) -> usize {
        self.available.len()
    }
}

/// A deployment's catalog: what it reads and the version in force.
pub struct CatalogState {
    pub spec: CatalogSpec,
    current: RwLock<Option<Arc<Catalog>>>,
}

impl CatalogState {
    pub fn new(spec: CatalogSpec) -> Self {
        CatalogState {
            spec,
            current: RwLock::new(None),
        }
    }

    /// The version in force (`None` before the first load).
    pub fn current(&self) -> Option<Arc<Catalog>> {
        self.current
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Loads the catalog's newest version when it differs from the one in force: the new
    /// version when one was put in force, `None` when it was the same.
    pub async fn refresh(
        &self,
        source: &dyn ModelSource,
    ) -> Result<Option<Arc<Catalog>>, CatalogError> {
        let stored = source
            .dataset(&format!("{}@latest", self.spec.name))
            .await?;
        if self.current().is_some_and(|c| c.path == stored.path) {
            return Ok(None);
        }
        let bytes = source.read(&stored.path).await?;
        let version = format!("{}@{}", self.spec.name, stored.version);
        let spec = self.spec.clone();
        let path = stored.path.clone();
        let file_name = stored.file_name.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let table = mltrail_data::table::read_bytes(&file_name, &bytes).map_err(|source| {
                CatalogError::Table {
                    version: version.clone(),
                    source,
                }
            })?;
            Catalog::from_table(&spec, version, path, &table)
        })
        .await
        .map_err(|e| CatalogError::Source(SourceError::unavailable("the catalog's load", e)))??;
        let loaded = Arc::new(loaded);
        let mut guard = self.current.write().unwrap_or_else(|p| p.into_inner());
        *guard = Some(loaded.clone());
        Ok(Some(loaded))
    }

    /// Follows the catalog's newest version every `every`: a new version is in force for the
    /// next request; one that cannot be read is logged and the one before stays.
    pub fn follow(
        self: &Arc<Self>,
        source: Arc<dyn ModelSource>,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let state = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match state.refresh(source.as_ref()).await {
                    Ok(Some(c)) => {
                        tracing::info!(catalog = %c.version, listed = c.listed, available = c.available(), "catalog version in force")
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(catalog = %state.spec.name, error = %e, "the catalog's newest version could not be loaded; the one before stays in force")
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(available: Option<&str>) -> CatalogSpec {
        CatalogSpec {
            name: "c".into(),
            item_column: "item".into(),
            available_column: available.map(str::to_string),
            mode: CatalogMode::Flag,
        }
    }

    fn table(csv: &str) -> Table {
        mltrail_data::table::read_bytes("c.csv", csv.as_bytes()).unwrap()
    }

    #[test]
    fn listed_items_are_in_unless_marked_unavailable() {
        let t = table("item,available\na,true\nb,false\n7,1\n,true\n");
        let all = Catalog::from_table(&spec(None), "c@1".into(), "p".into(), &t).unwrap();
        assert!(all.contains("a") && all.contains("b") && all.contains("7"));
        assert_eq!(
            (all.available(), all.listed),
            (3, 4),
            "a missing id is no item"
        );
        let some = Catalog::from_table(&spec(Some("available")), "c@1".into(), "p".into(), &t);
        let some = some.unwrap();
        assert!(some.contains("a") && !some.contains("b"));
        let numbers = table("item,available\n10,1\n11,0\n");
        let c = Catalog::from_table(&spec(Some("available")), "c@2".into(), "p".into(), &numbers)
            .unwrap();
        assert!(c.contains("10") && !c.contains("11") && !c.contains("10.0"));
    }

    #[test]
    fn a_bad_catalog_is_refused_with_the_column_and_row() {
        let t = table("item,available\na,maybe\n");
        let e = Catalog::from_table(&spec(Some("available")), "c@1".into(), "p".into(), &t)
            .unwrap_err();
        assert!(
            e.to_string().contains("row 0 of `available` is `maybe`"),
            "{e}"
        );
        let e =
            Catalog::from_table(&spec(Some("stock")), "c@1".into(), "p".into(), &t).unwrap_err();
        assert!(e.to_string().contains("no column `stock`"), "{e}");
    }
}
