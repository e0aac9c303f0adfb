// Elementwise CPU loops are written branch-free so that GCC vectorises them, and their entry
// points are compiled three times, for AVX-512 (F: 16 floats per vector, and FMA, which GCC
// contracts into), AVX2 and the x86-64 baseline, with the right one picked at load time
// (target_clones): full-width vectors on current CPUs, and still runs on any x86-64. The AVX-512
// clone is what brought the modReLU backward to memory speed on an AVX-512 Xeon (bench/RESULTS.md).
// flatten: everything a clone calls is inlined into it and compiled for its ISA. Without it GCC
// left some loop bodies (lambdas passed to for_each_row_piece / for_each_constant_run, batch
// norm's apply among them) as out-of-line functions, compiled for the baseline only (SSE2).
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CPLXFAST_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default"), flatten))
#else
#define CPLXFAST_VECTOR_CLONES
#endif

#include <cstdint>

namespace cplxfast::cpu {

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

// Interleaved complex values <-> two planes, for loops whose maths runs in planes: a loop that
// reads re and im of one element side by side, GCC vectorises as pairs (each vector holds re and
// im of half as many elements), so every division and square root is done twice over.
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

// Software prefetch of the cache lines `bytes` from p + kPrefetchAhead on: the loops that read
// and write several streams through L1 blocks (deinterleave, maths, interleave) do not overlap
// their maths with their memory traffic on their own; asked for 4 KB ahead, the modReLU backward
// measured 1.2-1.4x faster (bench/RESULTS.md). x86 prefetches never fault, so an address past the
// end of a tensor is harmless; it is computed as an integer, not as an out-of-bounds pointer.
constexpr std::uintptr_t kPrefetchAhead = 4096;

template <bool kForWrite>
__attribute__((always_inline)) inline void prefetch_ahead(const void* p, int64_t bytes) {
  const std::uintptr_t ahead = reinterpret_cast<std::uintptr_t>(p) + kPrefetchAhead;
  for (int64_t c = 0; c < bytes; c += 64) __builtin_prefetch(reinterpret_cast<const void*>(ahead + c), kForWrite, 3);
}

}  // namespace cplxfast::cpu
