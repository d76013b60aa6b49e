//! XGBoost models as `save_model` writes them (JSON, or UBJSON: `mlflow.xgboost.log_model`'s
//! default `model.ubj`), read into an [`Ensemble`]. A branch sends `x < split_condition` left
//! and a missing value to `default_left`; a leaf's value is its `split_condition`; the base
//! score is stored as a probability for logistic objectives (its logit is the base margin).

use serde_json::Value;

use super::{ubjson, Comparison, Ensemble, FlavorError, Node, Output, TreeSpec};

fn bad(why: impl Into<String>) -> FlavorError {
    FlavorError::Format {
        format: "XGBoost",
        why: why.into(),
    }
}

fn unsupported(what: impl Into<String>, why: impl Into<String>) -> FlavorError {
    FlavorError::Unsupported {
        what: what.into(),
        why: why.into(),
    }
}

/// A number XGBoost stores as a number or as text (`"5E-1"`, `"[5E-1]"`, `"[5E-1,2E-1]"`).
fn numbers(v: &Value, field: &str) -> Result<Vec<f64>, FlavorError> {
    match v {
        Value::Number(n) => n.as_f64().map(|f| vec![f]).ok_or_else(|| bad(field)),
        Value::String(s) => s
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split(',')
            .map(|p| {
                p.trim()
                    .parse::<f64>()
                    .map_err(|_| bad(format!("`{field}` is `{s}`")))
            })
            .collect(),
        Value::Array(items) => items.iter().map(|i| Ok(numbers(i, field)?[0])).collect(),
        _ => Err(bad(format!("`{field}` is missing"))),
    }
}

fn count(v: &Value, field: &str) -> Result<usize, FlavorError> {
    let n = numbers(v, field)?;
    match n.as_slice() {
        [x] if *x >= 0.0 && x.fract() == 0.0 => Ok(*x as usize),
        _ => Err(bad(format!("`{field}` is not a count"))),
    }
}

fn array<'a>(tree: &'a Value, field: &str) -> Result<&'a Vec<Value>, FlavorError> {
    tree[field]
        .as_array()
        .ok_or_else(|| bad(format!("a tree has no `{field}`")))
}

fn ints(tree: &Value, field: &str) -> Result<Vec<i64>, FlavorError> {
    array(tree, field)?
        .iter()
        .map(|v| match v {
            Value::Bool(b) => Some(i64::from(*b)),
            other => other.as_i64(),
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| bad(format!("`{field}` holds a non-integer")))
}

fn reals(tree: &Value, field: &str) -> Result<Vec<f64>, FlavorError> {
    array(tree, field)?
        .iter()
        .map(Value::as_f64)
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| bad(format!("`{field}` holds a non-number")))
}

fn document(file_name: &str, bytes: &[u8]) -> Result<Value, FlavorError> {
    let json = || {
        serde_json::from_slice::<Value>(bytes).map_err(|e| FlavorError::Format {
            format: "XGBoost JSON",
            why: e.to_string(),
        })
    };
    if file_name.ends_with(".json") {
        return json();
    }
    match ubjson::decode(bytes) {
        Ok(v) => Ok(v),
        // A `.xgb` file may be JSON too; XGBoost's old binary format is neither.
        Err(e) => json().map_err(|_| {
            unsupported(
                format!("`{file_name}`"),
                format!("it is neither UBJSON ({e}) nor JSON; save the model with XGBoost 1.0 or later as .json or .ubj"),
            )
        }),
    }
}

pub fn read(file_name: &str, bytes: &[u8]) -> Result<Ensemble, FlavorError> {
    let doc = document(file_name, bytes)?;
    let learner = &doc["learner"];
    let param = &learner["learner_model_param"];
    let features = count(&param["num_feature"], "num_feature")?;
    let classes = count(&param["num_class"], "num_class").unwrap_or(0);
    if classes > super::MAX_CLASSES {
        return Err(bad(format!(
            "{classes} classes (at most {})",
            super::MAX_CLASSES
        )));
    }
    if param.get("num_target").is_some() && count(&param["num_target"], "num_target")? > 1 {
        return Err(unsupported("a multi-target model", "one target is read"));
    }
    let base_score: Vec<f64> = numbers(&param["base_score"], "base_score")?
        .into_iter()
        .map(|b| f64::from(b as f32))
        .collect();
    let objective = learner["objective"]["name"]
        .as_str()
        .ok_or_else(|| bad("no objective"))?;
    let booster = &learner["gradient_booster"];
    let (model, drop_weights) = match booster["name"].as_str() {
        Some("gbtree") => (&booster["model"], None),
        Some("dart") => (
            &booster["gbtree"]["model"],
            Some(
                booster["weight_drop"]
                    .as_array()
                    .ok_or_else(|| bad("a dart booster without `weight_drop`"))?
                    .iter()
                    .map(Value::as_f64)
                    .collect::<Option<Vec<f64>>>()
                    .ok_or_else(|| bad("`weight_drop` holds a non-number"))?,
            ),
        ),
        other => {
            return Err(unsupported(
                format!("the {} booster", other.unwrap_or("unnamed")),
                "tree boosters (gbtree, dart) are read; a linear booster is not",
            ))
        }
    };
    let trees = model["trees"].as_array().ok_or_else(|| bad("no trees"))?;
    let tree_info = model["tree_info"]
        .as_array()
        .ok_or_else(|| bad("no tree_info"))?;
    if tree_info.len() != trees.len() {
        return Err(bad("`tree_info` does not name a class per tree"));
    }
    let groups = classes.max(1);
    let mut specs = Vec::with_capacity(trees.len());
    for (t, tree) in trees.iter().enumerate() {
        let class = tree_info[t]
            .as_u64()
            .and_then(|c| usize::try_from(c).ok())
            .filter(|c| *c < groups)
            .ok_or_else(|| bad(format!("tree {t} names no class below {groups}")))?;
        let left = ints(tree, "left_children")?;
        let right = ints(tree, "right_children")?;
        let index = ints(tree, "split_indices")?;
        let condition = reals(tree, "split_conditions")?;
        let default_left = ints(tree, "default_left")?;
        let hessian = reals(tree, "sum_hessian")?;
        let n = left.len();
        if [
            right.len(),
            index.len(),
            condition.len(),
            default_left.len(),
            hessian.len(),
        ]
        .iter()
        .any(|l| *l != n)
            || n == 0
        {
            return Err(bad(format!("tree {t}'s node arrays differ in length")));
        }
        if tree
            .get("split_type")
            .and_then(Value::as_array)
            .is_some_and(|types| types.iter().any(|v| v.as_i64() != Some(0)))
        {
            return Err(unsupported(
                "categorical splits",
                "train with numeric features (enable_categorical=False)",
            ));
        }
        let scale = match &drop_weights {
            Some(w) => *w.get(t).ok_or_else(|| bad("`weight_drop` is short"))?,
            None => 1.0,
        };
        let child = |c: i64| usize::try_from(c).ok().filter(|c| *c < n && *c > 0);
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            // XGBoost holds every threshold and leaf as a float32 and compares float32 inputs:
            // a JSON file writes them as decimals, which must be rounded back to float32 (a
            // threshold of 0.7 read as a double would send an input of 0.7f32 the other way).
            let condition = f64::from(condition[i] as f32);
            nodes.push(if left[i] == -1 {
                Node::Leaf {
                    value: f64::from((condition * scale) as f32),
                    cover: hessian[i],
                }
            } else {
                Node::Split {
                    feature: usize::try_from(index[i])
                        .ok()
                        .filter(|f| *f < features)
                        .ok_or_else(|| bad(format!("tree {t} splits on feature {}", index[i])))?,
                    threshold: condition,
                    missing_left: default_left[i] != 0,
                    left: child(left[i])
                        .ok_or_else(|| bad(format!("tree {t} node {i}: bad left child")))?,
                    right: child(right[i])
                        .ok_or_else(|| bad(format!("tree {t} node {i}: bad right child")))?,
                    cover: hessian[i],
                }
            });
        }
        specs.push(TreeSpec { class, nodes });
    }
    let first = *base_score.first().ok_or_else(|| bad("no base_score"))?;
    let output = match objective {
        "binary:logistic" => {
            if !(first > 0.0 && first < 1.0) {
                return Err(bad(format!("base_score {first} is not a probability")));
            }
            Output::Binary {
                base: (first / (1.0 - first)).ln(),
            }
        }
        "reg:squarederror" | "reg:absoluteerror" | "reg:pseudohubererror"
        | "reg:quantileerror" => Output::Regression { base: first },
        "multi:softprob" | "multi:softmax" => {
            if classes < 2 {
                return Err(bad("a multi-class objective with fewer than two classes"));
            }
            let base = match base_score.len() {
                1 => vec![first; classes],
                n if n == classes => base_score.clone(),
                n => return Err(bad(format!("{n} base scores for {classes} classes"))),
            };
            Output::Multiclass { base }
        }
        other => {
            return Err(unsupported(
                format!("the objective `{other}`"),
                "read are binary:logistic, multi:softprob, multi:softmax and the reg: objectives without an output transform",
            ))
        }
    };
    Ok(Ensemble {
        features,
        comparison: Comparison::Less,
        trees: specs,
        output,
        float32_input: true,
        labels: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One stump, as `save_model("m.json")` writes it: decimals that XGBoost holds as float32.
    const STUMP: &str = r#"{"learner": {
        "learner_model_param": {"base_score": "6E-1", "num_class": "0", "num_feature": "2", "num_target": "1"},
        "objective": {"name": "binary:logistic"},
        "gradient_booster": {"name": "gbtree", "model": {"tree_info": [0], "trees": [{
            "left_children": [1, -1, -1], "right_children": [2, -1, -1],
            "split_indices": [1, 0, 0], "split_conditions": [0.7, -0.1, 0.3],
            "default_left": [1, 0, 0], "sum_hessian": [10.0, 4.0, 6.0], "split_type": [0, 0, 0]
        }]}}
    }, "version": [3, 2, 0]}"#;

    #[test]
    fn a_json_model_is_held_in_float32_as_xgboost_holds_it() {
        let e = read("model.json", STUMP.as_bytes()).unwrap();
        assert_eq!(e.features, 2);
        let Node::Split {
            threshold,
            missing_left,
            ..
        } = e.trees[0].nodes[0]
        else {
            panic!("a split");
        };
        // An input of 0.7 (float32) is not below the float32 threshold 0.7, as in XGBoost.
        assert_eq!(threshold, f64::from(0.7f32));
        assert!(f64::from(0.7f32) >= threshold);
        assert!(missing_left);
        assert_eq!(
            e.trees[0].nodes[1],
            Node::Leaf {
                value: f64::from(-0.1f32),
                cover: 4.0
            }
        );
        let base = f64::from(0.6f32);
        assert_eq!(
            e.output,
            Output::Binary {
                base: (base / (1.0 - base)).ln()
            }
        );
    }

    #[test]
    fn unsupported_models_are_refused_by_name() {
        let poisson = STUMP.replace("binary:logistic", "count:poisson");
        assert!(read("model.json", poisson.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("count:poisson"));
        let categorical = STUMP.replace("\"split_type\": [0, 0, 0]", "\"split_type\": [1, 0, 0]");
        assert!(read("model.json", categorical.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("categorical"));
        let many = STUMP.replace("\"num_class\": \"0\"", "\"num_class\": \"99999999999\"");
        assert!(read("model.json", many.as_bytes()).is_err());
        assert!(read("model.xgb", b"binf\x00\x00").is_err());
    }
}
