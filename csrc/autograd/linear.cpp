// Autograd of the linear family, in C++ (TORCH_LIBRARY_IMPL(cplxfast, Autograd, m)).
//
// Why C++ and not torch.library.register_autograd: measured on the 2-core CPU, the Python
// autograd wrapper of a custom op cost ~100 us per forward+backward of one layer, which made a
// small complex layer (64x256->256) slower than torch's native complex nn.Linear.
#include <array>
#include <string>

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include "autograd/backward_ops.h"

namespace cplxfast::autograd {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using OptTensor = std::optional<at::Tensor>;
using OptDtype = std::optional<at::ScalarType>;
using Grads = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

using LinearSig = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const OptTensor&,
                             const OptTensor&, c10::string_view, OptDtype, const OptTensor&);
using LinearBackwardSig = Grads(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                c10::string_view, std::array<bool, 3>, OptDtype, const OptTensor&);

using LinearComplexSig = at::Tensor(const at::Tensor&, const at::Tensor&, const OptTensor&, c10::string_view,
                                    OptDtype);
using ComplexGrads = std::tuple<at::Tensor, at::Tensor, at::Tensor>;
using LinearComplexBackwardSig = ComplexGrads(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                              c10::string_view, std::array<bool, 3>, OptDtype);

const c10::TypedOperatorHandle<LinearSig>& linear_op() {
  static const auto op = c10::Dispatcher::singleton().findSchemaOrThrow("cplxfast::linear", "").typed<LinearSig>();
  return op;
}

const c10::TypedOperatorHandle<LinearBackwardSig>& linear_backward_op() {
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("cplxfast::linear_backward", "").typed<LinearBackwardSig>();
  return op;
}

const c10::TypedOperatorHandle<LinearComplexSig>& linear_complex_op() {
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("cplxfast::linear_complex", "").typed<LinearComplexSig>();
  return op;
}

const c10::TypedOperatorHandle<LinearComplexBackwardSig>& linear_complex_backward_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("cplxfast::linear_complex_backward", "")
                             .typed<LinearComplexBackwardSig>();
  return op;
}

class Linear : public torch::autograd::Function<Linear> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight_re,
                            const at::Tensor& weight_im, const OptTensor& bias_re, const OptTensor& bias_im,
                            c10::string_view algorithm, OptDtype operand_dtype, const OptTensor& weight_mask) {
    ctx->save_for_backward({x, weight_re, weight_im, weight_mask.value_or(at::Tensor())});
    ctx->saved_data["algorithm"] = std::string(algorithm);
    ctx->saved_data["operand_dtype"] = operand_dtype;
    ctx->saved_data["has_bias"] = bias_re.has_value() && bias_re->defined();
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return linear_op().call(x, weight_re, weight_im, bias_re, bias_im, algorithm, operand_dtype, weight_mask);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const std::string algorithm = ctx->saved_data["algorithm"].toStringRef();
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    const std::array<bool, 3> mask{
        ctx->needs_input_grad(0), ctx->needs_input_grad(1) || ctx->needs_input_grad(2),
        has_bias && (ctx->needs_input_grad(3) || ctx->needs_input_grad(4))};
    auto [grad_x, gw_re, gw_im, gb_re, gb_im] =
        call_backward_op(linear_backward_op(), grads[0], saved[0], saved[1], saved[2], algorithm, mask,
                         ctx->saved_data["operand_dtype"].toOptional<at::ScalarType>(), optional_of(saved[3]));
    return {grad_x, gw_re, gw_im, gb_re, gb_im, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

class LinearBackward : public torch::autograd::Function<LinearBackward> {
 public:
  static variable_list forward(AutogradContext*, const at::Tensor& grad, const at::Tensor& x,
                               const at::Tensor& weight_re, const at::Tensor& weight_im,
                               c10::string_view algorithm, std::array<bool, 3> output_mask, OptDtype operand_dtype,
                               const OptTensor& weight_mask) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    const auto [a, b, c, d, e] =
        linear_backward_op().call(grad, x, weight_re, weight_im, algorithm, output_mask, operand_dtype, weight_mask);
    return defined_only<5>({a, b, c, d, e});
  }

  static variable_list backward(AutogradContext*, variable_list) { refuse_double_backward("linear_backward"); }
};

// The complex-weight variant: the same, with one complex weight and bias and their gradients.
class LinearComplex : public torch::autograd::Function<LinearComplex> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight, const OptTensor& bias,
                            c10::string_view algorithm, OptDtype operand_dtype) {
    ctx->save_for_backward({x, weight});
    ctx->saved_data["algorithm"] = std::string(algorithm);
    ctx->saved_data["operand_dtype"] = operand_dtype;
    ctx->saved_data["has_bias"] = bias.has_value() && bias->defined();
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return linear_complex_op().call(x, weight, bias, algorithm, operand_dtype);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const std::array<bool, 3> mask{ctx->needs_input_grad(0), ctx->needs_input_grad(1),
                                   ctx->saved_data["has_bias"].toBool() && ctx->needs_input_grad(2)};
    auto [grad_x, grad_w, grad_b] = call_backward_op(linear_complex_backward_op(), grads[0], saved[0], saved[1],
                                                     ctx->saved_data["algorithm"].toStringRef(), mask,
                                                     ctx->saved_data["operand_dtype"].toOptional<at::ScalarType>());
    return {grad_x, grad_w, grad_b, at::Tensor(), at::Tensor()};
  }
};

class LinearComplexBackward : public torch::autograd::Function<LinearComplexBackward> {
 public:
  static variable_list forward(AutogradContext*, const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight,
                               c10::string_view algorithm, std::array<bool, 3> output_mask, OptDtype operand_dtype) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    const auto [a, b, c] = linear_complex_backward_op().call(grad, x, weight, algorithm, output_mask, operand_dtype);
    return defined_only<3>({a, b, c});
  }

  static variable_list backward(AutogradContext*, variable_list) { refuse_double_backward("linear_complex_backward"); }
};

at::Tensor linear_autograd(const at::Tensor& x, const at::Tensor& weight_re, const at::Tensor& weight_im,
                           const OptTensor& bias_re, const OptTensor& bias_im, c10::string_view algorithm,
                           OptDtype operand_dtype, const OptTensor& weight_mask) {
  check_mask_constant("linear", weight_mask);  // here: a Function's forward runs with grad mode off
  return Linear::apply(x, weight_re, weight_im, bias_re, bias_im, algorithm, operand_dtype, weight_mask);
}

Grads linear_backward_autograd(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight_re,
                               const at::Tensor& weight_im, c10::string_view algorithm,
                               std::array<bool, 3> output_mask, OptDtype operand_dtype, const OptTensor& weight_mask) {
  check_mask_constant("linear_backward", weight_mask);
  const auto out = in_places<5>(LinearBackward::apply(grad, x, weight_re, weight_im, algorithm, output_mask,
                                                      operand_dtype, weight_mask),
                                {output_mask[0], output_mask[1], output_mask[1], output_mask[2], output_mask[2]});
  return {out[0], out[1], out[2], out[3], out[4]};
}

at::Tensor linear_complex_autograd(const at::Tensor& x, const at::Tensor& weight, const OptTensor& bias,
                                   c10::string_view algorithm, OptDtype operand_dtype) {
  return LinearComplex::apply(x, weight, bias, algorithm, operand_dtype);
}

ComplexGrads linear_complex_backward_autograd(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight,
                                              c10::string_view algorithm, std::array<bool, 3> output_mask,
                                              OptDtype operand_dtype) {
  const auto out = in_places<3>(
      LinearComplexBackward::apply(grad, x, weight, algorithm, output_mask, operand_dtype), output_mask);
  return {out[0], out[1], out[2]};
}

}  // namespace

TORCH_LIBRARY_IMPL(cplxfast, Autograd, m) {
  m.impl("linear", &linear_autograd);
  m.impl("linear_backward", &linear_backward_autograd);
  m.impl("linear_complex", &linear_complex_autograd);
  m.impl("linear_complex_backward", &linear_complex_backward_autograd);
}

}  // namespace cplxfast::autograd
