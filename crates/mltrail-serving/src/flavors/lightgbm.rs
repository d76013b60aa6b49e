//! LightGBM models: the text format `Booster.save_model` writes (`mlflow.lightgbm.log_model` of a
//! Booster logs `model.lgb`), and the scikit-learn wrappers (`LGBMClassifier`, `LGBMRegressor`)
//! as MLflow logs them with skops (`model.skops`: a zip whose `schema.json` holds the booster's
//! model text and whose `.npy` entries hold the classes), read into an [`Ensemble`]. A branch
//! sends `x <= threshold` left; a missing value goes to the default side when the tree tracks
//! missing values as NaN, and is read as 0 when it does not track them.

use std::collections::HashMap;

use serde_json::Value;

use super::{Comparison, Ensemble, FlavorError, Node, Output, TreeSpec};

fn bad(why: impl Into<String>) -> FlavorError {
    FlavorError::Format {
        format: "LightGBM",
        why: why.into(),
    }
}

fn unsupported(what: impl Into<String>, why: impl Into<String>) -> FlavorError {
    FlavorError::Unsupported {
        what: what.into(),
        why: why.into(),
    }
}

pub fn read(file_name: &str, bytes: &[u8]) -> Result<Ensemble, FlavorError> {
    if file_name.ends_with(".skops") {
        let archive = StoredZip::new(bytes)?;
        let schema: Value = serde_json::from_slice(archive.entry("schema.json")?)
            .map_err(|e| bad(format!("schema.json: {e}")))?;
        let fields = &schema["content"]["content"];
        let text = fields["_Booster"]["content"]["content"]["_handle"]["content"]
            .as_str()
            .and_then(|json| serde_json::from_str::<String>(json).ok())
            .ok_or_else(|| bad("the skops file holds no booster model text"))?;
        let mut ensemble = parse(&text)?;
        if let Some(file) = fields["_classes"]["file"].as_str() {
            ensemble.labels = Some(int64_npy(archive.entry(file)?)?);
        }
        return Ok(ensemble);
    }
    if !file_name.ends_with(".lgb") && !file_name.ends_with(".txt") && bytes.first() == Some(&0x80)
    {
        return Err(unsupported(
            format!("`{file_name}`"),
            "a pickled LightGBM model is not read; log the Booster (model.lgb) or with MLflow 3 (skops)",
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| bad("the model text is not UTF-8"))?;
    parse(text)
}

fn numbers<T: std::str::FromStr>(
    fields: &HashMap<&str, &str>,
    key: &str,
) -> Result<Vec<T>, FlavorError> {
    match fields.get(key) {
        None => Err(bad(format!("a tree has no `{key}`"))),
        Some(text) if text.trim().is_empty() => Ok(Vec::new()),
        Some(text) => text
            .split_whitespace()
            .map(|v| {
                v.parse::<T>()
                    .map_err(|_| bad(format!("`{key}` holds `{v}`")))
            })
            .collect(),
    }
}

fn fields(block: &str) -> HashMap<&str, &str> {
    block
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect()
}

fn parse(text: &str) -> Result<Ensemble, FlavorError> {
    let mut blocks = text.split("\nTree=");
    let header_text = blocks.next().ok_or_else(|| bad("empty"))?;
    if !header_text.starts_with("tree") {
        return Err(bad("does not start with `tree`"));
    }
    let header = fields(header_text);
    if header_text.lines().any(|l| l.trim() == "average_output") {
        return Err(unsupported(
            "random forest mode (average_output)",
            "boosted trees are read",
        ));
    }
    let count = |key: &str| -> Result<usize, FlavorError> {
        header
            .get(key)
            .and_then(|v| v.parse::<usize>().ok())
            .ok_or_else(|| bad(format!("no `{key}`")))
    };
    let per_iteration = count("num_tree_per_iteration")?.max(1);
    let classes = count("num_class")?;
    if classes > super::MAX_CLASSES || per_iteration > super::MAX_CLASSES {
        return Err(bad(format!(
            "{classes} classes (at most {})",
            super::MAX_CLASSES
        )));
    }
    let features = count("max_feature_idx")? + 1;
    let objective = header.get("objective").copied().unwrap_or("regression");
    let mut words = objective.split_whitespace();
    let name = words.next().unwrap_or("regression");
    let option = |key: &str| {
        objective
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{key}:")))
            .and_then(|v| v.parse::<f64>().ok())
    };
    if objective.split_whitespace().any(|w| w == "sqrt") {
        return Err(unsupported(
            "reg_sqrt=true",
            "its output is squared back, which ONNX trees cannot do",
        ));
    }
    let (output, scale) = match name {
        "binary" => (
            Output::Binary { base: 0.0 },
            option("sigmoid").unwrap_or(1.0),
        ),
        "multiclass" | "softmax" => (
            Output::Multiclass {
                base: vec![0.0; classes],
            },
            1.0,
        ),
        "regression" | "regression_l2" | "l2" | "mean_squared_error" | "mse" | "regression_l1"
        | "l1" | "huber" | "fair" | "quantile" | "mape" => (Output::Regression { base: 0.0 }, 1.0),
        other => return Err(unsupported(
            format!("the objective `{other}`"),
            "read are binary, multiclass and the regression objectives without an output transform",
        )),
    };
    if let Output::Multiclass { .. } = output {
        if per_iteration != classes {
            return Err(bad(
                "a multiclass model whose trees per iteration are not its classes",
            ));
        }
    }
    let mut trees = Vec::new();
    for (t, block) in blocks.enumerate() {
        let block = block.split("\nend of trees").next().unwrap_or(block);
        let f = fields(block);
        let leaves: usize = f
            .get("num_leaves")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| bad(format!("tree {t} has no num_leaves")))?;
        if f.get("is_linear").is_some_and(|l| *l != "0") {
            return Err(unsupported(
                "linear trees (linear_tree=true)",
                "their leaves are linear models, which ONNX trees cannot hold",
            ));
        }
        if f.get("num_cat").is_some_and(|c| *c != "0") {
            return Err(unsupported(
                "categorical splits",
                "train with numeric features",
            ));
        }
        let leaf_value: Vec<f64> = numbers(&f, "leaf_value")?;
        if leaf_value.len() != leaves || leaves == 0 {
            return Err(bad(format!(
                "tree {t}: {} leaf values for {leaves} leaves",
                leaf_value.len()
            )));
        }
        let leaf_count: Vec<f64> = numbers(&f, "leaf_count").unwrap_or_default();
        let class = t % per_iteration;
        if leaves == 1 {
            trees.push(TreeSpec {
                class,
                nodes: vec![Node::Leaf {
                    value: leaf_value[0] * scale,
                    cover: leaf_count.first().copied().unwrap_or(1.0),
                }],
            });
            continue;
        }
        let internal = leaves - 1;
        let split_feature: Vec<usize> = numbers(&f, "split_feature")?;
        let threshold: Vec<f64> = numbers(&f, "threshold")?;
        let decision: Vec<u32> = numbers(&f, "decision_type")?;
        let left: Vec<i64> = numbers(&f, "left_child")?;
        let right: Vec<i64> = numbers(&f, "right_child")?;
        let internal_count: Vec<f64> = numbers(&f, "internal_count").unwrap_or_default();
        if [
            split_feature.len(),
            threshold.len(),
            decision.len(),
            left.len(),
            right.len(),
        ]
        .iter()
        .any(|l| *l != internal)
        {
            return Err(bad(format!("tree {t}'s split arrays differ in length")));
        }
        // Internal node i is node i; leaf j (written as child !j) is node internal + j.
        let node_of = |c: i64| -> Option<usize> {
            if c >= 0 {
                usize::try_from(c).ok().filter(|c| *c < internal && *c > 0)
            } else {
                usize::try_from(!c)
                    .ok()
                    .filter(|j| *j < leaves)
                    .map(|j| internal + j)
            }
        };
        let mut nodes = Vec::with_capacity(internal + leaves);
        for i in 0..internal {
            let d = decision[i];
            if d & 1 != 0 {
                return Err(unsupported(
                    "categorical splits",
                    "train with numeric features",
                ));
            }
            let default_left = d & 2 != 0;
            let missing_left =
                match (d >> 2) & 3 {
                    // Not tracked: LightGBM reads a missing value as 0.
                    0 => 0.0 <= threshold[i],
                    2 => default_left,
                    _ => return Err(unsupported(
                        "zero_as_missing=true",
                        "zeros and missing values share a branch, which ONNX trees cannot express",
                    )),
                };
            nodes.push(Node::Split {
                feature: Some(split_feature[i])
                    .filter(|f| *f < features)
                    .ok_or_else(|| {
                        bad(format!("tree {t} splits on feature {}", split_feature[i]))
                    })?,
                threshold: threshold[i],
                missing_left,
                left: node_of(left[i]).ok_or_else(|| bad(format!("tree {t}: bad left child")))?,
                right: node_of(right[i])
                    .ok_or_else(|| bad(format!("tree {t}: bad right child")))?,
                cover: internal_count.get(i).copied().unwrap_or(1.0),
            });
        }
        for (j, value) in leaf_value.iter().enumerate() {
            nodes.push(Node::Leaf {
                value: value * scale,
                cover: leaf_count.get(j).copied().unwrap_or(1.0),
            });
        }
        trees.push(TreeSpec { class, nodes });
    }
    if trees.is_empty() {
        return Err(bad("no trees"));
    }
    Ok(Ensemble {
        features,
        comparison: Comparison::LessOrEqual,
        trees,
        output,
        float32_input: false,
        labels: None,
    })
}

/// A zip archive whose entries are stored, not compressed: what skops writes. Hand-read (local
/// headers only) rather than through a zip crate: one entry of one layout is needed, and a
/// compressed or streamed entry is refused by name.
struct StoredZip<'a> {
    entries: HashMap<String, &'a [u8]>,
}

impl<'a> StoredZip<'a> {
    fn new(bytes: &'a [u8]) -> Result<Self, FlavorError> {
        let mut entries = HashMap::new();
        let mut at = 0usize;
        let u16_at = |i: usize| -> Option<usize> {
            bytes
                .get(i..i + 2)
                .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
        };
        let u32_at = |i: usize| -> Option<usize> {
            bytes
                .get(i..i + 4)
                .and_then(|b| usize::try_from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])).ok())
        };
        while bytes.get(at..at + 4) == Some(&[0x50, 0x4b, 0x03, 0x04]) {
            let truncated = || bad("a truncated skops archive");
            let flags = u16_at(at + 6).ok_or_else(truncated)?;
            let method = u16_at(at + 8).ok_or_else(truncated)?;
            let size = u32_at(at + 18).ok_or_else(truncated)?;
            let name_len = u16_at(at + 26).ok_or_else(truncated)?;
            let extra_len = u16_at(at + 28).ok_or_else(truncated)?;
            let name_start = at + 30;
            let data_start = name_start + name_len + extra_len;
            let name = std::str::from_utf8(
                bytes
                    .get(name_start..name_start + name_len)
                    .ok_or_else(truncated)?,
            )
            .map_err(|_| bad("an entry name is not UTF-8"))?
            .to_string();
            if method != 0 || flags & 8 != 0 {
                return Err(unsupported(
                    format!("the compressed skops entry `{name}`"),
                    "skops stores its entries uncompressed by default; save without compression",
                ));
            }
            let data = bytes
                .get(data_start..data_start + size)
                .ok_or_else(truncated)?;
            entries.insert(name, data);
            at = data_start + size;
        }
        Ok(StoredZip { entries })
    }

    fn entry(&self, name: &str) -> Result<&'a [u8], FlavorError> {
        self.entries
            .get(name)
            .copied()
            .ok_or_else(|| bad(format!("the skops archive has no `{name}`")))
    }
}

/// A one-dimensional little-endian int64 `.npy` array (the classifier's classes).
fn int64_npy(bytes: &[u8]) -> Result<Vec<i64>, FlavorError> {
    if bytes.get(..6) != Some(b"\x93NUMPY".as_slice()) {
        return Err(bad("a class list that is not a .npy array"));
    }
    let (header_len, header_start) = match bytes.get(6) {
        Some(1) => (
            bytes
                .get(8..10)
                .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]]))),
            10,
        ),
        Some(2 | 3) => (
            bytes
                .get(8..12)
                .and_then(|b| usize::try_from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])).ok()),
            12,
        ),
        _ => (None, 0),
    };
    let header_len = header_len.ok_or_else(|| bad("a .npy array of an unknown version"))?;
    let header = bytes
        .get(header_start..header_start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("a truncated .npy header"))?;
    if !header.contains("'descr': '<i8'") || header.contains("'fortran_order': True") {
        return Err(unsupported(
            "class labels other than integers",
            "train the classifier on integer labels, or log a Booster",
        ));
    }
    let data = &bytes[header_start + header_len..];
    Ok(data
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODEL: &str = "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0\nmax_feature_idx=1\nobjective=binary sigmoid:1\nfeature_names=a b\n\nTree=0\nnum_leaves=3\nnum_cat=0\nsplit_feature=0 1\nsplit_gain=1 1\nthreshold=0.5 -1.25\ndecision_type=2 10\nleft_child=1 -1\nright_child=-3 -2\nleaf_value=0.1 -0.2 0.3\nleaf_weight=1 1 1\nleaf_count=5 6 7\ninternal_value=0 0\ninternal_weight=1 1\ninternal_count=18 11\nshrinkage=1\n\n\nend of trees\n";

    #[test]
    fn a_text_model_becomes_splits_and_leaves() {
        let e = parse(MODEL).unwrap();
        assert_eq!(e.features, 2);
        assert_eq!(e.output, Output::Binary { base: 0.0 });
        let nodes = &e.trees[0].nodes;
        assert_eq!(nodes.len(), 5);
        // Node 0: x0 <= 0.5 goes to node 1; right is leaf 2 (node 4). Missing not tracked:
        // read as 0, which is <= 0.5, so left.
        assert_eq!(
            nodes[0],
            Node::Split {
                feature: 0,
                threshold: 0.5,
                missing_left: true,
                left: 1,
                right: 4,
                cover: 18.0
            }
        );
        // Node 1 tracks NaN (type 2) with default left (bit 2).
        assert_eq!(
            nodes[1],
            Node::Split {
                feature: 1,
                threshold: -1.25,
                missing_left: true,
                left: 2,
                right: 3,
                cover: 11.0
            }
        );
        assert_eq!(
            nodes[3],
            Node::Leaf {
                value: -0.2,
                cover: 6.0
            }
        );
    }

    #[test]
    fn what_onnx_trees_cannot_say_is_refused() {
        let zero = MODEL.replace("decision_type=2 10", "decision_type=2 6");
        assert!(parse(&zero)
            .unwrap_err()
            .to_string()
            .contains("zero_as_missing"));
        let poisson = MODEL.replace("objective=binary sigmoid:1", "objective=poisson");
        assert!(parse(&poisson).unwrap_err().to_string().contains("poisson"));
        let sqrt = MODEL.replace("objective=binary sigmoid:1", "objective=regression sqrt");
        assert!(parse(&sqrt).unwrap_err().to_string().contains("reg_sqrt"));
        let linear = MODEL.replace("num_cat=0", "num_cat=0\nis_linear=1");
        assert!(parse(&linear)
            .unwrap_err()
            .to_string()
            .contains("linear trees"));
        let huge = MODEL
            .replace(
                "objective=binary sigmoid:1",
                "objective=multiclass num_class:4000000000000",
            )
            .replace("num_class=1", "num_class=4000000000000");
        assert!(parse(&huge).is_err());
    }
}
