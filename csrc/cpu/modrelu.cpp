// modReLU on CPU: one pass over z forward; one pass over (z, g) backward that also reduces the
// threshold gradient (per-thread partial sums, no input-sized temporary).
//
// Elements are walked in z's memory order in runs that share a threshold (a segment of
// constant tau), or, when the threshold varies fastest (channels_last per-channel: inner == 1),
// in one walk over rows of T elements with one threshold each (RowThresholds). The maths runs on
// chunks of elements split into real and imaginary parts in registers (cpu/vectorize.h's
// ComplexChunk), branch-free, in 64-byte vectors on CPUs with AVX-512 and 32-byte ones on the
// others (the kernels: cpu/modrelu_kernels.h).
#include <algorithm>
#include <limits>
#include <type_traits>
#include <vector>

#include <immintrin.h>

#include <ATen/ATen.h>
#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "common/checks.h"
#include "common/layout.h"
#include "common/modrelu.h"
#include "cpu/runs.h"
#include "cpu/vectorize.h"

namespace cplxfast::cpu {
namespace {

constexpr int64_t kGrain = 16384;  // complex elements per task

// The kernels, twice (cpu/modrelu_kernels.h says why): for the baseline and AVX2, and for AVX-512.
namespace narrow {
#include "cpu/modrelu_kernels.h"
}  // namespace narrow
CPLXFAST_BEGIN_AVX512
namespace wide {
#include "cpu/modrelu_kernels.h"
}  // namespace wide
CPLXFAST_END_AVX512

// Rows of a per-element-threshold backward summed in T (one in-order sum per dt_ext slot, at most
// two slots per channel) before the sums go to double: 64 keeps a float sum's error near the
// constant-threshold runs'.
constexpr int64_t kFlushRows = 64;

// The entry points, one body per vector width (cpu/vectorize.h's CPLXFAST_WIDTH_VERSIONS: `kernels`
// is `wide` or `narrow`), for float and double; eps == 0 picks the polar form's loops. *_rows: n
// elements from element `first` of z's memory order on, with thresholds tau_ext and gradients into
// dt_ext (RowThresholds).
#define CPLXFAST_RUNS(T)                                                                                            \
  CPLXFAST_WIDTH_VERSIONS(void, forward_const, (const T* in, T* out, int64_t n, const T* tau, T eps),               \
                          (in, out, n, tau, eps), {                                                                 \
                            const kernels::RunThreshold<T, kBytes> t(tau);                                          \
                            if (eps == T(0)) return kernels::forward_run<T, kBytes, true>(in, out, n, t, eps);      \
                            kernels::forward_run<T, kBytes, false>(in, out, n, t, eps);                             \
                          })                                                                                        \
  CPLXFAST_WIDTH_VERSIONS(void, forward_rows,                                                                       \
                          (const T* in, T* out, int64_t n, int64_t first, int64_t C, const T* tau_ext, T eps),      \
                          (in, out, n, first, C, tau_ext, eps), {                                                   \
                            const kernels::RowThresholds<T, kBytes> t(tau_ext, nullptr, C, first);                  \
                            if (eps == T(0)) return kernels::forward_run<T, kBytes, true>(in, out, n, t, eps);      \
                            kernels::forward_run<T, kBytes, false>(in, out, n, t, eps);                             \
                          })                                                                                        \
  CPLXFAST_WIDTH_VERSIONS(double, backward_const, (const T* in, const T* g, T* gz, int64_t n, const T* tau, T eps), \
                          (in, g, gz, n, tau, eps), {                                                               \
                            kernels::RunThreshold<T, kBytes> t(tau);                                                \
                            if (eps == T(0)) {                                                                      \
                              kernels::backward_run<T, kBytes, true>(in, g, gz, n, t, eps);                         \
                            } else {                                                                                \
                              kernels::backward_run<T, kBytes, false>(in, g, gz, n, t, eps);                        \
                            }                                                                                       \
                            return t.grad_sum();                                                                    \
                          })                                                                                        \
  CPLXFAST_WIDTH_VERSIONS(                                                                                          \
      void, backward_rows,                                                                                          \
      (const T* in, const T* g, T* gz, int64_t n, int64_t first, int64_t C, const T* tau_ext, T* dt_ext, T eps),    \
      (in, g, gz, n, first, C, tau_ext, dt_ext, eps), {                                                             \
        kernels::RowThresholds<T, kBytes> t(tau_ext, dt_ext, C, first);                                             \
        if (eps == T(0)) return kernels::backward_run<T, kBytes, true>(in, g, gz, n, t, eps);                       \
        kernels::backward_run<T, kBytes, false>(in, g, gz, n, t, eps);                                              \
      })
CPLXFAST_RUNS(float)
CPLXFAST_RUNS(double)
#undef CPLXFAST_RUNS

at::Tensor modrelu(const at::Tensor& z, const at::Tensor& threshold, double eps) {
  const ModReLULayout L = plan_modrelu("cplxfast.modrelu", z, threshold, eps);
  at::Tensor out = empty_with_layout_of(L.z);
  if (L.numel == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(L.tau_block.scalar_type(), "cplxfast_modrelu_cpu", [&] {
    using T = scalar_t;
    const T* in = static_cast<const T*>(L.z.data_ptr());
    T* o = static_cast<T*>(out.data_ptr());
    const T* tau = L.tau_block.data_ptr<T>();
    const RowArray<T> tau_ext = L.inner == 1 ? extended_row(tau, L.T) : RowArray<T>();
    at::parallel_for(0, L.numel, kGrain, [&](int64_t begin, int64_t end) {
      if (L.inner == 1) {
        return forward_rows(in + 2 * begin, o + 2 * begin, end - begin, begin, L.T, tau_ext.data(), T(eps));
      }
      for_each_constant_run(begin, end, L.inner, L.T, [&](int64_t b, int64_t e, int64_t t) {
        forward_const(in + 2 * b, o + 2 * b, e - b, tau + t, T(eps));
      });
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> modrelu_backward(const at::Tensor& grad, const at::Tensor& z,
                                                    const at::Tensor& threshold, std::array<bool, 2> mask, double eps) {
  const char* op = "cplxfast.modrelu_backward";
  const ModReLULayout L = plan_modrelu(op, z, threshold, eps);
  check_grad_like_input(op, grad, z);
  const at::Tensor g = with_layout_of(grad, L.z);
  // The run kernels always write grad_z (a branch in the loop would stop it vectorising); when
  // only the threshold's gradient is wanted, it goes to a scratch tensor that is dropped.
  at::Tensor grad_z = empty_with_layout_of(L.z);
  at::Tensor grad_tau;
  if (L.numel == 0) {
    if (mask[1]) grad_tau = at::zeros_like(threshold, at::MemoryFormat::Contiguous);
    return {mask[0] ? grad_z : at::Tensor(), grad_tau};
  }
  AT_DISPATCH_FLOATING_TYPES(L.tau_block.scalar_type(), "cplxfast_modrelu_backward_cpu", [&] {
    using T = scalar_t;
    const T* in = static_cast<const T*>(L.z.data_ptr());
    const T* gp = static_cast<const T*>(g.data_ptr());
    T* gz = static_cast<T*>(grad_z.data_ptr());
    const T* tau = L.tau_block.data_ptr<T>();
    // The threshold gradient's sums: in T within a run's blocks of kSumBlock elements or, for rows of one
    // element per threshold (inner == 1), across spans of kFlushRows rows; in double across them,
    // in each task's own vector (no cache line written by two threads), then per thread, then
    // across threads.
    const RowArray<T> tau_ext = L.inner == 1 ? extended_row(tau, L.T) : RowArray<T>();
    const int threads = at::get_num_threads();
    std::vector<double> partial(static_cast<size_t>(threads) * L.T, 0.0);
    at::parallel_for(0, L.numel, kGrain, [&](int64_t begin, int64_t end) {
      std::vector<double> sums(L.T, 0.0);
      if (L.inner == 1) {
        RowArray<T> dt_ext(tau_ext.size());
        for (int64_t b = begin; b < end; b += kFlushRows * L.T) {
          std::fill(dt_ext.begin(), dt_ext.end(), T(0));
          const int64_t e = std::min(end, b + kFlushRows * L.T);
          backward_rows(in + 2 * b, gp + 2 * b, gz + 2 * b, e - b, b, L.T, tau_ext.data(), dt_ext.data(), T(eps));
          for (size_t k = 0; k < dt_ext.size(); ++k) sums[k % L.T] += dt_ext[k];
        }
      } else {
        for_each_constant_run(begin, end, L.inner, L.T, [&](int64_t b, int64_t e, int64_t t) {
          sums[t] += backward_const(in + 2 * b, gp + 2 * b, gz + 2 * b, e - b, tau + t, T(eps));
        });
      }
      double* out = partial.data() + static_cast<size_t>(at::get_thread_num()) * L.T;
      for (int64_t t = 0; t < L.T; ++t) out[t] += sums[t];
    });
    if (mask[1]) {
      at::Tensor block = at::zeros({L.T}, L.tau_block.options().dtype(at::kDouble));
      double* bp = block.data_ptr<double>();
      for (int th = 0; th < threads; ++th) {
        for (int64_t t = 0; t < L.T; ++t) bp[t] += partial[static_cast<size_t>(th) * L.T + t];
      }
      grad_tau = grad_threshold_from_block(L, block, threshold);
    }
  });
  return {mask[0] ? grad_z : at::Tensor(), grad_tau};
}

}  // namespace

TORCH_LIBRARY_IMPL(cplxfast, CPU, m) {
  m.impl("modrelu", &modrelu);
  m.impl("modrelu_backward", &modrelu_backward);
}

}  // namespace cplxfast::cpu
