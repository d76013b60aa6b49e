//! Compiles parsed MLflow filters and order_by terms into SQL. Every user value is a bound
//! parameter; keys become bound parameters too, never SQL text.

use crate::error::QueryError;
use crate::StoreError;
use mltrail_core::filter::{parse_filter, parse_order_by, Clause, Entity, Literal, Op};
use mltrail_core::state::ViewType;
use sqlx::any::AnyRow;
use sqlx::AnyConnection;

#[derive(Debug, Clone)]
pub(crate) enum Bind {
    Text(String),
    Int(i64),
    Float(f64),
}

/// SQL text plus its parameters, built incrementally.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    binds: Vec<Bind>,
}

impl Plan {
    pub(crate) fn bind(&mut self, value: Bind) -> String {
        self.binds.push(value);
        format!("${}", self.binds.len())
    }

    fn text(&mut self, value: impl Into<String>) -> String {
        self.bind(Bind::Text(value.into()))
    }

    pub(crate) async fn fetch(
        &self,
        sql: &str,
        conn: &mut AnyConnection,
    ) -> Result<Vec<AnyRow>, StoreError> {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()));
        for b in &self.binds {
            query = match b {
                Bind::Text(s) => query.bind(s.clone()),
                Bind::Int(i) => query.bind(*i),
                Bind::Float(f) => query.bind(*f),
            };
        }
        Ok(query.fetch_all(&mut *conn).await?)
    }
}

/// A compiled query ready to run.
pub(crate) struct Compiled {
    sql: String,
    plan: Plan,
}

impl Compiled {
    pub(crate) async fn fetch_all(
        &self,
        conn: &mut AnyConnection,
    ) -> Result<Vec<AnyRow>, StoreError> {
        self.plan.fetch(&self.sql, conn).await
    }
}

fn literal_bind(
    plan: &mut Plan,
    value: &Literal,
    numeric: bool,
    key: &str,
) -> Result<String, StoreError> {
    if numeric {
        let n = value
            .as_number()
            .ok_or_else(|| StoreError::from(QueryError::NotANumber(key.to_string())))?;
        if n.fract() == 0.0 && n.abs() < 9.0e15 {
            return Ok(plan.bind(Bind::Int(n as i64)));
        }
        return Ok(plan.bind(Bind::Float(n)));
    }
    let s = value
        .as_text()
        .ok_or_else(|| StoreError::from(QueryError::NotAString(key.to_string())))?;
    Ok(plan.text(s))
}

/// `column op value` for one clause on an already-resolved column expression.
pub(crate) fn compare(
    plan: &mut Plan,
    column: &str,
    clause: &Clause,
    numeric: bool,
) -> Result<String, StoreError> {
    let key = &clause.key;
    Ok(match clause.op {
        Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge => {
            if !numeric && matches!(clause.op, Op::Lt | Op::Le | Op::Gt | Op::Ge) {
                return Err(QueryError::StringComparator {
                    op: clause.op.sql(),
                    key: key.clone(),
                }
                .into());
            }
            let v = literal_bind(plan, &clause.value, numeric, key)?;
            format!("{column} {} {v}", clause.op.sql())
        }
        Op::Like => {
            let v = literal_bind(plan, &clause.value, false, key)?;
            format!("{column} LIKE {v}")
        }
        Op::ILike => {
            let v = literal_bind(plan, &clause.value, false, key)?;
            format!("LOWER({column}) LIKE LOWER({v})")
        }
        Op::In | Op::NotIn => {
            let Literal::List(items) = &clause.value else {
                return Err(QueryError::InNeedsList(key.clone()).into());
            };
            let binds = items
                .iter()
                .map(|i| literal_bind(plan, i, numeric, key))
                .collect::<Result<Vec<_>, _>>()?;
            format!("{column} {} ({})", clause.op.sql(), binds.join(", "))
        }
        Op::IsNull | Op::IsNotNull => format!("{column} {}", clause.op.sql()),
    })
}

fn run_attribute(key: &str) -> Result<(&'static str, bool), StoreError> {
    Ok(match key {
        "run_id" | "run_uuid" | "id" => ("r.run_uuid", false),
        "run_name" | "name" => ("r.run_name", false),
        "status" => ("r.status", false),
        "user_id" => ("r.user_id", false),
        "artifact_uri" => ("r.artifact_uri", false),
        "lifecycle_stage" => ("r.lifecycle_stage", false),
        "start_time" | "created" | "Created" => ("r.start_time", true),
        "end_time" => ("r.end_time", true),
        other => return Err(QueryError::RunAttribute(other.to_string()).into()),
    })
}

/// Which runs a query over runs returns when it is ordered by one metric, param or tag key.
/// MLflow's order puts the runs with a value first (by the value, then newest first) and the
/// rest after (newest first): asked as those two parts, each reads an index in order and stops
/// at the page (100,000 runs ordered by a metric: 0.1 ms a page against 143 ms sorting them all
/// with a LEFT JOIN; docs/benchmarks.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// Every run, in one query (any other order).
    All,
    /// The runs with a value for the key.
    Valued,
    /// The runs without one (the key missing, or a NaN metric).
    Unvalued,
    /// How many runs have a value (`SELECT COUNT(*)`; no order, limit or offset).
    CountValued,
}

/// Whether `order_by` is one metric, param or tag key: the order the query is asked in
/// [`Part`]s for.
pub(crate) fn ordered_by_one_key(order_by: &[String]) -> Result<bool, StoreError> {
    let terms: Vec<&String> = order_by.iter().filter(|t| !t.trim().is_empty()).collect();
    Ok(match terms.as_slice() {
        [term] => matches!(
            parse_order_by(term)?.entity,
            Entity::Metric | Entity::Param | Entity::Tag
        ),
        _ => false,
    })
}

/// Builds `SELECT r.* FROM runs r …` for `runs/search`.
pub(crate) fn runs_query(
    experiment_ids: &[i64],
    filter: &str,
    view: ViewType,
    order_by: &[String],
    limit: i64,
    offset: i64,
) -> Result<Compiled, StoreError> {
    runs_query_part(
        experiment_ids,
        filter,
        view,
        order_by,
        Part::All,
        limit,
        offset,
    )
}

/// [`runs_query`], or one [`Part`] of it when it is ordered by one key.
#[allow(clippy::too_many_arguments)]
pub(crate) fn runs_query_part(
    experiment_ids: &[i64],
    filter: &str,
    view: ViewType,
    order_by: &[String],
    part: Part,
    limit: i64,
    offset: i64,
) -> Result<Compiled, StoreError> {
    let clauses = parse_filter(filter)?;
    let mut plan = Plan::default();
    let mut joins = Vec::new();
    let mut conditions = Vec::new();
    let ids: Vec<String> = experiment_ids
        .iter()
        .map(|id| plan.bind(Bind::Int(*id)))
        .collect();
    if ids.is_empty() {
        return Err(QueryError::NoExperiment.into());
    }
    conditions.push(format!("r.experiment_id IN ({})", ids.join(", ")));
    let stages: Vec<String> = view.stages().iter().map(|s| plan.text(*s)).collect();
    conditions.push(format!("r.lifecycle_stage IN ({})", stages.join(", ")));
    for (n, clause) in clauses.iter().enumerate() {
        let alias = format!("f{n}");
        match clause.entity {
            Entity::Metric | Entity::Param | Entity::Tag => {
                let (table, column, numeric) = match clause.entity {
                    Entity::Metric => ("latest_metrics", "value", true),
                    Entity::Param => ("params", "value", false),
                    _ => ("tags", "value", false),
                };
                let key = plan.text(clause.key.clone());
                match clause.op {
                    Op::IsNull => conditions.push(format!("NOT EXISTS (SELECT 1 FROM {table} {alias} WHERE {alias}.run_uuid = r.run_uuid AND {alias}.key = {key})")),
                    Op::IsNotNull => conditions.push(format!("EXISTS (SELECT 1 FROM {table} {alias} WHERE {alias}.run_uuid = r.run_uuid AND {alias}.key = {key})")),
                    // A condition on each run, not a join: SQLite then walks the experiment's runs
                    // newest first and stops at the page, whatever share matches. As a join,
                    // its planner drove from the (key, value) index whenever its bounded
                    // statistics underestimated a key's rows, reading and sorting every match:
                    // 100,000 runs, half matching, 289 ms joined against 0.2 ms here (no match
                    // at all: 163 ms, a walk of every run); bench/ui_runs.py, docs/benchmarks.md.
                    _ => {
                        let cmp = compare(&mut plan, &format!("{alias}.{column}"), clause, numeric)?;
                        conditions.push(format!("EXISTS (SELECT 1 FROM {table} {alias} WHERE {alias}.run_uuid = r.run_uuid AND {alias}.key = {key} AND {cmp})"));
                    }
                }
            }
            Entity::Attribute => {
                let (column, numeric) = run_attribute(&clause.key)?;
                conditions.push(compare(&mut plan, column, clause, numeric)?);
            }
            Entity::Dataset => {
                let column = match clause.key.as_str() {
                    "name" => "d.dataset_name",
                    "digest" => "d.dataset_digest",
                    other => return Err(QueryError::DatasetKey(other.to_string()).into()),
                };
                let cmp = compare(&mut plan, column, clause, false)?;
                conditions.push(format!(
                    "EXISTS (SELECT 1 FROM run_inputs d WHERE d.run_uuid = r.run_uuid AND {cmp})"
                ));
            }
        }
    }
    let mut order = Vec::new();
    for (n, term) in order_by.iter().filter(|t| !t.trim().is_empty()).enumerate() {
        let term = parse_order_by(term)?;
        let dir = if term.ascending { "ASC" } else { "DESC" };
        match term.entity {
            Entity::Metric | Entity::Param | Entity::Tag => {
                let table = match term.entity {
                    Entity::Metric => "latest_metrics",
                    Entity::Param => "params",
                    _ => "tags",
                };
                let alias = format!("o{n}");
                let key = plan.text(term.key.clone());
                let has_value = format!("{alias}.run_uuid = r.run_uuid AND {alias}.key = {key} AND {alias}.value IS NOT NULL");
                // MLflow puts the runs with a value first whatever the direction, then (for a
                // metric) those whose value is NaN (stored as NULL with `is_nan`), then those
                // without the key.
                let metric = term.entity == Entity::Metric;
                match part {
                    Part::All => {
                        joins.push(format!("LEFT JOIN {table} {alias} ON {alias}.run_uuid = r.run_uuid AND {alias}.key = {key}"));
                        let rank = if metric {
                            format!("CASE WHEN {alias}.is_nan = 1 THEN 1 WHEN {alias}.value IS NULL THEN 2 ELSE 0 END")
                        } else {
                            format!("CASE WHEN {alias}.value IS NULL THEN 1 ELSE 0 END")
                        };
                        order.push(format!("{rank}, {alias}.value {dir}"));
                    }
                    Part::Valued | Part::CountValued => {
                        joins.push(format!("JOIN {table} {alias} ON {has_value}"));
                        order.push(format!("{alias}.value {dir}"));
                    }
                    Part::Unvalued => {
                        conditions.push(format!(
                            "NOT EXISTS (SELECT 1 FROM {table} {alias} WHERE {has_value})"
                        ));
                        if metric {
                            order.push(format!("CASE WHEN EXISTS (SELECT 1 FROM {table} {alias} WHERE {alias}.run_uuid = r.run_uuid AND {alias}.key = {key} AND {alias}.is_nan = 1) THEN 0 ELSE 1 END"));
                        }
                    }
                }
            }
            Entity::Attribute => {
                let (column, _) = run_attribute(&term.key)?;
                order.push(format!("{column} {dir}"));
            }
            Entity::Dataset => return Err(QueryError::OrderRunsByDataset.into()),
        }
    }
    if part == Part::CountValued {
        let sql = format!(
            "SELECT COUNT(*) AS n FROM runs r {} WHERE {}",
            joins.join(" "),
            conditions.join(" AND ")
        );
        return Ok(Compiled { sql, plan });
    }
    order.push("r.start_time DESC".into());
    order.push("r.run_uuid ASC".into());
    let limit = plan.bind(Bind::Int(limit));
    let offset = plan.bind(Bind::Int(offset));
    let sql = format!(
        "SELECT r.* FROM runs r {} WHERE {} ORDER BY {} LIMIT {limit} OFFSET {offset}",
        joins.join(" "),
        conditions.join(" AND "),
        order.join(", ")
    );
    Ok(Compiled { sql, plan })
}

/// Builds the query for `experiments/search`.
pub(crate) fn experiments_query(
    view: ViewType,
    filter: &str,
    order_by: &[String],
    limit: i64,
    offset: i64,
    visible: &crate::access::permissions::Visible<i64>,
) -> Result<Compiled, StoreError> {
    let clauses = parse_filter(filter)?;
    let mut plan = Plan::default();
    let stages: Vec<String> = view.stages().iter().map(|s| plan.text(*s)).collect();
    let mut conditions = vec![format!("e.lifecycle_stage IN ({})", stages.join(", "))];
    conditions.extend(visible.condition(&mut plan, "e.experiment_id", Bind::Int));
    for (n, clause) in clauses.iter().enumerate() {
        match clause.entity {
            Entity::Attribute => {
                let (column, numeric) = match clause.key.as_str() {
                    "name" => ("e.name", false),
                    "creation_time" => ("e.creation_time", true),
                    "last_update_time" => ("e.last_update_time", true),
                    "experiment_id" => ("e.experiment_id", true),
                    other => return Err(QueryError::ExperimentAttribute(other.to_string()).into()),
                };
                conditions.push(compare(&mut plan, column, clause, numeric)?);
            }
            Entity::Tag => {
                let alias = format!("t{n}");
                let key = plan.text(clause.key.clone());
                let cmp = match clause.op {
                    Op::IsNull | Op::IsNotNull => "1 = 1".to_string(),
                    _ => compare(&mut plan, &format!("{alias}.value"), clause, false)?,
                };
                let exists = if clause.op == Op::IsNull {
                    "NOT EXISTS"
                } else {
                    "EXISTS"
                };
                conditions.push(format!("{exists} (SELECT 1 FROM experiment_tags {alias} WHERE {alias}.experiment_id = e.experiment_id AND {alias}.key = {key} AND {cmp})"));
            }
            _ => return Err(QueryError::ExperimentEntity(clause.key.clone()).into()),
        }
    }
    let mut order = Vec::new();
    for term in order_by.iter().filter(|t| !t.trim().is_empty()) {
        let term = parse_order_by(term)?;
        let column = match (term.entity, term.key.as_str()) {
            (Entity::Attribute, "name") => "e.name",
            (Entity::Attribute, "creation_time") => "e.creation_time",
            (Entity::Attribute, "last_update_time") => "e.last_update_time",
            (Entity::Attribute, "experiment_id") => "e.experiment_id",
            _ => return Err(QueryError::ExperimentOrder(term.key.clone()).into()),
        };
        order.push(format!(
            "{column} {}",
            if term.ascending { "ASC" } else { "DESC" }
        ));
    }
    order.push("e.creation_time DESC".into());
    order.push("e.experiment_id ASC".into());
    let limit = plan.bind(Bind::Int(limit));
    let offset = plan.bind(Bind::Int(offset));
    let sql = format!(
        "SELECT e.* FROM experiments e WHERE {} ORDER BY {} LIMIT {limit} OFFSET {offset}",
        conditions.join(" AND "),
        order.join(", ")
    );
    Ok(Compiled { sql, plan })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_keys_are_bound_never_inlined() {
        let q = runs_query(
            &[1],
            "params.p = 'x''; DROP TABLE runs; --' AND metrics.`a b` > 0.5",
            ViewType::ActiveOnly,
            &["metrics.acc DESC".into()],
            10,
            0,
        )
        .unwrap();
        assert!(!q.sql.contains("DROP"));
        assert!(!q.sql.contains("a b"));
        assert!(q.sql.contains("LEFT JOIN latest_metrics o0"));
        // A filter is a condition on each run (the planner walks runs and stops at the page);
        // ordering by the same key reads its value apart.
        let filtered = runs_query(
            &[1],
            "metrics.acc > 0.5",
            ViewType::ActiveOnly,
            &["metrics.acc DESC".into()],
            10,
            0,
        )
        .unwrap();
        assert!(
            filtered
                .sql
                .contains("EXISTS (SELECT 1 FROM latest_metrics f0")
                && !filtered.sql.contains(" JOIN latest_metrics f0")
                && filtered.sql.contains("LEFT JOIN latest_metrics o0"),
            "{}",
            filtered.sql
        );
    }

    #[test]
    fn string_ordering_comparators_are_refused() {
        assert!(runs_query(&[1], "params.p > 'x'", ViewType::ActiveOnly, &[], 10, 0).is_err());
        assert!(runs_query(
            &[1],
            "attributes.colour = 'x'",
            ViewType::ActiveOnly,
            &[],
            10,
            0
        )
        .is_err());
    }
}
