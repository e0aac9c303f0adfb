// Elementwise CPU loops are written branch-free so that GCC vectorises them, and their entry
// points are compiled twice, for AVX2 and for the x86-64 baseline, with the right one picked at
// load time (target_clones): full-width vectors on current CPUs, and still runs on any x86-64.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CPLXFAST_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CPLXFAST_VECTOR_CLONES
#endif

#include <cstdint>

namespace cplxfast::cpu {

// The sum of n values in 8 independent float lanes (each its own in-order sum, so the loop
// vectorises without reassociating one sum), then across the lanes in double.
template <typename T>
__attribute__((always_inline)) inline double lane_sum(const T* __restrict__ v, int64_t n) {
  T lanes[8] = {};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    for (int l = 0; l < 8; ++l) lanes[l] += v[j + l];
  }
  double sum = 0;
  for (; j < n; ++j) sum += v[j];
  for (int l = 0; l < 8; ++l) sum += lanes[l];
  return sum;
}

}  // namespace cplxfast::cpu
