//! Choosing and running the explanation method for a served model.
//!
//! A model whose one estimator is a tree ensemble gets TreeSHAP, a linear estimator exact linear
//! SHAP, each in the estimator's raw score space (log-odds for binary boosted classifiers, per
//! class margins for multiclass, as shap's `TreeExplainer` and `LinearExplainer` report them).
//! Before an exact method is trusted, its raw outputs on background rows are checked against
//! what the runtime answers; a model that fails the check, or whose structure the exact methods
//! cannot read, is explained by sampling its own outputs (probabilities or values).

use mltrail_serving::runtime::{
    ColumnSteps, ElementType, EstimatorKind, Model, NodeMode, OutputSpace, RawOutput, Tensor,
    TensorData, TreeEnsemble, TreeOutput, Value,
};

use crate::linear::LinearShap;
use crate::sampling::{sample_rows, SamplingShap, Score};
use crate::tree::{Forest, Interventional, Node, PathDependent, ShapTree, Split};
use crate::ExplainError;

/// How tree ensembles are explained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    /// Against a background sample of the training data (shap's default when data is given).
    #[default]
    Interventional,
    /// With node covers from the training data standing in for it.
    PathDependent,
}

impl Method {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "interventional" => Some(Method::Interventional),
            "path_dependent" => Some(Method::PathDependent),
            _ => None,
        }
    }
}

/// How many rows of the training data make the background by default (shap keeps 100 too).
pub const DEFAULT_BACKGROUND: usize = 100;
/// The background sample's seed: the same training data always gives the same background.
pub const BACKGROUND_SEED: u64 = 0x6d6c_7472_6169_6c00;
/// Antithetic ordering pairs per sampled explanation (at least; whole background passes).
const SAMPLING_PAIRS: usize = 100;

/// One row's explanation. What every row of a model shares (method, outputs, base value,
/// background digest) is the [`ModelExplainer`]'s.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// `outputs × features`, output-major: each feature's contribution.
    pub values: Vec<f64>,
    /// Per output: the explained output (the base value plus the values).
    pub output: Vec<f64>,
    /// Sampling only: each value's standard error, laid out as `values`.
    pub standard_error: Option<Vec<f64>>,
}

enum Engine {
    PathDependent(PathDependent),
    Interventional(Interventional),
    Linear(LinearShap),
    Sampling(SamplingShap),
}

/// Explains one model's predictions; built once per model version and training data.
pub struct ModelExplainer {
    features: usize,
    element: ElementType,
    /// The column-wise steps the model runs before its estimator (none: explained on the
    /// model's own input, or by sampling).
    steps: Option<ColumnSteps>,
    outputs: Vec<RawOutput>,
    engine: Engine,
    /// Why an exact method was not used, when it was not.
    fallback: Option<String>,
    /// BLAKE3 of the rows the explanation measures against.
    background_digest: String,
}

impl ModelExplainer {
    /// `training` holds the model version's training rows (row-major, the model's input
    /// columns); `background` rows of it (all when it has that many or fewer, else a seeded
    /// sample) are the reference the explanation measures against.
    pub fn new(
        model: &Model,
        training: &[f64],
        method: Method,
        background: usize,
    ) -> Result<Self, ExplainError> {
        let [input] = model.inputs() else {
            return Err(ExplainError::Model(format!(
                "explanations need a model with one input tensor, this one has {}",
                model.inputs().len()
            )));
        };
        let element = input.element;
        if !matches!(element, ElementType::Float | ElementType::Double) {
            return Err(ExplainError::Model(format!(
                "explanations need numeric (float or double) inputs, this model takes {}",
                element.name()
            )));
        }
        let features = match input.shape.last() {
            Some(Some(width)) => *width,
            _ => {
                return Err(ExplainError::Model(
                    "the model's input does not declare its number of columns".into(),
                ))
            }
        };
        crate::whole_rows(training, features)
            .map_err(|why| ExplainError::Background(format!("training data: {why}")))?;
        // A model that refuses missing values at serving never saw them: rows with one are no
        // reference for it (a linear model's mean would turn NaN).
        let kept: Vec<f64>;
        let training = if model.accepts_missing_values() {
            training
        } else {
            kept = training
                .chunks_exact(features)
                .filter(|row| row.iter().all(|v| !v.is_nan()))
                .flatten()
                .copied()
                .collect();
            if kept.is_empty() {
                return Err(ExplainError::Background(
                    "every training row has a missing value, which this model does not take".into(),
                ));
            }
            &kept[..]
        };
        let background = sample_rows(training, features, background.max(1), BACKGROUND_SEED);
        // Path-dependent TreeSHAP measures against the covers of the whole training data.
        let reference = match method {
            Method::PathDependent => training,
            Method::Interventional => &background[..],
        };
        let background_digest = digest(reference);
        let batch = |rows: &[f64]| to_tensor(rows, features, element);
        let exact = match model.estimator() {
            None => Err(
                "its graph has no single tree or linear estimator fed column by column".to_string(),
            ),
            // Whatever keeps an exact method from working here sends the model to sampling.
            Some(estimator) => (|| -> Result<ModelExplainer, String> {
                let why = |e: ExplainError| e.to_string();
                let steps = (!estimator.steps.is_empty()).then(|| estimator.steps.clone());
                let through = |rows: &[f64]| -> Result<Vec<f64>, ExplainError> {
                    model
                        .estimator_input(&estimator.steps, batch(rows)?)?
                        .to_f64("explanation")
                        .map_err(ExplainError::Runtime)
                };
                let bg = through(&background).map_err(why)?;
                let made = match estimator.kind {
                    EstimatorKind::Trees(ensemble) => match ensemble.additive_outputs() {
                        None => Err(
                            "its trees' outputs are not sums over trees (MIN or MAX aggregation)"
                                .to_string(),
                        ),
                        Some(tree_outputs) => {
                            let mut forest =
                                forest_of(ensemble, &tree_outputs, features).map_err(why)?;
                            let outputs: Vec<RawOutput> =
                                tree_outputs.into_iter().map(|t| t.output).collect();
                            let engine = match method {
                                Method::PathDependent => {
                                    forest.recount_covers(&through(training).map_err(why)?);
                                    Engine::PathDependent(PathDependent::new(forest))
                                }
                                Method::Interventional => Engine::Interventional(
                                    Interventional::new(forest, &bg).map_err(why)?,
                                ),
                            };
                            Ok((outputs, engine))
                        }
                    },
                    EstimatorKind::Linear(terms) => {
                        if terms.features != features {
                            Err(format!(
                                "its linear model reads {} columns of the model's {features}",
                                terms.features
                            ))
                        } else {
                            let outputs = terms.outputs.clone();
                            let linear = LinearShap::new(terms, &bg).map_err(why)?;
                            Ok((outputs, Engine::Linear(linear)))
                        }
                    }
                };
                made.and_then(|(outputs, engine)| {
                    let explainer = ModelExplainer {
                        features,
                        element,
                        steps,
                        outputs,
                        engine,
                        fallback: None,
                        background_digest: background_digest.clone(),
                    };
                    explainer.check_against(model, &background)?;
                    Ok(explainer)
                })
            })(),
        };
        match exact {
            Ok(explainer) => Ok(explainer),
            Err(why) => {
                let sampled_digest = digest(&background);
                let score = scorer(model, features, element);
                let first = score(&background[..features])?;
                let outputs = sampled_outputs(model, first.len());
                let engine = Engine::Sampling(SamplingShap::new(
                    &*score,
                    background,
                    features,
                    outputs.len(),
                    SAMPLING_PAIRS,
                    BACKGROUND_SEED,
                )?);
                Ok(ModelExplainer {
                    features,
                    element,
                    steps: None,
                    outputs,
                    engine,
                    fallback: Some(why),
                    background_digest: sampled_digest,
                })
            }
        }
    }

    /// BLAKE3 (hex) of the rows the explanations measure against, as little-endian doubles:
    /// the background sample, or for path-dependent TreeSHAP the training rows whose covers
    /// it uses. Two explanations with the same digest used the same reference.
    /// How many input columns a row has.
    pub fn features(&self) -> usize {
        self.features
    }

    pub fn background_digest(&self) -> &str {
        &self.background_digest
    }

    /// Why the model is explained by sampling rather than exactly, when it is.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    pub fn method(&self) -> &'static str {
        match self.engine {
            Engine::PathDependent(_) => "tree_path_dependent",
            Engine::Interventional(_) => "tree_interventional",
            Engine::Linear(_) => "linear",
            Engine::Sampling(_) => "sampling",
        }
    }

    pub fn outputs(&self) -> &[RawOutput] {
        &self.outputs
    }

    pub fn base_value(&self) -> &[f64] {
        match &self.engine {
            Engine::PathDependent(e) => e.base_value(),
            Engine::Interventional(e) => e.base_value(),
            Engine::Linear(e) => e.base_value(),
            Engine::Sampling(e) => e.base_value(),
        }
    }

    /// Explains `rows` (row-major, the model's input columns), one explanation per row.
    pub fn explain(&self, model: &Model, rows: &[f64]) -> Result<Vec<Explanation>, ExplainError> {
        let d = self.features;
        crate::whole_rows(rows, d).map_err(ExplainError::Input)?;
        let k = self.outputs.len();
        if let Engine::Sampling(engine) = &self.engine {
            let score = scorer(model, d, self.element);
            let mut out = Vec::with_capacity(rows.len() / d);
            for row in rows.chunks_exact(d) {
                let row = rounded(row, self.element);
                let sampled = engine.explain(&*score, &row)?;
                let output = score(&row)?;
                out.push(Explanation {
                    values: sampled.values,
                    output,
                    standard_error: Some(sampled.standard_error),
                });
            }
            return Ok(out);
        }
        let seen = self.estimator_rows(model, rows)?;
        let mut all = vec![0.0; seen.len() / d * k * d];
        match &self.engine {
            Engine::PathDependent(e) => e.explain(&seen, &mut all),
            Engine::Interventional(e) => e.explain(&seen, &mut all),
            Engine::Linear(e) => {
                for (row, out) in seen.chunks_exact(d).zip(all.chunks_exact_mut(k * d)) {
                    e.explain(row, out);
                }
            }
            Engine::Sampling(_) => unreachable!("handled above"),
        }
        // The explained output is the base value plus the attributions (exact methods add up;
        // `check_against` held that sum to the runtime's answers when the explainer was made),
        // rather than the model evaluated again: that cost 8 % of a 100-row request with
        // `--explain always`.
        let base = self.base_value();
        Ok(all
            .chunks_exact(k * d)
            .map(|values| Explanation {
                values: values.to_vec(),
                output: (0..k)
                    .map(|o| base[o] + values[o * d..(o + 1) * d].iter().sum::<f64>())
                    .collect(),
                standard_error: None,
            })
            .collect())
    }

    /// Rows as the estimator sees them: in the model's input precision, through the steps
    /// before it.
    fn estimator_rows(&self, model: &Model, rows: &[f64]) -> Result<Vec<f64>, ExplainError> {
        let tensor = to_tensor(rows, self.features, self.element)?;
        let tensor = match &self.steps {
            Some(steps) => model.estimator_input(steps, tensor)?,
            None => tensor,
        };
        Ok(tensor.to_f64("explanation")?)
    }

    /// The exact method's outputs, through their link, against the runtime's own answers on
    /// background rows: a convention misread anywhere shows up here, not in a user's hands.
    fn check_against(&self, model: &Model, background: &[f64]) -> Result<(), String> {
        let d = self.features;
        let rows = &background[..background.len().min(50 * d)];
        let answered = scorer(model, d, self.element)(rows).map_err(|e| e.to_string())?;
        let n = rows.len() / d;
        let width = answered.len() / n.max(1);
        let explained = self.explain(model, rows).map_err(|e| e.to_string())?;
        for (r, e) in explained.iter().enumerate() {
            let got = &answered[r * width..(r + 1) * width];
            let want = linked(&self.outputs, &e.output, width);
            let Some(want) = want else {
                continue;
            };
            for (a, b) in got.iter().zip(&want) {
                // The runtime scores in f32; the explanation's sums are f64. (Written so that a
                // NaN on either side fails the check.)
                let close = (a - b).abs() <= 1e-4 * (1.0 + b.abs());
                if !close {
                    return Err(format!(
                        "its raw outputs did not reproduce the model's answers ({a} vs {b})"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The model's answer columns implied by raw outputs, when the link is known.
pub(crate) fn linked(outputs: &[RawOutput], raw: &[f64], width: usize) -> Option<Vec<f64>> {
    let space = outputs.first()?.space;
    match (space, raw.len(), width) {
        (OutputSpace::LogOdds, 1, 2) => {
            let p = 1.0 / (1.0 + (-raw[0]).exp());
            Some(vec![1.0 - p, p])
        }
        (OutputSpace::Probability | OutputSpace::Value, 1, 2) => Some(vec![1.0 - raw[0], raw[0]]),
        (OutputSpace::Probability | OutputSpace::Value, k, w) if k == w => Some(raw.to_vec()),
        (OutputSpace::Margin, k, w) if k == w && k > 1 => {
            let top = raw.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = raw.iter().map(|r| (r - top).exp()).collect();
            let sum: f64 = e.iter().sum();
            Some(e.iter().map(|v| v / sum).collect())
        }
        _ => None,
    }
}

/// The runtime's trees as TreeSHAP arenas, each leaf holding its value for every output.
pub(crate) fn forest_of(
    ensemble: &TreeEnsemble,
    outputs: &[TreeOutput],
    features: usize,
) -> Result<Forest, ExplainError> {
    let nodes = ensemble.nodes();
    let k = outputs.len();
    let mut trees = Vec::with_capacity(ensemble.trees().len());
    for tree in ensemble.trees() {
        let mut arena: Vec<Node> = Vec::new();
        let mut values: Vec<f64> = Vec::new();
        // Preorder: a child always lands after its parent.
        let mut stack: Vec<(u32, Option<(usize, bool)>)> = vec![(tree.root, None)];
        while let Some((i, parent)) = stack.pop() {
            let me = arena.len();
            if let Some((p, on_true)) = parent {
                if on_true {
                    arena[p].true_child = me as u32;
                } else {
                    arena[p].false_child = me as u32;
                }
            }
            let n = &nodes[i as usize];
            if n.mode == NodeMode::Leaf {
                arena.push(Node {
                    split: None,
                    true_child: 0,
                    false_child: 0,
                });
                let votes = ensemble.leaf_votes(i);
                values.extend(outputs.iter().map(|o| {
                    o.scale
                        * votes
                            .iter()
                            .filter(|(t, _)| *t == o.target)
                            .map(|(_, w)| w)
                            .sum::<f64>()
                }));
            } else {
                arena.push(Node {
                    split: Some(Split {
                        feature: n.feature,
                        threshold: n.threshold,
                        mode: n.mode,
                        missing_goes_true: n.missing_goes_true,
                    }),
                    true_child: 0,
                    false_child: 0,
                });
                values.extend(std::iter::repeat_n(0.0, k));
                stack.push((n.false_child, Some((me, false))));
                stack.push((n.true_child, Some((me, true))));
            }
        }
        let covers = vec![1.0; arena.len()];
        trees.push(ShapTree::new(arena, values, covers, k)?);
    }
    Forest::new(trees, outputs.iter().map(|o| o.base).collect(), features)
}

/// Rows as the model's input tensor (float inputs are rounded to f32, as serving does).
pub(crate) fn to_tensor(
    rows: &[f64],
    width: usize,
    element: ElementType,
) -> Result<Tensor, ExplainError> {
    let shape = vec![rows.len() / width, width];
    let data = match element {
        ElementType::Float => TensorData::Float(rows.iter().map(|v| *v as f32).collect()),
        _ => TensorData::Double(rows.to_vec()),
    };
    Ok(Tensor::new(shape, data)?)
}

pub(crate) fn rounded(row: &[f64], element: ElementType) -> Vec<f64> {
    match element {
        ElementType::Float => row.iter().map(|v| f64::from(*v as f32)).collect(),
        _ => row.to_vec(),
    }
}

/// Scores rows with the whole model: its probabilities (the last output, a tensor or ZipMap's
/// maps) or, for a regressor, its values.
fn scorer<'m>(model: &'m Model, width: usize, element: ElementType) -> Box<Score<'m>> {
    Box::new(move |rows: &[f64]| {
        let n = rows.len() / width;
        let outputs = model.run(vec![to_tensor(rows, width, element)?])?;
        let value = outputs
            .iter()
            .rev()
            .find(|v| match v {
                Value::Maps(_) => true,
                Value::Tensor(t) => matches!(t.data, TensorData::Float(_) | TensorData::Double(_)),
            })
            .ok_or_else(|| ExplainError::Model("the model returns no numeric output".into()))?;
        let numbers = match value {
            Value::Maps(maps) => maps.values.iter().map(|v| f64::from(*v)).collect(),
            Value::Tensor(t) => t.to_f64("explanation")?,
        };
        if n == 0 || numbers.len() % n != 0 {
            return Err(ExplainError::Model(
                "the model's output does not have one row per input row".into(),
            ));
        }
        Ok(numbers)
    })
}

/// Outputs of a sampled explanation: ZipMap's class labels, else column numbers.
fn sampled_outputs(model: &Model, width: usize) -> Vec<RawOutput> {
    let classifier = model.outputs().len() > 1;
    let space = if classifier {
        OutputSpace::Probability
    } else {
        OutputSpace::Value
    };
    (0..width)
        .map(|c| RawOutput {
            label: if width == 1 && !classifier {
                "value".to_string()
            } else {
                c.to_string()
            },
            space,
        })
        .collect()
}

fn digest(rows: &[f64]) -> String {
    let mut hasher = blake3::Hasher::new();
    for v in rows {
        hasher.update(&v.to_le_bytes());
    }
    hasher.finalize().to_hex().to_string()
}
