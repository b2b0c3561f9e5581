//! Shapes of the windowed operators (Conv, pooling), shared by the float and integer paths.

use crate::error::{EngineError, Result};

/// A 2-D sliding window over an NCHW tensor (batch handled by the caller).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    pub pad_bottom: usize,
    pub pad_right: usize,
}

impl Window {
    pub fn out_h(&self) -> usize {
        (self.height + self.pad_top + self.pad_bottom - self.kernel_h) / self.stride_h + 1
    }
    pub fn out_w(&self) -> usize {
        (self.width + self.pad_left + self.pad_right - self.kernel_w) / self.stride_w + 1
    }

    pub fn validate(&self, op: &str) -> Result<()> {
        let ok = self.kernel_h > 0
            && self.kernel_w > 0
            && self.stride_h > 0
            && self.stride_w > 0
            && self
                .height
                .saturating_add(self.pad_top)
                .saturating_add(self.pad_bottom)
                >= self.kernel_h
            && self
                .width
                .saturating_add(self.pad_left)
                .saturating_add(self.pad_right)
                >= self.kernel_w
            && self.kernel_h <= 1 << 20
            && self.kernel_w <= 1 << 20
            && self.pad_top < self.kernel_h
            && self.pad_bottom < self.kernel_h
            && self.pad_left < self.kernel_w
            && self.pad_right < self.kernel_w;
        if ok {
            Ok(())
        } else {
            Err(EngineError::InvalidModel(format!(
                "{op}: window {self:?} does not fit its input"
            )))
        }
    }

    /// The input positions a window at output (oy, ox) covers: (row range, col range), clipped
    /// to the unpadded input.
    pub fn span(&self, oy: usize, ox: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let y0 = (oy * self.stride_h) as isize - self.pad_top as isize;
        let x0 = (ox * self.stride_w) as isize - self.pad_left as isize;
        let y1 = (y0 + self.kernel_h as isize).min(self.height as isize);
        let x1 = (x0 + self.kernel_w as isize).min(self.width as isize);
        (
            y0.max(0) as usize..y1 as usize,
            x0.max(0) as usize..x1 as usize,
        )
    }
}
