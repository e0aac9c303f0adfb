// modReLU on CPU: one pass over z forward; one pass over (z, g) backward that also reduces the
// threshold gradient (per-thread partial sums, no input-sized temporary).
//
// Elements are walked in z's memory order in runs that share a threshold (a segment of
// constant tau), or, when the threshold varies fastest (channels_last per-channel: inner == 1),
// in one walk over rows of T elements with one threshold each (RowThresholds). The maths runs on
// chunks of elements split into real and imaginary parts in registers (cpu/vectorize.h's
// ComplexChunk), branch-free, in the vector clones of cpu/vectorize.h.
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

// The maths of modrelu_math::forward / grads on a chunk of elements in registers (split parts,
// cpu/vectorize.h's ComplexChunk: 32-byte vectors in every clone), branch-free, for finite values
// only: special values (NaN or infinity in z, g or tau, a modulus whose square overflows, 1 / eps
// out of range) are left to modrelu_math, element by element, in the runs where they occur
// (forward_run, backward_run). Each chunk adds t - t for a probe t to `nonfinite` (0 while every
// lane's t is finite, NaN for good after one is not); t sums the values through which a special
// value reaches a result: |z|^2, s = 1 - tau / max(|z|, eps) and, backward, g. Getting every
// special value right in every lane cost the backward's vector maths 10 adds per chunk.
// kPolar: eps == 0 (torchcvnn's polar form), where z = 0 is a case of its own (its modulus is taken
// as 1 there, so that s stays finite and the probe quiet); a template parameter so that the other
// loops carry none of it.
template <typename T, bool kPolar>
__attribute__((always_inline)) inline void forward_chunk(VecOf<T> re, VecOf<T> im, VecOf<T> th, T eps, VecOf<T>& out_re,
                                                         VecOf<T>& out_im, VecOf<T>& nonfinite) {
  using V = VecOf<T>;
  const V zero{};
  const V r2 = re * re + im * im;
  const V r = sqrt_vec<T>(r2);
  const auto large = r > eps;
  const V m = large ? r : zero + (kPolar ? T(1) : eps);
  const V s = T(1) - th / m;
  const V f = s > zero ? s : zero;
  out_re = re * f;
  out_im = im * f;
  if constexpr (kPolar) {  // z = 0: relu(-tau) + 0i
    const V o = -th;
    out_re = large ? out_re : (o > zero ? o : zero);
    out_im = large ? out_im : zero;
  }
  const V t = r2 + s;
  nonfinite += t - t;
}

// grad_z (gz_re, gz_im) and the threshold's element gradients (dt), as modrelu_math::grads:
// grad_z = a g + b (Im u, -Re u), u = z / max(|z|, eps); |z| > eps: a = 1, b = (tau / |z|) Im(g conj(u));
// |z| <= eps: a = s, b = 0; both 0 where s <= 0. In u, not z / |z|^3 (nor Im(g conj(z)) / |z|,
// which overflows or loses digits for large or tiny |g| |z|), so that it stays in range for tiny
// and huge |z| (eps = 0). Re(g conj(z)), which dt divides by max(|z|, eps) as modrelu_math does,
// comes first, off the chain through the square root and the division.
template <typename T, bool kPolar>
__attribute__((always_inline)) inline void backward_chunk(VecOf<T> re, VecOf<T> im, VecOf<T> gr, VecOf<T> gi,
                                                          VecOf<T> th, T eps, VecOf<T>& gz_re, VecOf<T>& gz_im,
                                                          VecOf<T>& dt, VecOf<T>& nonfinite) {
  using V = VecOf<T>;
  const V zero{}, one = zero + T(1);
  const V dot = gr * re + gi * im;  // Re(g conj(z))
  const V r2 = re * re + im * im;
  const V r = sqrt_vec<T>(r2);
  const auto large = r > eps;  // polar form: z != 0
  const V inv_m = one / (large ? r : zero + (kPolar ? T(1) : eps));
  const V k = th * inv_m;
  const V s = one - k;
  const auto live = kPolar ? (s > zero) & large : s > zero;
  const V a = live ? (large ? one : s) : zero;
  const V ur = re * inv_m, ui = im * inv_m;
  const V b = (live & large) ? k * (gi * ur - gr * ui) : zero;
  gz_re = a * gr + b * ui;
  gz_im = a * gi - b * ur;
  dt = live ? -(dot * inv_m) : zero;  // -Re(g conj(z)) / max(|z|, eps)
  if constexpr (kPolar) dt = (large | (th >= zero)) ? dt : -gr;  // z = 0: out = relu(-tau)
  const V t = r2 + s + gr + gi;
  nonfinite += t - t;
}

// modrelu_math on elements [0, m) of a chunk (th: the chunk's thresholds, in lane order): the
// runs where a special value occurred. backward_exact leaves the thresholds' element gradients in
// dt in lane order, 0 in lanes m.. . Inlined like every helper that takes a vector by value
// (cpu/vectorize.h): an out-of-line copy would be compiled for the baseline, whose ABI passes
// 32-byte vectors in memory, not in the registers the AVX clones pass them in.
template <typename T>
__attribute__((always_inline)) inline void forward_exact(const T* z, T* out, int64_t m, VecOf<T> th, T eps) {
  const VecOf<T> tau = in_lane_order<T>(th);
  for (int64_t e = 0; e < m; ++e) modrelu_math::forward(z[2 * e], z[2 * e + 1], tau[e], eps, out[2 * e], out[2 * e + 1]);
}

template <typename T>
__attribute__((always_inline)) inline VecOf<T> backward_exact(const T* z, const T* g, T* gz, int64_t m, VecOf<T> th,
                                                              T eps) {
  const VecOf<T> tau = in_lane_order<T>(th);
  VecOf<T> dt{};
  for (int64_t e = 0; e < m; ++e) {
    modrelu_math::grads(z[2 * e], z[2 * e + 1], tau[e], eps, g[2 * e], g[2 * e + 1], gz[2 * e], gz[2 * e + 1], dt[e]);
  }
  return in_lane_order<T>(dt);
}

// Walks n elements by chunks, calling chunk(z, aux, out, m) with pointers to a chunk's interleaved
// values and its count m of real elements: kSize, or, for the last chunk when n is not a multiple
// of kSize, m < kSize and pointers to copies padded with zeros. aux is a second interleaved input
// (the backward's g) or null. Each chunk asks for its lines 4 KB ahead (prefetch_ahead).
template <typename T, typename Chunk>
__attribute__((always_inline)) inline void for_each_chunk(const T* __restrict__ z, const T* __restrict__ aux,
                                                          T* __restrict__ out, int64_t n, const Chunk& chunk) {
  constexpr int L = ComplexChunk<T>::kSize;
  int64_t j = 0;
  for (; j + L <= n; j += L) {
    prefetch_ahead<false>(z + 2 * j, 2 * L * sizeof(T));
    if (aux != nullptr) prefetch_ahead<false>(aux + 2 * j, 2 * L * sizeof(T));
    prefetch_ahead<true>(out + 2 * j, 2 * L * sizeof(T));
    chunk(z + 2 * j, aux == nullptr ? nullptr : aux + 2 * j, out + 2 * j, int64_t(L));
  }
  if (j == n) return;
  alignas(32) T z_pad[2 * L] = {}, aux_pad[2 * L] = {}, out_pad[2 * L];
  std::copy(z + 2 * j, z + 2 * n, z_pad);
  if (aux != nullptr) std::copy(aux + 2 * j, aux + 2 * n, aux_pad);
  chunk(z_pad, aux_pad, out_pad, n - j);
  std::copy(out_pad, out_pad + 2 * (n - j), out + 2 * j);
}

// Whether a run's probe sum (forward_chunk, backward_chunk) saw a special value.
template <typename T>
__attribute__((always_inline)) inline bool saw_special_value(VecOf<T> nonfinite) {
  return !(vec_sum<T>(nonfinite) == 0);
}

// Elements per float sum of the threshold gradient of a constant-threshold run (each lane sums
// kSumBlock / kSize of them before they go to double).
constexpr int64_t kSumBlock = 512;

// The thresholds of a run's chunks, in lane order, and where their gradients go; the chunks come
// in memory order.
//
// RunThreshold: one threshold for the run (inner > 1); its gradient summed in the lanes of a
// vector, moved to double every kSumBlock elements.
template <typename T>
struct RunThreshold {
  VecOf<T> tau;
  VecOf<T> sum{};
  double total = 0;
  int64_t chunks = 0;

  explicit RunThreshold(const T* t) : tau(VecOf<T>{} + *t) {}
  // Back to the run's first chunk, with no gradient added (a run redone element by element).
  void restart() {
    sum = VecOf<T>{};
    total = 0;
    chunks = 0;
  }
  CPLXFAST_INLINE VecOf<T> thresholds() const { return tau; }
  CPLXFAST_INLINE void add_grad(VecOf<T> dt) {
    sum += dt;
    if (++chunks % (kSumBlock / ComplexChunk<T>::kSize) == 0) {
      total += vec_sum<T>(sum);
      sum = VecOf<T>{};
    }
  }
  void next() {}
  double grad_sum() const { return total + vec_sum<T>(sum); }
};

// RowThresholds: one threshold per channel, the channel varying fastest (channels_last per-channel
// thresholds, or thresholds [F] on [B, F]: inner == 1): element i of the run is in channel
// (first + i) % C, a RowCursor over rows of C (cpu/runs.h). tau_ext is the C thresholds as an
// extended row (kSize more); dt_ext is laid out the same way and takes the gradients (folded into C
// sums by the caller, who zeroes it before each run). One walk over the whole run, not one per row:
// rows shorter than a chunk (C < 8 for float) would otherwise be all padding.
template <typename T>
struct RowThresholds {
  const T* tau_ext;
  T* dt_ext;
  RowCursor first, pos;

  RowThresholds(const T* tau_ext, T* dt_ext, int64_t C, int64_t first_element)
      : tau_ext(tau_ext), dt_ext(dt_ext), first(C, ComplexChunk<T>::kSize, first_element), pos(first) {}
  void restart() {
    pos = first;
    if (dt_ext != nullptr) std::fill(dt_ext, dt_ext + pos.width + ComplexChunk<T>::kSize, T(0));
  }
  CPLXFAST_INLINE VecOf<T> thresholds() const { return in_lane_order<T>(load_vec(tau_ext + pos.at)); }
  CPLXFAST_INLINE void add_grad(VecOf<T> dt) {
    store_vec(dt_ext + pos.at, load_vec(dt_ext + pos.at) + in_lane_order<T>(dt));
  }
  void next() { pos.next(); }
};

// A run where a special value occurred is done again, element by element (forward_exact).
template <typename T, bool kPolar, typename Thresholds>
__attribute__((always_inline)) inline void forward_run(const T* in, T* out, int64_t n, Thresholds tau, T eps) {
  VecOf<T> nonfinite{};
  for_each_chunk<T>(in, nullptr, out, n, [&](const T* z, const T*, T* o, int64_t) CPLXFAST_INLINE {
    VecOf<T> re, im, out_re, out_im;
    load_split(z, re, im);
    forward_chunk<T, kPolar>(re, im, tau.thresholds(), eps, out_re, out_im, nonfinite);
    merge_store(out_re, out_im, o);
    tau.next();
  });
  if (!saw_special_value<T>(nonfinite)) return;
  tau.restart();
  for_each_chunk<T>(in, nullptr, out, n, [&](const T* z, const T*, T* o, int64_t m) CPLXFAST_INLINE {
    forward_exact<T>(z, o, m, tau.thresholds(), eps);
    tau.next();
  });
}

// grad_z of n elements; the threshold's element gradients go to tau.add_grad. A run where a
// special value occurred is done again, element by element (backward_exact), its threshold
// gradients from scratch. A last chunk's padded lanes (z = g = 0) add -0 to them, or NaN where
// 1 / eps overflows, which the probe sees (s is not finite there): the run is then redone, from
// its real elements only.
template <typename T, bool kPolar, typename Thresholds>
__attribute__((always_inline)) inline void backward_run(const T* in, const T* g, T* gz, int64_t n, Thresholds& tau,
                                                        T eps) {
  VecOf<T> nonfinite{};
  for_each_chunk<T>(in, g, gz, n, [&](const T* z, const T* gp, T* o, int64_t) CPLXFAST_INLINE {
    VecOf<T> re, im, gr, gi, gz_re, gz_im, dt;
    load_split(z, re, im);
    load_split(gp, gr, gi);
    backward_chunk<T, kPolar>(re, im, gr, gi, tau.thresholds(), eps, gz_re, gz_im, dt, nonfinite);
    merge_store(gz_re, gz_im, o);
    tau.add_grad(dt);
    tau.next();
  });
  if (!saw_special_value<T>(nonfinite)) return;
  tau.restart();
  for_each_chunk<T>(in, g, gz, n, [&](const T* z, const T* gp, T* o, int64_t m) CPLXFAST_INLINE {
    tau.add_grad(backward_exact<T>(z, gp, o, m, tau.thresholds(), eps));
    tau.next();
  });
}

// Rows of a per-element-threshold backward summed in T (one in-order sum per dt_ext slot, at most
// two slots per channel) before the sums go to double: 64 keeps a float sum's error near the
// constant-threshold runs'.
constexpr int64_t kFlushRows = 64;

// The entry points the clones are made of (target_clones needs plain functions); eps == 0 picks
// the polar form's loops. *_rows: n elements from element `first` of z's memory order on, with
// thresholds tau_ext and gradients into dt_ext (RowThresholds).
#define CPLXFAST_RUNS(T, SUFFIX)                                                                           \
  CPLXFAST_VECTOR_CLONES void forward_const_##SUFFIX(const T* in, T* out, int64_t n, const T* tau, T eps) {  \
    if (eps == T(0)) return forward_run<T, true>(in, out, n, RunThreshold<T>(tau), eps);                   \
    forward_run<T, false>(in, out, n, RunThreshold<T>(tau), eps);                                          \
  }                                                                                                       \
  CPLXFAST_VECTOR_CLONES void forward_rows_##SUFFIX(const T* in, T* out, int64_t n, int64_t first, int64_t C,     \
                                                    const T* tau_ext, T eps) {                            \
    const RowThresholds<T> tau(tau_ext, nullptr, C, first);                                               \
    if (eps == T(0)) return forward_run<T, true>(in, out, n, tau, eps);                                    \
    forward_run<T, false>(in, out, n, tau, eps);                                                           \
  }                                                                                                       \
  CPLXFAST_VECTOR_CLONES double backward_const_##SUFFIX(const T* in, const T* g, T* gz, int64_t n, const T* tau,  \
                                                        T eps) {                                          \
    RunThreshold<T> t(tau);                                                                               \
    if (eps == T(0)) {                                                                                    \
      backward_run<T, true>(in, g, gz, n, t, eps);                                                        \
    } else {                                                                                              \
      backward_run<T, false>(in, g, gz, n, t, eps);                                                       \
    }                                                                                                     \
    return t.grad_sum();                                                                                  \
  }                                                                                                       \
  CPLXFAST_VECTOR_CLONES void backward_rows_##SUFFIX(const T* in, const T* g, T* gz, int64_t n, int64_t first,    \
                                                     int64_t C, const T* tau_ext, T* dt_ext, T eps) {     \
    RowThresholds<T> t(tau_ext, dt_ext, C, first);                                                        \
    if (eps == T(0)) return backward_run<T, true>(in, g, gz, n, t, eps);                                   \
    backward_run<T, false>(in, g, gz, n, t, eps);                                                         \
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
    const std::vector<T> tau_ext =
        L.inner == 1 ? extended_row(tau, L.T, ComplexChunk<T>::kSize) : std::vector<T>();
    at::parallel_for(0, L.numel, kGrain, [&](int64_t begin, int64_t end) {
      if (L.inner == 1) {
        return RunsOf<T>::forward_rows(in + 2 * begin, o + 2 * begin, end - begin, begin, L.T, tau_ext.data(), T(eps));
      }
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
    // The threshold gradient's sums: in T within a run's blocks of kSumBlock elements or, for rows of one
    // element per threshold (inner == 1), across spans of kFlushRows rows; in double across them,
    // in each task's own vector (no cache line written by two threads), then per thread, then
    // across threads.
    const std::vector<T> tau_ext =
        L.inner == 1 ? extended_row(tau, L.T, ComplexChunk<T>::kSize) : std::vector<T>();
    const int threads = at::get_num_threads();
    std::vector<double> partial(static_cast<size_t>(threads) * L.T, 0.0);
    at::parallel_for(0, L.numel, kGrain, [&](int64_t begin, int64_t end) {
      std::vector<double> sums(L.T, 0.0);
      if (L.inner == 1) {
        std::vector<T> dt_ext(tau_ext.size());
        for (int64_t b = begin; b < end; b += kFlushRows * L.T) {
          std::fill(dt_ext.begin(), dt_ext.end(), T(0));
          const int64_t e = std::min(end, b + kFlushRows * L.T);
          RunsOf<T>::backward_rows(in + 2 * b, gp + 2 * b, gz + 2 * b, e - b, b, L.T, tau_ext.data(), dt_ext.data(),
                                   T(eps));
          for (size_t k = 0; k < dt_ext.size(); ++k) sums[k % L.T] += dt_ext[k];
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
