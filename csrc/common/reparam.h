// The local reparametrisation trick of the Gaussian (variational dropout) layers:
//   out = mu + e * sqrt(max(s2, 1e-8)),   e complex standard normal (each part N(0, 1/2)),
// the noise drawn inside the kernel (no noise tensor), and drawn again, bit for bit, by the
// backward from the same (seed, offset): nothing but the 16-byte generator state is saved.
//
// The noise of complex element i (in the memory order of s2) is Box-Muller of one Philox-4x32-10
// block (key = seed, counter = (offset, i / 2)), two elements per block. ATen's philox_engine
// runs on the host and the device, so CPU and CUDA draw the same bits from the same state.
// The per-element maths is shared by the CPU and CUDA kernels; the host-side checks and the
// layout live in reparam.cpp.
#pragma once
#include <cmath>
#include <cstdint>

#include <ATen/core/PhiloxRNGEngine.h>
#include <ATen/core/Tensor.h>
#include <c10/macros/Macros.h>

namespace cplxfast {

namespace reparam_math {

// cplxmodule's floor of the output variance (torch.clamp(s2, 1e-8)).
constexpr double kVarianceFloor = 1e-8;

// A uniform in (0, 1] from 32 random bits: 24 of them for float (so that 1 - u never rounds to 0),
// all 32 for double.
template <typename T>
C10_HOST_DEVICE inline T uniform_open0(uint32_t bits) {
  if constexpr (sizeof(T) == 4) {
    return T(1) - T(bits >> 8) * T(5.9604644775390625e-08);  // 2^-24
  } else {
    return T(1) - T(bits) * T(2.3283064365386963e-10);  // 2^-32
  }
}

// e = sqrt(-log u1) (cos 2 pi u2, sin 2 pi u2): each part N(0, 1/2) (Box-Muller with half the
// usual radius squared), so that E|e|^2 = 1.
template <typename T>
C10_HOST_DEVICE inline void box_muller(uint32_t a, uint32_t b, T& e_re, T& e_im) {
  const T r = std::sqrt(-std::log(uniform_open0<T>(a)));
  const T theta = T(6.283185307179586) * (T(1) - uniform_open0<T>(b));
  e_re = r * std::cos(theta);
  e_im = r * std::sin(theta);
}

// The noise of complex elements 2 * pair and 2 * pair + 1: e[0] + i e[1] and e[2] + i e[3].
template <typename T>
C10_HOST_DEVICE inline void noise_pair(uint64_t seed, uint64_t offset, uint64_t pair, T (&e)[4]) {
  at::philox_engine engine(seed, pair, offset);
  const uint32_t a = engine(), b = engine(), c = engine(), d = engine();
  box_muller<T>(a, b, e[0], e[1]);
  box_muller<T>(c, d, e[2], e[3]);
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

// s2 in the layout that orders the noise: s2 itself when it is dense (non-overlapping, no gaps),
// else a contiguous copy. Decided from s2 alone, so the backward finds the forward's order.
at::Tensor noise_order(const at::Tensor& s2);

// mu complex and s2 real of mu's precision and shape; returns s2 in noise order and a complex
// tensor (mu, or the gradient in the backward) with the same strides, read with one flat index.
struct ReparamOperands {
  at::Tensor z, s2;
  int64_t numel;
};
ReparamOperands plan_reparam(const char* op, const char* z_name, const at::Tensor& z, const at::Tensor& s2);

// The generator state tensor (int64 [2]: seed, offset) the forward returns and the backward takes.
void check_rng_state(const char* op, const at::Tensor& rng, const at::Tensor& like);

}  // namespace cplxfast
