// Complex batch norm on CPU: the device-agnostic driver (common/batchnorm.cpp) with CPU kernels.
// Training forward: one pass for the per-channel moments, one apply pass; backward: one pass
// for the per-channel gradient sums, one apply pass. Reductions keep per-thread partial sums
// in double, and float sums below them: lane-wise on the interleaved values (each float lane its
// own in-order sum, so the loops vectorise without reassociating one sum), in lanes of a run of one
// channel (run_sums_of) or in per-channel pair arrays across a channels_last row (row_sums_of),
// flushed to double every 512 elements or rows.
// The loops run in the vector clones of cpu/vectorize.h (AVX-512, AVX2, baseline).
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

// Channels_last (the channel varies fastest): one piece of a row, channels c0.. of n elements.
// The row loops run lane-wise on the interleaved values: lane l = 2 j + p is part p of channel
// c0 + j, and its partner lane l ^ 1 (the other part) is read by a swapped load. Per-channel
// arrays (shifts, sums, apply coefficients) are laid out the same way, 2 values per channel, so
// every load and store is unit stride and each vector holds whole channels: read as (re, im)
// pairs into per-part arrays, GCC vectorised each pair alone and gathered the per-channel values
// as scalars (vinsertps), at 1.3-1.6x the contiguous runs' time per element in cache.
//
// The sums: three pair arrays a[m][2 C] of the task's float sums, S::pair_terms of each lane
// (S::kFromPairs maps them back to the K sums). Three output arrays is what GCC vectorises: it
// checks them pairwise for overlap, within a limit of 10 checks.
template <typename T, typename S, bool kHasY>
__attribute__((always_inline)) inline void row_sums_of(const T* __restrict__ x, const T* __restrict__ y, int64_t n,
                                                       const T* __restrict__ shift, T* __restrict__ a0,
                                                       T* __restrict__ a1, T* __restrict__ a2) {
  for (int64_t j = 0; j < n; ++j) {
    for (int p = 0; p < 2; ++p) {
      const int64_t l = 2 * j + p, partner = 2 * j + 1 - p;
      T v[3];
      S::pair_terms(x[l] - shift[l], x[partner] - shift[partner], kHasY ? y[l] : T(0), v);
      a0[l] += v[0];
      a1[l] += v[1];
      a2[l] += v[2];
    }
  }
}

template <typename T, typename S>
__attribute__((always_inline)) inline void row_sums(const T* x, const T* y, int64_t n, const T* shift, T* sums,
                                                    int64_t C) {
  T* a1 = sums + 2 * C;
  T* a2 = sums + 4 * C;
  if (y != nullptr) {
    row_sums_of<T, S, true>(x, y, n, shift, sums, a1, a2);
  } else {
    row_sums_of<T, S, false>(x, y, n, shift, sums, a1, a2);
  }
}

// Sums over one run of one channel of S, lane-wise as the rows are: each chunk of 8 elements is
// summed by row_sums_of into float lanes a[3][16] (lane l: part l % 2 of element l / 2; six
// independent vector sums), with the shift repeated per lane, flushed to double every kBlock
// elements. x is shifted by (sx0, sx1); y (read only with kHasY: a test on it
// inside the loop stops the loop vectorising) is not. A map into K arrays and a lane sum of each
// measured 1.5-2.5x this loop's time per element in cache.
template <typename T, typename S, bool kHasY>
__attribute__((always_inline)) inline void run_sums_of(const T* __restrict__ x, const T* __restrict__ y, int64_t n,
                                                       T sx0, T sx1, double* acc) {
  constexpr int64_t kLanes = 16;  // 8 complex elements
  constexpr int64_t kBlock = 512;
  T shift[kLanes];
  for (int l = 0; l < kLanes; ++l) shift[l] = l % 2 == 0 ? sx0 : sx1;
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t m = std::min(kBlock, n - b);
    T a[3][kLanes] = {};
    int64_t j = 0;
    for (; j + kLanes / 2 <= m; j += kLanes / 2) {
      row_sums_of<T, S, kHasY>(x + 2 * (b + j), kHasY ? y + 2 * (b + j) : nullptr, kLanes / 2, shift, a[0], a[1],
                               a[2]);
    }
    double pair[3][2] = {};
    for (; j < m; ++j) {
      const int64_t e = 2 * (b + j);
      for (int p = 0; p < 2; ++p) {
        T v[3];
        S::pair_terms(x[e + p] - shift[p], x[e + 1 - p] - shift[1 - p], kHasY ? y[e + p] : T(0), v);
        for (int k = 0; k < 3; ++k) pair[k][p] += v[k];
      }
    }
    for (int k = 0; k < 3; ++k) {
      for (int l = 0; l < kLanes; ++l) pair[k][l & 1] += a[k][l];
    }
    for (int k = 0; k < S::K; ++k) acc[k] += pair[S::kFromPairs[k][0]][S::kFromPairs[k][1]];
  }
}

template <typename T, typename S>
__attribute__((always_inline)) inline void run_sums(const T* x, const T* y, int64_t n, T sx0, T sx1, double* acc) {
  if (y != nullptr) {
    run_sums_of<T, S, true>(x, y, n, sx0, sx1, acc);
  } else {
    run_sums_of<T, S, false>(x, y, n, sx0, sx1, acc);
  }
}

// The two kinds of per-channel sums: the forward's moments of x' (x shifted) and the backward's
// gradient sums of (x', g).
struct MomentSums {
  static constexpr int K = 5;
  // The sums r, i, r^2, r i, i^2 of x' = (r, i), lane-wise: for x' of this part d and of the other
  // ds, the terms d, d^2, d ds (r i in both lanes).
  template <typename T>
  static void pair_terms(T d, T ds, T, T* v) {
    v[0] = d;
    v[1] = d * d;
    v[2] = d * ds;
  }
  // Sum k as {pair array, part}.
  static constexpr int kFromPairs[K][2] = {{0, 0}, {0, 1}, {1, 0}, {2, 0}, {1, 1}};
};

struct GradSums {
  static constexpr int K = 6;
  // The sums gr, gi, gr xr, gr xi, gi xr, gi xi of (x', g), lane-wise: for x' of this part d, of
  // the other ds, and g of this part, the terms g, g d, g ds.
  template <typename T>
  static void pair_terms(T d, T ds, T g, T* v) {
    v[0] = g;
    v[1] = g * d;
    v[2] = g * ds;
  }
  static constexpr int kFromPairs[K][2] = {{0, 0}, {0, 1}, {1, 0}, {2, 0}, {2, 1}, {1, 1}};
};

// Their run and row loops as plain functions with vector clones (target_clones needs them).
#define CPLXFAST_SUM_LOOPS(S, T, SUFFIX)                                                                       \
  CPLXFAST_VECTOR_CLONES void S##_run_##SUFFIX(const T* x, const T* y, int64_t n, T sx0, T sx1, double* acc) {   \
    run_sums<T, S>(x, y, n, sx0, sx1, acc);                                                                    \
  }                                                                                                            \
  CPLXFAST_VECTOR_CLONES void S##_rows_##SUFFIX(const T* x, const T* y, int64_t begin, int64_t end,            \
                                                const T* shift, T* sums, int64_t C) {                          \
    for_each_row_piece(begin, end, C, [&](int64_t b, int64_t e, int64_t c0) {                                  \
      row_sums<T, S>(x + 2 * b, y ? y + 2 * b : nullptr, e - b, shift + 2 * c0, sums + 2 * c0, C);             \
    });                                                                                                        \
  }                                                                                                            \
  void sum_run(S, const T* x, const T* y, int64_t n, T sx0, T sx1, double* acc) {                              \
    S##_run_##SUFFIX(x, y, n, sx0, sx1, acc);                                                                  \
  }                                                                                                            \
  void sum_rows(S, const T* x, const T* y, int64_t begin, int64_t end, const T* shift, T* sums, int64_t C) {    \
    S##_rows_##SUFFIX(x, y, begin, end, shift, sums, C);                                                       \
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
    if (L.inner != 1) {
      return for_each_constant_run(begin, end, L.inner, L.C, [&](int64_t b, int64_t e, int64_t c) {
        sum_run(S{}, x + 2 * b, y ? y + 2 * b : nullptr, e - b, shift[2 * c], shift[2 * c + 1], acc + c * K);
      });
    }
    // channels_last: the float pair sums [3][2 C] of up to kFlush rows, then flushed to double. One
    // call per kFlush rows, not per row: at C = 64 a call per row cost 15-30% of the pass.
    std::vector<T> row(static_cast<size_t>(6) * L.C, T(0));
    for (int64_t b = begin; b < end; b += kFlush * L.C) {
      sum_rows(S{}, x, y, b, std::min(end, b + kFlush * L.C), shift.data(), row.data(), L.C);
      for (int64_t c = 0; c < L.C; ++c) {
        for (int k = 0; k < K; ++k) acc[c * K + k] += row[S::kFromPairs[k][0] * 2 * L.C + 2 * c + S::kFromPairs[k][1]];
      }
      std::fill(row.begin(), row.end(), T(0));
    }
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

// The apply pass: out = A (u - su) + D (v - sv) + c per channel (forward: u = z, no v; backward:
// u = g, v = z), lane-wise as the sums are (row_sums_of). The coefficients are in the data's
// precision as kPairs arrays of 2 C values, value 2 c + p for part p of channel c, with the two
// shifts each split as hi + lo, so that (u - su_hi) - su_lo is as accurate as a subtraction in
// double (u - su_hi is exact when u is near su_hi) while the loop runs in T at full vector width.
// Part p of the output is P u'_p + Q u'_{1-p} + c_p (+ the same in v'), u' = (u - su_hi) - su_lo:
// for p = 0, A00 u'_r + A01 u'_i + c_r; for p = 1, A11 u'_i + A10 u'_r + c_i.
constexpr int kPairs = 9;  // su_hi, su_lo, P, Q, c; sv_hi, sv_lo, PD, QD (P = diagonal, Q = off)

template <typename T>
void to_pairs(const double* k, int64_t C, T* pairs) {
  // Each pair array: its coefficients {part 0, part 1} in the order of store_coeffs
  // (common/batchnorm.h), and whether it holds their low parts.
  struct From {
    int index[2];
    bool low;
  };
  static constexpr From kFrom[kPairs] = {{{10, 11}, false}, {{10, 11}, true}, {{0, 3}, false},
                                         {{1, 2}, false},   {{8, 9}, false},   {{12, 13}, false},
                                         {{12, 13}, true},  {{4, 7}, false},   {{5, 6}, false}};
  // The hi + lo split in a loop of its own: written inside the per-channel scatter, GCC 12.2 at
  // -O3 (its SLP vectoriser) computed every low part as 0 (tests/test_batchnorm.py's large-mean
  // cases fail then).
  const int64_t n = kBnCoeffs * C;
  std::vector<T> hi(n), lo(n);
  for (int64_t i = 0; i < n; ++i) {
    hi[i] = T(k[i]);
    lo[i] = T(k[i] - double(hi[i]));
  }
  for (int64_t c = 0; c < C; ++c) {
    for (int a = 0; a < kPairs; ++a) {
      const T* from = (kFrom[a].low ? lo.data() : hi.data()) + kBnCoeffs * c;
      for (int p = 0; p < 2; ++p) pairs[a * 2 * C + 2 * c + p] = from[kFrom[a].index[p]];
    }
  }
}

// n elements of a row piece whose channel rises by one per element, from channel 0 of pairs.
template <typename T, bool kHasV>
__attribute__((always_inline)) inline void apply_row(const T* __restrict__ u, const T* __restrict__ v,
                                                     const T* __restrict__ pairs, int64_t C, int64_t n,
                                                     T* __restrict__ out) {
  const T* __restrict__ q[kPairs];
  for (int a = 0; a < kPairs; ++a) q[a] = pairs + a * 2 * C;
  for (int64_t j = 0; j < n; ++j) {
    for (int p = 0; p < 2; ++p) {
      const int64_t l = 2 * j + p, partner = 2 * j + 1 - p;
      const T du = (u[l] - q[0][l]) - q[1][l], du_partner = (u[partner] - q[0][partner]) - q[1][partner];
      T o = q[2][l] * du + q[3][l] * du_partner + q[4][l];
      if (kHasV) {
        const T dv = (v[l] - q[5][l]) - q[6][l], dv_partner = (v[partner] - q[5][partner]) - q[6][partner];
        o += q[7][l] * dv + q[8][l] * dv_partner;
      }
      out[l] = o;
    }
  }
}

// n elements of one channel c: apply_row on chunks of 8 elements, with the channel's coefficients
// repeated in 16 lanes (as if 8 channels alike).
template <typename T, bool kHasV>
__attribute__((always_inline)) inline void apply_run(const T* __restrict__ u, const T* __restrict__ v,
                                                     const T* __restrict__ pairs, int64_t C, int64_t c, int64_t n,
                                                     T* __restrict__ out) {
  constexpr int64_t kLanes = 16;
  T lanes[kPairs * kLanes];
  for (int a = 0; a < kPairs; ++a) {
    for (int l = 0; l < kLanes; ++l) lanes[a * kLanes + l] = pairs[a * 2 * C + 2 * c + (l & 1)];
  }
  int64_t j = 0;
  for (; j + kLanes / 2 <= n; j += kLanes / 2) {
    apply_row<T, kHasV>(u + 2 * j, kHasV ? v + 2 * j : nullptr, lanes, kLanes / 2, kLanes / 2, out + 2 * j);
  }
  apply_row<T, kHasV>(u + 2 * j, kHasV ? v + 2 * j : nullptr, lanes, kLanes / 2, n - j, out + 2 * j);
}

// The entry points, with vector clones: the runs of one channel or the row pieces of [begin, end).
#define CPLXFAST_APPLY_LOOPS(T, SUFFIX)                                                                    \
  CPLXFAST_VECTOR_CLONES void apply_runs_##SUFFIX(const T* u, const T* v, const T* pairs, int64_t C,       \
                                                  int64_t inner, int64_t begin, int64_t end, T* out) {     \
    for_each_constant_run(begin, end, inner, C, [&](int64_t b, int64_t e, int64_t c) {                     \
      if (v) {                                                                                             \
        apply_run<T, true>(u + 2 * b, v + 2 * b, pairs, C, c, e - b, out + 2 * b);                         \
      } else {                                                                                             \
        apply_run<T, false>(u + 2 * b, nullptr, pairs, C, c, e - b, out + 2 * b);                          \
      }                                                                                                    \
    });                                                                                                    \
  }                                                                                                        \
  CPLXFAST_VECTOR_CLONES void apply_rows_##SUFFIX(const T* u, const T* v, const T* pairs, int64_t C,       \
                                                  int64_t begin, int64_t end, T* out) {                    \
    for_each_row_piece(begin, end, C, [&](int64_t b, int64_t e, int64_t c0) {                              \
      if (v) {                                                                                             \
        apply_row<T, true>(u + 2 * b, v + 2 * b, pairs + 2 * c0, C, e - b, out + 2 * b);                   \
      } else {                                                                                             \
        apply_row<T, false>(u + 2 * b, nullptr, pairs + 2 * c0, C, e - b, out + 2 * b);                    \
      }                                                                                                    \
    });                                                                                                    \
  }                                                                                                        \
  void apply_task(const T* u, const T* v, const T* pairs, int64_t C, int64_t inner, int64_t b, int64_t e,  \
                  T* out) {                                                                                \
    if (inner == 1) {                                                                                      \
      apply_rows_##SUFFIX(u, v, pairs, C, b, e, out);                                                      \
    } else {                                                                                               \
      apply_runs_##SUFFIX(u, v, pairs, C, inner, b, e, out);                                               \
    }                                                                                                      \
  }
CPLXFAST_APPLY_LOOPS(float, f32)
CPLXFAST_APPLY_LOOPS(double, f64)
#undef CPLXFAST_APPLY_LOOPS

void apply(const BatchNormLayout& L, const at::Tensor& u, const at::Tensor& v, const at::Tensor& coeffs,
           const at::Tensor& out) {
  AT_DISPATCH_FLOATING_TYPES(c10::toRealValueType(L.z.scalar_type()), "cplxfast_bn_apply_cpu", [&] {
    using T = scalar_t;
    std::vector<T> pairs(static_cast<size_t>(kPairs) * 2 * L.C);
    to_pairs(coeffs.data_ptr<double>(), L.C, pairs.data());
    const T* up = static_cast<const T*>(u.data_ptr());
    const T* vp = v.defined() ? static_cast<const T*>(v.data_ptr()) : nullptr;
    T* op = static_cast<T*>(out.data_ptr());
    // One call per task, not per run or row piece: at C = 64 a row piece is ~30 ns of work.
    at::parallel_for(0, L.numel, kGrain, [&](int64_t begin, int64_t end) {
      apply_task(up, vp, pairs.data(), L.C, L.inner, begin, end, op);
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

