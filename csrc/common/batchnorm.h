// Complex batch normalisation with 2x2 whitening (cplxmodule's maths, SEMANTICS.md).
//
// Per channel, with x' = z - mu and the eps-included biased covariance C = [[a, b], [b, d]]:
//   P = C^(-1/2) = 1/(s t) [[d + s, -b], [-b, a + s]],  s = sqrt(ad - b^2), t = sqrt(a + d + 2s)
//   out = W P x' + bias = A z + c,  A = W P,  c = bias - A mu     (W: 2x2 affine weight)
// Backward (g = dL/dout as a 2-vector per element, sums over the channel's N elements):
//   grad_bias = sum g,  grad_W = S P  with S = sum g x'^T
//   grad_z = B g + D z + e,  B = P W^T,  D = Q / N (training only), e = -B mean(g) - D mu (training)
// where Q holds the gradient through the covariance: Q = [[2 dL/da, dL/db], [dL/db, 2 dL/dd]],
// from G_P = W^T S through the closed form of P. In eval (running statistics) the map is affine
// with constant A: grad_z = A^T g.
//
// The per-channel coefficient maths is shared by CPU (a loop) and CUDA (one thread per channel).
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/macros/Macros.h>

namespace cplxfast {

namespace bn_math {

struct Mat2 {
  double m00, m01, m10, m11;
};

C10_HOST_DEVICE inline Mat2 mul(const Mat2& x, const Mat2& y) {
  return {x.m00 * y.m00 + x.m01 * y.m10, x.m00 * y.m01 + x.m01 * y.m11,
          x.m10 * y.m00 + x.m11 * y.m10, x.m10 * y.m01 + x.m11 * y.m11};
}

C10_HOST_DEVICE inline Mat2 transpose(const Mat2& x) { return {x.m00, x.m10, x.m01, x.m11}; }

// P = C^(-1/2) of the symmetric 2x2 C = [[a, b], [b, d]] in closed form.
C10_HOST_DEVICE inline Mat2 inverse_sqrt(double a, double b, double d) {
  const double s = std::sqrt(a * d - b * b), t = std::sqrt(a + d + 2 * s), k = 1 / (s * t);
  return {k * (d + s), -k * b, -k * b, k * (a + s)};
}

// Forward coefficients of one channel: out = A z + c.
C10_HOST_DEVICE inline void forward_coeffs(const double mu[2], const double cov[3] /* a, b, d */,
                                           const Mat2& W, const double bias[2], Mat2& A, double c[2]) {
  A = mul(W, inverse_sqrt(cov[0], cov[1], cov[2]));
  c[0] = bias[0] - (A.m00 * mu[0] + A.m01 * mu[1]);
  c[1] = bias[1] - (A.m10 * mu[0] + A.m11 * mu[1]);
}

// Backward coefficients of one channel. sums: sum g_re, sum g_im, then S = sum g x'^T as
// S00 = sum g_re x'_re, S01 = sum g_re x'_im, S10 = sum g_im x'_re, S11 = sum g_im x'_im.
C10_HOST_DEVICE inline void backward_coeffs(const double mu[2], const double cov[3], const Mat2& W, const double sums[6],
                                            double n, bool training, Mat2& B, Mat2& D, double e[2], Mat2& grad_W) {
  const double a = cov[0], b = cov[1], d = cov[2];
  const double s = std::sqrt(a * d - b * b), t = std::sqrt(a + d + 2 * s), k = 1 / (s * t);
  const Mat2 P{k * (d + s), -k * b, -k * b, k * (a + s)};
  const Mat2 S{sums[2], sums[3], sums[4], sums[5]};
  grad_W = mul(S, P);
  B = mul(P, transpose(W));
  D = {0, 0, 0, 0};
  e[0] = e[1] = 0;
  if (!training) return;
  // Through P = k [[d + s, -b], [-b, a + s]], k = 1/(s t), t = sqrt(a + d + 2s), s = sqrt(ad - b^2).
  const Mat2 G = mul(transpose(W), S);  // dL/dP
  const double g_off = G.m01 + G.m10;
  const double dk = G.m00 * (d + s) + G.m11 * (a + s) - g_off * b;
  const double dt = dk * (-k / t);
  const double ds = k * (G.m00 + G.m11) + dk * (-k / s) + dt / t;
  const double da = k * G.m11 + dt / (2 * t) + ds * d / (2 * s);
  const double dd = k * G.m00 + dt / (2 * t) + ds * a / (2 * s);
  const double db = -k * g_off - ds * b / s;
  D = {2 * da / n, db / n, db / n, 2 * dd / n};
  const double mg0 = sums[0] / n, mg1 = sums[1] / n;
  e[0] = -(B.m00 * mg0 + B.m01 * mg1) - (D.m00 * mu[0] + D.m01 * mu[1]);
  e[1] = -(B.m10 * mg0 + B.m11 * mg1) - (D.m10 * mu[0] + D.m11 * mu[1]);
}

}  // namespace bn_math

// The input seen as [outer, C, inner] in its memory order (dense; channel dim 1 of the input):
// element i (0 <= i < numel, memory order) belongs to channel (i / inner) % C.
struct BatchNormLayout {
  at::Tensor z;  // dense view (or copy) of the input
  int64_t C = 0, inner = 1, numel = 0, per_channel = 0;
};

// Validates input (complex, [B, C, *]), weight [2, 2, C], bias [2, C], stats and plans the layout.
BatchNormLayout plan_batch_norm(const char* op, const at::Tensor& input);
void check_bn_params(const char* op, const at::Tensor& input, const c10::optional<at::Tensor>& weight,
                     const c10::optional<at::Tensor>& bias);
void check_bn_stats(const char* op, const at::Tensor& input, const at::Tensor& mean, const at::Tensor& cov);

// t laid out like the layout's z (so one flat index reads both), copying only if needed.
at::Tensor like_layout(const at::Tensor& t, const BatchNormLayout& layout);
at::Tensor empty_like_layout(const BatchNormLayout& layout);

// [C, 4] (W00, W01, W10, W11) and [C, 2] as double on the input's device; identity/zero if absent.
at::Tensor weight_rows(const c10::optional<at::Tensor>& weight, const BatchNormLayout& layout);
at::Tensor bias_rows(const c10::optional<at::Tensor>& bias, const BatchNormLayout& layout);

}  // namespace cplxfast
