//! An adversarial search native to tree ensembles, in the spirit of Zhang et al. 2020 ("An
//! Efficient Adversarial Attack for Tree Ensembles"): the decision only changes where a feature
//! crosses a branch's threshold, so the search moves one feature at a time onto a value just on
//! the other side of a threshold inside the ε-ball, taking the move that lowers the smallest
//! margin the most, until the class changes or no move helps; restarts from random points of
//! the ball escape local minima. A found example is then shrunk (features moved back toward the
//! row while it stays adversarial).
//!
//! Only trees that read the moved feature are re-walked: a row's margins are kept as per-tree
//! sums ([`super::trees::MarginTable`]).

use super::trees::{Ensemble, MarginTable};
use crate::sampling::SplitMix;

/// Where the search may go around a row: per feature, the closed interval its values may take
/// (an ε-ball, or a counterfactual's allowed range; `lo == hi`: the feature stays), and per
/// feature its scale (the distance of one unit).
pub(crate) struct Ball<'a> {
    pub origin: &'a [f64],
    pub lo: &'a [f64],
    pub hi: &'a [f64],
    pub scale: &'a [f64],
}

/// L∞ distance between two rows, each feature divided by its scale.
pub(crate) fn distance(origin: &[f64], row: &[f64], scale: &[f64]) -> f64 {
    row.iter()
        .zip(origin)
        .zip(scale)
        .map(|((a, b), s)| (a - b).abs() / s)
        .fold(0.0, f64::max)
}

/// The values a feature may take that decide differently: each threshold, and the neighbours
/// just below and above it in the model's precision, inside the ball.
pub(crate) fn candidates(
    ensemble: &Ensemble,
    ball: &Ball<'_>,
    round: &dyn Fn(f64) -> f64,
) -> Vec<Vec<f64>> {
    let mut out: Vec<Vec<f64>> = ball.origin.iter().map(|v| vec![*v]).collect();
    for tree in &ensemble.trees {
        for node in &tree.nodes {
            let Some((f, t, _, _)) = node.split else {
                continue;
            };
            let j = f as usize;
            let (lo, hi) = (ball.lo[j], ball.hi[j]);
            if lo == hi {
                continue;
            }
            for v in [
                round(t),
                next_down(round(t), round),
                next_up(round(t), round),
            ] {
                if v >= lo && v <= hi && v.is_finite() {
                    out[j].push(v);
                }
            }
        }
    }
    for values in &mut out {
        values.sort_by(f64::total_cmp);
        values.dedup();
    }
    out
}

/// The next value above `v` that the model's precision tells apart.
fn next_up(v: f64, round: &dyn Fn(f64) -> f64) -> f64 {
    let up = round(v.next_up());
    if up > v {
        up
    } else {
        f64::from((v as f32).next_up())
    }
}

fn next_down(v: f64, round: &dyn Fn(f64) -> f64) -> f64 {
    let down = round(v.next_down());
    if down < v {
        down
    } else {
        f64::from((v as f32).next_down())
    }
}

/// The search's state: the row and, per margin, each tree's current contribution.
struct State {
    row: Vec<f64>,
    /// `[tree]`: the reached leaf.
    leaves: Vec<usize>,
    /// `[margin]`.
    margins: Vec<f64>,
}

impl State {
    fn new(ensemble: &Ensemble, table: &MarginTable, row: Vec<f64>) -> State {
        let leaves: Vec<usize> = ensemble.trees.iter().map(|t| t.leaf(&row)).collect();
        let margins = (0..table.count())
            .map(|m| {
                table.constants[m]
                    + leaves
                        .iter()
                        .enumerate()
                        .map(|(t, l)| table.leaves[m][t][*l])
                        .sum::<f64>()
            })
            .collect();
        State {
            row,
            leaves,
            margins,
        }
    }

    fn worst(&self) -> f64 {
        self.margins.iter().copied().fold(f64::INFINITY, f64::min)
    }

    /// The margins if feature `j` took `v` (`touched`: the trees that read `j`).
    fn moved(
        &self,
        ensemble: &Ensemble,
        table: &MarginTable,
        touched: &[usize],
        j: usize,
        v: f64,
        row: &mut Vec<f64>,
    ) -> Vec<f64> {
        row.clear();
        row.extend_from_slice(&self.row);
        row[j] = v;
        let mut margins = self.margins.clone();
        for &t in touched {
            let leaf = ensemble.trees[t].leaf(row);
            if leaf != self.leaves[t] {
                for (m, value) in margins.iter_mut().enumerate() {
                    *value += table.leaves[m][t][leaf] - table.leaves[m][t][self.leaves[t]];
                }
            }
        }
        margins
    }
}

pub(crate) struct Search<'a> {
    pub ensemble: &'a Ensemble,
    pub table: &'a MarginTable,
    /// The class the row is decided as (the attack wants another).
    pub class: usize,
    /// Per feature, the trees that read it.
    pub touched: &'a [Vec<usize>],
    pub restarts: usize,
    /// At most this many moves per start.
    pub moves: usize,
}

impl Search<'_> {
    /// An example in the ball the ensemble decides as another class, shrunk; `None` when the
    /// search finds none.
    pub fn run(
        &self,
        ball: &Ball<'_>,
        values: &[Vec<f64>],
        rng: &mut SplitMix,
    ) -> Option<Vec<f64>> {
        let mut scratch = Vec::with_capacity(ball.origin.len());
        for start in 0..=self.restarts {
            let row: Vec<f64> = if start == 0 {
                ball.origin.to_vec()
            } else {
                values.iter().map(|v| v[rng.below(v.len())]).collect()
            };
            let mut state = State::new(self.ensemble, self.table, row);
            for _ in 0..self.moves {
                if self.ensemble.class(&state.row) != Some(self.class) {
                    return Some(self.shrink(ball, values, state.row));
                }
                let mut best: Option<(f64, usize, f64, Vec<f64>)> = None;
                for (j, options) in values.iter().enumerate() {
                    if options.len() < 2 {
                        continue;
                    }
                    for &v in options {
                        if v == state.row[j] {
                            continue;
                        }
                        let margins = state.moved(
                            self.ensemble,
                            self.table,
                            &self.touched[j],
                            j,
                            v,
                            &mut scratch,
                        );
                        let worst = margins.iter().copied().fold(f64::INFINITY, f64::min);
                        // Ties go to the smaller move, so the example stays close.
                        let better = match &best {
                            None => worst < state.worst(),
                            Some((w, bj, bv, _)) => {
                                worst < *w
                                    || (worst == *w
                                        && (v - ball.origin[j]).abs() / ball.scale[j]
                                            < (bv - ball.origin[*bj]).abs() / ball.scale[*bj])
                            }
                        };
                        if better {
                            best = Some((worst, j, v, margins));
                        }
                    }
                }
                let Some((_, j, v, margins)) = best else {
                    break;
                };
                state.row[j] = v;
                for &t in &self.touched[j] {
                    state.leaves[t] = self.ensemble.trees[t].leaf(&state.row);
                }
                state.margins = margins;
            }
            if self.ensemble.class(&state.row) != Some(self.class) {
                return Some(self.shrink(ball, values, state.row));
            }
        }
        None
    }

    /// Moves each feature back toward the origin, largest moves first, as far as the example
    /// stays adversarial.
    fn shrink(&self, ball: &Ball<'_>, values: &[Vec<f64>], mut row: Vec<f64>) -> Vec<f64> {
        let mut order: Vec<usize> = (0..row.len())
            .filter(|j| row[*j] != ball.origin[*j])
            .collect();
        order.sort_by(|a, b| {
            let d = |j: usize| (row[j] - ball.origin[j]).abs() / ball.scale[j];
            d(*b).total_cmp(&d(*a))
        });
        for j in order {
            let here = row[j];
            // Candidates between the origin and where the feature is, closest to the origin first.
            let mut closer: Vec<f64> = values[j]
                .iter()
                .copied()
                .filter(|v| (v - ball.origin[j]).abs() < (here - ball.origin[j]).abs())
                .collect();
            closer.sort_by(|a, b| {
                (a - ball.origin[j])
                    .abs()
                    .total_cmp(&(b - ball.origin[j]).abs())
            });
            for v in closer {
                row[j] = v;
                if self.ensemble.class(&row) != Some(self.class) {
                    break;
                }
                row[j] = here;
            }
        }
        row
    }
}
