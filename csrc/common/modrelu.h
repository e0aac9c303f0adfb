// modReLU, cplxmodule's form: out = z * relu(1 - tau / max(|z|, 1e-5)), tau real, broadcast
// against the trailing dims of z (SEMANTICS.md). The per-element maths is shared by the CPU
// and CUDA kernels; the host-side layout planning (which tau goes with which element) is
// device-agnostic and lives in modrelu.cpp.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/macros/Macros.h>

namespace cplxfast {

namespace modrelu_math {

template <typename T>
C10_HOST_DEVICE constexpr T min_modulus() { return T(1e-5); }

// relu(1 - tau / max(|z|, 1e-5)); a NaN modulus or tau gives NaN, so NaN propagates to out.
template <typename T>
C10_HOST_DEVICE inline T scale(T re, T im, T tau) {
  const T r = std::sqrt(re * re + im * im);
  const T m = r > min_modulus<T>() ? r : min_modulus<T>();
  const T s = T(1) - tau / m;
  return (r != r || s != s) ? s + r : (s > T(0) ? s : T(0));
}

// Gradients for one element given upstream g (conjugate-Wirtinger convention):
//   |z| > 1e-5 and s > 0:  grad_z = g - tau/(2|z|) (g - conj(g) u^2), u = z/|z|;
//                          grad_tau = -Re(g conj(u))
//   |z| <= 1e-5, s > 0:    grad_z = g s; grad_tau = -Re(g conj(z)) / 1e-5  (the map is z s
//                          there; at z = 0 too, as cplxmodule computes it: s > 0 only for tau < 1e-5)
//   s <= 0:                both 0.   NaN in z, tau or g propagates.
template <typename T>
C10_HOST_DEVICE inline void grads(T re, T im, T tau, T g_re, T g_im, T& gz_re, T& gz_im, T& g_tau) {
  const T r = std::sqrt(re * re + im * im);
  const T m = r > min_modulus<T>() ? r : min_modulus<T>();
  const T inv_m = T(1) / m;
  const T s = T(1) - tau * inv_m;
  if (r != r || s != s || g_re != g_re || g_im != g_im) {  // NaN in z, tau or g
    const T nan = r + s + g_re + g_im;
    gz_re = gz_im = g_tau = nan;
    return;
  }
  if (!(s > T(0))) {
    gz_re = gz_im = g_tau = T(0);
    return;
  }
  if (r > min_modulus<T>()) {
    const T ur = re * inv_m, ui = im * inv_m;
    // conj(g) u^2 = (g_re - i g_im)(ur^2 - ui^2 + 2i ur ui)
    const T u2_re = ur * ur - ui * ui, u2_im = T(2) * ur * ui;
    const T cg_re = g_re * u2_re + g_im * u2_im;
    const T cg_im = g_re * u2_im - g_im * u2_re;
    const T k = T(0.5) * tau * inv_m;
    gz_re = g_re - k * (g_re - cg_re);
    gz_im = g_im - k * (g_im - cg_im);
    g_tau = -(g_re * ur + g_im * ui);
  } else {
    gz_re = g_re * s;
    gz_im = g_im * s;
    g_tau = -(g_re * re + g_im * im) * inv_m;
  }
}

}  // namespace modrelu_math

// How the elements of z meet the thresholds. In z's memory order, element i (0 <= i < numel)
// uses tau_block[(i / inner) % T]: the dims of z on which tau varies form one block of
// consecutive dims in memory order (with the dims between them, on which tau is broadcast,
// materialised into the block: T is at most the product of those dims, never input-sized
// beyond them).
struct ModReLULayout {
  at::Tensor z;          // dense (non-overlapping) view of the input; memory order = i
  at::Tensor tau_block;  // contiguous [T] thresholds, z's real dtype
  int64_t inner = 1, T = 1, numel = 0;
  std::vector<int64_t> perm;     // z's dims in memory order (outermost first)
  int64_t block_begin = 0, block_end = 0;  // [begin, end) positions in perm of the block
};

// Validates z (complex) and threshold (real, same precision, broadcastable against z's trailing
// dims) and plans the layout. op names the op in error messages.
ModReLULayout plan_modrelu(const char* op, const at::Tensor& z, const at::Tensor& threshold);

// The [T] per-block sums of the element gradients of tau, summed to threshold's shape.
at::Tensor grad_threshold_from_block(const ModReLULayout& layout, const at::Tensor& block_sums,
                                     const at::Tensor& threshold);

}  // namespace cplxfast
