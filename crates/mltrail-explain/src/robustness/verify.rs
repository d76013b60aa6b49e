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

/// Closed intervals of the features a leaf's path reads, sorted by feature: every other
/// feature is unconstrained. Sparse, so a box costs what its path reads, not the model's width.
type Box = Vec<(u32, f64, f64)>;

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

/// `b` with feature `f`'s interval narrowed to `[lo, hi]` (kept sorted by feature).
fn narrowed(mut b: Box, f: u32, lo: f64, hi: f64) -> Box {
    match b.binary_search_by_key(&f, |c| c.0) {
        Ok(i) => {
            b[i].1 = b[i].1.max(lo);
            b[i].2 = b[i].2.min(hi);
        }
        Err(i) => b.insert(i, (f, lo, hi)),
    }
    b
}

/// Per tree, each leaf's box.
pub(crate) fn leaf_boxes(ensemble: &Ensemble) -> Vec<Vec<(usize, Box)>> {
    use mltrail_serving::runtime::NodeMode;
    let (down, up) = (f64::NEG_INFINITY, f64::INFINITY);
    ensemble
        .trees
        .iter()
        .map(|tree| {
            let mut leaves = Vec::new();
            let mut stack: Vec<(usize, Box)> = vec![(0, Vec::new())];
            while let Some((i, bounds)) = stack.pop() {
                let node = tree.nodes[i];
                let Some((f, t, mode, _)) = node.split else {
                    leaves.push((i, bounds));
                    continue;
                };
                let (yes, no) = match mode {
                    NodeMode::Leq | NodeMode::Lt => (
                        narrowed(bounds.clone(), f, down, t),
                        narrowed(bounds, f, t, up),
                    ),
                    NodeMode::Gte | NodeMode::Gt => (
                        narrowed(bounds.clone(), f, t, up),
                        narrowed(bounds, f, down, t),
                    ),
                    // Equality tests constrain nothing here (a relaxation).
                    NodeMode::Eq | NodeMode::Neq | NodeMode::Leaf => (bounds.clone(), bounds),
                };
                stack.push((node.true_child as usize, yes));
                stack.push((node.false_child as usize, no));
            }
            leaves
        })
        .collect()
}

/// The intersection of two boxes, `None` when it is empty. Axis-aligned intervals that meet
/// pairwise share a point, so cliques need only pairwise meets.
fn meet(a: &Box, b: &Box) -> Option<Box> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let next = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x.0 == y.0 => {
                i += 1;
                j += 1;
                (x.0, x.1.max(y.1), x.2.min(y.2))
            }
            (Some(x), Some(y)) if x.0 < y.0 => {
                i += 1;
                *x
            }
            (Some(x), None) => {
                i += 1;
                *x
            }
            (_, Some(y)) => {
                j += 1;
                *y
            }
            (None, None) => break,
        };
        if next.1 > next.2 {
            return None;
        }
        out.push(next);
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
    // A leaf's box clipped to the ball on the features it reads; the others are the ball's
    // own intervals, never empty, so boxes stay sparse.
    let clip = |b: &Box| -> Option<Box> {
        b.iter()
            .map(|&(f, l, h)| {
                let (l, h) = (l.max(lo[f as usize]), h.min(hi[f as usize]));
                (l <= h).then_some((f, l, h))
            })
            .collect()
    };
    // The reachable leaves of each tree, clipped to the ball.
    let reachable: Vec<Vec<(Box, usize)>> = boxes
        .iter()
        .map(|leaves| {
            leaves
                .iter()
                .filter_map(|(node, b)| clip(b).map(|m| (m, *node)))
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
