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

}  // namespace cplxfast

namespace cplxfast {
namespace {

// A parameter or statistic as the per-channel step reads it (contiguous; a no-op for the
// module's own tensors). The returned tensor must outlive the step (it owns the memory).
at::Tensor dense(const c10::optional<at::Tensor>& t) {
  return t.has_value() && t->defined() ? t->contiguous() : at::Tensor();
}

BnStat stat_of(const at::Tensor& t) { return {t.data_ptr(), t.scalar_type() == at::kDouble}; }

const void* data_or_null(const at::Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }

at::ScalarType real_of(const BatchNormLayout& L) { return c10::toRealValueType(L.z.scalar_type()); }

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm_forward(
    const at::Tensor& input, const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias,
    const c10::optional<at::Tensor>& running_mean, const c10::optional<at::Tensor>& running_var, bool training,
    double eps, const BatchNormBackend& backend) {
  const char* op = "cplxfast.batch_norm";
  const BatchNormLayout L = plan_batch_norm(op, input);
  check_bn_params(op, input, weight, bias);
  const at::TensorOptions real = input.options().dtype(real_of(L));
  const at::Tensor w = dense(weight), b = dense(bias);
  at::Tensor coeffs = at::empty({L.C, kBnCoeffs}, real.dtype(at::kDouble));
  at::Tensor mean_out, cov_out, partials, rm, rv;
  BnFinish a;
  a.C = L.C;
  a.weight = data_or_null(w);
  a.bias = data_or_null(b);
  a.coeffs = coeffs.data_ptr<double>();
  if (training) {
    TORCH_CHECK(L.per_channel > 1, op, ": expected more than 1 value per channel when training, got input of shape ",
                input.sizes());
    partials = backend.moment_sums(L);
    mean_out = at::empty({2, L.C}, real);
    cov_out = at::empty({2, 2, L.C}, real);
    a.mode = BnFinish::kTrainForward;
    a.partials = partials.data_ptr<double>();
    a.splits = partials.size(0);
    a.n = static_cast<double>(L.per_channel);
    a.x = L.z.data_ptr();
    a.inner = L.inner;
    a.eps = eps;
    a.mean_out = mean_out.data_ptr();
    a.cov_out = cov_out.data_ptr();
  } else {
    TORCH_CHECK(present(running_mean) != nullptr && present(running_var) != nullptr, op,
                ": evaluation (training=False) needs running_mean and running_var");
    check_bn_stats(op, input, *running_mean, *running_var);
    rm = running_mean->contiguous(), rv = running_var->contiguous();
    mean_out = at::empty({0}, real);
    cov_out = at::empty({0}, real);
    a.mode = BnFinish::kEvalForward;
    a.mean = stat_of(rm);
    a.cov = stat_of(rv);
  }
  if (L.C > 0) backend.finish(a, real_of(L));
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
  const at::TensorOptions real = input.options().dtype(real_of(L));
  const at::Tensor g = with_layout_of(grad, L.z);
  const at::Tensor w = dense(weight), mean = mean_in.contiguous(), cov = cov_in.contiguous();
  at::Tensor coeffs = at::empty({L.C, kBnCoeffs}, real.dtype(at::kDouble));
  at::Tensor grad_weight = output_mask[1] ? at::empty({2, 2, L.C}, real) : at::Tensor();
  at::Tensor grad_bias = output_mask[2] ? at::empty({2, L.C}, real) : at::Tensor();
  BnFinish a;
  a.mode = BnFinish::kBackward;
  a.C = L.C;
  a.weight = data_or_null(w);
  a.mean = stat_of(mean);
  a.cov = stat_of(cov);
  a.training = training;
  a.n = static_cast<double>(L.per_channel);
  a.coeffs = coeffs.data_ptr<double>();
  a.grad_weight = output_mask[1] ? grad_weight.data_ptr() : nullptr;
  a.grad_bias = output_mask[2] ? grad_bias.data_ptr() : nullptr;
  // The per-channel sums feed grad_bias, grad_weight, and grad_input through the statistics.
  at::Tensor sums;
  if (const at::Tensor* given = present(grad_sums)) {
    TORCH_CHECK(given->sizes() == at::IntArrayRef({6, L.C}) && given->scalar_type() == at::kDouble, op,
                ": grad_sums must be a float64 tensor of shape [6, ", L.C, "], got ", given->scalar_type(), " ",
                given->sizes());
    TORCH_CHECK(count > 0, op, ": count (elements per channel behind grad_sums) must be positive, got ", count);
    sums = given->to(input.device()).contiguous();
    a.given_sums = sums.data_ptr<double>();
    a.n = static_cast<double>(count);
  } else if ((training || output_mask[1] || output_mask[2]) && L.numel > 0) {
    sums = backend.grad_sums(L, g, a.mean);
    a.partials = sums.data_ptr<double>();
    a.splits = sums.size(0);
  }
  if (L.C > 0) backend.finish(a, real_of(L));
  at::Tensor grad_input;
  if (output_mask[0]) {
    grad_input = empty_with_layout_of(L.z);
    if (L.numel > 0) backend.apply(L, g, training ? L.z : at::Tensor(), coeffs, grad_input);
  }
  return {grad_input, grad_weight, grad_bias};
}

std::tuple<at::Tensor, at::Tensor> batch_norm_stats(const at::Tensor& input, const BatchNormBackend& backend) {
  const BatchNormLayout L = plan_batch_norm("cplxfast.batch_norm_stats", input);
  TORCH_CHECK(L.per_channel > 0, "cplxfast.batch_norm_stats: the input has no elements per channel: ", input.sizes());
  const at::Tensor partials = backend.moment_sums(L);
  at::Tensor mean = at::empty({2, L.C}, partials.options()), cov = at::empty({2, 2, L.C}, partials.options());
  BnFinish a;
  a.mode = BnFinish::kStats;
  a.C = L.C;
  a.partials = partials.data_ptr<double>();
  a.splits = partials.size(0);
  a.n = static_cast<double>(L.per_channel);
  a.x = L.z.data_ptr();
  a.inner = L.inner;
  a.mean_out = mean.data_ptr();
  a.cov_out = cov.data_ptr();
  backend.finish(a, real_of(L));
  return {mean, cov};
}

at::Tensor batch_norm_grad_sums(const at::Tensor& grad, const at::Tensor& input, const at::Tensor& mean_in,
                                const BatchNormBackend& backend) {
  const char* op = "cplxfast.batch_norm_grad_sums";
  const BatchNormLayout L = plan_batch_norm(op, input);
  check_grad_like_input(op, grad, input);
  check_bn_mean(op, input, mean_in);
  if (L.numel == 0) return at::zeros({6, L.C}, mean_in.options().dtype(at::kDouble));
  const at::Tensor mean = mean_in.contiguous();
  const at::Tensor partials = backend.grad_sums(L, with_layout_of(grad, L.z), stat_of(mean));
  at::Tensor sums = at::empty({6, L.C}, partials.options());
  BnFinish a;
  a.mode = BnFinish::kGradSums;
  a.C = L.C;
  a.partials = partials.data_ptr<double>();
  a.splits = partials.size(0);
  a.sums_out = sums.data_ptr<double>();
  backend.finish(a, real_of(L));  // the splits summed in order, as the backward sums them
  return sums;
}

}  // namespace cplxfast
