//! Exact SHAP values of a linear model against a background (shap's `LinearExplainer` with an
//! independent masker): `phi_j = w_j (x_j - mean_j)`, base `b + w · mean`.
//!
//! The columns are the linear model's own inputs. When the steps before it map each column to
//! itself (scalers, imputers, binarizers), the model is additive in its raw inputs and these
//! are exactly the interventional SHAP values of the whole model.

use mltrail_serving::runtime::LinearTerms;

use crate::ExplainError;

pub struct LinearShap {
    terms: LinearTerms,
    mean: Vec<f64>,
    base: Vec<f64>,
}

impl LinearShap {
    /// `background` is row-major, `terms.features` wide, at least one row.
    pub fn new(terms: LinearTerms, background: &[f64]) -> Result<Self, ExplainError> {
        let width = terms.features;
        let rows = crate::whole_rows(background, width).map_err(ExplainError::Background)?;
        if terms.coefficients.len() != terms.outputs.len() * width
            || terms.intercepts.len() != terms.outputs.len()
        {
            return Err(ExplainError::Model(format!(
                "{} coefficients and {} intercepts for {} outputs of {width} features",
                terms.coefficients.len(),
                terms.intercepts.len(),
                terms.outputs.len()
            )));
        }
        let rows = rows as f64;
        let mut mean = vec![0.0; width];
        for row in background.chunks_exact(width) {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += v;
            }
        }
        mean.iter_mut().for_each(|m| *m /= rows);
        let base = (0..terms.outputs.len())
            .map(|o| terms.intercepts[o] + dot(&terms.coefficients[o * width..][..width], &mean))
            .collect();
        Ok(LinearShap { terms, mean, base })
    }

    pub fn base_value(&self) -> &[f64] {
        &self.base
    }

    pub fn raw(&self, row: &[f64]) -> Vec<f64> {
        let width = self.terms.features;
        (0..self.terms.outputs.len())
            .map(|o| {
                self.terms.intercepts[o] + dot(&self.terms.coefficients[o * width..][..width], row)
            })
            .collect()
    }

    /// Adds `row`'s attributions to `phi` (`outputs × features`, output-major).
    pub fn explain(&self, row: &[f64], phi: &mut [f64]) {
        let width = self.terms.features;
        for (o, out) in phi.chunks_exact_mut(width).enumerate() {
            let w = &self.terms.coefficients[o * width..][..width];
            for j in 0..width {
                out[j] += w[j] * (row[j] - self.mean[j]);
            }
        }
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
