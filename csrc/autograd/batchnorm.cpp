// Autograd of complex batch norm, in C++ (see csrc/autograd/linear.cpp for why not Python).
// Saved for backward: the input, the weight and the per-channel statistics (O(C)); nothing
// else of the input's size.
#include <array>

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include "autograd/backward_ops.h"

namespace cplxfast::autograd {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using OptTensor = std::optional<at::Tensor>;
using Triple = std::tuple<at::Tensor, at::Tensor, at::Tensor>;
using BatchNormSig = Triple(const at::Tensor&, const OptTensor&, const OptTensor&, const OptTensor&, const OptTensor&,
                            bool, double);
using BatchNormBackwardSig = Triple(const at::Tensor&, const at::Tensor&, const OptTensor&, const at::Tensor&,
                                    const at::Tensor&, bool, std::array<bool, 3>, const OptTensor&, int64_t);

const c10::TypedOperatorHandle<BatchNormSig>& batch_norm_op() {
  static const auto op = c10::Dispatcher::singleton().findSchemaOrThrow("cplxfast::batch_norm", "").typed<BatchNormSig>();
  return op;
}

const c10::TypedOperatorHandle<BatchNormBackwardSig>& batch_norm_backward_op() {
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("cplxfast::batch_norm_backward", "").typed<BatchNormBackwardSig>();
  return op;
}

class BatchNorm : public torch::autograd::Function<BatchNorm> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& input, const OptTensor& weight,
                               const OptTensor& bias, const OptTensor& running_mean, const OptTensor& running_var,
                               bool training, double eps) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [out, mean, cov] = batch_norm_op().call(input, weight, bias, running_mean, running_var, training, eps);
    ctx->mark_non_differentiable({mean, cov});
    // The statistics the forward used: the batch's in training, the running ones in eval.
    const at::Tensor used_mean = training ? mean : *running_mean;
    const at::Tensor used_cov = training ? cov : *running_var;
    ctx->save_for_backward({input, weight.value_or(at::Tensor()), used_mean, used_cov});
    ctx->saved_data["training"] = training;
    ctx->saved_data["has_bias"] = bias.has_value() && bias->defined();
    return {out, mean, cov};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const bool training = ctx->saved_data["training"].toBool();
    const std::array<bool, 3> mask{ctx->needs_input_grad(0), saved[1].defined() && ctx->needs_input_grad(1),
                                   ctx->saved_data["has_bias"].toBool() && ctx->needs_input_grad(2)};
    const OptTensor weight = saved[1].defined() ? OptTensor(saved[1]) : std::nullopt;
    auto [grad_input, grad_weight, grad_bias] =
        call_backward_op(batch_norm_backward_op(), grads[0], saved[0], weight, saved[2], saved[3], training, mask,
                         std::nullopt, -1);
    return {grad_input, grad_weight, grad_bias, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

class BatchNormBackward : public torch::autograd::Function<BatchNormBackward> {
 public:
  static variable_list forward(AutogradContext*, const at::Tensor& grad, const at::Tensor& input, const OptTensor& weight,
                               const at::Tensor& mean, const at::Tensor& cov, bool training,
                               std::array<bool, 3> output_mask, const OptTensor& grad_sums, int64_t count) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    const auto [a, b, c] =
        batch_norm_backward_op().call(grad, input, weight, mean, cov, training, output_mask, grad_sums, count);
    return defined_only<3>({a, b, c});
  }

  static variable_list backward(AutogradContext*, variable_list) { refuse_double_backward("batch_norm_backward"); }
};

Triple batch_norm_autograd(const at::Tensor& input, const OptTensor& weight, const OptTensor& bias,
                           const OptTensor& running_mean, const OptTensor& running_var, bool training, double eps) {
  const variable_list out = BatchNorm::apply(input, weight, bias, running_mean, running_var, training, eps);
  return {out[0], out[1], out[2]};
}

Triple batch_norm_backward_autograd(const at::Tensor& grad, const at::Tensor& input, const OptTensor& weight,
                                    const at::Tensor& mean, const at::Tensor& cov, bool training,
                                    std::array<bool, 3> output_mask, const OptTensor& grad_sums, int64_t count) {
  const auto out = in_places<3>(
      BatchNormBackward::apply(grad, input, weight, mean, cov, training, output_mask, grad_sums, count), output_mask);
  return {out[0], out[1], out[2]};
}

}  // namespace

TORCH_LIBRARY_IMPL(cplxfast, Autograd, m) {
  m.impl("batch_norm", &batch_norm_autograd);
  m.impl("batch_norm_backward", &batch_norm_backward_autograd);
  // Statistics helpers of CplxSyncBatchNorm: not differentiable (documented in ops.cpp).
  m.impl("batch_norm_stats", torch::CppFunction::makeFallthrough());
  m.impl("batch_norm_grad_sums", torch::CppFunction::makeFallthrough());
}

}  // namespace cplxfast::autograd
