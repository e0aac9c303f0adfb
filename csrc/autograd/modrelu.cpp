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
using ModReLUSig = at::Tensor(const at::Tensor&, const at::Tensor&);
using ModReLUBackwardSig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                              std::array<bool, 2>);

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
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& threshold) {
    ctx->save_for_backward({input, threshold});  // the input and O(threshold): nothing else
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return modrelu_op().call(input, threshold);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const std::array<bool, 2> mask{ctx->needs_input_grad(0), ctx->needs_input_grad(1)};
    auto [grad_input, grad_threshold] = call_backward_op(modrelu_backward_op(), grads[0], saved[0], saved[1], mask);
    return {grad_input, grad_threshold};
  }
};

class ModReLUBackward : public torch::autograd::Function<ModReLUBackward> {
 public:
  static variable_list forward(AutogradContext*, const at::Tensor& grad, const at::Tensor& input,
                               const at::Tensor& threshold, std::array<bool, 2> output_mask) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    const auto [a, b] = modrelu_backward_op().call(grad, input, threshold, output_mask);
    return defined_only<2>({a, b});
  }

  static variable_list backward(AutogradContext*, variable_list) { refuse_double_backward("modrelu_backward"); }
};

at::Tensor modrelu_autograd(const at::Tensor& input, const at::Tensor& threshold) {
  return ModReLU::apply(input, threshold);
}

std::tuple<at::Tensor, at::Tensor> modrelu_backward_autograd(const at::Tensor& grad, const at::Tensor& input,
                                                             const at::Tensor& threshold, std::array<bool, 2> output_mask) {
  const auto out = in_places<2>(ModReLUBackward::apply(grad, input, threshold, output_mask), output_mask);
  return {out[0], out[1]};
}

}  // namespace

TORCH_LIBRARY_IMPL(cplxfast, Autograd, m) {
  m.impl("modrelu", &modrelu_autograd);
  m.impl("modrelu_backward", &modrelu_backward_autograd);
}

}  // namespace cplxfast::autograd
