//! A tree ensemble as the attack and the verification see it: each tree's nodes, and for each
//! leaf its contribution to every *margin* of the decision (how far the row's class is ahead
//! of each other class). A margin is linear in the reached leaves, so a row's margins are the
//! sum of one number per tree, and changing one feature only changes the trees that read it.

use mltrail_serving::runtime::{NodeMode, OutputSpace, RawOutput};

use crate::model::linked;
use crate::tree::Forest;

/// One branch or leaf, flattened from the explainer's arena.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Node {
    /// `None` for a leaf.
    pub split: Option<(u32, f64, NodeMode, bool)>,
    pub true_child: u32,
    pub false_child: u32,
}

pub(crate) struct Tree {
    pub nodes: Vec<Node>,
    /// Per node, the raw values of every output (zero on branches).
    pub values: Vec<f64>,
    /// The features its branches read, sorted, without repeats.
    pub features: Vec<u32>,
}

impl Tree {
    pub fn leaf(&self, row: &[f64]) -> usize {
        let mut i = 0usize;
        while let Some((f, t, mode, missing)) = self.nodes[i].split {
            i = if mode.goes_true(row[f as usize], t, missing) {
                self.nodes[i].true_child
            } else {
                self.nodes[i].false_child
            } as usize;
        }
        i
    }
}

/// How raw outputs decide the class, as the runtime decides it: one score for two classes
/// against `threshold` (class 1 strictly above it), else the first of the largest scores
/// (softmax and averaging keep the order, so raw scores decide as probabilities do).
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub outputs: Vec<RawOutput>,
    pub width: usize,
    /// The one-score threshold (`TreeEnsemble::binary_threshold`); `None` when the runtime
    /// gives none (the decision is then taken from the linked probabilities).
    pub threshold: Option<f64>,
}

impl Link {
    /// The class column the raw outputs decide.
    pub fn class(&self, raw: &[f64]) -> Option<usize> {
        if raw.len() == 1 {
            let t = match self.threshold {
                Some(t) => t,
                None => {
                    let p = linked(&self.outputs, raw, self.width)?;
                    return Some(usize::from(p.get(1)? > p.first()?));
                }
            };
            return Some(usize::from(raw[0] > t));
        }
        if raw.iter().any(|v| v.is_nan()) {
            return None;
        }
        let mut best = 0;
        for (i, v) in raw.iter().enumerate() {
            if *v > raw[best] {
                best = i;
            }
        }
        Some(best)
    }

    /// The margins of class `c` against each other class, as `(coefficients over raw outputs,
    /// constant)`: class `c` is decided while every margin is positive.
    pub fn margins(&self, c: usize) -> Vec<(Vec<f64>, f64)> {
        let k = self.outputs.len();
        if k == 1 {
            // One score for two classes: class 1 above the threshold, class 0 at or below it.
            let threshold = self.threshold.unwrap_or(match self.outputs[0].space {
                OutputSpace::LogOdds | OutputSpace::Margin => 0.0,
                OutputSpace::Probability | OutputSpace::Value => 0.5,
            });
            return if c == 1 {
                vec![(vec![1.0], -threshold)]
            } else {
                vec![(vec![-1.0], threshold)]
            };
        }
        (0..k)
            .filter(|o| *o != c)
            .map(|o| {
                let mut coef = vec![0.0; k];
                coef[c] = 1.0;
                coef[o] = -1.0;
                (coef, 0.0)
            })
            .collect()
    }
}

/// The ensemble with its link.
pub(crate) struct Ensemble {
    pub trees: Vec<Tree>,
    pub offset: Vec<f64>,
    pub link: Link,
    pub features: usize,
}

impl Ensemble {
    pub fn new(forest: &Forest, link: Link) -> Ensemble {
        let outputs = forest.outputs();
        let trees = forest
            .trees()
            .iter()
            .map(|t| {
                let nodes: Vec<Node> = t
                    .nodes()
                    .iter()
                    .map(|n| Node {
                        split: n
                            .split
                            .map(|s| (s.feature, s.threshold, s.mode, s.missing_goes_true)),
                        true_child: n.true_child,
                        false_child: n.false_child,
                    })
                    .collect();
                let values = (0..nodes.len())
                    .flat_map(|i| t.leaf_values(i).to_vec())
                    .collect();
                let mut features: Vec<u32> =
                    nodes.iter().filter_map(|n| n.split.map(|s| s.0)).collect();
                features.sort_unstable();
                features.dedup();
                Tree {
                    nodes,
                    values,
                    features,
                }
            })
            .collect();
        debug_assert!(outputs == link.outputs.len());
        Ensemble {
            trees,
            offset: forest.offset().to_vec(),
            link,
            features: forest.features(),
        }
    }

    pub fn outputs(&self) -> usize {
        self.offset.len()
    }

    /// Per feature, the trees whose branches read it: the trees a move of it re-walks.
    pub fn trees_reading(&self) -> Vec<Vec<usize>> {
        (0..self.features)
            .map(|j| {
                (0..self.trees.len())
                    .filter(|t| self.trees[*t].features.binary_search(&(j as u32)).is_ok())
                    .collect()
            })
            .collect()
    }

    pub fn raw(&self, row: &[f64]) -> Vec<f64> {
        let k = self.outputs();
        let mut out = self.offset.clone();
        for t in &self.trees {
            let leaf = t.leaf(row);
            for (o, v) in out.iter_mut().zip(&t.values[leaf * k..(leaf + 1) * k]) {
                *o += v;
            }
        }
        out
    }

    pub fn class(&self, row: &[f64]) -> Option<usize> {
        self.link.class(&self.raw(row))
    }
}

/// The margins of one class as sums over trees: per margin, its constant, and per tree and
/// node the leaf's contribution.
pub(crate) struct MarginTable {
    pub constants: Vec<f64>,
    /// `[margin][tree][node]`.
    pub leaves: Vec<Vec<Vec<f64>>>,
}

impl MarginTable {
    pub fn new(ensemble: &Ensemble, class: usize) -> MarginTable {
        let k = ensemble.outputs();
        let margins = ensemble.link.margins(class);
        let constants = margins
            .iter()
            .map(|(coef, c)| {
                c + coef
                    .iter()
                    .zip(&ensemble.offset)
                    .map(|(a, b)| a * b)
                    .sum::<f64>()
            })
            .collect();
        let leaves = margins
            .iter()
            .map(|(coef, _)| {
                ensemble
                    .trees
                    .iter()
                    .map(|t| {
                        (0..t.nodes.len())
                            .map(|n| {
                                coef.iter()
                                    .zip(&t.values[n * k..(n + 1) * k])
                                    .map(|(a, b)| a * b)
                                    .sum()
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect();
        MarginTable { constants, leaves }
    }

    pub fn count(&self) -> usize {
        self.constants.len()
    }
}
