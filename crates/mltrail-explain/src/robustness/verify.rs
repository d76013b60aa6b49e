//! A verified lower bound on robustness for tree ensembles: Chen, Zhang, Boning & Hsieh 2019
//! ("Robustness Verification of Tree-based Models"), the clique method as IBM's ART implements
//! it (`RobustnessVerificationTreeModelsCliqueMethod`), on the model's own margins.
//!
//! Each tree's leaves are boxes; a leaf is reachable when its box meets the L∞ ball. Trees are
//! grouped (`clique` at a time) and every combination of reachable leaves whose boxes meet is a
//! clique with the boxes' intersection and the leaves' summed margin; groups are grouped again,
//! level after level. When merging stops (one group left: exact; or the level or size limit),
//! each group's smallest clique margin is taken: their sum is a lower bound of the smallest
//! margin anywhere in the ball, and a row is verified when the bound is positive for every
//! margin. Boxes are closed intervals (a relaxation: the bound stays sound at thresholds).
//!
//! Unlike ART, margins here include the ensemble's base values and its link to probabilities
//! (the runtime's own decision), and merging continues past ART's two levels while the cliques
//! stay under a size limit: the bound is never looser than ART's at the same settings.

use super::trees::{Ensemble, MarginTable};

/// Per feature, a closed interval.
type Box = Vec<(f64, f64)>;

#[derive(Debug, Clone, Copy)]
pub struct VerifySettings {
    /// Trees (then groups) merged at a time (ART's `max_clique`).
    pub clique: usize,
    /// Merging levels at most (ART's `max_level`).
    pub levels: usize,
    /// A level whose merge would make a group of more cliques than this is not merged.
    pub max_cliques: usize,
}

impl Default for VerifySettings {
    fn default() -> Self {
        VerifySettings {
            clique: 2,
            levels: 4,
            max_cliques: 10_000,
        }
    }
}

/// Per tree, each leaf's box (the whole line where a feature is not read).
pub(crate) fn leaf_boxes(ensemble: &Ensemble) -> Vec<Vec<(usize, Box)>> {
    use mltrail_serving::runtime::NodeMode;
    let width = ensemble.features;
    ensemble
        .trees
        .iter()
        .map(|tree| {
            let mut leaves = Vec::new();
            let mut stack = vec![(0usize, vec![(f64::NEG_INFINITY, f64::INFINITY); width])];
            while let Some((i, bounds)) = stack.pop() {
                let node = tree.nodes[i];
                let Some((f, t, mode, _)) = node.split else {
                    leaves.push((i, bounds));
                    continue;
                };
                let f = f as usize;
                let (mut yes, mut no) = (bounds.clone(), bounds);
                match mode {
                    NodeMode::Leq | NodeMode::Lt => {
                        yes[f].1 = yes[f].1.min(t);
                        no[f].0 = no[f].0.max(t);
                    }
                    NodeMode::Gte | NodeMode::Gt => {
                        yes[f].0 = yes[f].0.max(t);
                        no[f].1 = no[f].1.min(t);
                    }
                    // Equality tests constrain nothing here (a relaxation).
                    NodeMode::Eq | NodeMode::Neq | NodeMode::Leaf => {}
                }
                stack.push((node.true_child as usize, yes));
                stack.push((node.false_child as usize, no));
            }
            leaves
        })
        .collect()
}

fn meet(a: &Box, b: &Box) -> Option<Box> {
    let mut out = Vec::with_capacity(a.len());
    for (x, y) in a.iter().zip(b) {
        let lo = x.0.max(y.0);
        let hi = x.1.min(y.1);
        if lo > hi {
            return None;
        }
        out.push((lo, hi));
    }
    Some(out)
}

/// The lower bound of each margin over the ball `[lo, hi]` (per feature); a row is verified
/// when every bound is positive.
pub(crate) fn margin_bounds(
    boxes: &[Vec<(usize, Box)>],
    table: &MarginTable,
    lo: &[f64],
    hi: &[f64],
    settings: &VerifySettings,
) -> Vec<f64> {
    let ball: Box = lo.iter().copied().zip(hi.iter().copied()).collect();
    // The reachable leaves of each tree, clipped to the ball.
    let reachable: Vec<Vec<(Box, usize)>> = boxes
        .iter()
        .map(|leaves| {
            leaves
                .iter()
                .filter_map(|(node, b)| meet(b, &ball).map(|m| (m, *node)))
                .collect()
        })
        .collect();
    (0..table.count())
        .map(|m| {
            let mut groups: Vec<Vec<(Box, f64)>> = reachable
                .iter()
                .enumerate()
                .map(|(t, leaves)| {
                    leaves
                        .iter()
                        .map(|(b, node)| (b.clone(), table.leaves[m][t][*node]))
                        .collect()
                })
                .collect();
            let clique = settings.clique.max(2);
            for _ in 0..settings.levels {
                if groups.len() <= 1 {
                    break;
                }
                match merge(&groups, clique, settings.max_cliques) {
                    Some(merged) => groups = merged,
                    None => break,
                }
            }
            table.constants[m]
                + groups
                    .iter()
                    .map(|g| g.iter().map(|c| c.1).fold(f64::INFINITY, f64::min))
                    .sum::<f64>()
        })
        .collect()
}

/// One level: consecutive groups, `clique` at a time, merged into their meeting combinations;
/// `None` when a merged group would exceed `cap` cliques.
fn merge(groups: &[Vec<(Box, f64)>], clique: usize, cap: usize) -> Option<Vec<Vec<(Box, f64)>>> {
    let mut out = Vec::with_capacity(groups.len().div_ceil(clique));
    for chunk in groups.chunks(clique) {
        let mut cliques: Vec<(Box, f64)> = chunk[0].clone();
        for next in &chunk[1..] {
            let mut merged = Vec::new();
            for (b, v) in &cliques {
                for (c, w) in next {
                    if let Some(m) = meet(b, c) {
                        merged.push((m, v + w));
                        if merged.len() > cap {
                            return None;
                        }
                    }
                }
            }
            cliques = merged;
        }
        out.push(cliques);
    }
    Some(out)
}
