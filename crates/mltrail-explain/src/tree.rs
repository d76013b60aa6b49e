//! TreeSHAP on tree ensembles: path-dependent (Lundberg, Erion & Lee 2018, Algorithm 2; node
//! covers stand in for the training distribution) and interventional (Lundberg et al. 2020:
//! exact Shapley values of the model with absent features taken from each background row,
//! averaged over the background).
//!
//! Trees here are plain arenas built from the serving runtime's ensembles ([`crate::model`]),
//! and branch decisions use the runtime's own comparison ([`NodeMode::goes_true`]), so a row
//! is explained along exactly the path it was scored on. Values are computed in `f64`.

use mltrail_serving::runtime::NodeMode;

use crate::regions::{RegionTable, Regions};
use crate::ExplainError;

/// A branch: which feature it reads and how it compares.
#[derive(Debug, Clone, Copy)]
pub struct Split {
    pub feature: u32,
    pub threshold: f64,
    pub mode: NodeMode,
    pub missing_goes_true: bool,
}

impl Split {
    #[inline]
    fn goes_true(&self, row: &[f64]) -> bool {
        self.mode.goes_true(
            row[self.feature as usize],
            self.threshold,
            self.missing_goes_true,
        )
    }
}

/// A node of a [`ShapTree`]: a branch with two children, or a leaf (`split` is `None`).
#[derive(Debug, Clone, Copy)]
pub struct Node {
    pub split: Option<Split>,
    pub true_child: u32,
    pub false_child: u32,
}

/// One tree: nodes in an arena with the root first, each leaf's value per explained output,
/// and each node's cover (how much training data reached it).
#[derive(Debug, Clone)]
pub struct ShapTree {
    nodes: Vec<Node>,
    /// `outputs` values per node; zero on branches.
    values: Vec<f64>,
    covers: Vec<f64>,
    outputs: usize,
    /// Branches on the longest root-to-leaf path.
    depth: usize,
}

impl ShapTree {
    /// A tree from its nodes (root first), leaf values (`outputs` per node) and covers (one per
    /// node; they may be recomputed later with [`Forest::recount_covers`]). Children must point
    /// forward in the arena, which also rules out cycles.
    pub fn new(
        nodes: Vec<Node>,
        values: Vec<f64>,
        covers: Vec<f64>,
        outputs: usize,
    ) -> Result<Self, ExplainError> {
        if nodes.is_empty() || outputs == 0 {
            return Err(ExplainError::Model(
                "a tree without nodes or outputs".into(),
            ));
        }
        if values.len() != nodes.len() * outputs || covers.len() != nodes.len() {
            return Err(ExplainError::Model(format!(
                "a tree of {} nodes has {} leaf values and {} covers",
                nodes.len(),
                values.len(),
                covers.len()
            )));
        }
        let mut depth = vec![0usize; nodes.len()];
        for (i, node) in nodes.iter().enumerate() {
            if node.split.is_some() {
                for child in [node.true_child, node.false_child] {
                    let c = child as usize;
                    if c <= i || c >= nodes.len() {
                        return Err(ExplainError::Model(format!(
                            "node {i} points at node {child}, which is not after it in its tree"
                        )));
                    }
                    depth[c] = depth[c].max(depth[i] + 1);
                }
            }
        }
        let depth = depth.into_iter().max().unwrap_or(0);
        Ok(ShapTree {
            nodes,
            values,
            covers,
            outputs,
            depth,
        })
    }

    fn leaf(&self, row: &[f64]) -> usize {
        let mut i = 0usize;
        while let Some(split) = &self.nodes[i].split {
            i = if split.goes_true(row) {
                self.nodes[i].true_child
            } else {
                self.nodes[i].false_child
            } as usize;
        }
        i
    }

    /// The arena, root first.
    pub(crate) fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub(crate) fn leaf_values(&self, node: usize) -> &[f64] {
        &self.values[node * self.outputs..(node + 1) * self.outputs]
    }

    /// The cover-weighted mean of the leaf values: what the tree predicts when nothing is known.
    fn expectation(&self, out: &mut [f64]) {
        let root = self.covers[0];
        if root <= 0.0 {
            return;
        }
        for (i, node) in self.nodes.iter().enumerate() {
            if node.split.is_none() && self.covers[i] > 0.0 {
                let share = self.covers[i] / root;
                for (o, v) in out.iter_mut().zip(self.leaf_values(i)) {
                    *o += share * v;
                }
            }
        }
    }

    /// The nodes under `node`, itself included.
    fn subtree(&self, node: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut stack = vec![node];
        while let Some(n) = stack.pop() {
            out.push(n);
            if self.nodes[n].split.is_some() {
                stack.push(self.nodes[n].true_child as usize);
                stack.push(self.nodes[n].false_child as usize);
            }
        }
        out
    }

    /// Every branch's split.
    pub(crate) fn splits(&self) -> impl Iterator<Item = &Split> {
        self.nodes.iter().filter_map(|n| n.split.as_ref())
    }

    /// Which child each branch sends `row` to (leaves: false).
    fn directions(&self, row: &[f64], out: &mut Vec<bool>) {
        out.clear();
        out.extend(
            self.nodes
                .iter()
                .map(|n| n.split.is_some_and(|s| s.goes_true(row))),
        );
    }
}

/// The trees of one model with a constant per output (base score, intercept): the model's raw
/// output for output `o` is `offset[o]` plus every tree's leaf value for `o`.
#[derive(Debug, Clone)]
pub struct Forest {
    trees: Vec<ShapTree>,
    offset: Vec<f64>,
    features: usize,
}

impl Forest {
    pub fn new(
        trees: Vec<ShapTree>,
        offset: Vec<f64>,
        features: usize,
    ) -> Result<Self, ExplainError> {
        let outputs = offset.len();
        if let Some(t) = trees.iter().find(|t| t.outputs != outputs) {
            return Err(ExplainError::Model(format!(
                "a tree has {} outputs, the model {outputs}",
                t.outputs
            )));
        }
        if let Some(f) = trees
            .iter()
            .flat_map(|t| t.nodes.iter().filter_map(|n| n.split))
            .map(|s| s.feature as usize)
            .find(|f| *f >= features)
        {
            return Err(ExplainError::Model(format!(
                "a branch reads feature {f} of a model with {features}"
            )));
        }
        Ok(Forest {
            trees,
            offset,
            features,
        })
    }

    pub fn outputs(&self) -> usize {
        self.offset.len()
    }

    pub(crate) fn trees(&self) -> &[ShapTree] {
        &self.trees
    }

    /// What every row starts from, per output, before the trees' leaves are added.
    pub(crate) fn offset(&self) -> &[f64] {
        &self.offset
    }

    pub fn features(&self) -> usize {
        self.features
    }

    /// Sets every node's cover to the number of `rows` (row-major, `features` wide) that pass
    /// through it: ONNX files keep no covers, so path-dependent TreeSHAP gets them from the
    /// model version's training data.
    pub fn recount_covers(&mut self, rows: &[f64]) {
        for tree in &mut self.trees {
            tree.covers.iter_mut().for_each(|c| *c = 0.0);
            for row in rows.chunks_exact(self.features) {
                let mut i = 0usize;
                loop {
                    tree.covers[i] += 1.0;
                    match &tree.nodes[i].split {
                        Some(split) => {
                            i = if split.goes_true(row) {
                                tree.nodes[i].true_child
                            } else {
                                tree.nodes[i].false_child
                            } as usize
                        }
                        None => break,
                    }
                }
            }
        }
    }

    /// The raw output of `row` for each output.
    pub fn raw(&self, row: &[f64]) -> Vec<f64> {
        let mut out = self.offset.clone();
        for tree in &self.trees {
            let leaf = tree.leaf(row);
            for (o, v) in out.iter_mut().zip(tree.leaf_values(leaf)) {
                *o += v;
            }
        }
        out
    }

    fn max_depth(&self) -> usize {
        self.trees.iter().map(|t| t.depth).max().unwrap_or(0)
    }
}

/// Path-dependent TreeSHAP: attributions that need no background data beyond the covers.
///
/// A leaf's share of each feature depends on the row only through which of the leaf's path
/// features the row agrees with (Yang 2021, "Fast TreeSHAP", v2). For trees whose paths hold
/// few distinct features, every leaf's weights for every such pattern are computed once here,
/// and explaining a row is a lookup per leaf: on the golden 30-tree depth-3 model about 6x
/// faster than walking the tree with the path algebra per row (which deeper trees still use).
pub struct PathDependent {
    forest: Forest,
    base: Vec<f64>,
    /// Per tree, its leaves' weight tables (`None`: the tree is walked per row).
    tables: Vec<Option<Vec<LeafTable>>>,
    /// Per tree, its attributions per interval combination (`None`: tables or walk).
    regions: Vec<Option<Regions>>,
    /// Path elements a walk needs: a segment per level, each one longer than its parent's.
    scratch_len: usize,
}

impl PathDependent {
    pub fn new(forest: Forest) -> Self {
        PathDependent::build(forest, true)
    }

    fn build(forest: Forest, with_regions: bool) -> Self {
        let mut base = forest.offset.clone();
        for tree in &forest.trees {
            tree.expectation(&mut base);
        }
        let d = forest.max_depth() + 2;
        let mut budget = TableBudget::new();
        let tables = forest
            .trees
            .iter()
            .map(|t| {
                Some(
                    budget
                        .paths(t)?
                        .into_iter()
                        .map(path_dependent_table)
                        .collect(),
                )
            })
            .collect();
        let mut explainer = PathDependent {
            forest,
            base,
            tables,
            regions: Vec::new(),
            scratch_len: d * (d + 1) / 2 + d,
        };
        if !with_regions {
            explainer.regions = (0..explainer.forest.trees.len()).map(|_| None).collect();
            return explainer;
        }
        let mut budget = TableBudget::new();
        let (features, outputs) = (explainer.forest.features, explainer.forest.outputs());
        let regions: Vec<Option<Regions>> = (0..explainer.forest.trees.len())
            .map(|t| {
                let mut scratch = Vec::new();
                region_tables(
                    &explainer.forest.trees[t],
                    explainer.tables[t].as_deref(),
                    (features, outputs),
                    &mut budget,
                    |row, phi| explainer.explain_tree(t, row, phi, &mut scratch, &mut Vec::new()),
                )
            })
            .collect();
        // A tree whose region table covers missing values needs its leaf tables no more.
        for (table, region) in explainer.tables.iter_mut().zip(&regions) {
            if region.as_ref().is_some_and(Regions::covers_missing) {
                *table = None;
            }
        }
        explainer.regions = regions;
        explainer
    }

    /// Without the region or leaf tables: every tree walked per row, as trees past the tables'
    /// budget are.
    pub fn walking(forest: Forest) -> Self {
        let mut explainer = PathDependent::by_leaf_tables(forest);
        explainer.tables.iter_mut().for_each(|t| *t = None);
        explainer
    }

    /// Without the region tables: every leaf's table looked up per row, as trees with too
    /// many interval combinations are.
    pub fn by_leaf_tables(forest: Forest) -> Self {
        PathDependent::build(forest, false)
    }

    /// Adds one tree's attributions for `row` by its leaf tables, else by walking it.
    fn explain_tree(
        &self,
        t: usize,
        row: &[f64],
        out: &mut [f64],
        scratch: &mut Vec<PathElement>,
        directions: &mut Vec<bool>,
    ) {
        let tree = &self.forest.trees[t];
        let features = self.forest.features;
        match &self.tables[t] {
            Some(leaves) => {
                tree.directions(row, directions);
                add_from_tables(tree, leaves, directions, out, features);
            }
            None => {
                if scratch.is_empty() {
                    *scratch = vec![PathElement::default(); self.scratch_len];
                }
                let mut walk = Walk {
                    tree,
                    row,
                    phi: out,
                    features,
                    paths: scratch,
                };
                walk.recurse(0, 0, 0, 0, 1.0, 1.0, NO_FEATURE);
            }
        }
    }

    pub fn forest(&self) -> &Forest {
        &self.forest
    }

    /// The expected raw output per output (shap's `expected_value`).
    pub fn base_value(&self) -> &[f64] {
        &self.base
    }

    /// Adds the attributions of every row of `rows` (row-major; one row or many) to `phi`, one
    /// `outputs × features` block (output-major) per row.
    pub fn explain(&self, rows: &[f64], phi: &mut [f64]) {
        let features = self.forest.features;
        let stride = self.forest.outputs() * features;
        let mut scratch = Vec::new();
        let mut directions = Vec::new();
        // Region tables tree by tree, so one table serves every row while it is in cache.
        for (t, region) in self.regions.iter().enumerate() {
            let Some(region) = region else { continue };
            for i in region.add_rows(rows, phi, features, stride) {
                let (row, out) = (
                    &rows[i * features..(i + 1) * features],
                    &mut phi[i * stride..(i + 1) * stride],
                );
                self.explain_tree(t, row, out, &mut scratch, &mut directions);
            }
        }
        for (row, out) in rows
            .chunks_exact(features)
            .zip(phi.chunks_exact_mut(stride))
        {
            for t in (0..self.forest.trees.len()).filter(|t| self.regions[*t].is_none()) {
                self.explain_tree(t, row, out, &mut scratch, &mut directions);
            }
        }
    }
}

/// A leaf's path: the distinct features its splits read, each split (node, the way toward the
/// leaf, the feature's position k), and per feature the share of cover that follows the path.
struct LeafPath {
    node: u32,
    features: Vec<u32>,
    conditions: Vec<(u32, bool, u8)>,
    zeros: Vec<f64>,
}

impl LeafPath {
    /// The pattern of features whose every split on the path `directions` follows.
    #[inline]
    fn pattern(conditions: &[(u32, bool, u8)], m: usize, directions: &[bool]) -> usize {
        let mut pattern = (1usize << m) - 1;
        for &(node, way, k) in conditions {
            if directions[node as usize] != way {
                pattern &= !(1usize << k);
            }
        }
        pattern
    }
}

/// Every leaf's path in a tree, or `None` when their tables would pass the budget.
fn leaf_paths(tree: &ShapTree) -> Option<Vec<LeafPath>> {
    let mut paths: Vec<(u32, Vec<(u32, bool)>)> = Vec::new();
    let mut stack: Vec<(usize, Vec<(u32, bool)>)> = vec![(0, Vec::new())];
    while let Some((node, path)) = stack.pop() {
        let here = tree.nodes[node];
        if here.split.is_none() {
            paths.push((node as u32, path));
            continue;
        }
        for (child, way) in [(here.true_child, true), (here.false_child, false)] {
            let mut next = path.clone();
            next.push((node as u32, way));
            stack.push((child as usize, next));
        }
    }
    let mut size = 0usize;
    let mut out = Vec::with_capacity(paths.len());
    for (leaf, path) in paths {
        let mut features: Vec<u32> = Vec::new();
        let mut conditions = Vec::with_capacity(path.len());
        let mut zeros: Vec<f64> = Vec::new();
        for (i, &(node, way)) in path.iter().enumerate() {
            let split = tree.nodes[node as usize].split?;
            let child = path.get(i + 1).map_or(leaf, |next| next.0) as usize;
            let cover = tree.covers[node as usize];
            let ratio = if cover > 0.0 {
                tree.covers[child] / cover
            } else {
                0.0
            };
            let k = match features.iter().position(|f| *f == split.feature) {
                Some(k) => {
                    zeros[k] *= ratio;
                    k
                }
                None => {
                    features.push(split.feature);
                    zeros.push(ratio);
                    features.len() - 1
                }
            };
            conditions.push((node, way, u8::try_from(k).ok()?));
        }
        let m = features.len();
        if m >= 16 {
            return None;
        }
        size += (1usize << m) * m;
        if size > TABLE_BUDGET {
            return None;
        }
        out.push(LeafPath {
            node: leaf,
            features,
            conditions,
            zeros,
        });
    }
    Some(out)
}

/// Most weights precomputed for one tree (2^features × features per leaf, summed): 256 KiB.
const TABLE_BUDGET: usize = 1 << 15;

/// Weights precomputed for a whole model at most (32 MiB): the trees past it are walked, so a
/// model of thousands of trees does not hold hundreds of megabytes per explainer.
const MODEL_TABLE_BUDGET: usize = 1 << 22;

/// What is left of [`MODEL_TABLE_BUDGET`] while a model's trees get their tables.
struct TableBudget {
    left: usize,
}

impl TableBudget {
    fn new() -> Self {
        TableBudget {
            left: MODEL_TABLE_BUDGET,
        }
    }

    /// What one tree's table may hold.
    fn per_tree(&self) -> usize {
        TABLE_BUDGET.min(self.left)
    }

    /// Takes `size` values from what is left; `None` when they do not fit.
    fn take(&mut self, size: usize) -> Option<()> {
        self.left = self.left.checked_sub(size)?;
        Some(())
    }

    /// A tree's leaf paths when its tables fit what is left; `None`: walk it.
    fn paths(&mut self, tree: &ShapTree) -> Option<Vec<LeafPath>> {
        let paths = leaf_paths(tree)?;
        let size: usize = paths
            .iter()
            .map(|p| (1usize << p.features.len()) * p.features.len())
            .sum();
        self.left = self.left.checked_sub(size)?;
        Some(paths)
    }
}

/// One leaf's precomputed shares. Bit k of a pattern says the row follows every split on
/// `features[k]` toward this leaf; `weights[pattern × m + k]` is then feature k's share of the
/// leaf's value.
struct LeafTable {
    node: u32,
    features: Vec<u32>,
    conditions: Vec<(u32, bool, u8)>,
    weights: Vec<f64>,
}

/// Path-dependent weights: the path algebra run once per pattern, with the pattern's features
/// present (`one` = 1) and the others absent.
fn path_dependent_table(path: LeafPath) -> LeafTable {
    let m = path.features.len();
    let zeros = &path.zeros;
    let mut weights = vec![0.0; (1usize << m) * m];
    let mut elements = vec![PathElement::default(); m + 1];
    for pattern in 0..(1usize << m) {
        let one = |k: usize| f64::from(u8::from(pattern & (1 << k) != 0));
        // A feature the row does not follow, on a path no cover follows, makes the leaf
        // unreachable: it adds nothing (the walk skips such branches too).
        if (0..m).any(|k| zeros[k] == 0.0 && one(k) == 0.0) {
            continue;
        }
        extend(&mut elements, 0, 1.0, 1.0, NO_FEATURE);
        for (k, (zero, feature)) in zeros.iter().zip(&path.features).enumerate() {
            extend(&mut elements, k + 1, *zero, one(k), *feature);
        }
        for k in 0..m {
            weights[pattern * m + k] = unwound_sum(&elements, m, k + 1) * (one(k) - zeros[k]);
        }
    }
    LeafTable {
        node: path.node,
        features: path.features,
        conditions: path.conditions,
        weights,
    }
}

/// Interventional weights: for a row's pattern and each background row's, the leaf's game
/// (`1[A ⊆ S, B ∩ S = ∅]`, see [`Interventional`]) gives every feature its Shapley value;
/// averaged over the background, grouped by the background rows' patterns.
fn interventional_table(
    path: LeafPath,
    background_patterns: &[usize],
    shapley: &ShapleyWeights,
) -> LeafTable {
    let m = path.features.len();
    let full = (1usize << m) - 1;
    let mut counts = vec![0usize; 1 << m];
    for p in background_patterns {
        counts[*p] += 1;
    }
    let n = background_patterns.len().max(1) as f64;
    let mut weights = vec![0.0; (1usize << m) * m];
    for mine in 0..(1usize << m) {
        for (theirs, count) in counts.iter().enumerate().filter(|(_, c)| **c > 0) {
            if mine | theirs != full {
                continue;
            }
            let present = mine & !theirs;
            let absent = theirs & !mine;
            let (a, b) = (present.count_ones() as usize, absent.count_ones() as usize);
            if a + b == 0 {
                continue;
            }
            let share = *count as f64 / n;
            for k in 0..m {
                if present & (1 << k) != 0 {
                    weights[mine * m + k] += share * shapley.present(a, b);
                } else if absent & (1 << k) != 0 {
                    weights[mine * m + k] -= share * shapley.absent(a, b);
                }
            }
        }
    }
    LeafTable {
        node: path.node,
        features: path.features,
        conditions: path.conditions,
        weights,
    }
}

/// Adds a row's attributions from a tree's leaf tables (`directions`: the row's way at each
/// node). Row by row: batching rows leaf by leaf measured slower (the tables of a 50-tree
/// depth-4 model fit in cache).
/// A tree's region tables: one for the whole tree when it fits, else one per group of leaves
/// (the leaves under a node, split further until each group's table fits), made from the
/// tree's leaf tables. `None`: the tree keeps its leaf tables (or its walk).
fn region_tables(
    tree: &ShapTree,
    leaves: Option<&[LeafTable]>,
    (features, outputs): (usize, usize),
    budget: &mut TableBudget,
    whole: impl FnMut(&[f64], &mut [f64]),
) -> Option<Regions> {
    if let Some(table) = RegionTable::build(tree, features, outputs, budget.per_tree(), whole) {
        budget.take(table.len())?;
        return Some(Regions(vec![table]));
    }
    let mut groups = Vec::new();
    let mut above = Vec::new();
    let shape = (features, outputs);
    // Groups that fitted before one did not are dropped with the rest: what they took is
    // given back, for the trees after this one.
    let left = budget.left;
    match group_tables(tree, leaves?, 0, &mut above, shape, budget, &mut groups) {
        Some(()) => Some(Regions(groups)),
        None => {
            budget.left = left;
            None
        }
    }
}

/// The tables of the leaves under `node` (`above`: the splits on the way to it), with
/// intervals for missing values.
fn group_tables(
    tree: &ShapTree,
    leaves: &[LeafTable],
    node: usize,
    above: &mut Vec<Split>,
    (features, outputs): (usize, usize),
    budget: &mut TableBudget,
    out: &mut Vec<RegionTable>,
) -> Option<()> {
    let below = tree.subtree(node);
    let group: Vec<&LeafTable> = leaves
        .iter()
        .filter(|l| below.contains(&(l.node as usize)))
        .collect();
    if group.is_empty() {
        return Some(());
    }
    let splits: Vec<Split> = above
        .iter()
        .copied()
        .chain(below.iter().filter_map(|n| tree.nodes[*n].split))
        .collect();
    let mut directions = Vec::new();
    let mut explain = |row: &[f64], phi: &mut [f64]| {
        tree.directions(row, &mut directions);
        add_from_tables(tree, group.iter().copied(), &directions, phi, features);
    };
    let fits = RegionTable::with_missing(
        &splits,
        features,
        outputs,
        budget.per_tree(),
        true,
        &mut explain,
    );
    if let Some(table) = fits {
        budget.take(table.len())?;
        out.push(table);
        return Some(());
    }
    // A single leaf whose table does not fit: the tree keeps its leaf tables.
    let split = tree.nodes[node].split?;
    let children = [tree.nodes[node].true_child, tree.nodes[node].false_child];
    above.push(split);
    for child in children {
        group_tables(
            tree,
            leaves,
            child as usize,
            above,
            (features, outputs),
            budget,
            out,
        )?;
    }
    above.pop();
    Some(())
}

fn add_from_tables<'a>(
    tree: &ShapTree,
    leaves: impl IntoIterator<Item = &'a LeafTable>,
    directions: &[bool],
    phi: &mut [f64],
    features: usize,
) {
    for leaf in leaves {
        let m = leaf.features.len();
        let pattern = LeafPath::pattern(&leaf.conditions, m, directions);
        let shares = &leaf.weights[pattern * m..(pattern + 1) * m];
        let values = tree.leaf_values(leaf.node as usize);
        for (share, f) in shares.iter().zip(&leaf.features) {
            if *share != 0.0 {
                for (o, v) in values.iter().enumerate() {
                    phi[o * features + *f as usize] += share * v;
                }
            }
        }
    }
}

const NO_FEATURE: u32 = u32::MAX;

/// One feature's place on the current root-to-node path: the fraction of cover that flows
/// through when it is absent (`zero`) or present (`one`), and the path's permutation weight.
#[derive(Debug, Clone, Copy, Default)]
struct PathElement {
    feature: u32,
    zero: f64,
    one: f64,
    weight: f64,
}

struct Walk<'a> {
    tree: &'a ShapTree,
    row: &'a [f64],
    phi: &'a mut [f64],
    features: usize,
    paths: &'a mut [PathElement],
}

impl Walk<'_> {
    /// `paths[start..start + depth + 1]` is this node's path once the parent's first `depth`
    /// elements are copied and the edge into this node is appended; children use the space
    /// right after it.
    #[allow(clippy::too_many_arguments)]
    fn recurse(
        &mut self,
        node: usize,
        mut depth: usize,
        parent: usize,
        start: usize,
        zero: f64,
        one: f64,
        feature: u32,
    ) {
        self.paths.copy_within(parent..parent + depth, start);
        extend(&mut self.paths[start..], depth, zero, one, feature);
        let tree = self.tree;
        let here = tree.nodes[node];
        let Some(split) = here.split else {
            let outputs = tree.outputs;
            for i in 1..=depth {
                let path = &self.paths[start..];
                let el = path[i];
                let scale = unwound_sum(path, depth, i) * (el.one - el.zero);
                for (o, v) in tree.leaf_values(node).iter().enumerate().take(outputs) {
                    self.phi[o * self.features + el.feature as usize] += scale * v;
                }
            }
            return;
        };
        let (hot, cold) = if split.goes_true(self.row) {
            (here.true_child as usize, here.false_child as usize)
        } else {
            (here.false_child as usize, here.true_child as usize)
        };
        let cover = tree.covers[node];
        let (hot_zero, cold_zero) = if cover > 0.0 {
            (tree.covers[hot] / cover, tree.covers[cold] / cover)
        } else {
            (0.0, 0.0)
        };
        let (mut incoming_zero, mut incoming_one) = (1.0, 1.0);
        if let Some(k) = (1..=depth).find(|k| self.paths[start + k].feature == split.feature) {
            incoming_zero = self.paths[start + k].zero;
            incoming_one = self.paths[start + k].one;
            unwind(&mut self.paths[start..], depth, k);
            depth -= 1;
        }
        let child = start + depth + 1;
        for (next, zero, one) in [
            (hot, hot_zero * incoming_zero, incoming_one),
            (cold, cold_zero * incoming_zero, 0.0),
        ] {
            // A branch no cover reaches and the row does not take weighs nothing.
            if zero != 0.0 || one != 0.0 {
                self.recurse(next, depth + 1, start, child, zero, one, split.feature);
            }
        }
    }
}

// The walk below is bound by floating-point division (shap's C++ divides the same way);
// multiplying by reciprocals from a table made TreeSHAP on the golden model 2x faster.
const RECIPROCALS: [f64; 64] = {
    let mut table = [0.0; 64];
    let mut k = 1;
    while k < 64 {
        table[k] = 1.0 / k as f64;
        k += 1;
    }
    table
};

#[inline]
fn recip(k: usize) -> f64 {
    if k < RECIPROCALS.len() {
        RECIPROCALS[k]
    } else {
        1.0 / k as f64
    }
}

#[inline]
fn extend(path: &mut [PathElement], depth: usize, zero: f64, one: f64, feature: u32) {
    path[depth] = PathElement {
        feature,
        zero,
        one,
        weight: if depth == 0 { 1.0 } else { 0.0 },
    };
    let inv_n = recip(depth + 1);
    for i in (0..depth).rev() {
        path[i + 1].weight += one * path[i].weight * (i + 1) as f64 * inv_n;
        path[i].weight = zero * path[i].weight * (depth - i) as f64 * inv_n;
    }
}

fn unwind(path: &mut [PathElement], depth: usize, index: usize) {
    let PathElement { zero, one, .. } = path[index];
    let n = (depth + 1) as f64;
    let inv_n = recip(depth + 1);
    let mut next = path[depth].weight;
    if one != 0.0 {
        let inv_one = 1.0 / one;
        for i in (0..depth).rev() {
            let kept = path[i].weight;
            path[i].weight = next * n * recip(i + 1) * inv_one;
            next = kept - path[i].weight * zero * (depth - i) as f64 * inv_n;
        }
    } else {
        let inv_zero = 1.0 / zero;
        for i in (0..depth).rev() {
            path[i].weight = path[i].weight * n * inv_zero * recip(depth - i);
        }
    }
    for i in index..depth {
        path[i].feature = path[i + 1].feature;
        path[i].zero = path[i + 1].zero;
        path[i].one = path[i + 1].one;
    }
}

/// The total permutation weight of the path with element `index` taken out, without changing it.
#[inline]
fn unwound_sum(path: &[PathElement], depth: usize, index: usize) -> f64 {
    let PathElement { zero, one, .. } = path[index];
    let n = (depth + 1) as f64;
    let inv_n = recip(depth + 1);
    let mut next = path[depth].weight;
    let mut total = 0.0;
    if one != 0.0 {
        let grow = n / one;
        let shrink = zero * inv_n;
        for i in (0..depth).rev() {
            let w = next * grow * recip(i + 1);
            total += w;
            next = path[i].weight - w * shrink * (depth - i) as f64;
        }
    } else if zero != 0.0 {
        let inv_zero = 1.0 / zero;
        for i in (0..depth).rev() {
            total += path[i].weight * inv_zero * n * recip(depth - i);
        }
    }
    total
}

/// Interventional TreeSHAP against a background sample: the Shapley values of
/// `v(S) = mean over background rows r of f(x_S, r_rest)`, exactly.
///
/// For one row x and one background row r, a leaf is reached by coalition S only if S holds
/// every feature where the path follows x but not r (set A) and none where it follows r but not
/// x (set B); such a leaf's game is `1[A ⊆ S, B ∩ S = ∅]`, whose Shapley values are
/// `(|A|-1)! |B|! / (|A|+|B|)!` for each member of A and `-|A|! (|B|-1)! / (|A|+|B|)!` for each
/// member of B. The walk branches only where x and r part ways on a feature not yet decided.
///
/// The game of a leaf depends on the two rows only through which of the leaf's path features
/// each follows, so for trees whose paths hold few distinct features every leaf's weights are
/// averaged over the background once, per pattern of the explained row, here; explaining a row
/// is then a lookup per leaf, whatever the background's size (on a 50-tree depth-4 model with
/// 100 background rows, ~100x faster than walking each tree once per background row, which
/// deeper trees still do).
pub struct Interventional {
    forest: Forest,
    background: usize,
    /// Per tree, per background row, the direction of every node.
    directions: Vec<Vec<bool>>,
    base: Vec<f64>,
    weights: ShapleyWeights,
    /// Per tree, its leaves' weight tables (`None`: the tree is walked per background row).
    tables: Vec<Option<Vec<LeafTable>>>,
    /// Per tree, its attributions per interval combination (`None`: tables or walk).
    regions: Vec<Option<Regions>>,
}

impl Interventional {
    /// `background` is row-major, `forest.features()` wide, at least one row.
    pub fn new(forest: Forest, background: &[f64]) -> Result<Self, ExplainError> {
        Interventional::build(forest, background, true)
    }

    fn build(forest: Forest, background: &[f64], with_regions: bool) -> Result<Self, ExplainError> {
        let width = forest.features;
        let rows = crate::whole_rows(background, width).map_err(ExplainError::Background)?;
        let mut directions = Vec::with_capacity(forest.trees.len());
        let mut scratch = Vec::new();
        for tree in &forest.trees {
            let mut all = Vec::with_capacity(rows * tree.nodes.len());
            for row in background.chunks_exact(width) {
                tree.directions(row, &mut scratch);
                all.extend_from_slice(&scratch);
            }
            directions.push(all);
        }
        let mut base = vec![0.0; forest.outputs()];
        for row in background.chunks_exact(width) {
            for (b, v) in base.iter_mut().zip(forest.raw(row)) {
                *b += v;
            }
        }
        base.iter_mut().for_each(|b| *b /= rows as f64);
        let weights = ShapleyWeights::new(forest.max_depth())?;
        let mut budget = TableBudget::new();
        let tables = forest
            .trees
            .iter()
            .zip(&directions)
            .map(|(tree, theirs)| {
                let n = tree.nodes.len();
                let paths = budget.paths(tree)?;
                Some(
                    paths
                        .into_iter()
                        .map(|path| {
                            let m = path.features.len();
                            let patterns: Vec<usize> = theirs
                                .chunks_exact(n)
                                .map(|d| LeafPath::pattern(&path.conditions, m, d))
                                .collect();
                            interventional_table(path, &patterns, &weights)
                        })
                        .collect(),
                )
            })
            .collect();
        let mut explainer = Interventional {
            forest,
            background: rows,
            directions,
            base,
            weights,
            tables,
            regions: Vec::new(),
        };
        if with_regions {
            explainer.regions = explainer.region_tables();
            // A tree whose region table covers missing values needs its leaf tables no more.
            for (table, region) in explainer.tables.iter_mut().zip(&explainer.regions) {
                if region.as_ref().is_some_and(Regions::covers_missing) {
                    *table = None;
                }
            }
        } else {
            explainer.regions = (0..explainer.forest.trees.len()).map(|_| None).collect();
        }
        Ok(explainer)
    }

    fn region_tables(&self) -> Vec<Option<Regions>> {
        let mut budget = TableBudget::new();
        let (features, outputs) = (self.forest.features, self.forest.outputs());
        (0..self.forest.trees.len())
            .map(|t| {
                region_tables(
                    &self.forest.trees[t],
                    self.tables[t].as_deref(),
                    (features, outputs),
                    &mut budget,
                    |row, phi| self.explain_tree(t, row, phi),
                )
            })
            .collect()
    }

    /// Without the region or leaf tables: every tree walked per background row, as trees past
    /// the tables' budget are.
    pub fn walking(forest: Forest, background: &[f64]) -> Result<Self, ExplainError> {
        let mut explainer = Interventional::by_leaf_tables(forest, background)?;
        explainer.tables.iter_mut().for_each(|t| *t = None);
        Ok(explainer)
    }

    /// Without the region tables: every leaf's table looked up per row, as trees with too
    /// many interval combinations are.
    pub fn by_leaf_tables(forest: Forest, background: &[f64]) -> Result<Self, ExplainError> {
        Interventional::build(forest, background, false)
    }

    /// One tree's attributions for `row`, added to `out` (by its leaf tables, else walked
    /// once per background row and averaged).
    fn explain_tree(&self, t: usize, row: &[f64], out: &mut [f64]) {
        let tree = &self.forest.trees[t];
        let features = self.forest.features;
        let mut mine = Vec::new();
        tree.directions(row, &mut mine);
        if let Some(leaves) = &self.tables[t] {
            add_from_tables(tree, leaves, &mine, out, features);
            return;
        }
        let mut sums = vec![0.0; out.len()];
        let mut state = vec![Side::Open; features];
        let mut decided = Vec::with_capacity(self.forest.max_depth());
        let n = tree.nodes.len();
        for r in 0..self.background {
            let theirs = &self.directions[t][r * n..(r + 1) * n];
            let mut walk = Crossing {
                tree,
                mine: &mine,
                theirs,
                state: &mut state,
                decided: &mut decided,
                weights: &self.weights,
                phi: &mut sums,
                features,
            };
            walk.recurse(0, 0, 0);
        }
        let scale = 1.0 / self.background as f64;
        for (p, s) in out.iter_mut().zip(sums) {
            *p += s * scale;
        }
    }

    pub fn forest(&self) -> &Forest {
        &self.forest
    }

    /// The mean raw output over the background, per output.
    pub fn base_value(&self) -> &[f64] {
        &self.base
    }

    /// Adds the attributions of every row of `rows` (row-major; one row or many) to `phi`, one
    /// `outputs × features` block (output-major) per row.
    pub fn explain(&self, rows: &[f64], phi: &mut [f64]) {
        let features = self.forest.features;
        let stride = self.forest.outputs() * features;
        let mut state = vec![Side::Open; features];
        let mut decided = Vec::with_capacity(self.forest.max_depth());
        let mut mine = Vec::new();
        let scale = 1.0 / self.background as f64;
        // Region tables tree by tree, so one table serves every row while it is in cache.
        for (t, region) in self.regions.iter().enumerate() {
            let Some(region) = region else { continue };
            for i in region.add_rows(rows, phi, features, stride) {
                let (row, out) = (
                    &rows[i * features..(i + 1) * features],
                    &mut phi[i * stride..(i + 1) * stride],
                );
                self.explain_tree(t, row, out);
            }
        }
        for (row, out) in rows
            .chunks_exact(features)
            .zip(phi.chunks_exact_mut(stride))
        {
            let mut sums: Vec<f64> = Vec::new();
            for (t, tree) in self.forest.trees.iter().enumerate() {
                if self.regions[t].is_some() {
                    continue;
                }
                tree.directions(row, &mut mine);
                if let Some(leaves) = &self.tables[t] {
                    add_from_tables(tree, leaves, &mine, out, features);
                    continue;
                }
                if sums.is_empty() {
                    sums = vec![0.0; stride];
                }
                let n = tree.nodes.len();
                for r in 0..self.background {
                    let theirs = &self.directions[t][r * n..(r + 1) * n];
                    let mut walk = Crossing {
                        tree,
                        mine: &mine,
                        theirs,
                        state: &mut state,
                        decided: &mut decided,
                        weights: &self.weights,
                        phi: &mut sums,
                        features,
                    };
                    walk.recurse(0, 0, 0);
                }
            }
            for (p, s) in out.iter_mut().zip(sums) {
                *p += s * scale;
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Open,
    /// Present: the path followed the explained row on this feature.
    Row,
    /// Absent: the path followed the background row.
    Background,
}

struct Crossing<'a> {
    tree: &'a ShapTree,
    mine: &'a [bool],
    theirs: &'a [bool],
    state: &'a mut [Side],
    decided: &'a mut Vec<u32>,
    weights: &'a ShapleyWeights,
    phi: &'a mut [f64],
    features: usize,
}

impl Crossing<'_> {
    fn recurse(&mut self, node: usize, with_row: usize, with_background: usize) {
        let here = self.tree.nodes[node];
        let child = |goes_true: bool| {
            if goes_true {
                here.true_child as usize
            } else {
                here.false_child as usize
            }
        };
        let Some(split) = here.split else {
            if with_row + with_background == 0 {
                return;
            }
            let gain = self.weights.present(with_row, with_background);
            let loss = self.weights.absent(with_row, with_background);
            let values = self.tree.leaf_values(node);
            for &f in self.decided.iter() {
                let w = if self.state[f as usize] == Side::Row {
                    gain
                } else {
                    -loss
                };
                for (o, v) in values.iter().enumerate() {
                    self.phi[o * self.features + f as usize] += w * v;
                }
            }
            return;
        };
        let f = split.feature as usize;
        let (mine, theirs) = (self.mine[node], self.theirs[node]);
        match self.state[f] {
            Side::Row => self.recurse(child(mine), with_row, with_background),
            Side::Background => self.recurse(child(theirs), with_row, with_background),
            Side::Open if mine == theirs => self.recurse(child(mine), with_row, with_background),
            Side::Open => {
                self.decided.push(split.feature);
                self.state[f] = Side::Row;
                self.recurse(child(mine), with_row + 1, with_background);
                self.state[f] = Side::Background;
                self.recurse(child(theirs), with_row, with_background + 1);
                self.state[f] = Side::Open;
                self.decided.pop();
            }
        }
    }
}

/// `(a-1)! b! / (a+b)!` and `a! (b-1)! / (a+b)!` for paths with a present and b absent features.
struct ShapleyWeights {
    side: usize,
    present: Vec<f64>,
}

impl ShapleyWeights {
    /// Deeper trees than this are refused: the weights' binomials would leave `f64`'s range.
    const MAX_DEPTH: usize = 500;

    fn new(depth: usize) -> Result<Self, ExplainError> {
        if depth > Self::MAX_DEPTH {
            return Err(ExplainError::Model(format!(
                "a tree {depth} branches deep is beyond interventional TreeSHAP's {}",
                Self::MAX_DEPTH
            )));
        }
        let side = depth + 1;
        let mut present = vec![0.0; side * side];
        for a in 1..side {
            // 1 / (a · C(a+b, a)), with the binomial grown one b at a time.
            let mut choose = 1.0f64;
            for b in 0..side {
                if b > 0 {
                    choose = choose * (a + b) as f64 / b as f64;
                }
                present[a * side + b] = 1.0 / (a as f64 * choose);
            }
        }
        Ok(ShapleyWeights { side, present })
    }

    fn present(&self, a: usize, b: usize) -> f64 {
        if a == 0 {
            0.0
        } else {
            self.present[a * self.side + b]
        }
    }

    fn absent(&self, a: usize, b: usize) -> f64 {
        if b == 0 {
            0.0
        } else {
            self.present[b * self.side + a]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// f(x) = 1 if x0 <= 0 and x1 <= 0, else 0; covers from four equally likely corners.
    fn and_tree() -> Forest {
        let split = |feature| {
            Some(Split {
                feature,
                threshold: 0.0,
                mode: NodeMode::Leq,
                missing_goes_true: false,
            })
        };
        let leaf = Node {
            split: None,
            true_child: 0,
            false_child: 0,
        };
        let nodes = vec![
            Node {
                split: split(0),
                true_child: 1,
                false_child: 4,
            },
            Node {
                split: split(1),
                true_child: 2,
                false_child: 3,
            },
            leaf,
            leaf,
            leaf,
        ];
        let values = vec![0.0, 0.0, 1.0, 0.0, 0.0];
        let covers = vec![4.0, 2.0, 1.0, 1.0, 2.0];
        let tree = ShapTree::new(nodes, values, covers, 1).expect("tree");
        Forest::new(vec![tree], vec![0.0], 2).expect("forest")
    }

    #[test]
    fn an_and_of_two_features_splits_its_credit_evenly() {
        let forest = and_tree();
        let path = PathDependent::new(forest.clone());
        assert_eq!(path.base_value(), &[0.25]);
        let mut phi = vec![0.0; 2];
        path.explain(&[-1.0, -1.0], &mut phi);
        // Symmetric features: each gets half of 1 - 0.25.
        assert!((phi[0] - 0.375).abs() < 1e-15 && (phi[1] - 0.375).abs() < 1e-15);

        let background = [1.0, 1.0];
        let inter = Interventional::new(forest, &background).expect("explainer");
        assert_eq!(inter.base_value(), &[0.0]);
        let mut phi = vec![0.0; 2];
        inter.explain(&[-1.0, -1.0], &mut phi);
        assert_eq!(phi, vec![0.5, 0.5]);
    }

    /// A depth-3 tree over two features whose splits use every monotone mode on shared
    /// thresholds, missing values going either way.
    fn mixed_tree() -> Forest {
        let split = |feature, threshold, mode, missing_goes_true| {
            Some(Split {
                feature,
                threshold,
                mode,
                missing_goes_true,
            })
        };
        let branch = |s, t, f| Node {
            split: s,
            true_child: t,
            false_child: f,
        };
        let leaf = branch(None, 0, 0);
        let nodes = vec![
            branch(split(0, 1.0, NodeMode::Leq, true), 1, 2),
            branch(split(1, 0.5, NodeMode::Lt, false), 3, 4),
            branch(split(0, 1.0, NodeMode::Gt, false), 5, 6),
            branch(split(0, 0.0, NodeMode::Gte, true), 7, 8),
            leaf,
            branch(split(1, 0.5, NodeMode::Leq, true), 9, 10),
            leaf,
            leaf,
            leaf,
            leaf,
            leaf,
        ];
        let values = vec![0.0, 0.0, 0.0, 0.0, 2.0, 0.0, -1.0, 3.0, 0.5, 1.5, -2.0];
        let covers = vec![10.0, 6.0, 4.0, 4.0, 2.0, 3.0, 1.0, 3.0, 1.0, 2.0, 1.0];
        let tree = ShapTree::new(nodes, values, covers, 1).expect("tree");
        Forest::new(vec![tree], vec![0.0], 2).expect("forest")
    }

    #[test]
    fn region_tables_give_what_walking_gives_on_every_edge_of_every_interval() {
        let forest = mixed_tree();
        let edges = |t: f64| [t.next_down(), t, t.next_up()];
        let mut values: Vec<f64> = [0.0, 0.5, 1.0].into_iter().flat_map(edges).collect();
        values.extend([f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -7.0, 9.0]);
        let background = [0.0, 0.5, 1.0, 0.25, 2.0, f64::NAN, -1.0, 0.75];
        let mut by_regions = (
            PathDependent::new(forest.clone()),
            Interventional::new(forest.clone(), &background).expect("regions"),
        );
        assert!(by_regions.0.regions[0].is_some() && by_regions.1.regions[0].is_some());
        let walked = (
            PathDependent::walking(forest.clone()),
            Interventional::walking(forest.clone(), &background).expect("walk"),
        );
        let compare = |by_regions: &(PathDependent, Interventional)| {
            for a in &values {
                for b in &values {
                    let row = [*a, *b];
                    let mut phi = [[0.0; 2]; 4];
                    by_regions.0.explain(&row, &mut phi[0]);
                    walked.0.explain(&row, &mut phi[1]);
                    by_regions.1.explain(&row, &mut phi[2]);
                    walked.1.explain(&row, &mut phi[3]);
                    for k in 0..2 {
                        assert!((phi[0][k] - phi[1][k]).abs() < 1e-12, "{row:?}: {phi:?}");
                        assert!((phi[2][k] - phi[3][k]).abs() < 1e-12, "{row:?}: {phi:?}");
                    }
                }
            }
        };
        compare(&by_regions);
        // Tables without intervals for missing values: such rows go the exact way.
        let tree = &forest.trees[0];
        let splits: Vec<Split> = tree.splits().copied().collect();
        let (p, i) = (&by_regions.0, &by_regions.1);
        let without = (
            RegionTable::with_missing(&splits, 2, 1, 1 << 15, false, &mut |row, phi| {
                p.explain_tree(0, row, phi, &mut Vec::new(), &mut Vec::new())
            }),
            RegionTable::with_missing(&splits, 2, 1, 1 << 15, false, &mut |row, phi| {
                i.explain_tree(0, row, phi)
            }),
        );
        assert!(without.0.as_ref().is_some_and(|r| !r.covers_missing()));
        let whole = |t: Option<RegionTable>| t.map(|t| Regions(vec![t]));
        (by_regions.0.regions[0], by_regions.1.regions[0]) = (whole(without.0), whole(without.1));
        compare(&by_regions);
        // Tables per group of leaves (the leaves under each child of the root), as trees too
        // big for one table get.
        let root = vec![tree.nodes[0].split.expect("root")];
        let grouped = |leaves: &[LeafTable]| {
            let mut groups = Vec::new();
            for child in [1, 2] {
                let shape = (2, 1);
                group_tables(
                    tree,
                    leaves,
                    child,
                    &mut root.clone(),
                    shape,
                    &mut TableBudget::new(),
                    &mut groups,
                )
                .expect("a group's table");
            }
            assert_eq!(groups.len(), 2);
            Some(Regions(groups))
        };
        let leaf_tables = (
            PathDependent::by_leaf_tables(forest.clone()),
            Interventional::by_leaf_tables(forest.clone(), &background).expect("tables"),
        );
        by_regions.0.regions[0] = grouped(leaf_tables.0.tables[0].as_deref().expect("path tables"));
        by_regions.1.regions[0] = grouped(leaf_tables.1.tables[0].as_deref().expect("tables"));
        compare(&by_regions);
    }

    #[test]
    fn weights_are_the_shapley_kernel() {
        let w = ShapleyWeights::new(4).expect("weights");
        // a = 2 present, b = 1 absent: 1! 1! / 3! and 2! 0! / 3!
        assert!((w.present(2, 1) - 1.0 / 6.0).abs() < 1e-15);
        assert!((w.absent(2, 1) - 2.0 / 6.0).abs() < 1e-15);
        assert_eq!(w.present(1, 0), 1.0);
    }

    #[test]
    fn group_tables_that_cannot_all_be_made_give_their_budget_back() {
        // Five features, x0 at the root, x1 and x2 below on its left, x3 and x4 on its right.
        // A table for the whole tree holds 2^5 × 5 = 160 values without missing values; one
        // per side, with them, 3^3 × 3 = 81 (three intervals of each of its three features).
        // With 150 left, the left side's fits and the right side's then does not.
        let split = |feature| {
            Some(Split {
                feature,
                threshold: 0.0,
                mode: NodeMode::Leq,
                missing_goes_true: false,
            })
        };
        let node = |split, true_child, false_child| Node {
            split,
            true_child,
            false_child,
        };
        let leaf = node(None, 0, 0);
        let nodes = vec![
            node(split(0), 1, 8),
            node(split(1), 2, 5),
            node(split(2), 3, 4),
            leaf,
            leaf,
            node(split(2), 6, 7),
            leaf,
            leaf,
            node(split(3), 9, 12),
            node(split(4), 10, 11),
            leaf,
            leaf,
            node(split(4), 13, 14),
            leaf,
            leaf,
        ];
        let values: Vec<f64> = (0..15).map(f64::from).collect();
        let covers = vec![
            8.0, 4.0, 2.0, 1.0, 1.0, 2.0, 1.0, 1.0, 4.0, 2.0, 1.0, 1.0, 2.0, 1.0, 1.0,
        ];
        let tree = ShapTree::new(nodes, values, covers, 1).expect("tree");
        let forest = Forest::new(vec![tree], vec![0.0], 5).expect("forest");
        let explainer = PathDependent::by_leaf_tables(forest);
        let tables = |left| {
            let mut budget = TableBudget { left };
            let regions = region_tables(
                &explainer.forest.trees[0],
                explainer.tables[0].as_deref(),
                (5, 1),
                &mut budget,
                |row, phi| explainer.explain_tree(0, row, phi, &mut Vec::new(), &mut Vec::new()),
            );
            (regions.map(|r| r.0.len()), budget.left)
        };
        assert_eq!(tables(1000), (Some(1), 840), "one table for the whole tree");
        assert_eq!(tables(150), (None, 150));
    }
}
