// The local reparametrisation trick of the Gaussian (variational dropout) layers:
//   out = mu + e * sqrt(max(s2, 1e-8)),   e complex standard normal (each part N(0, 1/2)),
// the noise drawn inside the kernel (no noise tensor), and drawn again, bit for bit, by the
// backward from the same (seed, offset): nothing but the 16-byte generator state is saved.
//
// The noise of complex element i (in the memory order of s2) is Box-Muller of one Philox-4x32-10
// block (key = seed, counter = (offset, i / 2)), two elements per block. The same code runs on
// the host and the device, so CPU and CUDA draw the same bits from the same state.
// The per-element maths is shared by the CPU and CUDA kernels; the host-side checks and the
// layout live in reparam.cpp.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include <ATen/core/Tensor.h>
#include <c10/macros/Macros.h>

#include "common/planes.h"

namespace cplxfast {

namespace reparam_math {

// cplxmodule's floor of the output variance (torch.clamp(s2, 1e-8)).
constexpr double kVarianceFloor = 1e-8;

// Philox-4x32-10 (Salmon et al. 2011; the generator of curand and of ATen's philox_engine, bit for
// bit): key (seed), counter (offset, pair), 10 rounds. Written out here, loop-free per call, so
// that the CPU kernel's loop over pairs vectorises.
C10_HOST_DEVICE inline void philox(uint64_t seed, uint64_t offset, uint64_t pair, uint32_t (&out)[4]) {
  uint32_t c0 = static_cast<uint32_t>(offset), c1 = static_cast<uint32_t>(offset >> 32);
  uint32_t c2 = static_cast<uint32_t>(pair), c3 = static_cast<uint32_t>(pair >> 32);
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
#if defined(__CUDACC__)
#pragma unroll
#else
#pragma GCC unroll 10
#endif
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = uint64_t{0xD2511F53u} * c0, p1 = uint64_t{0xCD9E8D57u} * c2;
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0, n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(p1);
    c3 = static_cast<uint32_t>(p0);
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

// The Box-Muller transform below uses its own branch-free log, sin and cos (polynomials after an
// exact range reduction), the same on the host and the device: libm calls would not vectorise.
template <typename T>
struct FloatBits;
template <>
struct FloatBits<float> {
  using U = uint32_t;
  static constexpr int kMantissa = 23, kBias = 127;
};
template <>
struct FloatBits<double> {
  using U = uint64_t;
  static constexpr int kMantissa = 52, kBias = 1023;
};

template <typename T>
C10_HOST_DEVICE inline typename FloatBits<T>::U bits_of(T x) {
  typename FloatBits<T>::U u;
  memcpy(&u, &x, sizeof(T));
  return u;
}

template <typename T>
C10_HOST_DEVICE inline T from_bits(typename FloatBits<T>::U u) {
  T x;
  memcpy(&x, &u, sizeof(T));
  return x;
}

// log(x) for a normal positive x: x = m 2^e with m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(s),
// s = (m - 1) / (m + 1), |s| <= 0.172, by its odd series (float: to s^11, relative error ~1e-9;
// double: to s^21, ~1e-17).
template <typename T>
C10_HOST_DEVICE inline T log_positive(T x) {
  using B = FloatBits<T>;
  using U = typename B::U;
  const U u = bits_of(x);
  const U mantissa_mask = (U{1} << B::kMantissa) - 1;
  T m = from_bits<T>((u & mantissa_mask) | (U(B::kBias) << B::kMantissa));  // [1, 2)
  T e = T(static_cast<int>(u >> B::kMantissa) - B::kBias);
  const bool high = m > T(1.4142135623730951);
  m = high ? m * T(0.5) : m;
  e = high ? e + T(1) : e;
  const T s = (m - T(1)) / (m + T(1)), s2 = s * s;
  T poly;
  if constexpr (sizeof(T) == 4) {
    poly = T(1) + s2 * (T(1.0 / 3) + s2 * (T(1.0 / 5) + s2 * (T(1.0 / 7) + s2 * (T(1.0 / 9) + s2 * T(1.0 / 11)))));
  } else {
    poly = T(1.0 / 19) + s2 * T(1.0 / 21);
    poly = T(1.0 / 11) + s2 * (T(1.0 / 13) + s2 * (T(1.0 / 15) + s2 * (T(1.0 / 17) + s2 * poly)));
    poly = T(1) + s2 * (T(1.0 / 3) + s2 * (T(1.0 / 5) + s2 * (T(1.0 / 7) + s2 * (T(1.0 / 9) + s2 * poly))));
  }
  return e * T(0.6931471805599453) + T(2) * s * poly;
}

// (cos 2 pi t, sin 2 pi t) for t in [0, 1): the quadrant q = round(4t) exactly, the angle within it
// phi = pi/2 (4t - q) in [-pi/4, pi/4], Taylor polynomials there (float: to phi^11 / phi^10,
// error < 2e-9; double: to phi^19 / phi^18), then the quarter turns as swaps and signs.
template <typename T>
C10_HOST_DEVICE inline void cos_sin_turns(T t, T& c, T& s) {
  const T x = T(4) * t;
  const T q = std::floor(x + T(0.5));
  const T phi = T(1.5707963267948966) * (x - q), p2 = phi * phi;
  T sp, cp;
  if constexpr (sizeof(T) == 4) {
    sp = phi * (T(1) + p2 * (T(-1.0 / 6) + p2 * (T(1.0 / 120) + p2 * (T(-1.0 / 5040) + p2 * (T(1.0 / 362880) +
                                                                                           p2 * T(-1.0 / 39916800))))));
    cp = T(1) + p2 * (T(-0.5) + p2 * (T(1.0 / 24) + p2 * (T(-1.0 / 720) + p2 * (T(1.0 / 40320) +
                                                                             p2 * T(-1.0 / 3628800)))));
  } else {
    const T s_hi = T(1.0 / 6227020800) + p2 * (T(-1.0 / 1307674368000) + p2 * (T(1.0 / 355687428096000) +
                   p2 * (T(-1.0 / 121645100408832000))));  // 1/13! ... -1/19!
    sp = phi * (T(1) + p2 * (T(-1.0 / 6) + p2 * (T(1.0 / 120) + p2 * (T(-1.0 / 5040) + p2 * (T(1.0 / 362880) +
                p2 * (T(-1.0 / 39916800) + p2 * s_hi))))));
    const T c_hi = T(1.0 / 479001600) + p2 * (T(-1.0 / 87178291200) + p2 * (T(1.0 / 20922789888000) +
                   p2 * (T(-1.0 / 6402373705728000))));  // 1/12! ... -1/18!
    cp = T(1) + p2 * (T(-0.5) + p2 * (T(1.0 / 24) + p2 * (T(-1.0 / 720) + p2 * (T(1.0 / 40320) +
         p2 * (T(-1.0 / 3628800) + p2 * c_hi)))));
  }
  const int quadrant = static_cast<int>(q) & 3;
  const bool swap = quadrant & 1;
  const T cr = swap ? sp : cp, sr = swap ? cp : sp;
  c = (quadrant == 1 || quadrant == 2) ? -cr : cr;
  s = (quadrant & 2) ? -sr : sr;
}

// e = sqrt(-log u1) (cos 2 pi u2, sin 2 pi u2): each part N(0, 1/2) (Box-Muller with half the
// usual radius squared), so that E|e|^2 = 1. u1 = 1 - a 2^-32 in (0, 1] and u2 = b 2^-32 in
// [0, 1) (float: 24 bits of each, exact, so that u1 never rounds to 0).
template <typename T>
C10_HOST_DEVICE inline void box_muller(uint32_t a, uint32_t b, T& e_re, T& e_im) {
  T u1;
  if constexpr (sizeof(T) == 4) {
    u1 = T(1) - T(static_cast<int32_t>(a >> 8)) * T(5.9604644775390625e-08);  // 2^-24
  } else {
    u1 = T(1) - T(a) * T(2.3283064365386963e-10);  // 2^-32
  }
  const T r = std::sqrt(-log_positive(u1));
  T c, s;
  cos_sin_turns(sizeof(T) == 4 ? T(static_cast<int32_t>(b >> 8)) * T(5.9604644775390625e-08)
                                : T(b) * T(2.3283064365386963e-10), c, s);
  e_re = r * c;
  e_im = r * s;
}

// The noise of complex elements 2 * pair and 2 * pair + 1: e[0] + i e[1] and e[2] + i e[3].
template <typename T>
C10_HOST_DEVICE inline void noise_pair(uint64_t seed, uint64_t offset, uint64_t pair, T (&e)[4]) {
  uint32_t r[4];
  philox(seed, offset, pair, r);
  box_muller<T>(r[0], r[1], e[0], e[1]);
  box_muller<T>(r[2], r[3], e[2], e[3]);
}

// sqrt(max(s2, floor)), NaN passed through (as torch.clamp does).
template <typename T>
C10_HOST_DEVICE inline T sigma_of(T s2) {
  return std::sqrt(s2 > T(kVarianceFloor) || s2 != s2 ? s2 : T(kVarianceFloor));
}

template <typename T>
C10_HOST_DEVICE inline void forward(T mu_re, T mu_im, T s2, T e_re, T e_im, T& out_re, T& out_im) {
  const T sigma = sigma_of(s2);
  out_re = mu_re + e_re * sigma;
  out_im = mu_im + e_im * sigma;
}

// dL/ds2 from the complex gradient g of out: Re(conj(g) e) / (2 sigma) where s2 > floor, else 0
// (torch.clamp's gradient). The gradient of mu is g itself.
template <typename T>
C10_HOST_DEVICE inline T grad_s2(T g_re, T g_im, T s2, T e_re, T e_im) {
  return s2 > T(kVarianceFloor) ? (g_re * e_re + g_im * e_im) / (T(2) * std::sqrt(s2)) : T(0);
}

}  // namespace reparam_math

// The noise of the fused Gaussian layers (linear_gaussian, conv_gaussian): added in the pass that
// recombines the 3M products, so mu is never written on its own. Element (r, c) of a NoiseSource
// is the element first + r * s2.stride(0) + c of the noise order, the memory order of the whole,
// dense s2 that the op returns: the noise gaussian_reparam would draw for (mu, s2) from the same
// generator state, and that gaussian_reparam_backward draws again.
struct NoiseSource {
  at::Tensor s2;   // real [rows, cols], column stride 1: the variance of these elements
  int64_t first;   // their first element's index in the noise order
  at::Tensor rng;  // int64 [2] (seed, offset) on the device, written by NoiseKernels::draw
};

struct NoiseKernels {
  // rng <- a fresh state from torch's default generator of rng's device (without a host sync on
  // CUDA: the state is written by the device).
  void (*draw)(const at::Tensor& rng);
  // out <- the recombination of the 3 products (common/planes.h) plus bias[col] (two real [cols]
  // views, or none) plus e sqrt(max(s2, 1e-8)), e the noise of each element (reparam_math).
  void (*combine)(at::TensorList products, const ComplexPair& bias, const NoiseSource& noise, const ComplexPair& out);
};

// Host-side pieces of the fused Gaussian layers' drivers (common/gemm3m.cpp, common/conv.cpp):
// log_sigma2 checked as the real twin of the weight; |x|^2 of a complex tensor (the paths without
// planes to fuse it into); and gaussian_reparam through the dispatcher (their noise pass).
void check_log_sigma2(const char* op, const at::Tensor& log_sigma2, const at::Tensor& weight_re, const at::Tensor& x);
at::Tensor modulus_squared(const at::Tensor& x);
std::tuple<at::Tensor, at::Tensor> gaussian_reparam_op(const at::Tensor& mu, const at::Tensor& s2);

// mu complex and s2 real of mu's precision and shape; returns s2 in the layout that orders the noise
// (its own when dense, else contiguous: reparam.cpp) and a complex tensor (mu, or the gradient in
// the backward) with the same strides, read with one flat index.
struct ReparamOperands {
  at::Tensor z, s2;
  int64_t numel;
};
ReparamOperands plan_reparam(const char* op, const char* z_name, const at::Tensor& z, const at::Tensor& s2);

// The generator state tensor (int64 [2]: seed, offset) the forward returns and the backward takes.
void check_rng_state(const char* op, const at::Tensor& rng, const at::Tensor& like);

}  // namespace cplxfast
