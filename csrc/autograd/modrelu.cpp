// Autograd of the modReLU family, in C++ (see csrc/autograd/linear.cpp for why not Python).
#include <array>

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include "autograd/backward_ops.h"

namespace cplxfast::autograd {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using ModReLUSig = at::Tensor(const at::Tensor&, const at::Tensor&, double);
using ModReLUBackwardSig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                              std::array<bool, 2>, double);

const c10::TypedOperatorHandle<ModReLUSig>& modrelu_op() {
  static const auto op = c10::Dispatcher::singleton().findSchemaOrThrow("cplxfast::modrelu", "").typed<ModReLUSig>();
  return op;
}

const c10::TypedOperatorHandle<ModReLUBackwardSig>& modrelu_backward_op() {
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("cplxfast::modrelu_backward", "").typed<ModReLUBackwardSig>();
  return op;
}

class ModReLU : public torch::autograd::Function<ModReLU> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& threshold, double eps) {
    ctx->save_for_backward({input, threshold});  // the input and O(threshold): nothing else
    ctx->saved_data["eps"] = eps;
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return modrelu_op().call(input, threshold, eps);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const std::array<bool, 2> mask{ctx->needs_input_grad(0), ctx->needs_input_grad(1)};
    auto [grad_input, grad_threshold] = call_backward_op(modrelu_backward_op(), grads[0], saved[0], saved[1], mask,
                                                         ctx->saved_data["eps"].toDouble());
    return {grad_input, grad_threshold, at::Tensor()};
  }
};

class ModReLUBackward : public torch::autograd::Function<ModReLUBackward> {
 public:
  static variable_list forward(AutogradContext*, const at::Tensor& grad, const at::Tensor& input,
                               const at::Tensor& threshold, std::array<bool, 2> output_mask, double eps) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    const auto [a, b] = modrelu_backward_op().call(grad, input, threshold, output_mask, eps);
    return defined_only<2>({a, b});
  }

  static variable_list backward(AutogradContext*, variable_list) { refuse_double_backward("modrelu_backward"); }
};

at::Tensor modrelu_autograd(const at::Tensor& input, const at::Tensor& threshold, double eps) {
  return ModReLU::apply(input, threshold, eps);
}

std::tuple<at::Tensor, at::Tensor> modrelu_backward_autograd(const at::Tensor& grad, const at::Tensor& input,
                                                             const at::Tensor& threshold, std::array<bool, 2> output_mask,
                                                             double eps) {
  const auto out = in_places<2>(ModReLUBackward::apply(grad, input, threshold, output_mask, eps), output_mask);
  return {out[0], out[1]};
}

}  // namespace

TORCH_LIBRARY_IMPL(cplxfast, Autograd, m) {
  m.impl("modrelu", &modrelu_autograd);
  m.impl("modrelu_backward", &modrelu_backward_autograd);
}

}  // namespace cplxfast::autograd
