//! Counterfactual explanations, the constructive side of the right to explanation: the
//! smallest change of the features a person can act on, within the values each may take, that
//! changes the model's decision about a row ("had your debt ratio been 0.31 instead of 0.42,
//! the loan would have been approved"), re-scored by the runtime to prove it.
//!
//! Distances are L∞ over the changed features divided by their scale (the training data's
//! standard deviation). For tree ensembles the search is the robustness attack's, restricted to
//! the allowed box and narrowed by bisection on the distance; the clique verification then says
//! whether nothing closer exists (`certified`), or that no change within the ranges can flip
//! the decision. Other models are searched with HopSkipJump inside the box (not certified).

use super::hsja::{self, HsjaSettings};
use super::trees::MarginTable;
use super::{attack, tree_parts, verify, Predictor, RobustnessError};
use crate::sampling::SplitMix;
use mltrail_serving::runtime::{ElementType, Model};

/// What may change: per model feature, the closed interval of values it may take; a feature
/// not acted on has `lo == hi ==` its value.
pub struct Request<'a> {
    pub row: &'a [f64],
    pub lo: &'a [f64],
    pub hi: &'a [f64],
    /// Per feature, the unit of distance (> 0).
    pub scale: &'a [f64],
    pub seed: u64,
}

/// The answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The decision the model made about the row.
    pub original: String,
    /// The changed row and the decision the runtime gives it, when one was found.
    pub found: Option<(Vec<f64>, String)>,
    /// Its L∞ distance from the row, in scaled units.
    pub distance: Option<f64>,
    /// For tree ensembles: verified that no change closer than `distance` (or, when nothing
    /// was found, none within the ranges) flips the decision.
    pub certified: bool,
    pub method: &'static str,
}

/// Bisection steps on the distance (each halves the gap between what is proven and found).
const STEPS: usize = 24;

/// Up to this many combinations of candidate values, a tree ensemble's counterfactual is found
/// by trying them all (exact); beyond, by search and bisection, certified by the verification.
const GRID: usize = 500_000;

/// `v` in the model's precision, moved inward when rounding took it out of the range: the
/// smallest representable value at or above `v` (`up`), else the greatest at or below.
fn inside(v: f64, round: &dyn Fn(f64) -> f64, up: bool) -> f64 {
    let r = round(v);
    match (up, r < v, r > v) {
        (true, true, _) => round(f64::from((r as f32).next_up())),
        (false, _, true) => round(f64::from((r as f32).next_down())),
        _ => r,
    }
}

/// Every combination of the features' candidate values (each threshold, its neighbours in the
/// model's precision, the range's ends and the row's own value): a cell of the trees' partition
/// is decided alike throughout, and its closest point to the row is among these, so the
/// closest flipping combination is the smallest counterfactual. `None` when there are more
/// than [`GRID`] combinations.
fn grid(
    ensemble: &super::trees::Ensemble,
    class: usize,
    row: &[f64],
    ball: &attack::Ball<'_>,
    round: &dyn Fn(f64) -> f64,
) -> Option<Option<(Vec<f64>, f64)>> {
    let mut values = attack::candidates(ensemble, ball, round);
    for (j, v) in values.iter_mut().enumerate() {
        if ball.lo[j] != ball.hi[j] {
            // The range's ends as the model's precision holds them, inside the range.
            v.extend([
                inside(ball.lo[j], round, true),
                inside(ball.hi[j], round, false),
            ]);
            v.retain(|x| (*x >= ball.lo[j] && *x <= ball.hi[j]) || x.to_bits() == row[j].to_bits());
            v.sort_by(f64::total_cmp);
            v.dedup();
        }
    }
    let total = values
        .iter()
        .try_fold(1usize, |n, v| n.checked_mul(v.len()))
        .filter(|n| *n <= GRID)?;
    let acting: Vec<usize> = (0..row.len()).filter(|j| values[*j].len() > 1).collect();
    let mut index = vec![0usize; acting.len()];
    let mut x = row.to_vec();
    let mut best: Option<(Vec<f64>, f64)> = None;
    for _ in 0..total {
        for (k, &j) in acting.iter().enumerate() {
            x[j] = values[j][index[k]];
        }
        let d = attack::distance(row, &x, ball.scale);
        if best.as_ref().is_none_or(|(_, b)| d < *b) && ensemble.class(&x) != Some(class) {
            best = Some((x.clone(), d));
        }
        // The next combination (odometer order).
        for (k, &j) in acting.iter().enumerate() {
            index[k] += 1;
            if index[k] < values[j].len() {
                break;
            }
            index[k] = 0;
        }
    }
    Some(best)
}

pub fn search(
    model: &Model,
    columns: usize,
    request: &Request<'_>,
) -> Result<Answer, RobustnessError> {
    let [input] = model.inputs() else {
        return Err(crate::ExplainError::Model(
            "counterfactuals need a model with one input tensor".into(),
        )
        .into());
    };
    let element = input.element;
    let predictor = Predictor {
        model,
        width: columns,
        element,
    };
    let round = |v: f64| match element {
        ElementType::Float => f64::from(v as f32),
        _ => v,
    };
    let row: Vec<f64> = request.row.iter().map(|v| round(*v)).collect();
    let original = predictor
        .labels(&row)?
        .pop()
        .ok_or(RobustnessError::NotAClassifier)?;
    let scores = predictor.width_of_scores(&row)?;
    let mut rng = SplitMix(request.seed);
    // Rows the runtime decides otherwise: the candidates found, re-scored.
    let rescore = |x: &[f64]| decided_otherwise(&predictor, &original, x);
    // An answer changes only the features acted on, each within its range (or left as it was).
    let respects = |x: &[f64]| -> bool {
        (0..columns).all(|j| {
            let same = x[j].to_bits() == row[j].to_bits() || (x[j].is_nan() && row[j].is_nan());
            same || (request.lo[j] != request.hi[j]
                && x[j] >= request.lo[j]
                && x[j] <= request.hi[j])
        })
    };
    let generic = |rng: &mut SplitMix| {
        black_box(&predictor, &original, &row, request, &round, &respects, rng)
    };
    if let Ok(ensemble) = tree_parts(model, columns, scores) {
        if let Some(class) = ensemble.class(&row) {
            let table = MarginTable::new(&ensemble, class);
            let boxes = verify::leaf_boxes(&ensemble);
            let touched = ensemble.trees_reading();
            let search = attack::Search {
                ensemble: &ensemble,
                table: &table,
                class,
                touched: &touched,
                restarts: 4,
                moves: 4 * columns + 8,
            };
            let settings = verify::VerifySettings::default();
            // The allowed box cut to distance `r` around the row.
            let within = |r: f64| -> (Vec<f64>, Vec<f64>) {
                (0..columns)
                    .map(|j| {
                        let (lo, hi) = (request.lo[j], request.hi[j]);
                        if lo == hi {
                            (lo, hi)
                        } else {
                            (
                                lo.max(row[j] - r * request.scale[j]),
                                hi.min(row[j] + r * request.scale[j]),
                            )
                        }
                    })
                    .unzip()
            };
            let robust = |lo: &[f64], hi: &[f64]| {
                // The row itself may lie outside its ranges: the box then holds the row too.
                let lo: Vec<f64> = lo.iter().zip(&row).map(|(l, x)| l.min(*x)).collect();
                let hi: Vec<f64> = hi.iter().zip(&row).map(|(h, x)| h.max(*x)).collect();
                verify::margin_bounds(&boxes, &table, &lo, &hi, &settings)
                    .iter()
                    .all(|b| *b > 0.0)
            };
            let find = |lo: &[f64], hi: &[f64], rng: &mut SplitMix| {
                let ball = attack::Ball {
                    origin: &row,
                    lo,
                    hi,
                    scale: request.scale,
                };
                let values = attack::candidates(&ensemble, &ball, &round);
                search.run(&ball, &values, rng)
            };
            let full = attack::Ball {
                origin: &row,
                lo: request.lo,
                hi: request.hi,
                scale: request.scale,
            };
            // When the runtime does not confirm what the trees found, the trees are not trusted
            // for this row: the black-box search below answers instead.
            let mut trusted = true;
            if let Some(exact) = grid(&ensemble, class, &row, &full, &round) {
                match exact {
                    Some((x, d)) => match rescore(&x)? {
                        Some(label) if respects(&x) => {
                            return Ok(Answer {
                                original: original.clone(),
                                distance: Some(d),
                                found: Some((x, label)),
                                certified: true,
                                method: "tree cells (exhaustive)",
                            })
                        }
                        _ => trusted = false,
                    },
                    None => {
                        return Ok(Answer {
                            original: original.clone(),
                            distance: None,
                            found: None,
                            certified: true,
                            method: "tree cells (exhaustive)",
                        })
                    }
                }
            }
            let first = if trusted {
                find(request.lo, request.hi, &mut rng)
            } else {
                None
            };
            let Some(first) = first else {
                if !trusted {
                    return generic(&mut rng);
                }
                return Ok(Answer {
                    original: original.clone(),
                    found: None,
                    distance: None,
                    certified: robust(request.lo, request.hi),
                    method: "tree thresholds",
                });
            };
            let mut best = first;
            let mut best_d = attack::distance(&row, &best, request.scale);
            let mut proven = 0.0f64;
            for _ in 0..STEPS {
                let mid = (proven + best_d) / 2.0;
                if best_d - proven <= 1e-9 * best_d.max(1.0) {
                    break;
                }
                let (lo, hi) = within(mid);
                match find(&lo, &hi, &mut rng) {
                    Some(x) => {
                        best_d = attack::distance(&row, &x, request.scale);
                        best = x;
                    }
                    None => proven = mid,
                }
            }
            // Proven minimal when nothing strictly closer can flip the decision.
            let (lo, hi) = within(best_d * (1.0 - 1e-9));
            let certified = robust(&lo, &hi);
            let label = match rescore(&best)? {
                Some(label) if respects(&best) => label,
                _ => return generic(&mut rng),
            };
            return Ok(Answer {
                original: original.clone(),
                found: Some((best, label)),
                distance: Some(best_d),
                certified,
                method: "tree thresholds",
            });
        }
    }
    generic(&mut rng)
}

/// The runtime's class for `x` when it is not `original`.
fn decided_otherwise(
    predictor: &Predictor<'_>,
    original: &str,
    x: &[f64],
) -> Result<Option<String>, RobustnessError> {
    let label = predictor
        .labels(x)?
        .pop()
        .ok_or(RobustnessError::NotAClassifier)?;
    Ok((label != original).then_some(label))
}

/// HopSkipJump inside the allowed box, in scaled units: any model, not certified.
fn black_box(
    predictor: &Predictor<'_>,
    original: &str,
    row: &[f64],
    request: &Request<'_>,
    round: &dyn Fn(f64) -> f64,
    respects: &dyn Fn(&[f64]) -> bool,
    rng: &mut SplitMix,
) -> Result<Answer, RobustnessError> {
    let rescore = |x: &[f64]| decided_otherwise(predictor, original, x);
    let original = original.to_string();
    let acting: Vec<usize> = (0..row.len())
        .filter(|j| request.lo[*j] != request.hi[*j])
        .collect();
    let to_row = |z: &[f64]| -> Vec<f64> {
        let mut x = row.to_vec();
        for (k, &j) in acting.iter().enumerate() {
            x[j] = round(z[k] * request.scale[j]);
        }
        x
    };
    let z0: Vec<f64> = acting.iter().map(|&j| row[j] / request.scale[j]).collect();
    let lo: Vec<f64> = acting
        .iter()
        .map(|&j| request.lo[j].min(row[j]) / request.scale[j])
        .collect();
    let hi: Vec<f64> = acting
        .iter()
        .map(|&j| request.hi[j].max(row[j]) / request.scale[j])
        .collect();
    let mut oracle = |points: &[Vec<f64>]| -> Result<Vec<bool>, RobustnessError> {
        let flat: Vec<f64> = points.iter().flat_map(|z| to_row(z)).collect();
        Ok(predictor
            .labels(&flat)?
            .into_iter()
            .map(|l| l != original)
            .collect())
    };
    let corners: Vec<Vec<f64>> = vec![lo.clone(), hi.clone()];
    let found = hsja::attack(
        &mut oracle,
        &z0,
        &lo,
        &hi,
        &corners,
        &HsjaSettings::default(),
        rng,
    )?;
    let point = found.point.map(|z| to_row(&z));
    let (found, distance) = match point {
        Some(x) => match rescore(&x)? {
            // Outside the ranges (between the row and a range it lies outside of, or rounded
            // past an end) is no answer.
            Some(label) if respects(&x) => {
                let d = attack::distance(row, &x, request.scale);
                (Some((x, label)), Some(d))
            }
            _ => (None, None),
        },
        None => (None, None),
    };
    Ok(Answer {
        original,
        found,
        distance,
        certified: false,
        method: "hop_skip_jump",
    })
}
