// Scratch memory for the operand planes of one call (common/gemm3m.cpp, common/conv.cpp).
#pragma once
#include <array>

#include <ATen/ATen.h>

namespace cplxfast {

// Scratch memory for the planes and products of one call: one block, carved into buffers in
// order. On CPU the block is cached per thread and reused across calls: freshly allocated
// multi-MB buffers are page-faulted (zero-filled by the OS) on every call, which cost up to
// ~5% of a large layer and made timings swing with the allocator's state. CUDA's caching
// allocator already reuses memory, so there each call allocates.
class Workspace {
 public:
  Workspace(const at::TensorOptions& opts, int64_t numel) {
    if (opts.device().is_cpu()) {
      thread_local std::array<at::Tensor, 2> cache;  // float, double
      at::Tensor& block = cache[opts.dtype() == at::kDouble ? 1 : 0];
      if (!block.defined() || block.numel() < numel) block = at::empty({numel}, opts);
      block_ = block;
    } else {
      block_ = at::empty({numel}, opts);
    }
  }
  at::Tensor take(int64_t numel) {
    at::Tensor t = block_.narrow(0, used_, numel);
    used_ += numel;
    return t;
  }

 private:
  at::Tensor block_;
  int64_t used_ = 0;
};

}  // namespace cplxfast
