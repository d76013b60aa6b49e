//! Tree ensembles (`TreeEnsembleClassifier`, `TreeEnsembleRegressor`) as flat node arrays.
//!
//! Every tree's nodes live in one `Vec<TreeNode>` with absolute child indices, and leaves point at
//! a range of `(target, weight)` votes. Scoring walks trees in the outer loop and rows in the inner
//! loop so a tree's nodes stay in cache across the batch. The same structure (with node covers in
//! `hitrate`) is what TreeSHAP walks.
//!
//! Aggregation and the binary-classification conventions follow onnxruntime: which score is the
//! "positive" one, how one or two base values are applied, and how a single score becomes two
//! probability columns.

use std::collections::HashMap;

use super::super::attrs::Attrs;
use super::super::estimator::{OutputSpace, RawOutput, TreeOutput};
use super::super::value::{Tensor, Value};
use super::super::RuntimeError;
use super::linear::Labels;
use super::post::{logistic, probit, PostTransform};
use super::{arity, Kernel};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeMode {
    Leq,
    Lt,
    Gte,
    Gt,
    Eq,
    Neq,
    Leaf,
}

impl NodeMode {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "BRANCH_LEQ" => Self::Leq,
            "BRANCH_LT" => Self::Lt,
            "BRANCH_GTE" => Self::Gte,
            "BRANCH_GT" => Self::Gt,
            "BRANCH_EQ" => Self::Eq,
            "BRANCH_NEQ" => Self::Neq,
            "LEAF" => Self::Leaf,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct TreeNode {
    pub feature: u32,
    pub threshold: f64,
    pub mode: NodeMode,
    /// A NaN feature value takes the true branch (instead of failing the comparison).
    pub missing_goes_true: bool,
    pub true_child: u32,
    pub false_child: u32,
    /// The node's cover as the exporter recorded it (`nodes_hitrates`; 1.0 when unknown).
    pub hitrate: f64,
    weights_start: u32,
    weights_len: u32,
}

impl NodeMode {
    /// Whether `value` takes a branch node's true child: the one comparison scoring and TreeSHAP
    /// share, so an explanation follows exactly the path the prediction took.
    #[inline]
    pub fn goes_true(self, value: f64, threshold: f64, missing_goes_true: bool) -> bool {
        if value.is_nan() && missing_goes_true {
            return true;
        }
        let (v, t) = (value, threshold);
        match self {
            NodeMode::Leq => v <= t,
            NodeMode::Lt => v < t,
            NodeMode::Gte => v >= t,
            NodeMode::Gt => v > t,
            NodeMode::Eq => v == t,
            NodeMode::Neq => v != t,
            NodeMode::Leaf => false,
        }
    }
}

impl TreeNode {
    #[inline]
    pub fn goes_true(&self, v: f64) -> bool {
        self.mode
            .goes_true(v, self.threshold, self.missing_goes_true)
    }
}

/// One tree: the index of its root in [`TreeEnsemble::nodes`].
#[derive(Debug, Clone, Copy)]
pub struct Tree {
    pub root: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aggregate {
    Sum,
    Average,
    Min,
    Max,
}

#[derive(Debug, Clone)]
enum Kind {
    Regressor,
    Classifier {
        labels: Labels,
        binary_case: bool,
        weights_all_positive: bool,
    },
}

/// The hot part of a node for the common case (every branch `<=`, no missing-value tracks):
/// 24 bytes, leaves marked by `feature == LEAF`.
#[derive(Debug, Clone, Copy)]
struct Compact {
    threshold: f64,
    feature: u32,
    true_child: u32,
    false_child: u32,
}

const LEAF: u32 = u32::MAX;

#[derive(Debug, Clone)]
pub struct TreeEnsemble {
    nodes: Vec<TreeNode>,
    /// Present when every branch is `BRANCH_LEQ` without missing-value tracks.
    compact: Option<Vec<Compact>>,
    trees: Vec<Tree>,
    votes: Vec<(u32, f64)>,
    targets: usize,
    aggregate: Aggregate,
    post: PostTransform,
    base_values: Vec<f64>,
    features: usize,
    kind: Kind,
}

struct Votes {
    tree_ids: Vec<i64>,
    node_ids: Vec<i64>,
    target_ids: Vec<i64>,
    weights: Vec<f64>,
}

impl TreeEnsemble {
    pub fn classifier(attrs: &Attrs) -> Result<Self, RuntimeError> {
        let labels = Labels::from_attrs(attrs, "classlabels_int64s", "classlabels_strings")?;
        if labels.is_empty() {
            return Err(attrs.missing("classlabels_int64s or classlabels_strings"));
        }
        let votes = Votes {
            tree_ids: attrs.ints("class_treeids"),
            node_ids: attrs.ints("class_nodeids"),
            target_ids: attrs.ints("class_ids"),
            weights: attrs.reals("class_weights")?,
        };
        let distinct: std::collections::HashSet<i64> = votes.target_ids.iter().copied().collect();
        let binary_case = labels.len() == 2 && distinct.len() == 1;
        let weights_all_positive = votes.weights.iter().all(|w| *w >= 0.0);
        let targets = labels.len();
        let kind = Kind::Classifier {
            labels,
            binary_case,
            weights_all_positive,
        };
        Self::build(attrs, votes, targets, kind, Aggregate::Sum)
    }

    pub fn regressor(attrs: &Attrs) -> Result<Self, RuntimeError> {
        let votes = Votes {
            tree_ids: attrs.ints("target_treeids"),
            node_ids: attrs.ints("target_nodeids"),
            target_ids: attrs.ints("target_ids"),
            weights: attrs.reals("target_weights")?,
        };
        let targets = usize::try_from(attrs.int("n_targets").unwrap_or(1))
            .ok()
            .filter(|t| *t > 0)
            .ok_or_else(|| attrs.invalid("n_targets", "must be positive"))?;
        let aggregate = match attrs
            .string("aggregate_function")?
            .as_deref()
            .unwrap_or("SUM")
        {
            "SUM" => Aggregate::Sum,
            "AVERAGE" => Aggregate::Average,
            "MIN" => Aggregate::Min,
            "MAX" => Aggregate::Max,
            other => {
                return Err(attrs.invalid(
                    "aggregate_function",
                    format!("`{other}` is not SUM, AVERAGE, MIN or MAX"),
                ))
            }
        };
        Self::build(attrs, votes, targets, Kind::Regressor, aggregate)
    }

    fn build(
        attrs: &Attrs,
        votes: Votes,
        targets: usize,
        kind: Kind,
        aggregate: Aggregate,
    ) -> Result<Self, RuntimeError> {
        let tree_ids = attrs.ints("nodes_treeids");
        let node_ids = attrs.ints("nodes_nodeids");
        let features = attrs.ints("nodes_featureids");
        let modes = attrs.strings("nodes_modes")?;
        let values = attrs.reals("nodes_values")?;
        let true_ids = attrs.ints("nodes_truenodeids");
        let false_ids = attrs.ints("nodes_falsenodeids");
        let missing = attrs.ints("nodes_missing_value_tracks_true");
        let hitrates = attrs.reals("nodes_hitrates")?;
        let n = tree_ids.len();
        for (name, len) in [
            ("nodes_nodeids", node_ids.len()),
            ("nodes_featureids", features.len()),
            ("nodes_modes", modes.len()),
            ("nodes_values", values.len()),
            ("nodes_truenodeids", true_ids.len()),
            ("nodes_falsenodeids", false_ids.len()),
        ] {
            if len != n {
                return Err(attrs.invalid(name, format!("has {len} entries for {n} nodes")));
            }
        }
        if votes.node_ids.len() != votes.tree_ids.len()
            || votes.target_ids.len() != votes.tree_ids.len()
            || votes.weights.len() != votes.tree_ids.len()
        {
            return Err(attrs.invalid(
                "weights",
                "lists (tree ids, node ids, target ids, weights) differ in length",
            ));
        }

        let mut index: HashMap<(i64, i64), u32> = HashMap::with_capacity(n);
        for i in 0..n {
            if index.insert((tree_ids[i], node_ids[i]), i as u32).is_some() {
                return Err(attrs.invalid(
                    "nodes_nodeids",
                    format!("node {} of tree {} appears twice", node_ids[i], tree_ids[i]),
                ));
            }
        }
        let mut nodes = Vec::with_capacity(n);
        let mut max_feature = 0usize;
        for i in 0..n {
            let mode = NodeMode::parse(&modes[i]).ok_or_else(|| {
                attrs.invalid("nodes_modes", format!("`{}` is unknown", modes[i]))
            })?;
            let child = |id: i64| {
                index.get(&(tree_ids[i], id)).copied().ok_or_else(|| {
                    attrs.invalid(
                        "nodes_truenodeids",
                        format!("tree {} points at missing node {id}", tree_ids[i]),
                    )
                })
            };
            let (true_child, false_child) = if mode == NodeMode::Leaf {
                (0, 0)
            } else {
                (child(true_ids[i])?, child(false_ids[i])?)
            };
            let feature = u32::try_from(features[i])
                .map_err(|_| attrs.invalid("nodes_featureids", "holds a negative id"))?;
            if mode != NodeMode::Leaf {
                max_feature = max_feature.max(feature as usize + 1);
            }
            nodes.push(TreeNode {
                feature,
                threshold: values[i],
                mode,
                missing_goes_true: missing.get(i).copied().unwrap_or(0) == 1,
                true_child,
                false_child,
                hitrate: hitrates.get(i).copied().unwrap_or(1.0),
                weights_start: 0,
                weights_len: 0,
            });
        }

        // Group votes per leaf, keeping their order within a leaf.
        let mut per_node: Vec<Vec<(u32, f64)>> = vec![Vec::new(); n];
        for k in 0..votes.tree_ids.len() {
            let node = index
                .get(&(votes.tree_ids[k], votes.node_ids[k]))
                .copied()
                .ok_or_else(|| {
                    attrs.invalid(
                        "weights",
                        format!(
                            "vote for missing node {} of tree {}",
                            votes.node_ids[k], votes.tree_ids[k]
                        ),
                    )
                })?;
            let target = usize::try_from(votes.target_ids[k])
                .ok()
                .filter(|t| *t < targets)
                .ok_or_else(|| {
                    attrs.invalid(
                        "class_ids/target_ids",
                        format!("{} is outside 0..{targets}", votes.target_ids[k]),
                    )
                })?;
            per_node[node as usize].push((target as u32, votes.weights[k]));
        }
        let mut flat = Vec::with_capacity(votes.tree_ids.len());
        for (node, list) in nodes.iter_mut().zip(per_node) {
            node.weights_start = flat.len() as u32;
            node.weights_len = list.len() as u32;
            flat.extend(list);
        }

        let mut trees = Vec::new();
        let mut previous = None;
        for (i, t) in tree_ids.iter().enumerate() {
            if previous != Some(*t) {
                trees.push(Tree { root: i as u32 });
            }
            previous = Some(*t);
        }
        check_each_tree_is_a_tree(attrs, &nodes, &trees, &tree_ids, &node_ids)?;
        let post = PostTransform::parse(attrs.string("post_transform")?)
            .map_err(|e| attrs.invalid("post_transform", e))?;
        let leq_only = nodes
            .iter()
            .all(|n| n.mode == NodeMode::Leaf || (n.mode == NodeMode::Leq && !n.missing_goes_true));
        let compact = leq_only.then(|| {
            nodes
                .iter()
                .map(|n| Compact {
                    threshold: n.threshold,
                    feature: if n.mode == NodeMode::Leaf {
                        LEAF
                    } else {
                        n.feature
                    },
                    true_child: n.true_child,
                    false_child: n.false_child,
                })
                .collect()
        });
        Ok(Self {
            nodes,
            compact,
            trees,
            votes: flat,
            targets,
            aggregate,
            post,
            base_values: attrs.reals("base_values")?,
            features: max_feature,
            kind,
        })
    }

    pub fn nodes(&self) -> &[TreeNode] {
        &self.nodes
    }

    pub fn trees(&self) -> &[Tree] {
        &self.trees
    }

    /// The `(target, weight)` votes of a leaf.
    pub fn leaf_votes(&self, node: u32) -> &[(u32, f64)] {
        let n = &self.nodes[node as usize];
        &self.votes[n.weights_start as usize..(n.weights_start + n.weights_len) as usize]
    }

    pub fn base_values(&self) -> &[f64] {
        &self.base_values
    }

    /// The score above which a one-score, two-class classifier answers its second class: 0.5
    /// when every leaf weight is non-negative (onnxruntime's rule, whatever the post-transform),
    /// else 0. `None` for other layouts.
    pub fn binary_threshold(&self) -> Option<f64> {
        match &self.kind {
            Kind::Classifier {
                binary_case: true,
                weights_all_positive,
                ..
            } => Some(if *weights_all_positive { 0.5 } else { 0.0 }),
            _ => None,
        }
    }

    /// Each output as a sum over trees, when the ensemble's conventions make it one (MIN and MAX
    /// aggregates do not; nor do two-class layouts no exporter we know writes).
    pub fn additive_outputs(&self) -> Option<Vec<TreeOutput>> {
        let scale = match self.aggregate {
            Aggregate::Sum => 1.0,
            Aggregate::Average => 1.0 / self.trees.len().max(1) as f64,
            Aggregate::Min | Aggregate::Max => return None,
        };
        let base = |k: usize| self.base_values.get(k).copied().unwrap_or(0.0);
        let output = |label: String, space, target: usize, base: f64| TreeOutput {
            output: RawOutput { label, space },
            target: target as u32,
            base,
            scale,
        };
        let linked = if self.post == PostTransform::None {
            OutputSpace::Probability
        } else {
            OutputSpace::Margin
        };
        match &self.kind {
            Kind::Regressor => {
                let space = if self.post == PostTransform::None {
                    OutputSpace::Value
                } else {
                    OutputSpace::Margin
                };
                if self.targets == 1 {
                    let origin = if self.base_values.len() == 1 {
                        base(0)
                    } else {
                        0.0
                    };
                    return Some(vec![output("value".into(), space, 0, origin)]);
                }
                let use_base = self.base_values.len() == self.targets;
                Some(
                    (0..self.targets)
                        .map(|t| {
                            output(
                                t.to_string(),
                                space,
                                t,
                                if use_base { base(t) } else { 0.0 },
                            )
                        })
                        .collect(),
                )
            }
            Kind::Classifier {
                labels,
                binary_case,
                ..
            } => {
                if self.targets > 2 {
                    return Some(
                        (0..self.targets)
                            .map(|k| output(labels.text(k), linked, k, base(k)))
                            .collect(),
                    );
                }
                let single_target_zero = self.votes.iter().all(|(t, _)| *t == 0);
                if *binary_case && single_target_zero && self.base_values.len() <= 1 {
                    // One score for the second class: its log-odds under a logistic link, its
                    // probability when trees vote probabilities.
                    let space = match self.post {
                        PostTransform::Logistic => OutputSpace::LogOdds,
                        PostTransform::None => OutputSpace::Probability,
                        _ => return None,
                    };
                    return Some(vec![output(labels.text(1), space, 0, base(0))]);
                }
                if !*binary_case && self.base_values.is_empty() && self.post == PostTransform::None
                {
                    return Some(
                        (0..2)
                            .map(|k| output(labels.text(k), OutputSpace::Probability, k, 0.0))
                            .collect(),
                    );
                }
                None
            }
        }
    }

    /// The leaf a row reaches in a tree.
    #[inline]
    pub fn leaf(&self, tree: Tree, row: &[f64]) -> u32 {
        let mut i = tree.root;
        loop {
            let node = &self.nodes[i as usize];
            if node.mode == NodeMode::Leaf {
                return i;
            }
            i = if node.goes_true(row[node.feature as usize]) {
                node.true_child
            } else {
                node.false_child
            };
        }
    }

    /// Raw per-target sums (or min/max) and which targets received a vote, for every row.
    fn accumulate(&self, x: &[f64], rows: usize, stride: usize) -> (Vec<f64>, Vec<bool>) {
        let t = self.targets;
        let mut scores = vec![0.0f64; rows * t];
        let mut has = vec![false; rows * t];
        let single_target_regressor = matches!(self.kind, Kind::Regressor) && t == 1;
        let mut leaves = vec![0u32; rows];
        for tree in &self.trees {
            match &self.compact {
                Some(compact) => leaves_leq(compact, tree.root, x, stride, &mut leaves),
                None => {
                    for (r, leaf) in leaves.iter_mut().enumerate() {
                        *leaf = self.leaf(*tree, &x[r * stride..(r + 1) * stride]);
                    }
                }
            }
            for (r, leaf) in leaves.iter().enumerate() {
                let leaf = *leaf;
                let votes = self.leaf_votes(leaf);
                // onnxruntime's single-target path reads only a leaf's first vote.
                let votes = if single_target_regressor {
                    &votes[..votes.len().min(1)]
                } else {
                    votes
                };
                for (target, w) in votes {
                    let k = r * t + *target as usize;
                    match self.aggregate {
                        Aggregate::Sum | Aggregate::Average => scores[k] += w,
                        Aggregate::Min => {
                            if !has[k] || *w < scores[k] {
                                scores[k] = *w
                            }
                        }
                        Aggregate::Max => {
                            if !has[k] || *w > scores[k] {
                                scores[k] = *w
                            }
                        }
                    }
                    has[k] = true;
                }
            }
        }
        (scores, has)
    }

    fn finish_regression(&self, scores: &mut [f64], has: &[bool]) -> Vec<f32> {
        let n_trees = self.trees.len() as f64;
        let t = self.targets;
        if t == 1 {
            let origin = if self.base_values.len() == 1 {
                self.base_values[0]
            } else {
                0.0
            };
            return scores
                .iter()
                .zip(has)
                .map(|(s, h)| {
                    let v = match self.aggregate {
                        Aggregate::Sum => s + origin,
                        Aggregate::Average => s / n_trees + origin,
                        Aggregate::Min | Aggregate::Max => {
                            if *h {
                                s + origin
                            } else {
                                origin
                            }
                        }
                    };
                    if self.post == PostTransform::Probit {
                        probit(v as f32)
                    } else {
                        v as f32
                    }
                })
                .collect();
        }
        let use_base = self.base_values.len() == t;
        let mut out: Vec<f32> = scores
            .iter()
            .zip(has)
            .enumerate()
            .map(|(k, (s, h))| {
                let base = if use_base {
                    self.base_values[k % t]
                } else {
                    0.0
                };
                (match self.aggregate {
                    Aggregate::Sum => s + base,
                    Aggregate::Average => s / n_trees + base,
                    Aggregate::Min | Aggregate::Max => base + if *h { *s } else { 0.0 },
                }) as f32
            })
            .collect();
        out.chunks_mut(t).for_each(|row| self.post.apply_row(row));
        out
    }

    /// One row of a classifier: the picked class index and the score columns.
    fn finish_class_row(
        &self,
        scores: &mut [f64],
        has: &mut [bool],
        binary_case: bool,
        all_positive: bool,
    ) -> (usize, Vec<f32>) {
        let base = &self.base_values;
        if self.targets > 2 {
            for k in 0..base.len().min(self.targets) {
                if has[k] {
                    scores[k] += base[k];
                } else {
                    scores[k] = base[k];
                    has[k] = true;
                }
            }
            let mut best: Option<usize> = None;
            for k in 0..self.targets {
                if has[k] && best.is_none_or(|b| scores[k] > scores[b]) {
                    best = Some(k);
                }
            }
            let mut row: Vec<f32> = scores.iter().map(|s| *s as f32).collect();
            self.post.apply_row(&mut row);
            return (best.unwrap_or(0), row);
        }

        // Two classes.
        let mut second_class_rule: Option<u8> = None;
        let mut kept = 2;
        match base.len() {
            2 => {
                if has[1] {
                    scores[1] = base[1] + scores[0];
                    scores[0] = -scores[1];
                } else {
                    scores[1] += base[1];
                    scores[0] += base[0];
                }
            }
            1 => {
                scores[0] += base[0];
                if !has[1] {
                    kept = 1;
                }
            }
            0 => {
                second_class_rule = Some(3);
                if !has[1] {
                    kept = 1;
                }
            }
            _ => {}
        }
        let positive_weight = if kept == 2 && has[1] {
            scores[1]
        } else if has[0] {
            scores[0]
        } else {
            0.0
        };
        let label = if binary_case {
            if all_positive {
                second_class_rule = Some(if positive_weight > 0.5 { 0 } else { 1 });
                usize::from(positive_weight > 0.5)
            } else {
                second_class_rule = Some(if positive_weight > 0.0 { 2 } else { 3 });
                usize::from(positive_weight > 0.0)
            }
        } else {
            usize::from(positive_weight > 0.0)
        };
        let row = if kept == 2 {
            let mut row = vec![scores[0] as f32, scores[1] as f32];
            self.post.apply_row(&mut row);
            row
        } else {
            let s = scores[0] as f32;
            match (self.post, second_class_rule) {
                (PostTransform::Probit, _) => vec![probit(s), 0.0],
                (_, Some(0 | 1)) => vec![1.0 - s, s],
                (PostTransform::Logistic, Some(2 | 3)) => vec![logistic(-s), logistic(s)],
                (_, Some(2 | 3)) => vec![-s, s],
                _ => vec![s, 0.0],
            }
        };
        (label, row)
    }

    pub fn evaluate(&self, x: &Tensor) -> Result<Vec<Value>, RuntimeError> {
        let (rows, stride) = x.rows_cols();
        if stride < self.features {
            return Err(RuntimeError::Input(format!(
                "the tree ensemble reads feature {} but rows have {stride} features",
                self.features - 1
            )));
        }
        let values = x.to_f64("TreeEnsemble")?;
        let (mut scores, mut has) = self.accumulate(&values, rows, stride);
        match &self.kind {
            Kind::Regressor => {
                let out = self.finish_regression(&mut scores, &has);
                Ok(vec![Value::Tensor(Tensor::floats(
                    vec![rows, self.targets],
                    out,
                ))])
            }
            Kind::Classifier {
                labels,
                binary_case,
                weights_all_positive,
            } => {
                let t = self.targets;
                let mut picked = Vec::with_capacity(rows);
                let mut out = Vec::with_capacity(rows * t);
                for r in 0..rows {
                    let (label, row) = self.finish_class_row(
                        &mut scores[r * t..(r + 1) * t],
                        &mut has[r * t..(r + 1) * t],
                        *binary_case,
                        *weights_all_positive,
                    );
                    picked.push(label);
                    out.extend(row);
                }
                Ok(vec![
                    Value::Tensor(labels.tensor(&picked)),
                    Value::Tensor(Tensor::floats(vec![rows, t], out)),
                ])
            }
        }
    }
}

/// Leaves for every row of one tree where all branches are `<=`: four rows walk in lockstep so
/// their independent loads overlap.
/// Refuses a node with two parents or a root with any. With that, every walk from a root ends at
/// a leaf within `nodes.len()` steps: a cycle or a shared subtree (which fuzzing found makes one
/// row's scoring loop forever, and TreeSHAP's walk of both branches exponential) cannot load.
fn check_each_tree_is_a_tree(
    attrs: &Attrs,
    nodes: &[TreeNode],
    trees: &[Tree],
    tree_ids: &[i64],
    node_ids: &[i64],
) -> Result<(), RuntimeError> {
    let mut parents = vec![0u8; nodes.len()];
    for node in nodes.iter().filter(|n| n.mode != NodeMode::Leaf) {
        for child in [node.true_child, node.false_child] {
            let count = &mut parents[child as usize];
            *count = count.saturating_add(1);
        }
    }
    let named = |i: usize| format!("node {} of tree {}", node_ids[i], tree_ids[i]);
    for tree in trees {
        let root = tree.root as usize;
        if parents[root] != 0 {
            return Err(attrs.invalid(
                "nodes_truenodeids",
                format!(
                    "{} is its tree's first node (its root) but a branch leads back to it; \
                     a tree's nodes must be listed root first, one tree after another, without cycles",
                    named(root)
                ),
            ));
        }
    }
    if let Some(shared) = parents.iter().position(|count| *count > 1) {
        return Err(attrs.invalid(
            "nodes_truenodeids",
            format!(
                "{} is reached by more than one branch; each node of a tree has one parent",
                named(shared)
            ),
        ));
    }
    Ok(())
}

fn leaves_leq(nodes: &[Compact], root: u32, x: &[f64], stride: usize, out: &mut [u32]) {
    let rows = out.len();
    let mut r = 0;
    while r + 4 <= rows {
        let mut idx = [root as usize; 4];
        loop {
            let mut moved = false;
            for (k, i) in idx.iter_mut().enumerate() {
                let n = &nodes[*i];
                if n.feature != LEAF {
                    let v = x[(r + k) * stride + n.feature as usize];
                    *i = if v <= n.threshold {
                        n.true_child
                    } else {
                        n.false_child
                    } as usize;
                    moved = true;
                }
            }
            if !moved {
                break;
            }
        }
        for k in 0..4 {
            out[r + k] = idx[k] as u32;
        }
        r += 4;
    }
    for (k, slot) in out.iter_mut().enumerate().skip(r) {
        let mut i = root as usize;
        loop {
            let n = &nodes[i];
            if n.feature == LEAF {
                break;
            }
            let v = x[k * stride + n.feature as usize];
            i = if v <= n.threshold {
                n.true_child
            } else {
                n.false_child
            } as usize;
        }
        *slot = i as u32;
    }
}

impl Kernel for TreeEnsemble {
    fn run(&self, inputs: &[&Value]) -> Result<Vec<Value>, RuntimeError> {
        let [x] = arity("TreeEnsemble", inputs, 1)?[..] else {
            unreachable!()
        };
        self.evaluate(x.as_tensor("TreeEnsemble")?)
    }

    fn as_tree_ensemble(&self) -> Option<&TreeEnsemble> {
        Some(self)
    }
}
