// Complex batch norm on CPU: the device-agnostic driver (common/batchnorm.cpp) with CPU kernels.
// Training forward: one pass for the per-channel moments, one apply pass; backward: one pass
// for the per-channel gradient sums, one apply pass. Reductions keep per-thread partial sums
// in double; within a run of one channel, a block of elements is mapped to its K values and each
// is summed in eight float lanes (so the loops vectorise without reassociating a single sum),
// then flushed to double; channels_last rows sum across channels into [K][C] float arrays.
// The loops run in AVX2 clones (cpu/vectorize.h).
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "common/batchnorm.h"
#include "cpu/runs.h"
#include "cpu/vectorize.h"

namespace cplxfast::cpu {
namespace {

constexpr int64_t kGrain = 16384;  // complex elements per task
constexpr int64_t kFlush = 512;    // channels_last: rows summed in float before flushing to double

// Per-thread [C, K] double partial sums, reduced at the end.
template <int K>
struct Partials {
  explicit Partials(int64_t C) : C(C), data(static_cast<size_t>(at::get_num_threads()) * C * K, 0.0) {}
  double* mine() { return data.data() + static_cast<size_t>(at::get_thread_num()) * C * K; }
  at::Tensor total(const at::TensorOptions& opts) const {
    at::Tensor out = at::zeros({C, K}, opts.dtype(at::kDouble));
    double* o = out.data_ptr<double>();
    for (size_t i = 0; i < data.size(); ++i) o[i % (C * K)] += data[i];
    return out;
  }
  int64_t C;
  std::vector<double> data;
};

// Sums over one run of one channel of f(xr, xi, yr, yi) -> K values, in eight float lanes.
// x is shifted by (sx0, sx1); y (read only with kHasY: a test on it inside the loop stops the
// loop vectorising) is not.
template <typename T, int K, bool kHasY, typename F>
__attribute__((always_inline)) inline void run_sums_of(const T* __restrict__ x, const T* __restrict__ y, int64_t n,
                                                       T sx0, T sx1, double* acc, const F& f) {
  // f of a block of elements into K arrays (a map, which vectorises), then each array summed in
  // eight float lanes (lane_sum, cpu/vectorize.h).
  constexpr int64_t kBlock = 512;
  T values[K][kBlock];
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t m = std::min(kBlock, n - b);
    for (int64_t j = 0; j < m; ++j) {
      const int64_t e = b + j;
      T v[K];
      f(x[2 * e] - sx0, x[2 * e + 1] - sx1, kHasY ? y[2 * e] : T(0), kHasY ? y[2 * e + 1] : T(0), v);
      for (int k = 0; k < K; ++k) values[k][j] = v[k];
    }
    for (int k = 0; k < K; ++k) acc[k] += lane_sum(values[k], m);
  }
}

template <typename T, int K, typename F>
__attribute__((always_inline)) inline void run_sums(const T* x, const T* y, int64_t n, T sx0, T sx1, double* acc,
                                                    const F& f) {
  if (y != nullptr) {
    run_sums_of<T, K, true>(x, y, n, sx0, sx1, acc, f);
  } else {
    run_sums_of<T, K, false>(x, y, n, sx0, sx1, acc, f);
  }
}

// Channels_last (the channel varies fastest): one piece of a row, channels c0.. of n elements,
// added into the task's float sums sums[k * C + c] (one unit-stride array per sum, so the loop
// vectorises across channels; the channels-first runs' lanes do the same along a channel). Sums
// [k0, k1) of f: GCC vectorises such a loop only if it can check its output arrays pairwise for
// overlap within its limit of 10 checks, so at most 3 sums go in one loop (f is cheap; x and y
// are re-read from L1).
template <typename T, int K, int k0, int k1, bool kHasY, typename F>
__attribute__((always_inline)) inline void row_sums_of(const T* __restrict__ x, const T* __restrict__ y, int64_t n,
                                                       const T* __restrict__ shift, T* __restrict__ sums, int64_t C,
                                                       const F& f) {
  for (int64_t j = 0; j < n; ++j) {
    T v[K];
    f(x[2 * j] - shift[2 * j], x[2 * j + 1] - shift[2 * j + 1], kHasY ? y[2 * j] : T(0), kHasY ? y[2 * j + 1] : T(0),
      v);
    for (int k = k0; k < k1; ++k) sums[k * C + j] += v[k];
  }
}

template <typename T, int K, typename F>
__attribute__((always_inline)) inline void row_sums(const T* x, const T* y, int64_t n, const T* shift, T* sums,
                                                    int64_t C, const F& f) {
  static_assert(K <= 6, "row_sums: at most two loops of three sums");
  constexpr int kMid = K < 3 ? K : 3;
  if (y != nullptr) {
    row_sums_of<T, K, 0, kMid, true>(x, y, n, shift, sums, C, f);
    row_sums_of<T, K, kMid, K, true>(x, y, n, shift, sums, C, f);
  } else {
    row_sums_of<T, K, 0, kMid, false>(x, y, n, shift, sums, C, f);
    row_sums_of<T, K, kMid, K, false>(x, y, n, shift, sums, C, f);
  }
}

// The two kinds of per-channel sums: the forward's moments of x' (x shifted) and the backward's
// gradient sums of (x', g).
struct MomentSums {
  static constexpr int K = 5;
  template <typename T>
  static void f(T r, T i, T, T, T* v) {
    v[0] = r;
    v[1] = i;
    v[2] = r * r;
    v[3] = r * i;
    v[4] = i * i;
  }
};

struct GradSums {
  static constexpr int K = 6;
  template <typename T>
  static void f(T xr, T xi, T gr, T gi, T* v) {
    v[0] = gr;
    v[1] = gi;
    v[2] = gr * xr;
    v[3] = gr * xi;
    v[4] = gi * xr;
    v[5] = gi * xi;
  }
};

// Their run and row loops as plain functions with AVX2 clones (target_clones needs them).
#define CPLXFAST_SUM_LOOPS(S, T, SUFFIX)                                                                       \
  CPLXFAST_VECTOR_CLONES void S##_run_##SUFFIX(const T* x, const T* y, int64_t n, T sx0, T sx1, double* acc) {   \
    run_sums<T, S::K>(x, y, n, sx0, sx1, acc, [](T a, T b, T c, T d, T* v) { S::f(a, b, c, d, v); });          \
  }                                                                                                            \
  CPLXFAST_VECTOR_CLONES void S##_row_##SUFFIX(const T* x, const T* y, int64_t n, const T* shift, T* sums,       \
                                               int64_t C) {                                                    \
    row_sums<T, S::K>(x, y, n, shift, sums, C, [](T a, T b, T c, T d, T* v) { S::f(a, b, c, d, v); });          \
  }                                                                                                            \
  void sum_run(S, const T* x, const T* y, int64_t n, T sx0, T sx1, double* acc) {                              \
    S##_run_##SUFFIX(x, y, n, sx0, sx1, acc);                                                                  \
  }                                                                                                            \
  void sum_row(S, const T* x, const T* y, int64_t n, const T* shift, T* sums, int64_t C) {                      \
    S##_row_##SUFFIX(x, y, n, shift, sums, C);                                                                 \
  }
CPLXFAST_SUM_LOOPS(MomentSums, float, f32)
CPLXFAST_SUM_LOOPS(MomentSums, double, f64)
CPLXFAST_SUM_LOOPS(GradSums, float, f32)
CPLXFAST_SUM_LOOPS(GradSums, double, f64)
#undef CPLXFAST_SUM_LOOPS

// Per-channel sums of S over the whole tensor: [C, K] double. shift[c] (2 per channel) is
// subtracted from x first.
template <typename T, typename S>
at::Tensor channel_sums(const BatchNormLayout& L, const T* x, const T* y, const std::vector<T>& shift) {
  constexpr int K = S::K;
  Partials<K> partials(L.C);
  at::parallel_for(0, L.numel, kGrain, [&](int64_t begin, int64_t end) {
    double* acc = partials.mine();
    std::vector<T> row;  // channels_last: float sums [K][C] of up to kFlush pieces of rows
    int64_t pieces = 0;
    const auto flush = [&] {
      for (int64_t c = 0; c < L.C && !row.empty(); ++c) {
        for (int k = 0; k < K; ++k) acc[c * K + k] += row[k * L.C + c], row[k * L.C + c] = T(0);
      }
      pieces = 0;
    };
    for_each_run(
        begin, end, L.inner, L.C,
        [&](int64_t b, int64_t e, int64_t c) {
          sum_run(S{}, x + 2 * b, y ? y + 2 * b : nullptr, e - b, shift[2 * c], shift[2 * c + 1], acc + c * K);
        },
        [&](int64_t b, int64_t e, int64_t c0) {
          if (row.empty()) row.assign(static_cast<size_t>(K) * L.C, T(0));
          sum_row(S{}, x + 2 * b, y ? y + 2 * b : nullptr, e - b, shift.data() + 2 * c0, row.data() + c0, L.C);
          if (++pieces == kFlush) flush();
        });
    flush();
  });
  return partials.total(L.z.options());
}

at::Tensor moment_sums(const BatchNormLayout& L) {
  at::Tensor out;
  AT_DISPATCH_FLOATING_TYPES(c10::toRealValueType(L.z.scalar_type()), "cplxfast_bn_moments_cpu", [&] {
    using T = scalar_t;
    const T* x = static_cast<const T*>(L.z.data_ptr());
    // Shift each channel by its first element: sums of shifted values keep fp32 data with a
    // large mean (1e3 + noise) accurate, where raw sums of squares would cancel.
    std::vector<T> shift(2 * L.C);
    for (int64_t c = 0; c < L.C; ++c) {
      shift[2 * c] = x[2 * c * L.inner];
      shift[2 * c + 1] = x[2 * c * L.inner + 1];
    }
    out = channel_sums<T, MomentSums>(L, x, nullptr, shift);
  });
  return out.view({1, L.C, 5});
}

at::Tensor grad_sums(const BatchNormLayout& L, const at::Tensor& g, const BnStat& mean) {
  at::Tensor out;
  AT_DISPATCH_FLOATING_TYPES(c10::toRealValueType(L.z.scalar_type()), "cplxfast_bn_grad_sums_cpu", [&] {
    using T = scalar_t;
    std::vector<T> shift(2 * L.C);
    for (int64_t c = 0; c < L.C; ++c) {
      shift[2 * c] = T(mean.at<T>(c));
      shift[2 * c + 1] = T(mean.at<T>(L.C + c));
    }
    out = channel_sums<T, GradSums>(L, static_cast<const T*>(L.z.data_ptr()), static_cast<const T*>(g.data_ptr()),
                                    shift);
  });
  return out.view({1, L.C, 6});
}

// One channel's apply coefficients in the data's precision: A, D, c, and the two shifts each
// split as hi + lo, so that (u - su_hi) - su_lo is as accurate as a subtraction in double
// (u - su_hi is exact when u is near su_hi) while the loop runs in T at full vector width.
constexpr int kRow = 18;

template <typename T>
void to_rows(const double* k, int64_t C, T* rows) {
  for (int64_t c = 0; c < C; ++c) {
    const double* q = k + kBnCoeffs * c;
    T* r = rows + kRow * c;
    for (int i = 0; i < 10; ++i) r[i] = T(q[i]);
    for (int i = 0; i < 4; ++i) {
      const T hi = T(q[10 + i]);
      r[10 + 2 * i] = hi;
      r[11 + 2 * i] = T(q[10 + i] - double(hi));
    }
  }
}

// out = A (u - su) + D (v - sv) + c for one run of one channel (its coefficients q).
template <typename T, bool kHasV>
__attribute__((always_inline)) inline void apply_run(const T* __restrict__ u, const T* __restrict__ v,
                                                     const T* __restrict__ q, int64_t n, T* __restrict__ out) {
  for (int64_t j = 0; j < n; ++j) {
    const T ur = (u[2 * j] - q[10]) - q[11], ui = (u[2 * j + 1] - q[12]) - q[13];
    T r = q[0] * ur + q[1] * ui + q[8];
    T i = q[2] * ur + q[3] * ui + q[9];
    if (kHasV) {
      const T vr = (v[2 * j] - q[14]) - q[15], vi = (v[2 * j + 1] - q[16]) - q[17];
      r += q[4] * vr + q[5] * vi;
      i += q[6] * vr + q[7] * vi;
    }
    out[2 * j] = r;
    out[2 * j + 1] = i;
  }
}

// The same for a piece of a channels_last row (channel rises by one per element): coefficient k
// of its n channels is cols[k * C + j], unit stride in j, so the loop vectorises.
template <typename T, bool kHasV>
__attribute__((always_inline)) inline void apply_row(const T* __restrict__ u, const T* __restrict__ v,
                                                     const T* __restrict__ cols, int64_t C, int64_t n,
                                                     T* __restrict__ out) {
  for (int64_t j = 0; j < n; ++j) {
    const T* __restrict__ q = cols + j;  // coefficient k at q[k * C]
    const T ur = (u[2 * j] - q[10 * C]) - q[11 * C], ui = (u[2 * j + 1] - q[12 * C]) - q[13 * C];
    T r = q[0] * ur + q[1 * C] * ui + q[8 * C];
    T i = q[2 * C] * ur + q[3 * C] * ui + q[9 * C];
    if (kHasV) {
      const T vr = (v[2 * j] - q[14 * C]) - q[15 * C], vi = (v[2 * j + 1] - q[16 * C]) - q[17 * C];
      r += q[4 * C] * vr + q[5 * C] * vi;
      i += q[6 * C] * vr + q[7 * C] * vi;
    }
    out[2 * j] = r;
    out[2 * j + 1] = i;
  }
}

#define CPLXFAST_APPLY_RUNS(T, SUFFIX)                                                                               \
  CPLXFAST_VECTOR_CLONES void apply_const_##SUFFIX(const T* u, const T* v, const T* rows, int64_t n, T* out) {      \
    if (v) {                                                                                                         \
      apply_run<T, true>(u, v, rows, n, out);                                                                        \
    } else {                                                                                                         \
      apply_run<T, false>(u, v, rows, n, out);                                                                       \
    }                                                                                                                \
  }                                                                                                                  \
  CPLXFAST_VECTOR_CLONES void apply_each_##SUFFIX(const T* u, const T* v, const T* cols, int64_t C, int64_t n,   \
                                                   T* out) {                                                       \
    if (v) {                                                                                                         \
      apply_row<T, true>(u, v, cols, C, n, out);                                                                     \
    } else {                                                                                                         \
      apply_row<T, false>(u, v, cols, C, n, out);                                                                    \
    }                                                                                                                \
  }
CPLXFAST_APPLY_RUNS(float, f32)
CPLXFAST_APPLY_RUNS(double, f64)
#undef CPLXFAST_APPLY_RUNS

void apply_const(const float* u, const float* v, const float* rows, int64_t n, float* out) { apply_const_f32(u, v, rows, n, out); }
void apply_const(const double* u, const double* v, const double* rows, int64_t n, double* out) { apply_const_f64(u, v, rows, n, out); }
void apply_each(const float* u, const float* v, const float* cols, int64_t C, int64_t n, float* out) {
  apply_each_f32(u, v, cols, C, n, out);
}
void apply_each(const double* u, const double* v, const double* cols, int64_t C, int64_t n, double* out) {
  apply_each_f64(u, v, cols, C, n, out);
}

void apply(const BatchNormLayout& L, const at::Tensor& u, const at::Tensor& v, const at::Tensor& coeffs,
           const at::Tensor& out) {
  AT_DISPATCH_FLOATING_TYPES(c10::toRealValueType(L.z.scalar_type()), "cplxfast_bn_apply_cpu", [&] {
    using T = scalar_t;
    std::vector<T> rows(static_cast<size_t>(kRow) * L.C);
    to_rows<T>(coeffs.data_ptr<double>(), L.C, rows.data());
    std::vector<T> cols;  // channels_last: the same coefficients, [kRow][C]
    if (L.inner == 1) {
      cols.resize(rows.size());
      for (size_t i = 0; i < rows.size(); ++i) cols[(i % kRow) * L.C + i / kRow] = rows[i];
    }
    const T* up = static_cast<const T*>(u.data_ptr());
    const T* vp = v.defined() ? static_cast<const T*>(v.data_ptr()) : nullptr;
    T* op = static_cast<T*>(out.data_ptr());
    at::parallel_for(0, L.numel, kGrain, [&](int64_t begin, int64_t end) {
      for_each_run(
          begin, end, L.inner, L.C,
          [&](int64_t b, int64_t e, int64_t c) {
            apply_const(up + 2 * b, vp ? vp + 2 * b : nullptr, rows.data() + kRow * c, e - b, op + 2 * b);
          },
          [&](int64_t b, int64_t e, int64_t c0) {
            apply_each(up + 2 * b, vp ? vp + 2 * b : nullptr, cols.data() + c0, L.C, e - b, op + 2 * b);
          });
    });
  });
}

void finish(const BnFinish& a, at::ScalarType real) {
  AT_DISPATCH_FLOATING_TYPES(real, "cplxfast_bn_finish_cpu", [&] {
    for (int64_t c = 0; c < a.C; ++c) bn_finish_channel<scalar_t>(a, c);
  });
}

const BatchNormBackend& backend() {
  static const BatchNormBackend b{&moment_sums, &grad_sums, &apply, &finish};
  return b;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm(
    const at::Tensor& input, const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias,
    const c10::optional<at::Tensor>& running_mean, const c10::optional<at::Tensor>& running_var, bool training,
    double eps) {
  return batch_norm_forward(input, weight, bias, running_mean, running_var, training, eps, backend());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm_backward(
    const at::Tensor& grad, const at::Tensor& input, const c10::optional<at::Tensor>& weight, const at::Tensor& mean,
    const at::Tensor& cov, bool training, std::array<bool, 3> output_mask, const c10::optional<at::Tensor>& grad_sums,
    int64_t count) {
  return cplxfast::batch_norm_backward(grad, input, weight, mean, cov, training, output_mask, grad_sums, count,
                                       backend());
}

std::tuple<at::Tensor, at::Tensor> batch_norm_stats(const at::Tensor& input) {
  return cplxfast::batch_norm_stats(input, backend());
}

at::Tensor batch_norm_grad_sums(const at::Tensor& grad, const at::Tensor& input, const at::Tensor& mean) {
  return cplxfast::batch_norm_grad_sums(grad, input, mean, backend());
}

}  // namespace

TORCH_LIBRARY_IMPL(cplxfast, CPU, m) {
  m.impl("batch_norm", &batch_norm);
  m.impl("batch_norm_backward", &batch_norm_backward);
  m.impl("batch_norm_stats", &batch_norm_stats);
  m.impl("batch_norm_grad_sums", &batch_norm_grad_sums);
}

}  // namespace cplxfast::cpu
