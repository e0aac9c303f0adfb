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
#define CPLXFAST_NARROW_CLONES __attribute__((target_clones("arch=x86-64-v3", "default"), flatten))
#elif defined(__x86_64__)  // no x86-64-v3 clones before GCC 12
#define CPLXFAST_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default"), flatten))
#define CPLXFAST_NARROW_CLONES __attribute__((target_clones("avx2", "default"), flatten))
#else
#define CPLXFAST_VECTOR_CLONES
#define CPLXFAST_NARROW_CLONES
#endif

// Entry points whose loops take their vector width in bytes as a template parameter:
//   CPLXFAST_WIDTH_VERSIONS(return type, name, (parameters), (arguments), { body })
// defines name_wide, AVX-512 with 64-byte vectors, name_narrow, 32-byte vectors in x86-64-v3 and
// baseline clones, and name, which calls name_wide where wide_vectors() says so. target_clones
// compile one body for every ISA, which held the AVX-512 clone to ComplexChunk's 32-byte vectors;
// on a Zen 5 EPYC (full-width AVX-512 units) the modReLU backward's vector maths ran 1.8x faster in
// 64-byte ones (bench/RESULTS.md). In the body, kBytes is the width and `kernels` names the
// namespace of the kernel templates compiled for the version's target: `wide`, defined between
// CPLXFAST_BEGIN_AVX512 and CPLXFAST_END_AVX512, or `narrow` (cpu/modrelu_kernels.h says why there
// are two). AVX-512 with DQ, VL and BW (x86-64-v4's set), not F alone: with F alone GCC made the
// vector comparisons' masks lane by lane.
#if defined(__x86_64__)
// The AVX-512 target of the wide versions and of the kernel templates compiled for them (one
// string for both: the two must agree, or GCC refuses to inline the templates).
#define CPLXFAST_AVX512_TARGET "avx512f,avx512vl,avx512dq,avx512bw"
#define CPLXFAST_PRAGMA(text) _Pragma(#text)
#define CPLXFAST_TARGET_PRAGMA(isa) CPLXFAST_PRAGMA(GCC target(isa))
#define CPLXFAST_BEGIN_AVX512 _Pragma("GCC push_options") CPLXFAST_TARGET_PRAGMA(CPLXFAST_AVX512_TARGET)
#define CPLXFAST_END_AVX512 _Pragma("GCC pop_options")
#define CPLXFAST_WIDTH_VERSIONS(RET, NAME, PARAMS, ARGS, ...)                                     \
  __attribute__((target(CPLXFAST_AVX512_TARGET), flatten)) RET NAME##_wide PARAMS {               \
    constexpr int kBytes = 64;                                                                    \
    namespace kernels = wide;                                                                     \
    __VA_ARGS__                                                                                   \
  }                                                                                               \
  CPLXFAST_NARROW_CLONES RET NAME##_narrow PARAMS {                                               \
    constexpr int kBytes = 32;                                                                    \
    namespace kernels = narrow;                                                                   \
    __VA_ARGS__                                                                                   \
  }                                                                                               \
  RET NAME PARAMS { return ::cplxfast::cpu::wide_vectors() ? NAME##_wide ARGS : NAME##_narrow ARGS; }
#else
#define CPLXFAST_BEGIN_AVX512
#define CPLXFAST_END_AVX512
#define CPLXFAST_WIDTH_VERSIONS(RET, NAME, PARAMS, ARGS, ...) \
  RET NAME PARAMS {                                           \
    constexpr int kBytes = 32;                                \
    namespace kernels = narrow;                               \
    __VA_ARGS__                                               \
  }
#endif

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>

// For lambdas: [&](...) CPLXFAST_INLINE { ... }.
#define CPLXFAST_INLINE __attribute__((always_inline))

namespace cplxfast::cpu {

// Whether CPLXFAST_WIDTH_VERSIONS' entry points take their 64-byte versions: where the CPU has
// x86-64-v4's AVX-512 set, unless the environment variable CPLXFAST_VECTOR_BYTES is 32 (read once:
// for tests of the 32-byte kernels on such a CPU, and for comparisons of the two).
inline bool wide_vectors() {
  static const bool wide = [] {
    const char* cap = std::getenv("CPLXFAST_VECTOR_BYTES");
    const std::string bytes = cap == nullptr ? "" : cap;
    if (bytes != "" && bytes != "32" && bytes != "64") {
      throw std::invalid_argument(
          "cplxfast: CPLXFAST_VECTOR_BYTES must be 32 or 64 (the widest CPU vectors to use), not '" + bytes + "'");
    }
#if defined(__x86_64__)
    __builtin_cpu_init();
    return bytes != "32" && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw");
#else
    return false;
#endif
  }();
  return wide;
}

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
// (modReLU): a chunk of kSize interleaved values is loaded as two vectors of kBytes and split into
// one vector of real parts and one of imaginary parts by one shuffle each, and merged back by two.
// Planes in L1 (deinterleave above) cost four cross-lane permutes and blends per vector in, a store
// and a load per plane, and measured as much time as the maths itself (bench/RESULTS.md,
// 2026-12-07).
// The shuffles are in-lane at either width (vshufps / vunpcklpd in, vunpcklps / vunpckhps out), and
// their price is the order: lane q of a split vector holds element kOrder[q] of the chunk, so values
// that vary per element (per-channel thresholds along a channels_last row, their gradient sums) go
// through in_lane_order and back through in_natural_order (kNatural, the inverse permutation; in
// 32-byte vectors kOrder is its own inverse). In 64-byte vectors (AVX-512 only: AVX2 and the
// baseline would lower their shuffles element by element) the in-lane shuffles replaced two-source
// permutes (vpermt2ps) in natural order: on a Zen 4 EPYC, where a 64-byte op takes both halves of
// the vector unit, modReLU's forward and backward were 3-10% faster for it in L2 (bench/RESULTS.md).
template <typename T, int kBytes = 32>
struct ComplexChunk;

// The helpers below (and the kernels built on them) pass vectors by value. They are always
// inlined into the clones, so no vector crosses a call, and GCC's note that such a call's ABI
// differs without AVX does not apply. Off for the rest of each file that includes this header:
// GCC reports it for template instantiations at the end of the file, after any pop.
#pragma GCC diagnostic ignored "-Wpsabi"

template <>
struct ComplexChunk<float, 32> {
  static constexpr int kSize = 8;
  typedef float Vec __attribute__((vector_size(32)));
  typedef int32_t Index;  // a lane's element index, and the lanes of a comparison's mask
  typedef Index Mask __attribute__((vector_size(32)));
  static constexpr Mask kRe{0, 2, 8, 10, 4, 6, 12, 14}, kIm{1, 3, 9, 11, 5, 7, 13, 15};
  static constexpr Mask kLow{0, 8, 1, 9, 4, 12, 5, 13}, kHigh{2, 10, 3, 11, 6, 14, 7, 15};
  static constexpr Mask kOrder{0, 1, 4, 5, 2, 3, 6, 7}, kNatural = kOrder;
  static constexpr Mask kSwap{1, 0, 3, 2, 5, 4, 7, 6};
};

template <>
struct ComplexChunk<double, 32> {
  static constexpr int kSize = 4;
  typedef double Vec __attribute__((vector_size(32)));
  typedef int64_t Index;
  typedef Index Mask __attribute__((vector_size(32)));
  static constexpr Mask kRe{0, 4, 2, 6}, kIm{1, 5, 3, 7}, kLow{0, 4, 2, 6}, kHigh{1, 5, 3, 7};
  static constexpr Mask kOrder{0, 2, 1, 3}, kNatural = kOrder;
  static constexpr Mask kSwap{1, 0, 3, 2};
};

template <>
struct ComplexChunk<float, 64> {
  static constexpr int kSize = 16;
  typedef float Vec __attribute__((vector_size(64)));
  typedef int32_t Index;
  typedef Index Mask __attribute__((vector_size(64)));
  static constexpr Mask kRe{0, 2, 16, 18, 4, 6, 20, 22, 8, 10, 24, 26, 12, 14, 28, 30};
  static constexpr Mask kIm{1, 3, 17, 19, 5, 7, 21, 23, 9, 11, 25, 27, 13, 15, 29, 31};
  static constexpr Mask kLow{0, 16, 1, 17, 4, 20, 5, 21, 8, 24, 9, 25, 12, 28, 13, 29};
  static constexpr Mask kHigh{2, 18, 3, 19, 6, 22, 7, 23, 10, 26, 11, 27, 14, 30, 15, 31};
  static constexpr Mask kOrder{0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15};
  static constexpr Mask kNatural{0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15};
  static constexpr Mask kSwap{1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14};
};

template <>
struct ComplexChunk<double, 64> {
  static constexpr int kSize = 8;
  typedef double Vec __attribute__((vector_size(64)));
  typedef int64_t Index;
  typedef Index Mask __attribute__((vector_size(64)));
  static constexpr Mask kRe{0, 8, 2, 10, 4, 12, 6, 14}, kIm{1, 9, 3, 11, 5, 13, 7, 15};
  static constexpr Mask kLow{0, 8, 2, 10, 4, 12, 6, 14}, kHigh{1, 9, 3, 11, 5, 13, 7, 15};
  static constexpr Mask kOrder{0, 4, 1, 5, 2, 6, 3, 7}, kNatural{0, 2, 4, 6, 1, 3, 5, 7};
  static constexpr Mask kSwap{1, 0, 3, 2, 5, 4, 7, 6};
};

template <typename T, int kBytes = 32>
using VecOf = typename ComplexChunk<T, kBytes>::Vec;

template <typename T, int kBytes = 32>
__attribute__((always_inline)) inline VecOf<T, kBytes> load_vec(const T* p) {
  VecOf<T, kBytes> v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}

template <typename T, int kBytes = 32>
__attribute__((always_inline)) inline void store_vec(T* p, VecOf<T, kBytes> v) {
  __builtin_memcpy(p, &v, sizeof(v));
}

// kSize interleaved values at z -> real and imaginary parts in lane order.
template <typename T, int kBytes = 32>
__attribute__((always_inline)) inline void load_split(const T* z, VecOf<T, kBytes>& re, VecOf<T, kBytes>& im) {
  using C = ComplexChunk<T, kBytes>;
  const VecOf<T, kBytes> a = load_vec<T, kBytes>(z), b = load_vec<T, kBytes>(z + C::kSize);
  re = __builtin_shuffle(a, b, C::kRe);
  im = __builtin_shuffle(a, b, C::kIm);
}

// The inverse of load_split: parts in lane order -> kSize interleaved values at z.
template <typename T, int kBytes = 32>
__attribute__((always_inline)) inline void merge_store(VecOf<T, kBytes> re, VecOf<T, kBytes> im, T* z) {
  using C = ComplexChunk<T, kBytes>;
  store_vec<T, kBytes>(z, __builtin_shuffle(re, im, C::kLow));
  store_vec<T, kBytes>(z + C::kSize, __builtin_shuffle(re, im, C::kHigh));
}

// Each lane's partner, the other part of its complex value (lanes 2k and 2k + 1 swapped), for data
// kept interleaved.
template <typename T, int kBytes = 32>
__attribute__((always_inline)) inline VecOf<T, kBytes> swap_parts(VecOf<T, kBytes> v) {
  return __builtin_shuffle(v, ComplexChunk<T, kBytes>::kSwap);
}

// Natural order -> lane order (lane q of the result holds element kOrder[q] of v) and back.
template <typename T, int kBytes = 32>
__attribute__((always_inline)) inline VecOf<T, kBytes> in_lane_order(VecOf<T, kBytes> v) {
  return __builtin_shuffle(v, ComplexChunk<T, kBytes>::kOrder);
}

template <typename T, int kBytes = 32>
__attribute__((always_inline)) inline VecOf<T, kBytes> in_natural_order(VecOf<T, kBytes> v) {
  return __builtin_shuffle(v, ComplexChunk<T, kBytes>::kNatural);
}

// Elementwise square root: GCC turns the lane loop into one vsqrtps / vsqrtpd.
template <typename T, int kBytes = 32>
__attribute__((always_inline)) inline VecOf<T, kBytes> sqrt_vec(VecOf<T, kBytes> x) {
  VecOf<T, kBytes> r;
  for (int l = 0; l < ComplexChunk<T, kBytes>::kSize; ++l) r[l] = std::sqrt(x[l]);
  return r;
}

// The sum of a vector's lanes, in double.
template <typename T, int kBytes = 32>
__attribute__((always_inline)) inline double vec_sum(VecOf<T, kBytes> v) {
  double sum = 0;
  for (int l = 0; l < ComplexChunk<T, kBytes>::kSize; ++l) sum += v[l];
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
