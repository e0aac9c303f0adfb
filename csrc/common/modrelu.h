// modReLU, parametrised by the modulus floor eps (SEMANTICS.md):
//   eps > 0 (cplxmodule: 1e-5, complextorch: 1e-12): out = z * relu(1 - tau / max(|z|, eps));
//   eps = 0 (torchcvnn's polar form):  out = relu(|z| - tau) z/|z|, and relu(-tau) at z = 0 (the
//            phase of 0 taken as 0, as torch.angle does).
// tau real, broadcast against the trailing dims of z. The per-element maths is shared by the CPU
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

// out for one element; a NaN modulus or tau gives NaN, so NaN propagates to out.
template <typename T>
C10_HOST_DEVICE inline void forward(T re, T im, T tau, T eps, T& out_re, T& out_im) {
  const T r = std::sqrt(re * re + im * im);
  if (eps == T(0) && r == T(0)) {  // the polar form's origin
    const T o = -tau;
    out_re = o != o ? o : (o > T(0) ? o : T(0));
    out_im = T(0);
    return;
  }
  const T m = r > eps ? r : eps;
  const T s = T(1) - tau / m;
  const T f = (r != r || s != s) ? s + r : (s > T(0) ? s : T(0));
  out_re = re * f;
  out_im = im * f;
}

// Gradients for one element given upstream g (conjugate-Wirtinger convention), m = max(|z|, eps),
// s = 1 - tau/m:
//   |z| > eps and s > 0:  grad_z = g - tau/(2|z|) (g - conj(g) u^2), u = z/|z|; since
//                         g - conj(g) u^2 = 2i Im(g conj(u)) u, that is
//                         grad_z = g + b (Im u, -Re u) with b = (tau/|z|) Im(g conj(u))
//                         (in u, which stays in range for tiny and huge |z|);
//                         grad_tau = -Re(g conj(u))
//   |z| <= eps, s > 0:    grad_z = g s; grad_tau = -Re(g conj(z)) / eps  (the map is z s there;
//                         at z = 0 too, as cplxmodule computes it: s > 0 only for tau < eps)
//   s <= 0:               both 0.
//   eps = 0 and z = 0:    grad_z = 0; grad_tau = -Re(g) where tau < 0 (out = relu(-tau) there).
// NaN in z, tau or g propagates.
template <typename T>
C10_HOST_DEVICE inline void grads(T re, T im, T tau, T eps, T g_re, T g_im, T& gz_re, T& gz_im, T& g_tau) {
  const T r = std::sqrt(re * re + im * im);
  if (eps == T(0) && r == T(0)) {
    const T nan = (tau - tau) + (g_re - g_re) + (g_im - g_im);  // 0, or NaN
    gz_re = gz_im = nan;
    g_tau = (tau < T(0) ? -g_re : T(0)) + nan;
    return;
  }
  const T m = r > eps ? r : eps;
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
  g_tau = -(g_re * re + g_im * im) * inv_m;
  if (r > eps) {
    const T ur = re * inv_m, ui = im * inv_m;
    const T b = (tau * inv_m) * (g_im * ur - g_re * ui);
    gz_re = g_re + b * ui;
    gz_im = g_im - b * ur;
  } else {
    gz_re = g_re * s;
    gz_im = g_im * s;
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

// Validates z (complex), threshold (real, same precision, broadcastable against z's trailing
// dims) and eps (finite, >= 0) and plans the layout. op names the op in error messages.
ModReLULayout plan_modrelu(const char* op, const at::Tensor& z, const at::Tensor& threshold, double eps);

// The [T] per-block sums of the element gradients of tau, summed to threshold's shape.
at::Tensor grad_threshold_from_block(const ModReLULayout& layout, const at::Tensor& block_sums,
                                     const at::Tensor& threshold);

}  // namespace cplxfast
