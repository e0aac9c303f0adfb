// Host-side planning of the modReLU kernels (see modrelu.h), shared by CPU and CUDA.
#include "common/modrelu.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <ATen/ATen.h>
#include <ATen/ExpandUtils.h>

#include "common/checks.h"

namespace cplxfast {

ModReLULayout plan_modrelu(const char* op, const at::Tensor& z_in, const at::Tensor& threshold, double eps) {
  check_complex(op, "input", z_in);
  TORCH_CHECK(std::isfinite(eps) && eps >= 0, op, ": eps (the modulus floor) must be finite and >= 0, got ", eps);
  check_real_part(op, "threshold", threshold, z_in);
  const int64_t n = z_in.dim();
  TORCH_CHECK(
      threshold.dim() <= std::max<int64_t>(n, 1), op, ": threshold of shape ", threshold.sizes(),
      " has more dims than the input ", z_in.sizes(), "; it broadcasts against the input's trailing dims");
  for (int64_t i = 0; i < threshold.dim() && n > 0; ++i) {
    const int64_t zd = n - threshold.dim() + i;
    TORCH_CHECK(
        threshold.size(i) == 1 || threshold.size(i) == z_in.size(zd), op, ": threshold of shape ",
        threshold.sizes(), " does not broadcast against the input of shape ", z_in.sizes(),
        " (threshold dims align with the input's trailing dims; e.g. [C, 1, 1] for per-channel "
        "thresholds on [B, C, H, W])");
  }
  TORCH_CHECK(n > 0 || threshold.numel() == 1, op, ": a 0-d input takes a single threshold");

  ModReLULayout L;
  const at::Tensor z = z_in.resolve_conj().resolve_neg();  // kernels read raw values
  // Dense inputs keep their layout (channels_last stays channels_last); others are laid out as
  // torch.empty_like would lay them out, which the fake kernel mirrors.
  L.z = z.is_non_overlapping_and_dense() ? z : z.contiguous(z.suggest_memory_format());
  L.numel = L.z.numel();
  if (L.numel == 0) {  // nothing to compute; grad_threshold_from_block returns zeros
    L.T = 0;
    L.tau_block = threshold.new_empty({0});
    return L;
  }
  // Memory order: dims by decreasing stride (stable, so size-1 dims keep their place).
  L.perm.resize(n);
  std::iota(L.perm.begin(), L.perm.end(), 0);
  std::stable_sort(L.perm.begin(), L.perm.end(), [&](int64_t a, int64_t b) { return L.z.stride(a) > L.z.stride(b); });

  const at::Tensor tau_full = threshold.expand(L.z.sizes());  // a view, strides 0 where broadcast
  int64_t first = -1, last = -1;
  for (int64_t k = 0; k < n; ++k) {
    const int64_t d = L.perm[k];
    if (tau_full.size(d) > 1 && tau_full.stride(d) != 0) {
      if (first < 0) first = k;
      last = k;
    }
  }
  if (first < 0) {  // one threshold for every element
    L.block_begin = L.block_end = 0;
    L.T = 1;
    L.inner = std::max<int64_t>(L.numel, 1);
    L.tau_block = threshold.reshape({1}).contiguous();
    return L;
  }
  L.block_begin = first;
  L.block_end = last + 1;
  at::Tensor tau_perm = tau_full.permute(L.perm);
  for (int64_t k = n - 1; k >= 0; --k) {  // drop the dims outside the block (tau is constant there)
    if (k < L.block_begin || k >= L.block_end) tau_perm = tau_perm.select(k, 0);
  }
  L.tau_block = tau_perm.contiguous().view({-1});
  L.T = L.tau_block.numel();
  L.inner = 1;
  for (int64_t k = L.block_end; k < n; ++k) L.inner *= L.z.size(L.perm[k]);
  return L;
}

at::Tensor grad_threshold_from_block(const ModReLULayout& L, const at::Tensor& block_sums, const at::Tensor& threshold) {
  if (L.numel == 0) return at::zeros_like(threshold, at::MemoryFormat::Contiguous);
  const int64_t n = L.z.dim();
  // Shape in memory order: 1 outside the block, the block's sizes inside; then back to z's dim
  // order, and summed over the dims where threshold is broadcast.
  std::vector<int64_t> shape_perm(n, 1);
  for (int64_t k = L.block_begin; k < L.block_end; ++k) shape_perm[k] = L.z.size(L.perm[k]);
  std::vector<int64_t> inverse(n);
  for (int64_t k = 0; k < n; ++k) inverse[L.perm[k]] = k;
  at::Tensor g = block_sums.to(threshold.scalar_type());
  if (n == 0) return g.view(threshold.sizes());
  g = g.view(shape_perm).permute(inverse);
  return at::sum_to(g, threshold.sizes()).contiguous().view(threshold.sizes());
}

}  // namespace cplxfast
