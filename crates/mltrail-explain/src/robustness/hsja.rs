//! A decision-based black-box attack for any model: HopSkipJumpAttack (Chen, Jordan &
//! Wainwright 2020) in its L∞ form, as IBM's ART runs it (`HopSkipJump(norm=np.inf)`): from a
//! random adversarial start, bisect toward the row onto the decision boundary, estimate the
//! boundary's normal from the signs of `init_eval·√t` random probes, step along its sign with a
//! geometric search, repeat. It only asks the model for decisions, so it works on any graph;
//! the distance it reaches is the smallest perturbation it found (not bounded by ε).
//!
//! Coordinates here are the attacked features divided by their scale; the caller maps rows in
//! and out and counts queries in the oracle.

use crate::sampling::SplitMix;

#[derive(Debug, Clone, Copy)]
pub struct HsjaSettings {
    pub max_iter: usize,
    pub max_eval: usize,
    pub init_eval: usize,
    pub init_size: usize,
    /// Stops once a row has cost this many model evaluations.
    pub max_queries: usize,
}

impl Default for HsjaSettings {
    fn default() -> Self {
        // ART's defaults for the iterations; the query cap keeps one row's cost bounded.
        HsjaSettings {
            max_iter: 50,
            max_eval: 10_000,
            init_eval: 100,
            init_size: 100,
            max_queries: 20_000,
        }
    }
}

/// Whether each point is adversarial; an error stops the attack.
pub(crate) type Oracle<'a, E> = dyn FnMut(&[Vec<f64>]) -> Result<Vec<bool>, E> + 'a;

fn clip(v: &mut [f64], lo: &[f64], hi: &[f64]) {
    for ((x, l), h) in v.iter_mut().zip(lo).zip(hi) {
        *x = x.clamp(*l, *h);
    }
}

fn linf(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// `cur` projected onto the L∞ ball of radius `r` around `x`.
fn project(cur: &[f64], x: &[f64], r: f64) -> Vec<f64> {
    cur.iter()
        .zip(x)
        .map(|(c, o)| c.clamp(o - r, o + r))
        .collect()
}

/// The attack's result: the closest adversarial point found and the queries it cost.
pub(crate) struct Found {
    pub point: Option<Vec<f64>>,
    pub queries: usize,
}

/// `starts`: points to try first as the adversarial start (nearest rows of other classes),
/// before random draws.
pub(crate) fn attack<E>(
    oracle: &mut Oracle<'_, E>,
    x: &[f64],
    lo: &[f64],
    hi: &[f64],
    starts: &[Vec<f64>],
    settings: &HsjaSettings,
    rng: &mut SplitMix,
) -> Result<Found, E> {
    let d = x.len().max(1);
    let theta = 0.01 / d as f64;
    let mut queries = 0usize;
    let mut ask = |points: &[Vec<f64>], queries: &mut usize| -> Result<Vec<bool>, E> {
        *queries += points.len();
        oracle(points)
    };
    // An adversarial start: the nearest rows of another class first (ART draws at random only;
    // a start near the row leaves the search less to do), then random points of the box; then
    // a blend toward the row.
    let mut start = None;
    for s in starts {
        if ask(std::slice::from_ref(s), &mut queries)?[0] {
            start = Some(s.clone());
            break;
        }
    }
    for _ in 0..settings.init_size {
        if start.is_some() {
            break;
        }
        let r: Vec<f64> = lo
            .iter()
            .zip(hi)
            .map(|(l, h)| l + (h - l) * rng.unit())
            .collect();
        if ask(std::slice::from_ref(&r), &mut queries)?[0] {
            start = Some(r);
            break;
        }
    }
    let Some(random) = start else {
        return Ok(Found {
            point: None,
            queries,
        });
    };
    let (mut low, mut high) = (0.0f64, 1.0f64);
    while high - low > 0.001 {
        let mid = (low + high) / 2.0;
        let blend: Vec<f64> = x
            .iter()
            .zip(&random)
            .map(|(o, r)| (1.0 - mid) * o + mid * r)
            .collect();
        if ask(std::slice::from_ref(&blend), &mut queries)?[0] {
            high = mid;
        } else {
            low = mid;
        }
    }
    let mut cur: Vec<f64> = x
        .iter()
        .zip(&random)
        .map(|(o, r)| (1.0 - high) * o + high * r)
        .collect();
    for t in 0..settings.max_iter {
        if queries >= settings.max_queries {
            break;
        }
        let dist = linf(&cur, x);
        let delta = if t == 0 {
            0.1 * lo.iter().zip(hi).map(|(l, h)| h - l).fold(0.0, f64::max)
        } else {
            d as f64 * theta * dist
        };
        // Bisect onto the boundary along the L∞ projection.
        let (mut lower, mut upper) = (0.0f64, dist);
        let threshold = (upper * theta).min(theta);
        while upper - lower > threshold {
            let mid = (upper + lower) / 2.0;
            if ask(&[project(&cur, x, mid)], &mut queries)?[0] {
                upper = mid;
            } else {
                lower = mid;
            }
        }
        cur = project(&cur, x, upper);
        if queries >= settings.max_queries {
            break;
        }
        // The boundary's normal from the signs of random probes.
        let n = ((settings.init_eval as f64 * ((t + 1) as f64).sqrt()) as usize)
            .clamp(1, settings.max_eval);
        let mut probes = Vec::with_capacity(n);
        let mut directions = Vec::with_capacity(n);
        for _ in 0..n {
            let mut u: Vec<f64> = (0..d).map(|_| 2.0 * rng.unit() - 1.0).collect();
            let norm = u
                .iter()
                .map(|v| v * v)
                .sum::<f64>()
                .sqrt()
                .max(f64::MIN_POSITIVE);
            u.iter_mut().for_each(|v| *v /= norm);
            let mut e: Vec<f64> = cur.iter().zip(&u).map(|(c, v)| c + delta * v).collect();
            clip(&mut e, lo, hi);
            let actual: Vec<f64> = e
                .iter()
                .zip(&cur)
                .map(|(a, c)| if delta > 0.0 { (a - c) / delta } else { 0.0 })
                .collect();
            probes.push(e);
            directions.push(actual);
        }
        let signs: Vec<f64> = ask(&probes, &mut queries)?
            .into_iter()
            .map(|a| if a { 1.0 } else { -1.0 })
            .collect();
        let mean = signs.iter().sum::<f64>() / n as f64;
        let mut grad = vec![0.0; d];
        for (s, u) in signs.iter().zip(&directions) {
            let w = if mean == 1.0 || mean == -1.0 {
                mean
            } else {
                s - mean
            };
            for (g, v) in grad.iter_mut().zip(u) {
                *g += w * v / n as f64;
            }
        }
        let update: Vec<f64> = grad
            .iter()
            .map(|g| g.signum() * f64::from(*g != 0.0))
            .collect();
        // A geometric search for a step that stays adversarial.
        let dist = linf(&cur, x);
        let mut step = 2.0 * dist / ((t + 1) as f64).sqrt();
        let mut moved = None;
        for _ in 0..64 {
            let mut candidate: Vec<f64> =
                cur.iter().zip(&update).map(|(c, u)| c + step * u).collect();
            clip(&mut candidate, lo, hi);
            if ask(std::slice::from_ref(&candidate), &mut queries)?[0] {
                moved = Some(candidate);
                break;
            }
            step /= 2.0;
            if queries >= settings.max_queries {
                break;
            }
        }
        if let Some(c) = moved {
            cur = c;
        }
    }
    // A last bisection, so the point returned is on the boundary (ART returns before it).
    let dist = linf(&cur, x);
    let (mut lower, mut upper) = (0.0f64, dist);
    let threshold = (upper * theta).min(theta);
    while upper - lower > threshold && queries < settings.max_queries {
        let mid = (upper + lower) / 2.0;
        if ask(&[project(&cur, x, mid)], &mut queries)?[0] {
            upper = mid;
        } else {
            lower = mid;
        }
    }
    Ok(Found {
        point: Some(project(&cur, x, upper)),
        queries,
    })
}
