//! Adversarial robustness of a classifier on labelled rows, in the L∞ norm over features
//! divided by their scale (the training data's standard deviation, or 1 with `--raw`):
//!
//! - attacks give an *upper* bound of robust accuracy at ε (rows they flip are not robust): for
//!   tree ensembles a search over the trees' thresholds ([`attack`]), for any model the
//!   decision-based HopSkipJump ([`hsja`]); every example is re-scored by the runtime, and
//!   counts only when the runtime's answer differs from the truth and it lies within ε;
//! - for tree ensembles a *verified lower* bound (Chen et al. 2019's clique method, [`verify`]);
//! - accuracy under Gaussian noise, and with each feature missing.
//!
//! The rows attacked are those the model classifies correctly; accuracies are over every
//! labelled row assessed.

mod attack;
pub mod counterfactual;
mod hsja;
pub(crate) mod trees;
pub mod verify;

use std::collections::HashMap;

use mltrail_serving::runtime::{ElementType, EstimatorKind, Model, TensorData, Value};
use serde::Serialize;

use crate::model::{forest_of, rounded, to_tensor};
use crate::sampling::SplitMix;
use crate::ExplainError;

pub use hsja::HsjaSettings;
pub use verify::VerifySettings;

/// The layout of robustness reports.
pub const FORMAT: &str = "mltrail.robustness/1";

#[derive(Debug, thiserror::Error)]
pub enum RobustnessError {
    #[error(transparent)]
    Explain(#[from] ExplainError),
    #[error("robustness needs a classifier: the model's first output is not a class label")]
    NotAClassifier,
    #[error("no labelled row to assess")]
    NoLabels,
    #[error("--epsilon must be a positive number, got {0}")]
    Epsilon(f64),
    #[error("the scale of feature `{0}` is not a positive number (a constant column? use --raw)")]
    Scale(String),
}

/// How the assessment runs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub epsilon: f64,
    /// The features an attack may change (indices into the model's columns).
    pub attacked: Vec<usize>,
    /// Per feature, the unit distances are measured in (> 0).
    pub scale: Vec<f64>,
    /// Noise levels, in scaled units.
    pub sigmas: Vec<f64>,
    /// At most this many labelled rows are assessed (a seeded sample); every number of the
    /// report is about those rows.
    pub max_rows: usize,
    /// Random restarts of the tree attack.
    pub restarts: usize,
    pub hsja: HsjaSettings,
    pub verify: VerifySettings,
    pub seed: u64,
}

/// The rows to assess: row-major values of the model's columns, and each row's true class.
pub struct Input<'a> {
    pub model: &'a Model,
    pub columns: &'a [String],
    pub rows: &'a [f64],
    pub truth: &'a [Option<String>],
    /// Told `(stage, done, total)` as rows are attacked: long runs can show progress.
    pub progress: &'a (dyn Fn(&'static str, usize, usize) + Sync),
}

#[derive(Debug, Clone, Serialize)]
pub struct AttackSummary {
    pub attack: &'static str,
    /// Correctly classified rows it ran on.
    pub rows: usize,
    /// Rows it flipped within ε (re-scored by the runtime).
    pub successes: usize,
    pub success_rate: f64,
    /// Median L∞ (scaled) of the closest examples it found, within ε or not.
    pub median_perturbation: Option<f64>,
    /// Model evaluations per row, on average (black-box attacks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_queries: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub method: &'static str,
    pub clique: usize,
    pub levels: usize,
    /// Correctly classified rows verified robust at ε.
    pub verified: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct NoiseAccuracy {
    pub sigma: f64,
    pub accuracy: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MissingAccuracy {
    pub feature: String,
    /// `None` when the model cannot score a row without it.
    pub accuracy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub format: &'static str,
    pub epsilon: f64,
    pub norm: &'static str,
    pub attacked_features: Vec<String>,
    /// Labelled rows assessed.
    pub rows: usize,
    pub clean_accuracy: f64,
    /// Upper bound: accuracy once every row an attack flipped within ε counts as wrong.
    pub robust_accuracy: f64,
    /// Lower bound (tree ensembles): accuracy counting only rows verified robust at ε.
    pub verified_robust_accuracy: Option<f64>,
    /// Of the correctly classified rows attacked, those some attack flipped within ε.
    pub attack_success_rate: f64,
    /// Median over rows an attack flipped (at any distance) of the smallest perturbation found.
    pub median_perturbation: Option<f64>,
    /// Correctly classified rows attacked (every one among the rows assessed).
    pub rows_attacked: usize,
    pub attacks: Vec<AttackSummary>,
    pub verification: Option<Verification>,
    pub noise: Vec<NoiseAccuracy>,
    pub missing: Vec<MissingAccuracy>,
    pub notes: Vec<String>,
}

/// An adversarial example: the row it came from, its values (the model's columns) and the
/// row's true class.
#[derive(Debug, Clone)]
pub struct Example {
    pub row: usize,
    pub values: Vec<f64>,
    pub label: String,
    pub perturbation: f64,
    pub attack: &'static str,
}

/// Class labels of a label output.
fn labels_of(value: &Value) -> Option<Vec<String>> {
    let Value::Tensor(t) = value else {
        return None;
    };
    Some(match &t.data {
        TensorData::Int64(v) => v.iter().map(|x| x.to_string()).collect(),
        TensorData::Int32(v) => v.iter().map(|x| x.to_string()).collect(),
        TensorData::String(v) => v.clone(),
        TensorData::Bool(v) => v.iter().map(|x| x.to_string()).collect(),
        TensorData::Float(_) | TensorData::Double(_) => return None,
    })
}

/// Runs rows through the model and reads its class labels.
struct Predictor<'a> {
    model: &'a Model,
    width: usize,
    element: ElementType,
}

impl Predictor<'_> {
    fn labels(&self, rows: &[f64]) -> Result<Vec<String>, RobustnessError> {
        let mut out = Vec::with_capacity(rows.len() / self.width);
        // Batches keep a probe set of thousands of rows from one huge tensor.
        for chunk in rows.chunks(self.width * 4096) {
            let outputs = self
                .model
                .run(vec![to_tensor(chunk, self.width, self.element)?])
                .map_err(ExplainError::Runtime)?;
            let first = outputs.first().ok_or(RobustnessError::NotAClassifier)?;
            let labels = labels_of(first).ok_or(RobustnessError::NotAClassifier)?;
            // One class per row, or the output is not a class label.
            if labels.len() != chunk.len() / self.width {
                return Err(RobustnessError::NotAClassifier);
            }
            out.extend(labels);
        }
        Ok(out)
    }

    /// The number of probability columns (or values) the model gives per row.
    fn width_of_scores(&self, row: &[f64]) -> Result<usize, RobustnessError> {
        let outputs = self
            .model
            .run(vec![to_tensor(row, self.width, self.element)?])
            .map_err(ExplainError::Runtime)?;
        Ok(match outputs.last() {
            Some(Value::Maps(m)) => m.values.len(),
            Some(Value::Tensor(t)) => t.data.len(),
            None => 0,
        })
    }
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

/// The tree machinery, when the model's estimator is a tree ensemble the attack can read on
/// the model's own inputs; why not otherwise.
fn tree_parts(model: &Model, width: usize, scores: usize) -> Result<trees::Ensemble, String> {
    let estimator = model
        .estimator()
        .ok_or("its graph has no single tree estimator fed column by column")?;
    if !estimator.steps.is_empty() {
        return Err("steps run between its input and its trees".into());
    }
    let EstimatorKind::Trees(ensemble) = estimator.kind else {
        return Err("its estimator is not a tree ensemble".into());
    };
    let outputs = ensemble
        .additive_outputs()
        .ok_or("its trees' outputs are not sums over trees")?;
    let forest = forest_of(ensemble, &outputs, width).map_err(|e| e.to_string())?;
    Ok(trees::Ensemble::new(
        &forest,
        trees::Link {
            outputs: outputs.iter().map(|o| o.output.clone()).collect(),
            width: scores,
            threshold: ensemble.binary_threshold(),
        },
    ))
}

/// Assesses the model on the input's labelled rows.
pub fn assess(
    input: &Input<'_>,
    settings: &Settings,
) -> Result<(Report, Vec<Example>), RobustnessError> {
    if !(settings.epsilon > 0.0 && settings.epsilon.is_finite()) {
        return Err(RobustnessError::Epsilon(settings.epsilon));
    }
    let width = input.columns.len();
    let [model_input] = input.model.inputs() else {
        return Err(
            ExplainError::Model("robustness needs a model with one input tensor".into()).into(),
        );
    };
    let element = model_input.element;
    if !matches!(element, ElementType::Float | ElementType::Double) {
        return Err(ExplainError::Model(format!(
            "robustness needs numeric (float or double) inputs, this model takes {}",
            element.name()
        ))
        .into());
    }
    for (j, s) in settings.scale.iter().enumerate() {
        if !(*s > 0.0 && s.is_finite()) {
            return Err(RobustnessError::Scale(input.columns[j].clone()));
        }
    }
    let n = crate::whole_rows(input.rows, width).map_err(ExplainError::Input)?;
    if input.truth.len() != n
        || settings.scale.len() != width
        || settings.attacked.iter().any(|j| *j >= width)
    {
        return Err(ExplainError::Input(format!(
            "{n} rows of {width} columns need as many labels ({}) and scales ({}), and attacked features among the columns",
            input.truth.len(),
            settings.scale.len()
        ))
        .into());
    }
    let rows: Vec<f64> = input
        .rows
        .chunks_exact(width)
        .flat_map(|r| rounded(r, element))
        .collect();
    let predictor = Predictor {
        model: input.model,
        width,
        element,
    };
    let predicted = predictor.labels(&rows)?;
    let mut labelled: Vec<usize> = (0..n).filter(|r| input.truth[*r].is_some()).collect();
    if labelled.is_empty() {
        return Err(RobustnessError::NoLabels);
    }
    let mut notes = Vec::new();
    let mut rng = SplitMix(settings.seed);
    // Every number is about the same rows: at most `max_rows` labelled rows, a seeded sample,
    // so that the bounds stay bounds (no row's fate is extrapolated from another's).
    if labelled.len() > settings.max_rows {
        let all = labelled.len();
        for i in (1..labelled.len()).rev() {
            labelled.swap(i, rng.below(i + 1));
        }
        labelled.truncate(settings.max_rows.max(1));
        labelled.sort_unstable();
        notes.push(format!(
            "{} of the {all} labelled rows were assessed (a seeded sample; --max-rows)",
            labelled.len()
        ));
    }
    let truth = |r: usize| input.truth[r].as_deref().unwrap_or_default();
    let correct: Vec<usize> = labelled
        .iter()
        .copied()
        .filter(|r| predicted[*r] == truth(*r))
        .collect();
    let row = |r: usize| &rows[r * width..(r + 1) * width];
    // Every correctly classified row assessed is attacked.
    let attacked_rows = correct.clone();

    // The tree machinery, checked against the runtime's own answers on every row.
    let scores = predictor.width_of_scores(row(0))?;
    let ensemble = match tree_parts(input.model, width, scores) {
        Ok(e) => {
            let mut names: HashMap<usize, &str> = HashMap::new();
            let faithful = (0..n).all(|r| match e.class(row(r)) {
                Some(c) => *names.entry(c).or_insert(&predicted[r]) == predicted[r],
                None => false,
            });
            if faithful {
                Some(e)
            } else {
                notes.push("no tree attack or verification: the trees' raw outputs do not reproduce the model's classes".into());
                None
            }
        }
        Err(why) => {
            notes.push(format!(
                "no tree attack or verification: {why}; the black-box attack ran alone"
            ));
            None
        }
    };

    let radius: Vec<f64> = (0..width)
        .map(|j| {
            if settings.attacked.contains(&j) {
                settings.epsilon * settings.scale[j]
            } else {
                0.0
            }
        })
        .collect();
    let round = |v: f64| match element {
        ElementType::Float => f64::from(v as f32),
        _ => v,
    };
    let within = |d: f64| d <= settings.epsilon;

    // Per attacked row: the closest example found by each attack.
    let mut best: HashMap<usize, (Vec<f64>, f64, &'static str)> = HashMap::new();
    let mut summaries = Vec::new();
    let mut verification = None;
    let mut verified_rows: Vec<usize> = Vec::new();
    if let Some(ensemble) = &ensemble {
        let touched = ensemble.trees_reading();
        let boxes = verify::leaf_boxes(ensemble);
        let mut found: Vec<(usize, Vec<f64>)> = Vec::new();
        for (done, &r) in attacked_rows.iter().enumerate() {
            (input.progress)("tree attack and verification", done, attacked_rows.len());
            let origin = row(r);
            let Some(class) = ensemble.class(origin) else {
                continue;
            };
            let table = trees::MarginTable::new(ensemble, class);
            let lo: Vec<f64> = origin.iter().zip(&radius).map(|(x, r)| x - r).collect();
            let hi: Vec<f64> = origin.iter().zip(&radius).map(|(x, r)| x + r).collect();
            // The runtime decides on the input rounded to float32, which may fall just outside
            // the ball: verify the ball widened to its rounded ends (rounding is monotone).
            let wide_lo: Vec<f64> = lo.iter().map(|v| v.min(round(*v))).collect();
            let wide_hi: Vec<f64> = hi.iter().map(|v| v.max(round(*v))).collect();
            let bounds =
                verify::margin_bounds(&boxes, &table, &wide_lo, &wide_hi, &settings.verify);
            // A margin this close to 0 is within the summation order's rounding: not proven.
            if bounds.iter().all(|b| *b > VERIFIED_MARGIN) {
                verified_rows.push(r);
            }
            let ball = attack::Ball {
                origin,
                lo: &lo,
                hi: &hi,
                scale: &settings.scale,
            };
            let values = attack::candidates(ensemble, &ball, &round);
            let search = attack::Search {
                ensemble,
                table: &table,
                class,
                touched: &touched,
                restarts: settings.restarts,
                moves: 4 * width + 8,
            };
            if let Some(x) = search.run(&ball, &values, &mut rng) {
                found.push((r, x));
            }
        }
        // Every example re-scored by the runtime: it counts only if the runtime's class changed.
        let flat: Vec<f64> = found.iter().flat_map(|(_, x)| x.iter().copied()).collect();
        let rescored = if flat.is_empty() {
            Vec::new()
        } else {
            predictor.labels(&flat)?
        };
        let mut successes = 0;
        let mut distances = Vec::new();
        for ((r, x), label) in found.into_iter().zip(rescored) {
            if label == truth(r) {
                continue;
            }
            let d = attack::distance(row(r), &x, &settings.scale);
            if within(d) {
                successes += 1;
            }
            distances.push(d);
            keep_closest(&mut best, r, x, d, "tree_thresholds");
        }
        summaries.push(AttackSummary {
            attack: "tree_thresholds",
            rows: attacked_rows.len(),
            successes,
            success_rate: ratio(successes, attacked_rows.len()),
            median_perturbation: median(&mut distances),
            mean_queries: None,
        });
        verification = Some(Verification {
            method: "clique (Chen et al. 2019)",
            clique: settings.verify.clique.max(2),
            levels: settings.verify.levels,
            verified: verified_rows.len(),
        });
    }

    // The black-box attack, on every model.
    let attacked: Vec<usize> = settings.attacked.clone();
    let (lo_data, hi_data): (Vec<f64>, Vec<f64>) = attacked
        .iter()
        .map(|&j| {
            let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
            for r in 0..n {
                let v = rows[r * width + j];
                if v.is_finite() {
                    lo = lo.min(v);
                    hi = hi.max(v);
                }
            }
            (lo / settings.scale[j], hi / settings.scale[j])
        })
        .unzip();
    let mut successes = 0;
    let mut distances = Vec::new();
    let mut queries_total = 0usize;
    if !attacked.is_empty()
        && lo_data
            .iter()
            .zip(&hi_data)
            .all(|(l, h)| l.is_finite() && h > l)
    {
        for (done, &r) in attacked_rows.iter().enumerate() {
            (input.progress)("black-box attack", done, attacked_rows.len());
            let origin = row(r).to_vec();
            let label = truth(r).to_string();
            // A missing value stays missing: the attack moves the row's other features.
            let moving: Vec<usize> = attacked
                .iter()
                .copied()
                .filter(|j| !origin[*j].is_nan())
                .collect();
            if moving.is_empty() {
                continue;
            }
            let span = |j: usize| attacked.iter().position(|a| *a == j).unwrap_or(0);
            let to_row = |z: &[f64]| -> Vec<f64> {
                let mut x = origin.clone();
                for (k, &j) in moving.iter().enumerate() {
                    x[j] = round(z[k] * settings.scale[j]);
                }
                x
            };
            // Decisions only: from the trees when they were found faithful to the runtime (the
            // same comparisons on the same rounded values, without a tensor per query), else
            // from the runtime. Every example is re-scored by the runtime below either way.
            let clean = ensemble.as_ref().and_then(|e| e.class(&origin));
            let mut oracle = |points: &[Vec<f64>]| -> Result<Vec<bool>, RobustnessError> {
                if let (Some(e), Some(c)) = (&ensemble, clean) {
                    return Ok(points
                        .iter()
                        .map(|z| e.class(&to_row(z)) != Some(c))
                        .collect());
                }
                let flat: Vec<f64> = points.iter().flat_map(|z| to_row(z)).collect();
                Ok(predictor
                    .labels(&flat)?
                    .into_iter()
                    .map(|l| l != label)
                    .collect())
            };
            let z0: Vec<f64> = moving
                .iter()
                .map(|&j| origin[j] / settings.scale[j])
                .collect();
            let lo: Vec<f64> = moving
                .iter()
                .zip(&z0)
                .map(|(j, z)| lo_data[span(*j)].min(*z))
                .collect();
            let hi: Vec<f64> = moving
                .iter()
                .zip(&z0)
                .map(|(j, z)| hi_data[span(*j)].max(*z))
                .collect();
            // The nearest rows the model answers differently for (and whose moving features are
            // all known), as starts: the five nearest, without sorting every row.
            let mut others: Vec<(f64, usize)> = (0..n)
                .filter(|o| predicted[*o] != label && moving.iter().all(|j| !row(*o)[*j].is_nan()))
                .map(|o| (attack::distance(&origin, row(o), &settings.scale), o))
                .collect();
            if others.len() > 5 {
                others.select_nth_unstable_by(4, |a, b| a.0.total_cmp(&b.0));
                others.truncate(5);
            }
            others.sort_by(|a, b| a.0.total_cmp(&b.0));
            let starts: Vec<Vec<f64>> = others
                .iter()
                .map(|(_, o)| {
                    moving
                        .iter()
                        .map(|&j| row(*o)[j] / settings.scale[j])
                        .collect()
                })
                .collect();
            let got = hsja::attack(
                &mut oracle,
                &z0,
                &lo,
                &hi,
                &starts,
                &settings.hsja,
                &mut rng,
            )?;
            queries_total += got.queries;
            let Some(z) = got.point else {
                continue;
            };
            let x = to_row(&z);
            // The point as the model takes it, re-scored.
            if predictor.labels(&x)?[0] == label {
                continue;
            }
            let d = attack::distance(&origin, &x, &settings.scale);
            if within(d) {
                successes += 1;
            }
            distances.push(d);
            keep_closest(&mut best, r, x, d, "hop_skip_jump");
        }
        summaries.push(AttackSummary {
            attack: "hop_skip_jump",
            rows: attacked_rows.len(),
            successes,
            success_rate: ratio(successes, attacked_rows.len()),
            median_perturbation: median(&mut distances),
            mean_queries: Some(queries_total as f64 / attacked_rows.len().max(1) as f64),
        });
    } else {
        notes.push("no black-box attack: no attacked feature varies in the data".into());
    }

    let flipped: std::collections::BTreeSet<usize> = best
        .iter()
        .filter(|(_, (_, d, _))| within(*d))
        .map(|(r, _)| *r)
        .collect();
    // A row both verified and flipped is not counted verified: the runtime's answer wins.
    let contradicted = verified_rows.iter().filter(|r| flipped.contains(r)).count();
    if contradicted > 0 {
        notes.push(format!("{contradicted} row(s) verified robust were flipped by an attack (the verification's view of the trees and the runtime disagree there); they are not counted verified"));
        verified_rows.retain(|r| !flipped.contains(r));
    }
    // Both bounds are counts over the same labelled rows.
    let n_labelled = labelled.len();
    let robust_accuracy = ratio(correct.len() - flipped.len(), n_labelled);
    let verified_robust_accuracy = verification
        .as_ref()
        .map(|_| ratio(verified_rows.len(), n_labelled));
    let mut minimal: Vec<f64> = best.values().map(|(_, d, _)| *d).collect();
    let examples: Vec<Example> = {
        let mut e: Vec<Example> = best
            .into_iter()
            .filter(|(_, (_, d, _))| within(*d))
            .map(|(r, (mut values, d, attack))| {
                // Features the attack did not change keep the values as given (not rounded).
                let given = &input.rows[r * width..(r + 1) * width];
                for (j, v) in values.iter_mut().enumerate() {
                    if v.to_bits() == row(r)[j].to_bits() {
                        *v = given[j];
                    }
                }
                Example {
                    row: r,
                    values,
                    label: truth(r).to_string(),
                    perturbation: d,
                    attack,
                }
            })
            .collect();
        e.sort_by_key(|x| x.row);
        e
    };

    // Noise and missing features.
    let mut noise = Vec::new();
    for &sigma in &settings.sigmas {
        let mut noisy = rows.clone();
        for r in 0..n {
            for &j in &settings.attacked {
                let v = &mut noisy[r * width + j];
                *v = round(*v + sigma * settings.scale[j] * rng.gaussian());
            }
        }
        let labels = predictor.labels(&noisy)?;
        let right = labelled
            .iter()
            .filter(|r| labels[**r] == truth(**r))
            .count();
        noise.push(NoiseAccuracy {
            sigma,
            accuracy: ratio(right, labelled.len()),
        });
    }
    let mut missing = Vec::new();
    for (j, name) in input.columns.iter().enumerate() {
        let mut blank = rows.clone();
        for r in 0..n {
            blank[r * width + j] = f64::NAN;
        }
        match predictor.labels(&blank) {
            Ok(labels) => {
                let right = labelled
                    .iter()
                    .filter(|r| labels[**r] == truth(**r))
                    .count();
                missing.push(MissingAccuracy {
                    feature: name.clone(),
                    accuracy: Some(ratio(right, labelled.len())),
                    note: None,
                });
            }
            Err(e) => missing.push(MissingAccuracy {
                feature: name.clone(),
                accuracy: None,
                note: Some(e.to_string()),
            }),
        }
    }

    let report = Report {
        format: FORMAT,
        epsilon: settings.epsilon,
        norm: "linf",
        attacked_features: settings
            .attacked
            .iter()
            .map(|j| input.columns[*j].clone())
            .collect(),
        rows: labelled.len(),
        clean_accuracy: ratio(correct.len(), n_labelled),
        robust_accuracy,
        verified_robust_accuracy,
        attack_success_rate: ratio(flipped.len(), attacked_rows.len()),
        median_perturbation: median(&mut minimal),
        rows_attacked: attacked_rows.len(),
        attacks: summaries,
        verification,
        noise,
        missing,
        notes,
    };
    Ok((report, examples))
}

/// The smallest margin a verified row has: below it, summing the same leaves in another order
/// (as the runtime does) could change the sign.
const VERIFIED_MARGIN: f64 = 1e-9;

fn ratio(k: usize, n: usize) -> f64 {
    if n == 0 {
        0.0
    } else {
        k as f64 / n as f64
    }
}

fn keep_closest(
    best: &mut HashMap<usize, (Vec<f64>, f64, &'static str)>,
    r: usize,
    x: Vec<f64>,
    d: f64,
    attack: &'static str,
) {
    match best.get(&r) {
        Some((_, old, _)) if *old <= d => {}
        _ => {
            best.insert(r, (x, d, attack));
        }
    }
}

#[cfg(test)]
mod tests;
