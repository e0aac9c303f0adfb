// Elementwise CPU loops are written branch-free so that GCC vectorises them, and their entry
// points are compiled three times, for AVX-512 (F: 16 floats per vector, and FMA, which GCC
// contracts into), x86-64-v3 (AVX2 with FMA, every AVX2 CPU since Haswell and Zen; GCC contracts
// there too) and the x86-64 baseline, with the right one picked at load time (target_clones):
// full-width vectors on current CPUs, and still runs on any x86-64. The AVX-512 clone is what
// brought the modReLU backward to memory speed on an AVX-512 Xeon (bench/RESULTS.md); FMA took 8%
// off the in-cache time of the chunked modReLU backward on an AVX2 EPYC (a plain "avx2" clone has
// no FMA).
// flatten: everything a clone calls is inlined into it and compiled for its ISA. Without it GCC
// left some loop bodies (lambdas passed to the row and run walkers of cpu/runs.h, batch norm's
// apply among them) as out-of-line functions, compiled for the baseline only (SSE2).
// flatten is a request GCC may still decline: it left a lambda that modReLU's loop called from two
// places out of line in some clones (a baseline-only loop, 13x slower). Loop bodies passed as
// lambdas to a clone's walkers, and member functions that take or return vectors, are marked
// CPLXFAST_INLINE, which GCC must honour.
#pragma once

#if !defined(__GNUC__) || defined(__clang__)
#error "cplxfast's CPU kernels are written for GCC: its vector extensions (__builtin_shuffle, vector conditionals) and target_clones"
#endif

#if defined(__x86_64__) && __GNUC__ >= 12
#define CPLXFAST_VECTOR_CLONES __attribute__((target_clones("avx512f", "arch=x86-64-v3", "default"), flatten))
#elif defined(__x86_64__)  // no x86-64-v3 clones before GCC 12
#define CPLXFAST_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default"), flatten))
#else
#define CPLXFAST_VECTOR_CLONES
#endif

#include <cmath>
#include <cstdint>

// For lambdas: [&](...) CPLXFAST_INLINE { ... }.
#define CPLXFAST_INLINE __attribute__((always_inline))

namespace cplxfast::cpu {

// Interleaved complex values <-> two planes in memory, for data that the maths reads many times
// (the depthwise convolution's padded rows, read once per kernel tap).
template <typename T>
__attribute__((always_inline)) inline void deinterleave(const T* __restrict__ z, int64_t n, T* __restrict__ re,
                                                        T* __restrict__ im) {
  for (int64_t j = 0; j < n; ++j) {
    re[j] = z[2 * j];
    im[j] = z[2 * j + 1];
  }
}

template <typename T>
__attribute__((always_inline)) inline void interleave(const T* __restrict__ re, const T* __restrict__ im, int64_t n,
                                                      T* __restrict__ z) {
  for (int64_t j = 0; j < n; ++j) {
    z[2 * j] = re[j];
    z[2 * j + 1] = im[j];
  }
}

// The sum of n values in 32 independent float lanes (each its own in-order sum, so the loop
// vectorises without reassociating one sum), then across the lanes in double. Four vectors of
// eight, not one: a single accumulator is a chain of dependent vector adds (one per 8 values, at
// the add's latency), which perf showed as half the time of batch norm's statistics pass when it
// summed this way.
template <typename T>
__attribute__((always_inline)) inline double lane_sum(const T* __restrict__ v, int64_t n) {
  T lanes[4][8] = {};
  int64_t j = 0;
  for (; j + 32 <= n; j += 32) {
    for (int a = 0; a < 4; ++a) {
      for (int l = 0; l < 8; ++l) lanes[a][l] += v[j + 8 * a + l];
    }
  }
  for (; j + 8 <= n; j += 8) {
    for (int l = 0; l < 8; ++l) lanes[0][l] += v[j + l];
  }
  double sum = 0;
  for (; j < n; ++j) sum += v[j];
  for (int a = 0; a < 4; ++a) {
    for (int l = 0; l < 8; ++l) sum += lanes[a][l];
  }
  return sum;
}

// Complex values in registers, for elementwise loops whose maths runs on real and imaginary parts
// (modReLU): a chunk of kSize interleaved values is loaded as two 32-byte vectors and split into
// one vector of real parts and one of imaginary parts by one in-lane shuffle each (vshufps /
// vunpcklpd), and merged back by two (vunpcklps / vunpckhps). Planes in L1 (deinterleave above)
// cost four cross-lane permutes and blends per vector in, a store and a load per plane, and
// measured as much time as the maths itself (bench/RESULTS.md, 2026-12-07). The price of the
// in-lane shuffles is the order: lane q of a split vector holds element kOrder[q] of the chunk, so
// values that vary per element (per-channel thresholds along a channels_last row, their gradient
// sums) go through in_lane_order, which maps natural order to lane order and back (kOrder is its
// own inverse). 32-byte vectors in every clone: on AVX-512 too, where a 64-byte shuffle of this kind
// is one vpermt2ps but AVX2 and the baseline would lower it element by element.
template <typename T>
struct ComplexChunk;

// The helpers below (and the kernels built on them) pass 32-byte vectors by value. They are always
// inlined into the clones, so no vector crosses a call, and GCC's note that such a call's ABI
// differs without AVX does not apply. Off for the rest of each file that includes this header:
// GCC reports it for template instantiations at the end of the file, after any pop.
#pragma GCC diagnostic ignored "-Wpsabi"

template <>
struct ComplexChunk<float> {
  static constexpr int kSize = 8;
  typedef float Vec __attribute__((vector_size(32)));
  typedef int32_t Index;  // a lane's element index, and the lanes of a comparison's mask
  typedef Index Mask __attribute__((vector_size(32)));
  static constexpr Mask kRe{0, 2, 8, 10, 4, 6, 12, 14}, kIm{1, 3, 9, 11, 5, 7, 13, 15};
  static constexpr Mask kLow{0, 8, 1, 9, 4, 12, 5, 13}, kHigh{2, 10, 3, 11, 6, 14, 7, 15};
  static constexpr Mask kOrder{0, 1, 4, 5, 2, 3, 6, 7};
  static constexpr Mask kSwap{1, 0, 3, 2, 5, 4, 7, 6};
};

template <>
struct ComplexChunk<double> {
  static constexpr int kSize = 4;
  typedef double Vec __attribute__((vector_size(32)));
  typedef int64_t Index;
  typedef Index Mask __attribute__((vector_size(32)));
  static constexpr Mask kRe{0, 4, 2, 6}, kIm{1, 5, 3, 7}, kLow{0, 4, 2, 6}, kHigh{1, 5, 3, 7};
  static constexpr Mask kOrder{0, 2, 1, 3};
  static constexpr Mask kSwap{1, 0, 3, 2};
};

template <typename T>
using VecOf = typename ComplexChunk<T>::Vec;

template <typename T>
__attribute__((always_inline)) inline VecOf<T> load_vec(const T* p) {
  VecOf<T> v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}

template <typename T>
__attribute__((always_inline)) inline void store_vec(T* p, VecOf<T> v) {
  __builtin_memcpy(p, &v, sizeof(v));
}

// kSize interleaved values at z -> real and imaginary parts in lane order.
template <typename T>
__attribute__((always_inline)) inline void load_split(const T* z, VecOf<T>& re, VecOf<T>& im) {
  using C = ComplexChunk<T>;
  const VecOf<T> a = load_vec(z), b = load_vec(z + C::kSize);
  re = __builtin_shuffle(a, b, C::kRe);
  im = __builtin_shuffle(a, b, C::kIm);
}

// The inverse of load_split: parts in lane order -> kSize interleaved values at z.
template <typename T>
__attribute__((always_inline)) inline void merge_store(VecOf<T> re, VecOf<T> im, T* z) {
  using C = ComplexChunk<T>;
  store_vec(z, __builtin_shuffle(re, im, C::kLow));
  store_vec(z + C::kSize, __builtin_shuffle(re, im, C::kHigh));
}

// Each lane's partner, the other part of its complex value (lanes 2k and 2k + 1 swapped), for data
// kept interleaved.
template <typename T>
__attribute__((always_inline)) inline VecOf<T> swap_parts(VecOf<T> v) {
  return __builtin_shuffle(v, ComplexChunk<T>::kSwap);
}

// Natural order <-> lane order (either way: the permutation is an involution).
template <typename T>
__attribute__((always_inline)) inline VecOf<T> in_lane_order(VecOf<T> v) {
  return __builtin_shuffle(v, ComplexChunk<T>::kOrder);
}

// Elementwise square root: GCC turns the lane loop into one vsqrtps / vsqrtpd.
template <typename T>
__attribute__((always_inline)) inline VecOf<T> sqrt_vec(VecOf<T> x) {
  VecOf<T> r;
  for (int l = 0; l < ComplexChunk<T>::kSize; ++l) r[l] = std::sqrt(x[l]);
  return r;
}

// The sum of a vector's lanes, in double.
template <typename T>
__attribute__((always_inline)) inline double vec_sum(VecOf<T> v) {
  double sum = 0;
  for (int l = 0; l < ComplexChunk<T>::kSize; ++l) sum += v[l];
  return sum;
}

// Software prefetch of the cache lines `bytes` from p + kPrefetchAhead on: a loop that streams
// several tensors through the maths does not overlap the two on its own; asked for 4 KB ahead,
// the modReLU backward measured 1.2-1.4x faster (bench/RESULTS.md). x86 prefetches never fault, so
// an address past the end of a tensor is harmless; it is computed as an integer, not as an
// out-of-bounds pointer.
constexpr std::uintptr_t kPrefetchAhead = 4096;

template <bool kForWrite>
__attribute__((always_inline)) inline void prefetch_ahead(const void* p, int64_t bytes) {
  const std::uintptr_t ahead = reinterpret_cast<std::uintptr_t>(p) + kPrefetchAhead;
  for (int64_t c = 0; c < bytes; c += 64) __builtin_prefetch(reinterpret_cast<const void*>(ahead + c), kForWrite, 3);
}

}  // namespace cplxfast::cpu
