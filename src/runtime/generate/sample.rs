//! Sampling: the next token is drawn from the softmax of the processed scores after
//! Transformers' warpers, in its order — temperature, then top-k, then top-p.
//!
//! The random generator is Xoshiro256++ seeded from [`SampleConfig::seed`], and each row
//! draws one uniform number per step, so the same seed, model, prompt and settings always
//! give the same tokens. (They are not the tokens PyTorch would draw: its generator differs.)

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::SampleConfig;

/// Draws tokens from warped scores with a seeded generator.
#[derive(Debug, Clone)]
pub struct Sampler {
    config: SampleConfig,
    rng: Xoshiro256PlusPlus,
}

impl Sampler {
    /// A sampler whose generator starts from `config.seed`.
    pub fn new(config: &SampleConfig) -> Sampler {
        Sampler {
            config: config.clone(),
            rng: Xoshiro256PlusPlus::seed_from_u64(config.seed),
        }
    }

    /// Warps `scores` in place (see [`warp`]) and draws a token from their softmax.
    pub fn choose(&mut self, scores: &mut [f32]) -> i64 {
        warp(&self.config, scores);
        let probabilities = softmax(scores);
        let u: f64 = self.rng.random();
        draw(&probabilities, u) as i64
    }
}

/// Applies temperature, top-k and top-p to `scores`; removed tokens get -∞.
pub fn warp(config: &SampleConfig, scores: &mut [f32]) {
    if config.temperature != 1.0 {
        for s in scores.iter_mut() {
            *s /= config.temperature;
        }
    }
    if let Some(k) = config.top_k {
        top_k(scores, k);
    }
    if let Some(p) = config.top_p.filter(|&p| p < 1.0) {
        top_p(scores, p);
    }
}

/// Keeps the `k` largest scores and every score equal to the k-th.
fn top_k(scores: &mut [f32], k: usize) {
    let k = k.clamp(1, scores.len().max(1));
    if k >= scores.len() {
        return;
    }
    let mut sorted = scores.to_vec();
    sorted.sort_unstable_by(|a, b| b.total_cmp(a));
    let threshold = sorted[k - 1];
    for s in scores.iter_mut() {
        if *s < threshold {
            *s = f32::NEG_INFINITY;
        }
    }
}

/// Keeps the most likely tokens until their probability reaches `p`: in ascending order of
/// score, a token is removed while the cumulative probability up to and including it is at
/// most `1 - p`. The most likely token always stays.
fn top_p(scores: &mut [f32], p: f32) {
    let probabilities = softmax(scores);
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut cumulative = 0.0f32;
    let limit = 1.0 - p;
    for (rank, &i) in order.iter().enumerate() {
        cumulative += probabilities[i];
        if cumulative > limit || rank + 1 == order.len() {
            break;
        }
        scores[i] = f32::NEG_INFINITY;
    }
}

/// The softmax of `scores`, computed in f64 and returned as f32; all -∞ gives all zeros.
pub fn softmax(scores: &[f32]) -> Vec<f32> {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY || max.is_nan() {
        return vec![0.0; scores.len()];
    }
    let exps: Vec<f64> = scores.iter().map(|&s| f64::from(s - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|&e| (e / sum) as f32).collect()
}

/// The index whose cumulative probability first exceeds `u` (in [0, 1)); the last index with
/// non-zero probability when rounding leaves `u` above the total.
fn draw(probabilities: &[f32], u: f64) -> usize {
    let total: f64 = probabilities.iter().map(|&p| f64::from(p)).sum();
    let target = u * total;
    let mut cumulative = 0.0;
    let mut last_possible = 0;
    for (i, &p) in probabilities.iter().enumerate() {
        if p <= 0.0 {
            continue;
        }
        cumulative += f64::from(p);
        last_possible = i;
        if cumulative > target {
            return i;
        }
    }
    last_possible
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_keeps_ties_with_the_kth() {
        let mut scores = [1.0, 3.0, 2.0, 2.0, 0.5];
        top_k(&mut scores, 2);
        let inf = f32::NEG_INFINITY;
        assert_eq!(scores, [inf, 3.0, 2.0, 2.0, inf]);
    }

    #[test]
    fn top_p_keeps_the_smallest_set_reaching_p() {
        // Probabilities 0.5, 0.3, 0.15, 0.05.
        let logs = [0.5f32, 0.3, 0.15, 0.05].map(f32::ln);
        let mut scores = logs;
        top_p(&mut scores, 0.75);
        let inf = f32::NEG_INFINITY;
        assert_eq!(scores, [logs[0], logs[1], inf, inf]);
        let mut scores = logs;
        top_p(&mut scores, 0.9);
        assert_eq!(scores, [logs[0], logs[1], logs[2], inf]);
        // A tiny p keeps the most likely token alone.
        let mut scores = logs;
        top_p(&mut scores, 1e-6);
        assert_eq!(scores, [logs[0], inf, inf, inf]);
    }

    #[test]
    fn draw_walks_the_cumulative_distribution() {
        let p = [0.0, 0.25, 0.0, 0.75];
        assert_eq!(draw(&p, 0.0), 1);
        assert_eq!(draw(&p, 0.2499), 1);
        assert_eq!(draw(&p, 0.25), 3);
        assert_eq!(draw(&p, 0.999_999_9), 3);
    }

    #[test]
    fn softmax_of_all_minus_infinity_is_zero() {
        assert_eq!(softmax(&[f32::NEG_INFINITY; 3]), [0.0; 3]);
        let p = softmax(&[0.0, f32::NEG_INFINITY]);
        assert_eq!(p, [1.0, 0.0]);
    }
}
