//! What explanations need to know about a model: its one estimator (a tree ensemble or a linear
//! model), whether the steps before it keep columns apart (so an attribution to the estimator's
//! column j is one to the model's input j), and how the estimator's raw scores, before their
//! post-transform, make up each output. The conventions are onnxruntime's, as in scoring.

use super::graph::Graph;
use super::ops::tree::TreeEnsemble;
use super::value::Tensor;
use super::RuntimeError;

/// The scale an explained output is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputSpace {
    /// The log-odds of the named class (binary classifiers with a logistic link).
    LogOdds,
    /// A class's score before softmax (or another link).
    Margin,
    /// A probability that trees or a model average directly (random forests).
    Probability,
    /// A regression value, or a score the model returns as it is.
    Value,
}

impl OutputSpace {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputSpace::LogOdds => "log_odds",
            OutputSpace::Margin => "margin",
            OutputSpace::Probability => "probability",
            OutputSpace::Value => "value",
        }
    }
}

/// One explained output: the class (or target) it is about and its scale.
#[derive(Debug, Clone, PartialEq)]
pub struct RawOutput {
    pub label: String,
    pub space: OutputSpace,
}

/// A tree ensemble's output as a sum: `base + scale × Σ over trees of the reached leaf's votes
/// for target`.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeOutput {
    pub output: RawOutput,
    pub target: u32,
    pub base: f64,
    pub scale: f64,
}

/// A linear model's outputs: `intercepts[o] + Σ_j coefficients[o × features + j] · x_j`.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearTerms {
    pub outputs: Vec<RawOutput>,
    pub coefficients: Vec<f64>,
    pub intercepts: Vec<f64>,
    pub features: usize,
}

pub enum EstimatorKind<'g> {
    Trees(&'g TreeEnsemble),
    Linear(LinearTerms),
}

/// The column-wise steps from a graph's input to its estimator, kept by an explainer so that
/// each explanation runs them without finding the estimator again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSteps(Vec<usize>);

impl ColumnSteps {
    /// Whether steps run between the model's input and the estimator.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A graph's estimator and the column-wise steps from the graph's input to it.
pub struct Estimator<'g> {
    pub steps: ColumnSteps,
    pub kind: EstimatorKind<'g>,
}

impl Graph {
    /// The graph's one estimator, when the graph has one tensor input and every step between
    /// that input and the estimator maps each column to itself (casts, scalers, imputers,
    /// binarizers). `None` otherwise: such a model is explained by sampling.
    pub fn estimator(&self) -> Option<Estimator<'_>> {
        if self.inputs().len() != 1 {
            return None;
        }
        let mut found = None;
        for (i, step) in self.steps().iter().enumerate() {
            let kind = if let Some(trees) = step.kernel.as_tree_ensemble() {
                EstimatorKind::Trees(trees)
            } else if let Some(terms) = step.kernel.linear_terms() {
                EstimatorKind::Linear(terms)
            } else {
                continue;
            };
            if found.is_some() {
                return None;
            }
            found = Some((i, kind));
        }
        let (at, kind) = found?;
        let mut chain = Vec::new();
        let mut slot = *self.steps()[at].inputs.first()?;
        while slot != self.input_slot(0) {
            let (i, step) = self.steps()[..at]
                .iter()
                .enumerate()
                .rev()
                .find(|(_, s)| s.outputs.contains(&Some(slot)))?;
            if !step.kernel.column_wise() || step.inputs.len() != 1 {
                return None;
            }
            chain.push(i);
            slot = step.inputs[0];
        }
        chain.reverse();
        Some(Estimator {
            steps: ColumnSteps(chain),
            kind,
        })
    }

    /// The estimator's input for a batch of the graph's input: `steps` (from
    /// [`Graph::estimator`] on this graph) run in order.
    pub fn estimator_input(
        &self,
        steps: &ColumnSteps,
        batch: Tensor,
    ) -> Result<Tensor, RuntimeError> {
        self.run_chain(&steps.0, batch)
    }
}
