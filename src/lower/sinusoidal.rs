//! The fixed sine/cosine position table of "Attention Is All You Need".
//!
//! The table is computed here in f64 (as NumPy does in Hugging Face) and
//! stored as a constant `[max_position_embeddings, hidden]`, gathered at the
//! position ids like a learned table.

use crate::model::SinusoidalLayout;

/// The angle `pos / 10000^(2i/width)` of frequency `i`.
fn angle(pos: u64, i: u64, width: u64) -> f64 {
    pos as f64 / 10000f64.powf(2.0 * i as f64 / width as f64)
}

/// The table's values, row-major `[rows, width]`.
///
/// Interleaved: column `2i` holds `sin`, column `2i + 1` holds `cos` of
/// frequency `i`. Halves (Marian): the first ⌈width/2⌉ columns hold the sines
/// of frequencies `0, 1, …`, the remaining columns the cosines.
pub fn table(rows: u64, width: u64, layout: SinusoidalLayout) -> Vec<f32> {
    let sines = width.div_ceil(2);
    let mut values = Vec::with_capacity((rows * width) as usize);
    for pos in 0..rows {
        for col in 0..width {
            let v = match layout {
                SinusoidalLayout::Interleaved if col % 2 == 0 => angle(pos, col / 2, width).sin(),
                SinusoidalLayout::Interleaved => angle(pos, col / 2, width).cos(),
                SinusoidalLayout::Halves if col < sines => angle(pos, col, width).sin(),
                SinusoidalLayout::Halves => angle(pos, col - sines, width).cos(),
            };
            values.push(v as f32);
        }
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_place_sines_and_cosines() {
        let inter = table(3, 4, SinusoidalLayout::Interleaved);
        let halves = table(3, 4, SinusoidalLayout::Halves);
        // Position 0: sin 0 = 0, cos 0 = 1.
        assert_eq!(&inter[0..4], &[0.0, 1.0, 0.0, 1.0]);
        assert_eq!(&halves[0..4], &[0.0, 0.0, 1.0, 1.0]);
        // Position 1, frequency 1 is 1/10000^(2/4) = 0.01.
        assert!((inter[4 + 2] - 0.01f64.sin() as f32).abs() < 1e-7);
        assert!((halves[4 + 1] - 0.01f64.sin() as f32).abs() < 1e-7);
        assert!((halves[4 + 2] - 1f64.cos() as f32).abs() < 1e-7);
    }
}
