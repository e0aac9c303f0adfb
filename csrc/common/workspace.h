// Scratch memory for the operand planes of one call (common/gemm3m.cpp, common/conv.cpp).
#pragma once
#include <array>

#include <ATen/ATen.h>

namespace cplxfast {

// Scratch memory for the planes and products of one call: one block, carved into at most
// kMaxSlices buffers in order, each starting on a kAlign-element boundary (256 bytes for float:
// cuBLAS, cuDNN and MKL pick their fast kernels for aligned operands). On CPU the block is cached
// per thread and reused across calls: freshly allocated multi-MB buffers are page-faulted
// (zero-filled by the OS) on every call, which cost up to ~5% of a large layer and made timings
// swing with the allocator's state. CUDA's caching allocator already reuses memory, so there
// each call allocates.
class Workspace {
 public:
  static constexpr int64_t kAlign = 64, kMaxSlices = 8;

  // numel: the sum of the sizes of the slices to be taken (alignment padding is added here).
  Workspace(const at::TensorOptions& opts, int64_t numel) {
    numel += kAlign * kMaxSlices;
    if (opts.device().is_cpu()) {
      // One block per dtype: a mixed-precision call holds a 16-bit planes workspace and a
      // float32 products workspace at once.
      thread_local std::array<at::Tensor, 4> cache;  // float, double, bfloat16, half
      const at::ScalarType dtype = opts.dtype().toScalarType();
      at::Tensor& block = cache[dtype == at::kDouble ? 1 : dtype == at::kBFloat16 ? 2 : dtype == at::kHalf ? 3 : 0];
      if (!block.defined() || block.numel() < numel) block = at::empty({numel}, opts);
      block_ = block;
    } else {
      block_ = at::empty({numel}, opts);
    }
  }
  // Elements of one of P planes [rows, cols] in a slice, rounded up so that every plane starts
  // aligned too: a slice of P planes takes P * plane_stride(rows, cols) elements.
  static int64_t plane_stride(int64_t rows, int64_t cols) { return (rows * cols + kAlign - 1) / kAlign * kAlign; }

  // P contiguous planes [P, rows, cols] (plane stride plane_stride(rows, cols)) at the front of a
  // slice taken with at least that many elements.
  static at::Tensor planes_in(const at::Tensor& slice, int64_t P, int64_t rows, int64_t cols) {
    return slice.as_strided({P, rows, cols}, {plane_stride(rows, cols), cols, 1}, slice.storage_offset());
  }

  at::Tensor take(int64_t numel) {
    TORCH_INTERNAL_ASSERT(++slices_ <= kMaxSlices, "Workspace: more than kMaxSlices slices");
    used_ = (used_ + kAlign - 1) / kAlign * kAlign;
    at::Tensor t = block_.narrow(0, used_, numel);
    used_ += numel;
    return t;
  }

 private:
  at::Tensor block_;
  int64_t used_ = 0, slices_ = 0;
};

}  // namespace cplxfast
