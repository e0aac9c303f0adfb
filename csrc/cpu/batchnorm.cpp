// Complex batch norm on CPU: the device-agnostic driver (common/batchnorm.cpp) with CPU kernels.
// Training forward: one pass for the per-channel moments, one apply pass; backward: one pass
// for the per-channel gradient sums, one apply pass. Reductions keep per-thread partial sums
// in double, and float sums below them: lane-wise on the interleaved values (each float lane its
// own in-order sum), in vector sums over a run of one channel (run_sums_of) or in per-channel pair
// arrays along channels_last rows (row_walk_sums), flushed to double every 512 elements or rows.
// The loops run in 64-byte vectors on CPUs with AVX-512 and 32-byte ones on the others
// (cpu/vectorize.h's CPLXFAST_WIDTH_VERSIONS), and ask for their data 4 KB ahead (prefetch_ahead):
// in 64-byte vectors, channels_last grad sums from memory (32x64x32x32, two threads) took 0.52-0.64
// ms without it, 0.47-0.53 ms with it.
#include <algorithm>
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

// The two kinds of per-channel sums: the forward's moments of x' (x shifted) and the backward's
// gradient sums of (x', g).
struct MomentSums {
  static constexpr int K = 5;
  // The widest vectors (bytes) for its sums (see GradSums).
  static constexpr int kMaxBytes = 64;
  // The sums r, i, r^2, r i, i^2 of x' = (r, i), lane-wise: for x' of this part d and of the other
  // ds, the terms d, d^2, d ds (r i in both lanes).
  template <typename T>
  CPLXFAST_INLINE static void pair_terms(T d, T ds, T, T* v) {
    v[0] = d;
    v[1] = d * d;
    v[2] = d * ds;
  }
  // Sum k as {pair array, part}.
  static constexpr int kFromPairs[K][2] = {{0, 0}, {0, 1}, {1, 0}, {2, 0}, {1, 1}};
};

struct GradSums {
  static constexpr int K = 6;
  // 32: on a Zen 5 EPYC these sums ran slower in 64-byte vectors than in 32-byte ones: along
  // channels_last rows from memory (32x64x32x32, two threads) 0.47-0.53 ms against 0.37-0.39 ms, in
  // runs of one channel in L2 (one thread) 0.22-0.25 ns per element against 0.20-0.22; the
  // moments, which read one tensor, not two, ran faster in 64-byte vectors. A standalone copy of
  // the run loop, 1 MB of data in L2: both sums at ~100-110 GB/s from L2 (one thread), the moments
  // 2x faster in 64-byte vectors (half the instructions, a bandwidth they had not reached), the
  // grad sums, already at it in 32-byte ones, 8% slower in 64-byte ones.
  static constexpr int kMaxBytes = 32;
  // The sums gr, gi, gr xr, gr xi, gi xr, gi xi of (x', g), lane-wise: for x' of this part d, of
  // the other ds, and g of this part, the terms g, g d, g ds.
  template <typename T>
  CPLXFAST_INLINE static void pair_terms(T d, T ds, T g, T* v) {
    v[0] = g;
    v[1] = g * d;
    v[2] = g * ds;
  }
  static constexpr int kFromPairs[K][2] = {{0, 0}, {0, 1}, {1, 0}, {2, 0}, {2, 1}, {1, 1}};
};

namespace narrow {

// The loops work lane-wise on the interleaved values, a vector (VecOf<T, kBytes>, cpu/vectorize.h) of
// lanes at a time: lane l is part l % 2 of element l / 2, and its partner lane l ^ 1 (the other
// part) is a swap within the same vector (swap_parts). Per-channel values (shifts, apply
// coefficients, float sums) are laid out the same way, 2 per channel, so every load and store is
// unit stride. Read as (re, im) pairs into per-part arrays, GCC vectorised each pair alone and
// gathered the per-channel values as scalars (vinsertps), at 1.3-1.6x the time per element; left
// to GCC's vectoriser, the lane-wise loops changed shape with unrelated edits to this file (a
// run-sums loop once became scalar SSE code, 3x slower), hence the explicit vectors.
//
// The sums: three pair arrays of the float sums, S::pair_terms of each lane (S::kFromPairs maps
// them back to the K sums).
//
// Channels_last: the sums of a task's elements as one walk over their lanes (cpu/runs.h's
// RowCursor over rows of 2 C lanes); shift and the three pair arrays a[3] are extended rows of
// stride W = extended_stride(2 C). The last lanes (fewer than a vector) go one by one.
template <typename T, int kBytes, typename S, bool kHasY>
__attribute__((always_inline)) inline void row_walk_sums(const T* __restrict__ x, const T* __restrict__ y,
                                                         int64_t lanes, RowCursor pos, const T* __restrict__ shift,
                                                         T* __restrict__ a, int64_t W) {
  constexpr int64_t K = ComplexChunk<T, kBytes>::kSize;
  int64_t i = 0;
  for (; i + K <= lanes; i += K, pos.next()) {
    prefetch_ahead<false>(x + i, K * sizeof(T));
    if (kHasY) prefetch_ahead<false>(y + i, K * sizeof(T));
    const VecOf<T, kBytes> d = load_vec<T, kBytes>(x + i) - load_vec<T, kBytes>(shift + pos.at);
    VecOf<T, kBytes> v[3];
    S::pair_terms(d, swap_parts<T, kBytes>(d), kHasY ? load_vec<T, kBytes>(y + i) : VecOf<T, kBytes>{}, v);
    for (int k = 0; k < 3; ++k)
      store_vec<T, kBytes>(a + k * W + pos.at, load_vec<T, kBytes>(a + k * W + pos.at) + v[k]);
  }
  for (int64_t q = pos.at; i < lanes; ++i, ++q) {
    T v[3];
    S::pair_terms(x[i] - shift[q], x[i ^ 1] - shift[q ^ 1], kHasY ? y[i] : T(0), v);
    for (int k = 0; k < 3; ++k) a[k * W + q] += v[k];
  }
}

// Sums over one run of one channel of S: two vectors of lanes at a time into six vector sums
// (independent, so that no chain of dependent adds sets the pace), the shift the channel's pair
// repeated; flushed to double every kBlock elements. x is shifted by (sx0, sx1); y (read only
// with kHasY: a test on it inside the loop stops the loop vectorising) is not.
template <typename T, int kBytes, typename S, bool kHasY>
__attribute__((always_inline)) inline void run_sums_of(const T* __restrict__ x, const T* __restrict__ y, int64_t n,
                                                       T sx0, T sx1, double* acc) {
  using V = VecOf<T, kBytes>;
  constexpr int64_t K = ComplexChunk<T, kBytes>::kSize;
  constexpr int64_t kBlock = 512;
  V shift;
  for (int l = 0; l < K; ++l) shift[l] = l % 2 == 0 ? sx0 : sx1;
  for (int64_t b = 0; b < 2 * n; b += 2 * kBlock) {
    const int64_t m = std::min(2 * kBlock, 2 * n - b);
    const T* xb = x + b;
    const T* yb = kHasY ? y + b : nullptr;
    V a[2][3] = {};
    int64_t i = 0;
    for (; i + 2 * K <= m; i += 2 * K) {
      prefetch_ahead<false>(xb + i, 2 * K * sizeof(T));
      if (kHasY) prefetch_ahead<false>(yb + i, 2 * K * sizeof(T));
      for (int h = 0; h < 2; ++h) {
        const V d = load_vec<T, kBytes>(xb + i + h * K) - shift;
        V v[3];
        S::pair_terms(d, swap_parts<T, kBytes>(d), kHasY ? load_vec<T, kBytes>(yb + i + h * K) : V{}, v);
        for (int k = 0; k < 3; ++k) a[h][k] += v[k];
      }
    }
    double pair[3][2] = {};
    for (; i < m; ++i) {
      T v[3];
      S::pair_terms(xb[i] - shift[i & 1], xb[i ^ 1] - shift[(i & 1) ^ 1], kHasY ? yb[i] : T(0), v);
      for (int k = 0; k < 3; ++k) pair[k][i & 1] += v[k];
    }
    for (int k = 0; k < 3; ++k) {
      for (int h = 0; h < 2; ++h) {
        for (int l = 0; l < K; ++l) pair[k][l & 1] += a[h][k][l];
      }
    }
    for (int k = 0; k < S::K; ++k) acc[k] += pair[S::kFromPairs[k][0]][S::kFromPairs[k][1]];
  }
}

}  // namespace narrow

// Their run and row loops as entry points with a body per vector width (cpu/vectorize.h's
// CPLXFAST_WIDTH_VERSIONS). These loops make no vector comparisons, so one set of templates serves
// both widths (cpu/modrelu_kernels.h says why modReLU needs two): `wide` is `narrow`.
namespace wide = narrow;
#define CPLXFAST_SUM_LOOPS(S, T)                                                                                    \
  CPLXFAST_WIDTH_VERSIONS(void, sum_run, (S, const T* x, const T* y, int64_t n, T sx0, T sx1, double* acc),         \
                          (S{}, x, y, n, sx0, sx1, acc), {                                                          \
                            constexpr int kSumBytes = std::min(kBytes, S::kMaxBytes);                               \
                            if (y != nullptr)                                                                       \
                              return kernels::run_sums_of<T, kSumBytes, S, true>(x, y, n, sx0, sx1, acc);           \
                            kernels::run_sums_of<T, kSumBytes, S, false>(x, y, n, sx0, sx1, acc);                   \
                          })                                                                                        \
  CPLXFAST_WIDTH_VERSIONS(                                                                                          \
      void, sum_rows,                                                                                               \
      (S, const T* x, const T* y, int64_t lanes, int64_t first, int64_t width, const T* shift, T* sums, int64_t W), \
      (S{}, x, y, lanes, first, width, shift, sums, W), {                                                           \
        constexpr int kSumBytes = std::min(kBytes, S::kMaxBytes);                                                   \
        const RowCursor pos(width, ComplexChunk<T, kSumBytes>::kSize, first);                                       \
        if (y != nullptr) return kernels::row_walk_sums<T, kSumBytes, S, true>(x, y, lanes, pos, shift, sums, W);   \
        kernels::row_walk_sums<T, kSumBytes, S, false>(x, y, lanes, pos, shift, sums, W);                           \
      })
CPLXFAST_SUM_LOOPS(MomentSums, float)
CPLXFAST_SUM_LOOPS(MomentSums, double)
CPLXFAST_SUM_LOOPS(GradSums, float)
CPLXFAST_SUM_LOOPS(GradSums, double)
#undef CPLXFAST_SUM_LOOPS

// Per-channel sums of S over the whole tensor: [C, K] double. shift[c] (2 per channel) is
// subtracted from x first.
template <typename T, typename S>
at::Tensor channel_sums(const BatchNormLayout& L, const T* x, const T* y, const std::vector<T>& shift) {
  constexpr int K = S::K;
  Partials<K> partials(L.C);
  const RowArray<T> shift_ext = L.inner == 1 ? extended_row(shift.data(), 2 * L.C) : RowArray<T>();
  at::parallel_for(0, L.numel, kGrain, [&](int64_t begin, int64_t end) {
    double* acc = partials.mine();
    if (L.inner != 1) {
      return for_each_constant_run(begin, end, L.inner, L.C, [&](int64_t b, int64_t e, int64_t c) {
        sum_run(S{}, x + 2 * b, y ? y + 2 * b : nullptr, e - b, shift[2 * c], shift[2 * c + 1], acc + c * K);
      });
    }
    // channels_last: the float pair sums [3][W] of up to kFlush rows (row_walk_sums), folded and
    // flushed to double.
    const int64_t W = extended_stride<T>(2 * L.C);
    RowArray<T> row(static_cast<size_t>(3) * W, T(0));
    for (int64_t b = begin; b < end; b += kFlush * L.C) {
      const int64_t e = std::min(end, b + kFlush * L.C);
      sum_rows(S{}, x + 2 * b, y ? y + 2 * b : nullptr, 2 * (e - b), 2 * b, 2 * L.C, shift_ext.data(), row.data(), W);
      for (int a = 0; a < 3; ++a) fold_extension(row.data() + a * W, 2 * L.C);
      for (int64_t c = 0; c < L.C; ++c) {
        for (int k = 0; k < K; ++k) acc[c * K + k] += row[S::kFromPairs[k][0] * W + 2 * c + S::kFromPairs[k][1]];
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
    out =
        channel_sums<T, GradSums>(L, static_cast<const T*>(L.z.data_ptr()), static_cast<const T*>(g.data_ptr()), shift);
  });
  return out.view({1, L.C, 6});
}

// The apply pass: out = A (u - su) + D (v - sv) + c per channel (forward: u = z, no v; backward:
// u = g, v = z), lane-wise as the sums are (apply_vec). The coefficients are in the data's
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
                                         {{1, 2}, false},   {{8, 9}, false},  {{12, 13}, false},
                                         {{12, 13}, true},  {{4, 7}, false},  {{5, 6}, false}};
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

// The kPairs arrays of 2 C values as extended rows (cpu/runs.h), for row_walk_apply.
template <typename T>
RowArray<T> extended_rows(const T* pairs, int64_t width) {
  RowArray<T> ext;
  for (int a = 0; a < kPairs; ++a) {
    const RowArray<T> row = extended_row(pairs + a * width, width);
    ext.insert(ext.end(), row.begin(), row.end());
  }
  return ext;
}

namespace narrow {

// One vector of output lanes from the input lanes u (and v) and the coefficient vectors q(a),
// a < kPairs, of the same lanes.
template <typename T, int kBytes, bool kHasV, typename Coeffs>
__attribute__((always_inline)) inline VecOf<T, kBytes> apply_vec(VecOf<T, kBytes> u, VecOf<T, kBytes> v,
                                                                 const Coeffs& q) {
  const VecOf<T, kBytes> du = (u - q(0)) - q(1);
  VecOf<T, kBytes> o = q(2) * du + q(3) * swap_parts<T, kBytes>(du) + q(4);
  if (kHasV) {
    const VecOf<T, kBytes> dv = (v - q(5)) - q(6);
    o += q(7) * dv + q(8) * swap_parts<T, kBytes>(dv);
  }
  return o;
}

// apply_vec over `lanes` lanes (whole elements), coefficients q(a) for the vector at lane i taken
// from coeffs(i); the last lanes (fewer than a vector) through copies padded with zeros.
template <typename T, int kBytes, bool kHasV, typename CoeffsAt>
__attribute__((always_inline)) inline void apply_lanes(const T* __restrict__ u, const T* __restrict__ v, int64_t lanes,
                                                       const CoeffsAt& coeffs, T* __restrict__ out) {
  constexpr int64_t K = ComplexChunk<T, kBytes>::kSize;
  int64_t i = 0;
  for (; i + K <= lanes; i += K) {
    prefetch_ahead<false>(u + i, K * sizeof(T));
    if (kHasV) prefetch_ahead<false>(v + i, K * sizeof(T));
    prefetch_ahead<true>(out + i, K * sizeof(T));
    store_vec<T, kBytes>(
        out + i, apply_vec<T, kBytes, kHasV>(load_vec<T, kBytes>(u + i),
                                             kHasV ? load_vec<T, kBytes>(v + i) : VecOf<T, kBytes>{}, coeffs(i)));
  }
  if (i == lanes) return;
  alignas(32) T u_pad[K] = {}, v_pad[K] = {}, out_pad[K];
  std::copy(u + i, u + lanes, u_pad);
  if (kHasV) std::copy(v + i, v + lanes, v_pad);
  store_vec<T, kBytes>(out_pad,
                       apply_vec<T, kBytes, kHasV>(load_vec<T, kBytes>(u_pad), load_vec<T, kBytes>(v_pad), coeffs(i)));
  std::copy(out_pad, out_pad + (lanes - i), out + i);
}

// n elements of one channel c: its coefficients as vectors of its pair repeated.
template <typename T, int kBytes, bool kHasV>
__attribute__((always_inline)) inline void apply_run(const T* u, const T* v, const T* pairs, int64_t C, int64_t c,
                                                     int64_t n, T* out) {
  VecOf<T, kBytes> q[kPairs];
  for (int a = 0; a < kPairs; ++a) {
    for (int l = 0; l < ComplexChunk<T, kBytes>::kSize; ++l) q[a][l] = pairs[a * 2 * C + 2 * c + (l & 1)];
  }
  apply_lanes<T, kBytes, kHasV>(
      u, v, 2 * n, [&](int64_t) CPLXFAST_INLINE { return [&](int a) CPLXFAST_INLINE { return q[a]; }; }, out);
}

// Channels_last: a task's lanes in one walk, as row_walk_sums walks them; the kPairs coefficient
// arrays are extended rows of stride W = extended_stride(2 C), read at the cursor's position.
template <typename T, int kBytes, bool kHasV>
__attribute__((always_inline)) inline void row_walk_apply(const T* u, const T* v, const T* pairs, int64_t W,
                                                          int64_t lanes, RowCursor pos, T* out) {
  apply_lanes<T, kBytes, kHasV>(
      u, v, lanes,
      [&](int64_t) CPLXFAST_INLINE {
        const T* q = pairs + pos.at;
        pos.next();
        return [q, W](int a) CPLXFAST_INLINE { return load_vec<T, kBytes>(q + a * W); };
      },
      out);
}

}  // namespace narrow

// The entry points, a body per vector width: the runs of one channel or the lanes of [begin, end)
// along channels_last rows. pairs: kPairs arrays of 2 C values for runs, of W (extended rows) for rows.
#define CPLXFAST_APPLY_LOOPS(T)                                                                                 \
  CPLXFAST_WIDTH_VERSIONS(                                                                                      \
      void, apply_task,                                                                                         \
      (const T* u, const T* v, const T* pairs, int64_t C, int64_t inner, int64_t begin, int64_t end, T* out),   \
      (u, v, pairs, C, inner, begin, end, out), {                                                               \
        if (inner == 1) {                                                                                       \
          const RowCursor pos(2 * C, ComplexChunk<T, kBytes>::kSize, 2 * begin);                                \
          const int64_t W = extended_stride<T>(2 * C), lanes = 2 * (end - begin);                               \
          if (v)                                                                                                \
            return kernels::row_walk_apply<T, kBytes, true>(u + 2 * begin, v + 2 * begin, pairs, W, lanes, pos, \
                                                            out + 2 * begin);                                   \
          return kernels::row_walk_apply<T, kBytes, false>(u + 2 * begin, nullptr, pairs, W, lanes, pos,        \
                                                           out + 2 * begin);                                    \
        }                                                                                                       \
        for_each_constant_run(begin, end, inner, C, [&](int64_t b, int64_t e, int64_t c) CPLXFAST_INLINE {      \
          if (v) {                                                                                              \
            kernels::apply_run<T, kBytes, true>(u + 2 * b, v + 2 * b, pairs, C, c, e - b, out + 2 * b);         \
          } else {                                                                                              \
            kernels::apply_run<T, kBytes, false>(u + 2 * b, nullptr, pairs, C, c, e - b, out + 2 * b);          \
          }                                                                                                     \
        });                                                                                                     \
      })
CPLXFAST_APPLY_LOOPS(float)
CPLXFAST_APPLY_LOOPS(double)
#undef CPLXFAST_APPLY_LOOPS

void apply(const BatchNormLayout& L, const at::Tensor& u, const at::Tensor& v, const at::Tensor& coeffs,
           const at::Tensor& out) {
  AT_DISPATCH_FLOATING_TYPES(c10::toRealValueType(L.z.scalar_type()), "cplxfast_bn_apply_cpu", [&] {
    using T = scalar_t;
    RowArray<T> pairs(static_cast<size_t>(kPairs) * 2 * L.C);
    to_pairs(coeffs.data_ptr<double>(), L.C, pairs.data());
    if (L.inner == 1) pairs = extended_rows(pairs.data(), 2 * L.C);
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

std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm(const at::Tensor& input,
                                                          const c10::optional<at::Tensor>& weight,
                                                          const c10::optional<at::Tensor>& bias,
                                                          const c10::optional<at::Tensor>& running_mean,
                                                          const c10::optional<at::Tensor>& running_var, bool training,
                                                          double eps) {
  return batch_norm_forward(input, weight, bias, running_mean, running_var, training, eps, backend());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm_backward(const at::Tensor& grad, const at::Tensor& input,
                                                                   const c10::optional<at::Tensor>& weight,
                                                                   const at::Tensor& mean, const at::Tensor& cov,
                                                                   bool training, std::array<bool, 3> output_mask,
                                                                   const c10::optional<at::Tensor>& grad_sums,
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
