//! `LinearClassifier` and `LinearRegressor`, with onnxruntime's conventions for one-score binary
//! models (`add_second_class`) and for which post-transforms apply to a single score.

use super::super::attrs::Attrs;
use super::super::estimator::{LinearTerms, OutputSpace, RawOutput};
use super::super::value::{Tensor, TensorData, Value};
use super::super::RuntimeError;
use super::post::{probit, PostTransform};
use super::{arity, Kernel};

/// Class labels of a classifier: integers or strings, never both.
#[derive(Debug, Clone)]
pub enum Labels {
    Int64(Vec<i64>),
    String(Vec<String>),
}

impl Labels {
    pub fn from_attrs(attrs: &Attrs, ints: &str, strings: &str) -> Result<Self, RuntimeError> {
        let s = attrs.strings(strings)?;
        if !s.is_empty() {
            return Ok(Self::String(s));
        }
        Ok(Self::Int64(attrs.ints(ints)))
    }

    pub fn len(&self) -> usize {
        match self {
            Self::Int64(v) => v.len(),
            Self::String(v) => v.len(),
        }
    }

    /// Label `i` as text (`i` itself when there are fewer labels).
    pub fn text(&self, i: usize) -> String {
        match self {
            Labels::Int64(l) => l.get(i).map_or(i.to_string(), |v| v.to_string()),
            Labels::String(l) => l.get(i).cloned().unwrap_or_else(|| i.to_string()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Builds the label tensor from class indices.
    pub fn tensor(&self, picked: &[usize]) -> Tensor {
        let data = match self {
            Self::Int64(v) => TensorData::Int64(picked.iter().map(|i| v[*i]).collect()),
            Self::String(v) => TensorData::String(picked.iter().map(|i| v[*i].clone()).collect()),
        };
        Tensor {
            shape: vec![picked.len()],
            data,
        }
    }
}

/// `scores[n * targets + t] = x[n] · coef[t] + intercept[t]`, accumulated in f64.
fn affine(
    x: &[f32],
    rows: usize,
    cols: usize,
    coef: &[f32],
    intercepts: &[f32],
    targets: usize,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows * targets);
    for r in 0..rows {
        let row = &x[r * cols..(r + 1) * cols];
        for t in 0..targets {
            let w = &coef[t * cols..(t + 1) * cols];
            let dot: f64 = row
                .iter()
                .zip(w)
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum();
            out.push((dot + f64::from(intercepts.get(t).copied().unwrap_or(0.0))) as f32);
        }
    }
    out
}

fn check_width(op: &str, cols: usize, coef_len: usize, targets: usize) -> Result<(), RuntimeError> {
    if targets == 0 || coef_len != cols * targets {
        return Err(RuntimeError::Input(format!(
            "{op} expects {} features per row, got {cols}",
            coef_len.checked_div(targets).unwrap_or(0)
        )));
    }
    Ok(())
}

pub struct LinearClassifier {
    coefficients: Vec<f32>,
    intercepts: Vec<f32>,
    labels: Labels,
    post: PostTransform,
    class_count: usize,
}

impl LinearClassifier {
    pub fn new(attrs: &Attrs) -> Result<Self, RuntimeError> {
        let coefficients = attrs.floats("coefficients");
        if coefficients.is_empty() {
            return Err(attrs.missing("coefficients"));
        }
        let intercepts = attrs.floats("intercepts");
        let labels = Labels::from_attrs(attrs, "classlabels_ints", "classlabels_strings")?;
        let class_count = if intercepts.is_empty() {
            labels.len().max(1)
        } else {
            intercepts.len()
        };
        if class_count > 1 && labels.len() < class_count {
            return Err(attrs.invalid(
                "classlabels",
                format!("has {} labels for {class_count} classes", labels.len()),
            ));
        }
        let post = PostTransform::parse(attrs.string("post_transform")?)
            .map_err(|e| attrs.invalid("post_transform", e))?;
        Ok(Self {
            coefficients,
            intercepts,
            labels,
            post,
            class_count,
        })
    }
}

impl Kernel for LinearClassifier {
    fn linear_terms(&self) -> Option<LinearTerms> {
        let classes = self.class_count;
        let features = self.coefficients.len() / classes;
        let coefficients: Vec<f64> = self.coefficients.iter().map(|c| f64::from(*c)).collect();
        let intercept = |c: usize| f64::from(self.intercepts.get(c).copied().unwrap_or(0.0));
        let margin = if self.post == PostTransform::None {
            OutputSpace::Value
        } else {
            OutputSpace::Margin
        };
        // scikit-learn's binary models export two classes with opposite scores under a logistic
        // link: the second class's score is the log-odds, one output as shap gives it.
        let opposite = classes == 2
            && self.post == PostTransform::Logistic
            && (0..features).all(|j| coefficients[j] == -coefficients[features + j])
            && intercept(0) == -intercept(1);
        let (outputs, coefficients, intercepts) = if opposite {
            (
                vec![RawOutput {
                    label: self.labels.text(1),
                    space: OutputSpace::LogOdds,
                }],
                coefficients[features..].to_vec(),
                vec![intercept(1)],
            )
        } else if classes == 1 {
            (
                vec![RawOutput {
                    label: self.labels.text(usize::from(self.labels.len() == 2)),
                    space: margin,
                }],
                coefficients,
                vec![intercept(0)],
            )
        } else {
            (
                (0..classes)
                    .map(|c| RawOutput {
                        label: self.labels.text(c),
                        space: margin,
                    })
                    .collect(),
                coefficients,
                (0..classes).map(intercept).collect(),
            )
        };
        Some(LinearTerms {
            outputs,
            coefficients,
            intercepts,
            features,
        })
    }

    fn run(&self, inputs: &[&Value]) -> Result<Vec<Value>, RuntimeError> {
        let [x] = arity("LinearClassifier", inputs, 1)?[..] else {
            unreachable!()
        };
        let x = x.as_tensor("LinearClassifier")?;
        let (rows, cols) = x.rows_cols();
        check_width(
            "LinearClassifier",
            cols,
            self.coefficients.len(),
            self.class_count,
        )?;
        let mut scores = affine(
            &x.to_f32("LinearClassifier")?,
            rows,
            cols,
            &self.coefficients,
            &self.intercepts,
            self.class_count,
        );
        let labels;
        let mut width = self.class_count;
        if self.class_count == 1 {
            let two = self.labels.len() == 2;
            let (pos, neg) = (usize::from(two), 0);
            // Labels for a single score: index 1/0 into two labels, else the literal 1/0.
            let picked: Vec<bool> = scores.iter().map(|s| *s > 0.0).collect();
            labels = if two {
                self.labels.tensor(
                    &picked
                        .iter()
                        .map(|p| if *p { pos } else { neg })
                        .collect::<Vec<_>>(),
                )
            } else {
                match &self.labels {
                    Labels::String(_) => Tensor {
                        shape: vec![rows],
                        data: TensorData::String(
                            picked
                                .iter()
                                .map(|p| if *p { "1" } else { "0" }.to_string())
                                .collect(),
                        ),
                    },
                    Labels::Int64(_) => Tensor {
                        shape: vec![rows],
                        data: TensorData::Int64(picked.iter().map(|p| i64::from(*p)).collect()),
                    },
                }
            };
            if self.post == PostTransform::Probit {
                scores.iter_mut().for_each(|s| *s = probit(*s));
            } else if two {
                // onnxruntime's add_second_class: [1 - s, s], with no other transform.
                scores = scores.iter().flat_map(|s| [1.0 - s, *s]).collect();
                width = 2;
            }
        } else {
            let picked: Vec<usize> = scores
                .chunks(self.class_count)
                .map(|row| {
                    let mut best = 0;
                    for (j, v) in row.iter().enumerate().skip(1) {
                        if *v > row[best] {
                            best = j;
                        }
                    }
                    best
                })
                .collect();
            labels = self.labels.tensor(&picked);
            for row in scores.chunks_mut(self.class_count) {
                self.post.apply_row(row);
            }
        }
        Ok(vec![
            Value::Tensor(labels),
            Value::Tensor(Tensor::floats(vec![rows, width], scores)),
        ])
    }
}

pub struct LinearRegressor {
    coefficients: Vec<f32>,
    intercepts: Vec<f32>,
    targets: usize,
    post: PostTransform,
}

impl LinearRegressor {
    pub fn new(attrs: &Attrs) -> Result<Self, RuntimeError> {
        let coefficients = attrs.floats("coefficients");
        if coefficients.is_empty() {
            return Err(attrs.missing("coefficients"));
        }
        let targets = usize::try_from(attrs.int("targets").unwrap_or(1))
            .map_err(|_| attrs.invalid("targets", "is negative"))?;
        let post = PostTransform::parse(attrs.string("post_transform")?)
            .map_err(|e| attrs.invalid("post_transform", e))?;
        Ok(Self {
            coefficients,
            intercepts: attrs.floats("intercepts"),
            targets,
            post,
        })
    }
}

impl Kernel for LinearRegressor {
    fn linear_terms(&self) -> Option<LinearTerms> {
        let targets = self.targets.max(1);
        let space = if self.post == PostTransform::None {
            OutputSpace::Value
        } else {
            OutputSpace::Margin
        };
        Some(LinearTerms {
            outputs: (0..targets)
                .map(|t| RawOutput {
                    label: if targets == 1 {
                        "value".to_string()
                    } else {
                        t.to_string()
                    },
                    space,
                })
                .collect(),
            coefficients: self.coefficients.iter().map(|c| f64::from(*c)).collect(),
            intercepts: (0..targets)
                .map(|t| f64::from(self.intercepts.get(t).copied().unwrap_or(0.0)))
                .collect(),
            features: self.coefficients.len() / targets,
        })
    }

    fn run(&self, inputs: &[&Value]) -> Result<Vec<Value>, RuntimeError> {
        let [x] = arity("LinearRegressor", inputs, 1)?[..] else {
            unreachable!()
        };
        let x = x.as_tensor("LinearRegressor")?;
        let (rows, cols) = x.rows_cols();
        check_width(
            "LinearRegressor",
            cols,
            self.coefficients.len(),
            self.targets,
        )?;
        let mut scores = affine(
            &x.to_f32("LinearRegressor")?,
            rows,
            cols,
            &self.coefficients,
            &self.intercepts,
            self.targets,
        );
        if self.targets > 1 {
            scores
                .chunks_mut(self.targets)
                .for_each(|row| self.post.apply_row(row));
        } else if self.post == PostTransform::Probit {
            scores.iter_mut().for_each(|s| *s = probit(*s));
        }
        Ok(vec![Value::Tensor(Tensor::floats(
            vec![rows, self.targets],
            scores,
        ))])
    }
}
