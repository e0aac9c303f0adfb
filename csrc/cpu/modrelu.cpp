// modReLU on CPU: one pass over z forward; one pass over (z, g) backward that also reduces the
// threshold gradient (per-thread partial sums, no input-sized temporary).
//
// Elements are walked in z's memory order in runs that share a threshold (a segment of
// constant tau), or, when the threshold varies fastest (channels_last per-channel: inner == 1),
// in rows of T elements with one threshold each. The run kernels are branch-free loops that
// GCC vectorises (cpu/vectorize.h).
#include <algorithm>
#include <vector>

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

// out for n elements on planes (modrelu_math::forward); tau[j * kTauStep] is element j's
// threshold. Branch-free (blends, no early exits) so that it vectorises.
template <typename T, int kTauStep>
__attribute__((always_inline)) inline void forward_elements(const T* __restrict__ zr, const T* __restrict__ zi,
                                                            int64_t n, const T* __restrict__ tau, T eps,
                                                            T* __restrict__ or_, T* __restrict__ oi_) {
  const bool polar = eps == T(0);
  for (int64_t j = 0; j < n; ++j) {
    const T re = zr[j], im = zi[j], th = tau[j * kTauStep];
    const T r = std::sqrt(re * re + im * im);
    const T m = r > eps ? r : eps;
    const T s = T(1) - th / m;
    T f = s > T(0) ? s : T(0);
    f = s == s ? f : s;  // NaN threshold
    f = r == r ? f : r;  // NaN input: both parts NaN, as torch computes it
    const bool origin = polar && r == T(0);  // eps = 0 at z = 0: relu(-tau) + 0i
    T o = -th;
    o = o > T(0) ? o : (o == o ? T(0) : o);
    or_[j] = origin ? o : re * f;
    oi_[j] = origin ? T(0) : im * f;
  }
}

// grad_z for n elements on planes (modrelu_math::grads) and the threshold gradient: with one
// threshold (kTauStep 0) each element's in dt[j], summed by the caller (a float sum inside this
// loop is a chain of in-order scalar adds, GCC does not reassociate it, which measured slower than
// the whole rest of the loop); with a threshold per element (kTauStep 1: a channels_last row,
// one element per channel) added to dt[j], its channel's running sum.
template <typename T, int kTauStep>
__attribute__((always_inline)) inline void backward_elements(const T* __restrict__ zr, const T* __restrict__ zi,
                                                             const T* __restrict__ gr_, const T* __restrict__ gi_,
                                                             int64_t n, const T* __restrict__ tau, T eps,
                                                             T* __restrict__ dre_out, T* __restrict__ dim_out,
                                                             T* __restrict__ dt_out) {
  const bool polar = eps == T(0);
  for (int64_t j = 0; j < n; ++j) {
    const T re = zr[j], im = zi[j], gr = gr_[j], gi = gi_[j];
    const T th = tau[j * kTauStep];
    const T r = std::sqrt(re * re + im * im);
    const bool large = r > eps;
    const bool origin = polar && r == T(0);
    // 1 / max(|z|, eps) (origin: any finite value, blended out). Written this way, not as one
    // nested select on `large`, GCC 12 vectorises the loop (the nested form it did not).
    const T m = r > eps ? r : eps;
    const T inv_m = T(1) / (origin ? T(1) : m);
    const T s = T(1) - th * inv_m;
    const bool on = s > T(0);
    // grad_z = a g + b (Im u, -Re u), u = z / |z|: |z| > eps: a = 1, b = (tau / |z|) Im(g conj(u));
    // |z| <= eps: a = s, b = 0 (modrelu_math::grads). In u, not z / |z|^3, so that it stays in
    // range for tiny and huge |z| (eps = 0).
    const T ur = re * inv_m, ui = im * inv_m;
    const T a = large ? T(1) : s;
    const T b = large ? (th * inv_m) * (gi * ur - gr * ui) : T(0);
    T dre = a * gr + b * ui;
    T dim = a * gi - b * ur;
    T dt = -(gr * re + gi * im) * inv_m;  // -Re(g conj(z)) / max(|z|, eps)
    dre = on && !origin ? dre : T(0);
    dim = on && !origin ? dim : T(0);
    dt = on && !origin ? dt : T(0);
    dt = origin && th < T(0) ? -gr : dt;  // eps = 0 at z = 0: out = relu(-tau)
    const T nan = (r - r) + (s - s) + (gr - gr) + (gi - gi);  // 0, or NaN if anything is NaN
    dre_out[j] = dre + nan;
    dim_out[j] = dim + nan;
    if constexpr (kTauStep == 0) {
      dt_out[j] = dt + nan;
    } else {
      dt_out[j] += dt + nan;
    }
  }
}

// forward_elements and backward_elements on interleaved tensors through planes of kPlaneBlock
// elements (in L1): read side by side, GCC vectorises re and im of one element as a pair (each
// vector holds half as many elements), so every square root and division is done twice over.
// Measured on contiguous tensors: the backward 15-20% faster than an interleaved loop
// (bench/RESULTS.md, 2026-12-02), the forward 1.4x faster (0.43 -> 0.30 ns per element, 2
// threads, 32x64x32x32: from compute-bound to copy speed, 2026-12-03); channels_last rows (C
// elements, a threshold each) measured level with one, and take these loops too. Each block asks
// for the lines 4 KB ahead of it (prefetch_ahead).
constexpr int64_t kPlaneBlock = 64;

template <typename T, int kTauStep>
__attribute__((always_inline)) inline void forward_through_planes(const T* __restrict__ in, T* __restrict__ out,
                                                                  int64_t n, const T* __restrict__ tau, T eps) {
  alignas(64) T zr[kPlaneBlock], zi[kPlaneBlock], or_[kPlaneBlock], oi[kPlaneBlock];
  for (int64_t b = 0; b < n; b += kPlaneBlock) {
    const int64_t m = std::min(kPlaneBlock, n - b);
    prefetch_ahead<false>(in + 2 * b, 2 * m * sizeof(T));
    prefetch_ahead<true>(out + 2 * b, 2 * m * sizeof(T));
    deinterleave(in + 2 * b, m, zr, zi);
    forward_elements<T, kTauStep>(zr, zi, m, tau + kTauStep * b, eps, or_, oi);
    interleave(or_, oi, m, out + 2 * b);
  }
}

template <typename T, int kTauStep>
__attribute__((always_inline)) inline void backward_through_planes(const T* __restrict__ in, const T* __restrict__ g,
                                                                   T* __restrict__ gz, int64_t n,
                                                                   const T* __restrict__ tau, T* __restrict__ dt_out,
                                                                   T eps) {
  alignas(64) T zr[kPlaneBlock], zi[kPlaneBlock], gr[kPlaneBlock], gi[kPlaneBlock], dre[kPlaneBlock],
      dim[kPlaneBlock];
  for (int64_t b = 0; b < n; b += kPlaneBlock) {
    const int64_t m = std::min(kPlaneBlock, n - b);
    prefetch_ahead<false>(in + 2 * b, 2 * m * sizeof(T));
    prefetch_ahead<false>(g + 2 * b, 2 * m * sizeof(T));
    prefetch_ahead<true>(gz + 2 * b, 2 * m * sizeof(T));
    deinterleave(in + 2 * b, m, zr, zi);
    deinterleave(g + 2 * b, m, gr, gi);
    backward_elements<T, kTauStep>(zr, zi, gr, gi, m, tau + kTauStep * b, eps, dre, dim, dt_out + b);
    interleave(dre, dim, m, gz + 2 * b);
  }
}

// Elements per block of the constant-threshold backward: its dt buffer stays in L1.
constexpr int64_t kBackwardBlock = 1024;
// Rows of a per-element-threshold backward summed in T (one in-order sum per channel) before the
// sums go to double: 64 keeps a float sum's error near the 32-lane sums of the contiguous path.
constexpr int64_t kFlushRows = 64;

// The entry points the clones are made of (target_clones needs plain functions).
#define CPLXFAST_RUNS(T, SUFFIX)                                                                          \
  CPLXFAST_VECTOR_CLONES void forward_const_##SUFFIX(const T* in, T* out, int64_t n, const T* tau, T eps) { \
    forward_through_planes<T, 0>(in, out, n, tau, eps);                                                     \
  }                                                                                                      \
  CPLXFAST_VECTOR_CLONES void forward_rows_##SUFFIX(const T* in, T* out, int64_t begin, int64_t end, int64_t C,  \
                                                    const T* tau, T eps) {                               \
    for_each_row_piece(begin, end, C, [&](int64_t b, int64_t e, int64_t c) {                             \
      forward_through_planes<T, 1>(in + 2 * b, out + 2 * b, e - b, tau + c, eps);                           \
    });                                                                                                  \
  }                                                                                                      \
  CPLXFAST_VECTOR_CLONES double backward_const_##SUFFIX(const T* in, const T* g, T* gz, int64_t n, const T* tau, \
                                                        T eps) {                                         \
    T dt[kBackwardBlock];                                                                                \
    double sum = 0;                                                                                      \
    for (int64_t b = 0; b < n; b += kBackwardBlock) {                                                    \
      const int64_t m = std::min(kBackwardBlock, n - b);                                                 \
      backward_through_planes<T, 0>(in + 2 * b, g + 2 * b, gz + 2 * b, m, tau, dt, eps);                      \
      sum += lane_sum(dt, m);                                                                            \
    }                                                                                                    \
    return sum;                                                                                          \
  }                                                                                                      \
  CPLXFAST_VECTOR_CLONES void backward_rows_##SUFFIX(const T* in, const T* g, T* gz, int64_t begin, int64_t end, \
                                                     int64_t C, const T* tau, T* dtau_sums, T eps) {     \
    for_each_row_piece(begin, end, C, [&](int64_t b, int64_t e, int64_t c) {                             \
      backward_through_planes<T, 1>(in + 2 * b, g + 2 * b, gz + 2 * b, e - b, tau + c, dtau_sums + c, eps); \
    });                                                                                                  \
  }
CPLXFAST_RUNS(float, f32)
CPLXFAST_RUNS(double, f64)
#undef CPLXFAST_RUNS

template <typename T>
struct RunsOf;
template <>
struct RunsOf<float> {
  static constexpr auto forward_const = &forward_const_f32;
  static constexpr auto forward_rows = &forward_rows_f32;
  static constexpr auto backward_const = &backward_const_f32;
  static constexpr auto backward_rows = &backward_rows_f32;
};
template <>
struct RunsOf<double> {
  static constexpr auto forward_const = &forward_const_f64;
  static constexpr auto forward_rows = &forward_rows_f64;
  static constexpr auto backward_const = &backward_const_f64;
  static constexpr auto backward_rows = &backward_rows_f64;
};

at::Tensor modrelu(const at::Tensor& z, const at::Tensor& threshold, double eps) {
  const ModReLULayout L = plan_modrelu("cplxfast.modrelu", z, threshold, eps);
  at::Tensor out = empty_with_layout_of(L.z);
  if (L.numel == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(L.tau_block.scalar_type(), "cplxfast_modrelu_cpu", [&] {
    using T = scalar_t;
    const T* in = static_cast<const T*>(L.z.data_ptr());
    T* o = static_cast<T*>(out.data_ptr());
    const T* tau = L.tau_block.data_ptr<T>();
    at::parallel_for(0, L.numel, kGrain, [&](int64_t begin, int64_t end) {
      if (L.inner == 1) return RunsOf<T>::forward_rows(in, o, begin, end, L.T, tau, T(eps));
      for_each_constant_run(begin, end, L.inner, L.T, [&](int64_t b, int64_t e, int64_t t) {
        RunsOf<T>::forward_const(in + 2 * b, o + 2 * b, e - b, tau + t, T(eps));
      });
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> modrelu_backward(const at::Tensor& grad, const at::Tensor& z,
                                                    const at::Tensor& threshold, std::array<bool, 2> mask,
                                                    double eps) {
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
    // The threshold gradient's sums: in T within a run's blocks (lane_sum) or, for rows of one
    // element per threshold (inner == 1), across spans of kFlushRows rows; in double across them,
    // in each task's own vector (no cache line written by two threads), then per thread, then
    // across threads.
    const int threads = at::get_num_threads();
    std::vector<double> partial(static_cast<size_t>(threads) * L.T, 0.0);
    at::parallel_for(0, L.numel, kGrain, [&](int64_t begin, int64_t end) {
      std::vector<double> sums(L.T, 0.0);
      if (L.inner == 1) {
        std::vector<T> span_sums(L.T);
        for (int64_t b = begin; b < end; b += kFlushRows * L.T) {
          std::fill(span_sums.begin(), span_sums.end(), T(0));
          RunsOf<T>::backward_rows(in, gp, gz, b, std::min(end, b + kFlushRows * L.T), L.T, tau, span_sums.data(),
                                   T(eps));
          for (int64_t t = 0; t < L.T; ++t) sums[t] += span_sums[t];
        }
      } else {
        for_each_constant_run(begin, end, L.inner, L.T, [&](int64_t b, int64_t e, int64_t t) {
          sums[t] += RunsOf<T>::backward_const(in + 2 * b, gp + 2 * b, gz + 2 * b, e - b, tau + t, T(eps));
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
