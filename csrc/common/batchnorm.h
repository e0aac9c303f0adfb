// Complex batch normalisation with 2x2 whitening (cplxmodule's maths, SEMANTICS.md).
//
// Per channel, with x' = z - mu and the eps-included biased covariance C = [[a, b], [b, d]]:
//   P = C^(-1/2) = 1/(s t) [[d + s, -b], [-b, a + s]],  s = sqrt(ad - b^2), t = sqrt(a + d + 2s)
//   out = W P x' + bias = A (z - mu) + bias,  A = W P     (W: 2x2 affine weight)
// Backward (g = dL/dout as a 2-vector per element, sums over the channel's N elements):
//   grad_bias = sum g,  grad_W = S P  with S = sum g x'^T
//   grad_z = B g + D (z - mu) + e,  B = P W^T,  D = Q / N, e = -B mean(g) (both training only)
// where Q holds the gradient through the covariance: Q = [[2 dL/da, dL/db], [dL/db, 2 dL/dd]],
// from G_P = W^T S through the closed form of P. In eval (running statistics) the map is affine
// with constant A: grad_z = A^T g.
//
// The per-channel coefficient maths is shared by CPU (a loop) and CUDA (one thread per channel).
#pragma once
#include <cmath>
#include <array>
#include <cstdint>
#include <tuple>
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

// P = C^(-1/2) of C = [[a, b], [c, d]] in closed form (cplxmodule's; C is symmetric for batch
// statistics, and running statistics stay symmetric unless set by hand).
C10_HOST_DEVICE inline Mat2 inverse_sqrt(const double cov[4]) {
  const double a = cov[0], b = cov[1], c = cov[2], d = cov[3];
  const double s = std::sqrt(a * d - b * c), t = std::sqrt(a + d + 2 * s), k = 1 / (s * t);
  return {k * (d + s), -k * b, -k * c, k * (a + s)};
}

// Forward coefficients of one channel: out = A (z - mu) + bias.
C10_HOST_DEVICE inline Mat2 forward_coeffs(const double cov[4], const Mat2& W) { return mul(W, inverse_sqrt(cov)); }

// Backward coefficients of one channel. sums: sum g_re, sum g_im, then S = sum g x'^T as
// S00 = sum g_re x'_re, S01 = sum g_re x'_im, S10 = sum g_im x'_re, S11 = sum g_im x'_im.
// Training uses batch statistics, where C is symmetric (b = c).
C10_HOST_DEVICE inline void backward_coeffs(const double cov[4], const Mat2& W, const double sums[6],
                                            double n, bool training, Mat2& B, Mat2& D, double e[2], Mat2& grad_W) {
  const Mat2 P = inverse_sqrt(cov);
  const Mat2 S{sums[2], sums[3], sums[4], sums[5]};
  grad_W = mul(S, transpose(P));  // sum g w^T with w = P x'
  B = transpose(mul(W, P));       // grad_z = (W P)^T g (+ the terms through the statistics)
  D = {0, 0, 0, 0};
  e[0] = e[1] = 0;
  if (!training) return;
  // Through P = k [[d + s, -b], [-b, a + s]], k = 1/(s t), t = sqrt(a + d + 2s), s = sqrt(ad - b^2).
  const double a = cov[0], b = cov[1], d = cov[3];
  const double s = std::sqrt(a * d - b * b), t = std::sqrt(a + d + 2 * s), k = 1 / (s * t);
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
  e[0] = -(B.m00 * mg0 + B.m01 * mg1);
  e[1] = -(B.m10 * mg0 + B.m11 * mg1);
}

}  // namespace bn_math

// The input seen as [outer, C, inner] in its memory order (dense; channel dim 1 of the input):
// element i (0 <= i < numel, memory order) belongs to channel (i / inner) % C.
struct BatchNormLayout {
  at::Tensor z;  // dense view (or copy) of the input
  int64_t C = 0, inner = 1, numel = 0, per_channel = 0;
};

// The per-backend kernels; the device-agnostic driver (batchnorm.cpp) sequences them: a
// reduction pass (partial sums), the per-channel step (bn_finish_channel: statistics,
// coefficients, parameter gradients, in one kernel on CUDA) and an apply pass.
constexpr int64_t kBnCoeffs = 14;  // A (4), D (4), c (2), su (2), sv (2)

// Fills one channel's coefficient row (see BatchNormBackend::apply).
C10_HOST_DEVICE inline void store_coeffs(double* k, const bn_math::Mat2& A, const bn_math::Mat2& D, const double c[2],
                                         const double su[2], const double sv[2]) {
  const double v[kBnCoeffs] = {A.m00, A.m01, A.m10, A.m11, D.m00, D.m01, D.m10, D.m11, c[0], c[1], su[0], su[1], sv[0], sv[1]};
  for (int i = 0; i < kBnCoeffs; ++i) k[i] = v[i];
}

// One channel's forward row: out = A (z - mu) + bias.
C10_HOST_DEVICE inline void forward_row(const double mu[2], const double cov[4], const double W[4], const double bias[2],
                                        double* k) {
  const double zero[2] = {0, 0};
  store_coeffs(k, bn_math::forward_coeffs(cov, {W[0], W[1], W[2], W[3]}), {0, 0, 0, 0}, bias, mu, zero);
}

// One channel's backward row: grad_z = B g + D (z - mu) + e; and grad_W.
C10_HOST_DEVICE inline void backward_row(const double mu[2], const double cov[4], const double W[4], const double sums[6],
                                         double n, bool training, double* k, double* grad_W) {
  bn_math::Mat2 B, D, G;
  double e[2];
  const double zero[2] = {0, 0};
  bn_math::backward_coeffs(cov, {W[0], W[1], W[2], W[3]}, sums, n, training, B, D, e, G);
  store_coeffs(k, B, D, e, zero, mu);
  grad_W[0] = G.m00, grad_W[1] = G.m01, grad_W[2] = G.m10, grad_W[3] = G.m11;
}

// A per-channel statistic ([2, C] mean or [2, 2, C] covariance, contiguous) in the input's real
// dtype T, or in float64 (CplxSyncBatchNorm combines statistics across processes in float64).
struct BnStat {
  const void* data = nullptr;
  bool is_double = false;
  template <typename T>
  C10_HOST_DEVICE double at(int64_t i) const {
    return is_double ? static_cast<const double*>(data)[i] : double(static_cast<const T*>(data)[i]);
  }
};

// Everything the per-channel step between the reductions and the apply pass reads and writes
// (device or host pointers; T-typed ones as void*, T the input's real dtype). Parameters and
// statistics are read in their own [.., C] layouts, so no per-channel tensor op runs per call.
struct BnFinish {
  enum Mode { kTrainForward, kEvalForward, kBackward, kStats, kGradSums };
  Mode mode = kTrainForward;
  int64_t C = 0;
  // Sums: partials [splits, C, K] (K = 5 moments, 6 gradient sums), summed in order; or, for
  // the backward, given_sums [6, C] (all-reduced across processes); neither: zeros.
  const double* partials = nullptr;
  int64_t splits = 0;
  const double* given_sums = nullptr;
  double n = 0;             // elements per channel behind the sums
  const void* x = nullptr;  // the input (interleaved T): the moments are shifted by the
  int64_t inner = 1;        // channel's first element, x[c * inner]
  double eps = 0;           // added to the covariance's diagonal (training forward)
  BnStat mean, cov;         // eval forward and backward: the statistics to use
  const void* weight = nullptr;  // [2, 2, C] T, or nullptr (identity)
  const void* bias = nullptr;    // [2, C] T, or nullptr (zero)
  bool training = false;         // backward: through batch statistics
  // Outputs (each optional): batch statistics in T (training forward) or float64 (kStats, no
  // eps), the [6, C] gradient sums (kGradSums), apply coefficients [C, kBnCoeffs], parameter
  // gradients in T (backward).
  void* mean_out = nullptr;
  void* cov_out = nullptr;
  double* sums_out = nullptr;
  double* coeffs = nullptr;
  void* grad_weight = nullptr;
  void* grad_bias = nullptr;
};

// Channel c of the step described by a (CPU: a loop over the channels; CUDA: a thread each).
template <typename T>
C10_HOST_DEVICE inline void bn_finish_channel(const BnFinish& a, int64_t c) {
  const int64_t C = a.C;
  const auto sum_partials = [&](int K, double* s) {
    for (int k = 0; k < K; ++k) s[k] = 0;
    if (a.partials == nullptr) return;
    for (int64_t p = 0; p < a.splits; ++p) {
      for (int k = 0; k < K; ++k) s[k] += a.partials[(p * C + c) * K + k];
    }
  };
  double mu[2], cov[4], W[4] = {1, 0, 0, 1};
  if (a.weight != nullptr) {
    for (int q = 0; q < 4; ++q) W[q] = double(static_cast<const T*>(a.weight)[q * C + c]);
  }
  if (a.mode == BnFinish::kTrainForward || a.mode == BnFinish::kStats) {
    double s[5];
    sum_partials(5, s);
    const T* first = static_cast<const T*>(a.x) + 2 * c * a.inner;
    const double mr = s[0] / a.n, mi = s[1] / a.n, eps = a.mode == BnFinish::kStats ? 0.0 : a.eps;
    mu[0] = double(first[0]) + mr;
    mu[1] = double(first[1]) + mi;
    cov[0] = s[2] / a.n - mr * mr + eps;
    cov[1] = cov[2] = s[3] / a.n - mr * mi;
    cov[3] = s[4] / a.n - mi * mi + eps;
    for (int k = 0; k < 2; ++k) {
      if (a.mode == BnFinish::kStats) {
        static_cast<double*>(a.mean_out)[k * C + c] = mu[k];
      } else if (a.mean_out != nullptr) {
        static_cast<T*>(a.mean_out)[k * C + c] = T(mu[k]);
      }
    }
    for (int q = 0; q < 4; ++q) {
      if (a.mode == BnFinish::kStats) {
        static_cast<double*>(a.cov_out)[q * C + c] = cov[q];
      } else if (a.cov_out != nullptr) {
        static_cast<T*>(a.cov_out)[q * C + c] = T(cov[q]);
      }
    }
    if (a.mode == BnFinish::kStats) return;
  } else if (a.mode != BnFinish::kGradSums) {
    for (int k = 0; k < 2; ++k) mu[k] = a.mean.at<T>(k * C + c);
    for (int q = 0; q < 4; ++q) cov[q] = a.cov.at<T>(q * C + c);
  }
  if (a.mode == BnFinish::kTrainForward || a.mode == BnFinish::kEvalForward) {
    double b[2] = {0, 0};
    if (a.bias != nullptr) {
      for (int k = 0; k < 2; ++k) b[k] = double(static_cast<const T*>(a.bias)[k * C + c]);
    }
    forward_row(mu, cov, W, b, a.coeffs + kBnCoeffs * c);
    return;
  }
  double s[6];
  if (a.mode == BnFinish::kGradSums) {  // the local gradient sums [6, C], float64
    sum_partials(6, s);
    for (int k = 0; k < 6; ++k) a.sums_out[k * C + c] = s[k];
    return;
  }
  if (a.given_sums != nullptr) {
    for (int k = 0; k < 6; ++k) s[k] = a.given_sums[k * C + c];
  } else {
    sum_partials(6, s);
  }
  double gw[4];
  backward_row(mu, cov, W, s, a.n, a.training, a.coeffs + kBnCoeffs * c, gw);
  if (a.grad_weight != nullptr) {
    for (int q = 0; q < 4; ++q) static_cast<T*>(a.grad_weight)[q * C + c] = T(gw[q]);
  }
  if (a.grad_bias != nullptr) {
    for (int k = 0; k < 2; ++k) static_cast<T*>(a.grad_bias)[k * C + c] = T(s[k]);
  }
}

struct BatchNormBackend {
  // Partial sums [splits, C, 5] of x' = x - shift per channel (shift: the channel's first
  // element, x[c * inner]): sum x'r, sum x'i, sum x'r^2, sum x'r x'i, sum x'i^2.
  at::Tensor (*moment_sums)(const BatchNormLayout& layout);
  // Partial sums [splits, C, 6]: sum g re, sum g im, S00, S01, S10, S11 with S = sum g x'^T,
  // x' = z - mean (mean [2, C]).
  at::Tensor (*grad_sums)(const BatchNormLayout& layout, const at::Tensor& g, const BnStat& mean);
  // out = A (u - su) + D (v - sv) + c per channel, in double, with coeffs [C, 14] =
  // (A 2x2, D 2x2, c 2, su 2, sv 2); v may be undefined (then D is ignored). Subtracting the
  // channel mean in double first keeps fp32 data with a large mean (1e3 + noise) accurate.
  // u, v and out are laid out like layout.z.
  void (*apply)(const BatchNormLayout& layout, const at::Tensor& u, const at::Tensor& v, const at::Tensor& coeffs,
                const at::Tensor& out);
  // bn_finish_channel<T>(a, c) for every channel c < a.C (C >= 1), T the real dtype of `real`.
  void (*finish)(const BnFinish& a, at::ScalarType real);
};

// (out, batch mean [2, C], batch covariance [2, 2, C] eps included) in training; in eval the
// running statistics are used as they are and the returned statistics are empty.
std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm_forward(
    const at::Tensor& input, const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias,
    const c10::optional<at::Tensor>& running_mean, const c10::optional<at::Tensor>& running_var, bool training,
    double eps, const BatchNormBackend& backend);

// (grad_input, grad_weight [2, 2, C], grad_bias [2, C]) where output_mask says. mean/cov: the
// statistics the forward used (batch statistics in training, running statistics in eval).
// grad_sums ([6, C] float64) and count, when given, replace the local gradient sums and element
// count per channel (statistics over several processes).
std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm_backward(
    const at::Tensor& grad, const at::Tensor& input, const c10::optional<at::Tensor>& weight, const at::Tensor& mean,
    const at::Tensor& cov, bool training, std::array<bool, 3> output_mask, const c10::optional<at::Tensor>& grad_sums,
    int64_t count, const BatchNormBackend& backend);

// Local statistics for CplxSyncBatchNorm: (mean [2, C], biased covariance [2, 2, C]), float64.
std::tuple<at::Tensor, at::Tensor> batch_norm_stats(const at::Tensor& input, const BatchNormBackend& backend);
// Local gradient sums [6, C], float64.
at::Tensor batch_norm_grad_sums(const at::Tensor& grad, const at::Tensor& input, const at::Tensor& mean,
                                const BatchNormBackend& backend);

// Validates input (complex, [B, C, *]), weight [2, 2, C], bias [2, C], stats and plans the layout.
BatchNormLayout plan_batch_norm(const char* op, const at::Tensor& input);
void check_bn_params(const char* op, const at::Tensor& input, const c10::optional<at::Tensor>& weight,
                     const c10::optional<at::Tensor>& bias);
void check_bn_stats(const char* op, const at::Tensor& input, const at::Tensor& mean, const at::Tensor& cov);
void check_bn_mean(const char* op, const at::Tensor& input, const at::Tensor& mean);

}  // namespace cplxfast
