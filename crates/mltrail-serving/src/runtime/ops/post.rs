//! Score post-transforms, computed in single precision exactly as onnxruntime's ML kernels do
//! (its PROBIT uses an approximate inverse error function; we use the same one so answers agree).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostTransform {
    None,
    Logistic,
    Softmax,
    SoftmaxZero,
    Probit,
}

impl PostTransform {
    pub fn parse(text: Option<String>) -> Result<Self, String> {
        Ok(match text.as_deref().unwrap_or("NONE") {
            "NONE" => Self::None,
            "LOGISTIC" => Self::Logistic,
            "SOFTMAX" => Self::Softmax,
            "SOFTMAX_ZERO" => Self::SoftmaxZero,
            "PROBIT" => Self::Probit,
            other => return Err(format!("post_transform `{other}` is not one of NONE, LOGISTIC, SOFTMAX, SOFTMAX_ZERO, PROBIT")),
        })
    }

    /// Applies the transform to one row of scores (two or more) in place.
    pub fn apply_row(self, scores: &mut [f32]) {
        match self {
            Self::None => {}
            Self::Logistic => scores.iter_mut().for_each(|s| *s = logistic(*s)),
            Self::Probit => scores.iter_mut().for_each(|s| *s = probit(*s)),
            Self::Softmax => softmax(scores),
            Self::SoftmaxZero => softmax_zero(scores),
        }
    }
}

pub fn logistic(v: f32) -> f32 {
    let e = 1.0 / (1.0 + (-v.abs()).exp());
    if v < 0.0 {
        1.0 - e
    } else {
        e
    }
}

/// Winitzki's approximation with a = 0.147 and π truncated to 3.14159, as onnxruntime has it.
#[allow(clippy::approx_constant)]
fn erf_inv(x: f32) -> f32 {
    let sign = if x < 0.0 { -1.0f32 } else { 1.0 };
    let x = (1.0 - x) * (1.0 + x);
    let log = x.ln();
    let v = 2.0 / (3.14159f32 * 0.147) + 0.5 * log;
    let v2 = 1.0 / 0.147f32 * log;
    let v3 = -v + (v * v - v2).sqrt();
    sign * v3.sqrt()
}

pub fn probit(v: f32) -> f32 {
    std::f32::consts::SQRT_2 * erf_inv(2.0 * v - 1.0)
}

pub fn softmax(values: &mut [f32]) {
    let max = values.iter().copied().fold(-f32::MAX, f32::max);
    let mut sum = 0.0f32;
    for v in values.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    values.iter_mut().for_each(|v| *v /= sum);
}

/// Softmax that leaves exact zeros at zero weight (onnxruntime's SOFTMAX_ZERO).
pub fn softmax_zero(values: &mut [f32]) {
    let max = values.iter().copied().fold(-f32::MAX, f32::max);
    let exp_neg_max = (-max).exp();
    let mut sum = 0.0f32;
    for v in values.iter_mut() {
        if *v > 0.000_000_1 || *v < -0.000_000_1 {
            *v = (*v - max).exp();
            sum += *v;
        } else {
            *v *= exp_neg_max;
        }
    }
    values.iter_mut().for_each(|v| *v /= sum);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logistic_is_symmetric_and_bounded() {
        assert!((logistic(0.0) - 0.5).abs() < 1e-7);
        assert!((logistic(3.0) + logistic(-3.0) - 1.0).abs() < 1e-6);
        assert!(logistic(100.0) <= 1.0 && logistic(-100.0) >= 0.0);
    }

    #[test]
    fn softmax_sums_to_one() {
        let mut v = [1.0f32, 2.0, 3.0];
        softmax(&mut v);
        assert!((v.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(v[2] > v[1] && v[1] > v[0]);
    }

    #[test]
    fn probit_inverts_the_normal_cdf_approximately() {
        // Φ(1.0) = 0.841344746; onnxruntime's approximation is good to ~1e-3.
        assert!((probit(0.841_344_7) - 1.0).abs() < 5e-3);
        assert!(probit(0.5).abs() < 1e-6);
    }
}
