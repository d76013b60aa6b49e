//! Tree models logged by `mlflow.xgboost.log_model` and `mlflow.lightgbm.log_model`, read in
//! Rust (no Python at serve time) into one tree-ensemble description, then written as the ONNX
//! `TreeEnsembleClassifier`/`TreeEnsembleRegressor` graph the ONNX path compiles: serving, its
//! checks and TreeSHAP then see exactly the structures an ONNX-logged ensemble gives them.
//! Thresholds, leaf values and base scores are kept as doubles (`*_as_tensor`), so nothing is
//! rounded on the way; the input is a float tensor for XGBoost (which compares in float32) and a
//! double tensor for LightGBM (which compares in float64).

pub mod lightgbm;
mod onnx;
pub mod ubjson;
pub mod xgboost;

/// Why a logged model could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FlavorError {
    #[error("not a valid {format} model: {why}")]
    Format { format: &'static str, why: String },
    #[error("{what} is not supported by the native reader: {why}")]
    Unsupported { what: String, why: String },
}

/// How a branch compares a feature with its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// `x < t` goes left (XGBoost).
    Less,
    /// `x <= t` goes left (LightGBM).
    LessOrEqual,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Split {
        feature: usize,
        threshold: f64,
        /// Whether a missing value (NaN) goes left.
        missing_left: bool,
        left: usize,
        right: usize,
        /// Training weight through the node (TreeSHAP's cover).
        cover: f64,
    },
    Leaf {
        value: f64,
        cover: f64,
    },
}

/// One tree: its nodes (the root first) and the class its leaves add to.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeSpec {
    pub class: usize,
    pub nodes: Vec<Node>,
}

/// What the summed leaves become.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// The sum itself, plus `base`.
    Regression { base: f64 },
    /// Two classes: `p = sigmoid(base + sum)`, answered as `[1 - p, p]`.
    Binary { base: f64 },
    /// `softmax(base[c] + sum over class c's trees)`.
    Multiclass { base: Vec<f64> },
}

/// A tree ensemble as the libraries define it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ensemble {
    pub features: usize,
    pub comparison: Comparison,
    pub trees: Vec<TreeSpec>,
    pub output: Output,
    /// Whether requests are compared in float32 (XGBoost) or float64 (LightGBM).
    pub float32_input: bool,
    /// A classifier's labels by class index (`None`: the indices themselves).
    pub labels: Option<Vec<i64>>,
}

impl Ensemble {
    /// The ONNX file serving compiles.
    pub fn to_onnx(&self) -> Vec<u8> {
        onnx::encode(self)
    }
}

/// More classes than this is not a classifier anyone logs, and a count in a file is checked
/// before anything is allocated for it.
pub const MAX_CLASSES: usize = 10_000;

/// The flavors read natively, as MLmodel names them.
pub const NATIVE_FLAVORS: [&str; 2] = ["xgboost", "lightgbm"];

/// The value of `key:` in the MLmodel's `flavors: <flavor>:` block (`data: model.ubj`).
pub fn flavor_setting(mlmodel: &str, flavor: &str, key: &str) -> Option<String> {
    let mut in_flavors = false;
    let mut in_flavor = false;
    for line in mlmodel.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if indent == 0 {
            in_flavors = line.trim_end() == "flavors:";
            in_flavor = false;
            continue;
        }
        if !in_flavors {
            continue;
        }
        if indent <= 2 {
            in_flavor = trimmed.trim_end() == format!("{flavor}:");
            continue;
        }
        if in_flavor {
            if let Some(value) = trimmed.strip_prefix(&format!("{key}:")) {
                return Some(
                    value
                        .trim()
                        .trim_matches('\'')
                        .trim_matches('"')
                        .to_string(),
                );
            }
        }
    }
    None
}

/// The first natively read flavor an MLmodel lists.
pub fn native_flavor(mlmodel: &str) -> Option<&'static str> {
    NATIVE_FLAVORS
        .iter()
        .find(|f| flavor_setting(mlmodel, f, "data").is_some())
        .copied()
}

/// Reads the logged model file `data` of `flavor` into an ensemble.
pub fn read(flavor: &str, file_name: &str, bytes: &[u8]) -> Result<Ensemble, FlavorError> {
    let (format, ensemble) = match flavor {
        "xgboost" => ("XGBoost", xgboost::read(file_name, bytes)?),
        "lightgbm" => ("LightGBM", lightgbm::read(file_name, bytes)?),
        other => {
            return Err(FlavorError::Unsupported {
                what: format!("the {other} flavor"),
                why: "only xgboost and lightgbm are read natively".into(),
            })
        }
    };
    let outputs = match &ensemble.output {
        Output::Multiclass { base } => base.len(),
        Output::Binary { .. } | Output::Regression { .. } => 1,
    };
    for (t, tree) in ensemble.trees.iter().enumerate() {
        let fail = |why: String| FlavorError::Format {
            format,
            why: format!("tree {t}: {why}"),
        };
        if tree.class >= outputs {
            return Err(fail(format!("adds to output {} of {outputs}", tree.class)));
        }
        check_tree(&tree.nodes).map_err(fail)?;
    }
    if let Some(labels) = &ensemble.labels {
        let classes = match &ensemble.output {
            Output::Binary { .. } => 2,
            Output::Multiclass { base } => base.len(),
            Output::Regression { .. } => 0,
        };
        if labels.len() != classes {
            return Err(FlavorError::Format {
                format,
                why: format!("{} class labels for {classes} classes", labels.len()),
            });
        }
    }
    Ok(ensemble)
}

/// A tree, not a graph: every node but the root (node 0) is the child of exactly one branch.
/// (A file may say otherwise; the fuzz target `model_files` found that it must be checked.)
fn check_tree(nodes: &[Node]) -> Result<(), String> {
    let mut parents = vec![0u32; nodes.len()];
    for node in nodes {
        if let Node::Split { left, right, .. } = node {
            for child in [left, right] {
                let count = parents
                    .get_mut(*child)
                    .ok_or_else(|| format!("node {child} does not exist"))?;
                *count += 1;
            }
        }
    }
    match parents
        .iter()
        .enumerate()
        .find(|(i, n)| (*i == 0) != (**n == 0) || **n > 1)
    {
        Some((0, _)) => Err("the root is a child".into()),
        Some((i, n)) => Err(format!("node {i} has {n} parents")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_file_is_named_by_the_flavor_block() {
        let mlmodel = "artifact_path: model\nflavors:\n  python_function:\n    data: model.ubj\n    loader_module: mlflow.xgboost\n  xgboost:\n    code: null\n    data: model.ubj\n    model_format: ubj\nmlflow_version: 3.17.2\n";
        assert_eq!(native_flavor(mlmodel), Some("xgboost"));
        assert_eq!(
            flavor_setting(mlmodel, "xgboost", "data").as_deref(),
            Some("model.ubj")
        );
        assert_eq!(flavor_setting(mlmodel, "lightgbm", "data"), None);
        assert_eq!(
            native_flavor("flavors:\n  sklearn:\n    pickled_model: m.pkl\n"),
            None
        );
    }
}
