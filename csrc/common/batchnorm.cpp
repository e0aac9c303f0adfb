// Host-side pieces of complex batch norm shared by CPU and CUDA: validation and layout.
#include "common/batchnorm.h"

#include <algorithm>
#include <numeric>

#include <ATen/ATen.h>

#include "common/checks.h"
#include "common/layout.h"

namespace cplxfast {

BatchNormLayout plan_batch_norm(const char* op, const at::Tensor& input) {
  check_complex(op, "input", input);
  TORCH_CHECK(input.dim() >= 2, op, ": input must be [B, C, *] (at least 2-D), got shape ", input.sizes());
  BatchNormLayout L;
  const at::Tensor z = input.resolve_conj().resolve_neg();  // kernels read raw values
  L.z = z.is_non_overlapping_and_dense() ? z : z.contiguous(z.suggest_memory_format());
  L.C = input.size(1);
  L.numel = L.z.numel();
  L.per_channel = L.C > 0 ? L.numel / L.C : 0;
  // inner: product of the sizes of the dims laid out after the channel dim in memory.
  const int64_t n = L.z.dim();
  std::vector<int64_t> perm(n);
  std::iota(perm.begin(), perm.end(), 0);
  std::stable_sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) { return L.z.stride(a) > L.z.stride(b); });
  const auto channel_pos = std::find(perm.begin(), perm.end(), 1) - perm.begin();
  L.inner = 1;
  for (int64_t k = channel_pos + 1; k < n; ++k) L.inner *= L.z.size(perm[k]);
  return L;
}

void check_bn_params(const char* op, const at::Tensor& input, const c10::optional<at::Tensor>& weight,
                     const c10::optional<at::Tensor>& bias) {
  const int64_t C = input.size(1);
  if (weight.has_value() && weight->defined()) {
    check_real_part(op, "weight", *weight, input);
    TORCH_CHECK(weight->sizes() == at::IntArrayRef({2, 2, C}), op, ": weight must have shape [2, 2, ", C,
                "] (the input has ", C, " channels), got ", weight->sizes());
  }
  if (bias.has_value() && bias->defined()) {
    check_real_part(op, "bias", *bias, input);
    TORCH_CHECK(bias->sizes() == at::IntArrayRef({2, C}), op, ": bias must have shape [2, ", C, "], got ",
                bias->sizes());
  }
}

// Statistics are the input's real dtype, or float64 (CplxSyncBatchNorm combines them across
// processes in float64), on the input's device.
void check_bn_statistic(const char* op, const char* name, const at::Tensor& t, const at::Tensor& input,
                        at::IntArrayRef shape) {
  TORCH_CHECK(t.defined(), op, ": ", name, " is undefined");
  TORCH_CHECK(t.scalar_type() == at::kDouble || t.scalar_type() == c10::toRealValueType(input.scalar_type()), op,
              ": ", name, " must be a ", c10::toRealValueType(input.scalar_type()), " or float64 tensor, got ",
              t.scalar_type());
  TORCH_CHECK(t.device() == input.device(), op, ": ", name, " is on ", t.device(), " but the input is on ",
              input.device(), "; move them to the same device");
  TORCH_CHECK(t.sizes() == shape, op, ": ", name, " must have shape ", shape, ", got ", t.sizes());
}

void check_bn_mean(const char* op, const at::Tensor& input, const at::Tensor& mean) {
  check_bn_statistic(op, "mean (running_mean)", mean, input, {2, input.size(1)});
}

void check_bn_stats(const char* op, const at::Tensor& input, const at::Tensor& mean, const at::Tensor& cov) {
  check_bn_mean(op, input, mean);
  check_bn_statistic(op, "covariance (running_var)", cov, input, {2, 2, input.size(1)});
}

at::Tensor weight_rows(const c10::optional<at::Tensor>& weight, const BatchNormLayout& layout) {
  const auto opts = layout.z.options().dtype(at::kDouble);
  if (!weight.has_value() || !weight->defined()) {
    at::Tensor eye = at::zeros({layout.C, 4}, opts);
    eye.select(1, 0).fill_(1);
    eye.select(1, 3).fill_(1);
    return eye;
  }
  return weight->to(at::kDouble).reshape({4, layout.C}).t().contiguous();  // [C, (00, 01, 10, 11)]
}

at::Tensor bias_rows(const c10::optional<at::Tensor>& bias, const BatchNormLayout& layout) {
  const auto opts = layout.z.options().dtype(at::kDouble);
  if (!bias.has_value() || !bias->defined()) return at::zeros({layout.C, 2}, opts);
  return bias->to(at::kDouble).t().contiguous();  // [C, 2]
}

}  // namespace cplxfast

namespace cplxfast {
namespace {

// [2, C] real -> [C, 2] double; [2, 2, C] real -> [C, 4] double (a, b, c, d).
at::Tensor mean_rows(const at::Tensor& mean) { return mean.to(at::kDouble).t().contiguous(); }
at::Tensor cov_rows(const at::Tensor& cov) { return cov.to(at::kDouble).reshape({4, cov.size(2)}).t().contiguous(); }

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm_forward(
    const at::Tensor& input, const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias,
    const c10::optional<at::Tensor>& running_mean, const c10::optional<at::Tensor>& running_var, bool training,
    double eps, const BatchNormBackend& backend) {
  const char* op = "cplxfast.batch_norm";
  const BatchNormLayout L = plan_batch_norm(op, input);
  check_bn_params(op, input, weight, bias);
  const auto real = c10::toRealValueType(input.scalar_type());
  at::Tensor mean, cov, mean_out, cov_out;
  if (training) {
    TORCH_CHECK(L.per_channel > 1, op, ": expected more than 1 value per channel when training, got input of shape ",
                input.sizes());
    const at::Tensor m = backend.moments(L);  // [C, 5]
    mean = m.narrow(1, 0, 2).contiguous();
    cov = at::stack({m.select(1, 2) + eps, m.select(1, 3), m.select(1, 3), m.select(1, 4) + eps}, 1);  // [C, 4]
    mean_out = mean.t().to(real).contiguous();
    cov_out = cov.t().reshape({2, 2, L.C}).to(real).contiguous();
  } else {
    const at::Tensor* rm = present(running_mean);
    const at::Tensor* rv = present(running_var);
    TORCH_CHECK(rm != nullptr && rv != nullptr, op, ": evaluation (training=False) needs running_mean and running_var");
    check_bn_stats(op, input, *rm, *rv);
    mean = mean_rows(*rm);
    cov = cov_rows(*rv);
    mean_out = input.new_empty({0}, input.options().dtype(real));
    cov_out = input.new_empty({0}, input.options().dtype(real));
  }
  at::Tensor coeffs = at::empty({L.C, kBnCoeffs}, mean.options());
  backend.forward_coeffs(mean, cov, weight_rows(weight, L), bias_rows(bias, L), coeffs);
  at::Tensor out = empty_with_layout_of(L.z);
  if (L.numel > 0) backend.apply(L, L.z, at::Tensor(), coeffs, out);
  return {out, mean_out, cov_out};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm_backward(
    const at::Tensor& grad, const at::Tensor& input, const c10::optional<at::Tensor>& weight, const at::Tensor& mean_in,
    const at::Tensor& cov_in, bool training, std::array<bool, 3> output_mask, const c10::optional<at::Tensor>& grad_sums,
    int64_t count, const BatchNormBackend& backend) {
  const char* op = "cplxfast.batch_norm_backward";
  const BatchNormLayout L = plan_batch_norm(op, input);
  check_bn_params(op, input, weight, c10::nullopt);
  check_bn_stats(op, input, mean_in, cov_in);
  check_grad_like_input(op, grad, input);
  const auto real = c10::toRealValueType(input.scalar_type());
  const at::Tensor g = with_layout_of(grad, L.z);
  const at::Tensor mean = mean_rows(mean_in), cov = cov_rows(cov_in);
  // The per-channel sums feed grad_bias, grad_weight, and grad_input through the statistics.
  const bool need_sums = training || output_mask[1] || output_mask[2];
  at::Tensor sums;
  double n = static_cast<double>(L.per_channel);
  if (const at::Tensor* given = present(grad_sums)) {
    TORCH_CHECK(given->sizes() == at::IntArrayRef({6, L.C}) && given->scalar_type() == at::kDouble, op,
                ": grad_sums must be a float64 tensor of shape [6, ", L.C, "], got ", given->scalar_type(), " ",
                given->sizes());
    TORCH_CHECK(count > 0, op, ": count (elements per channel behind grad_sums) must be positive, got ", count);
    sums = given->to(input.device()).t().contiguous();
    n = static_cast<double>(count);
  } else {
    sums = need_sums && L.numel > 0 ? backend.grad_sums(L, g, mean) : at::zeros({L.C, 6}, mean.options());
  }
  at::Tensor coeffs = at::empty({L.C, kBnCoeffs}, mean.options());
  at::Tensor grad_w_rows = at::empty({L.C, 4}, mean.options());
  backend.backward_coeffs(mean, cov, weight_rows(weight, L), sums, n, training, coeffs, grad_w_rows);
  at::Tensor grad_input, grad_weight, grad_bias;
  if (output_mask[0]) {
    grad_input = empty_with_layout_of(L.z);
    if (L.numel > 0) backend.apply(L, g, training ? L.z : at::Tensor(), coeffs, grad_input);
  }
  if (output_mask[1]) grad_weight = grad_w_rows.t().reshape({2, 2, L.C}).to(real).contiguous();
  if (output_mask[2]) grad_bias = sums.narrow(1, 0, 2).t().to(real).contiguous();
  return {grad_input, grad_weight, grad_bias};
}

std::tuple<at::Tensor, at::Tensor> batch_norm_stats(const at::Tensor& input, const BatchNormBackend& backend) {
  const BatchNormLayout L = plan_batch_norm("cplxfast.batch_norm_stats", input);
  TORCH_CHECK(L.per_channel > 0, "cplxfast.batch_norm_stats: the input has no elements per channel: ", input.sizes());
  const at::Tensor m = backend.moments(L);  // [C, 5]
  const at::Tensor mean = m.narrow(1, 0, 2).t().contiguous();
  const at::Tensor cov = at::stack({m.select(1, 2), m.select(1, 3), m.select(1, 3), m.select(1, 4)}).view({2, 2, L.C});
  return {mean, cov};
}

at::Tensor batch_norm_grad_sums(const at::Tensor& grad, const at::Tensor& input, const at::Tensor& mean,
                                const BatchNormBackend& backend) {
  const char* op = "cplxfast.batch_norm_grad_sums";
  const BatchNormLayout L = plan_batch_norm(op, input);
  check_grad_like_input(op, grad, input);
  check_bn_mean(op, input, mean);
  if (L.numel == 0) return at::zeros({6, L.C}, mean.options().dtype(at::kDouble));
  return backend.grad_sums(L, with_layout_of(grad, L.z), mean_rows(mean)).t().contiguous();
}

}  // namespace cplxfast
