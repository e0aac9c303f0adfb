// Autograd of the convolution family, in C++ (TORCH_LIBRARY_IMPL(cplxfast, Autograd, m)); the
// same pattern as autograd/linear.cpp (C++ for the per-call cost of small layers).
#include <array>
#include <string>
#include <vector>

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include "autograd/backward_ops.h"

namespace cplxfast::autograd {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using OptTensor = std::optional<at::Tensor>;
using IntList = at::IntArrayRef;
using OptDtype = std::optional<at::ScalarType>;
using Grads = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

using ConvSig = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const OptTensor&, const OptTensor&,
                           IntList, IntList, IntList, bool, IntList, int64_t, c10::string_view, OptDtype,
                           const OptTensor&);
using ConvBackwardSig = Grads(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, IntList,
                              IntList, IntList, bool, IntList, int64_t, c10::string_view, std::array<bool, 3>, OptDtype,
                              const OptTensor&);

const c10::TypedOperatorHandle<ConvSig>& conv_op() {
  static const auto op = c10::Dispatcher::singleton().findSchemaOrThrow("cplxfast::conv", "").typed<ConvSig>();
  return op;
}

const c10::TypedOperatorHandle<ConvBackwardSig>& conv_backward_op() {
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("cplxfast::conv_backward", "").typed<ConvBackwardSig>();
  return op;
}

using ConvComplexSig = at::Tensor(const at::Tensor&, const at::Tensor&, const OptTensor&, IntList, IntList, IntList,
                                  bool, IntList, int64_t, c10::string_view, OptDtype);
using ComplexGrads = std::tuple<at::Tensor, at::Tensor, at::Tensor>;
using ConvComplexBackwardSig = ComplexGrads(const at::Tensor&, const at::Tensor&, const at::Tensor&, IntList, IntList,
                                            IntList, bool, IntList, int64_t, c10::string_view, std::array<bool, 3>, OptDtype);

const c10::TypedOperatorHandle<ConvComplexSig>& conv_complex_op() {
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("cplxfast::conv_complex", "").typed<ConvComplexSig>();
  return op;
}

const c10::TypedOperatorHandle<ConvComplexBackwardSig>& conv_complex_backward_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("cplxfast::conv_complex_backward", "")
                             .typed<ConvComplexBackwardSig>();
  return op;
}

std::vector<int64_t> int_list(const c10::IValue& v) { return v.toIntVector(); }

// The geometry, algorithm and precision of a call, kept for its backward.
void save_geometry(AutogradContext* ctx, IntList stride, IntList padding, IntList dilation, bool transposed,
                   IntList output_padding, int64_t groups, c10::string_view algorithm, OptDtype operand_dtype) {
  auto& d = ctx->saved_data;
  d["stride"] = stride.vec();
  d["padding"] = padding.vec();
  d["dilation"] = dilation.vec();
  d["transposed"] = transposed;
  d["output_padding"] = output_padding.vec();
  d["groups"] = groups;
  d["algorithm"] = std::string(algorithm);
  d["operand_dtype"] = operand_dtype;
}

class Conv : public torch::autograd::Function<Conv> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight_re,
                            const at::Tensor& weight_im, const OptTensor& bias_re, const OptTensor& bias_im,
                            IntList stride, IntList padding, IntList dilation, bool transposed, IntList output_padding,
                            int64_t groups, c10::string_view algorithm, OptDtype operand_dtype,
                            const OptTensor& weight_mask) {
    ctx->save_for_backward({x, weight_re, weight_im, weight_mask.value_or(at::Tensor())});
    save_geometry(ctx, stride, padding, dilation, transposed, output_padding, groups, algorithm, operand_dtype);
    ctx->saved_data["has_bias"] = bias_re.has_value() && bias_re->defined();
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return conv_op().call(x, weight_re, weight_im, bias_re, bias_im, stride, padding, dilation, transposed,
                          output_padding, groups, algorithm, operand_dtype, weight_mask);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    auto& d = ctx->saved_data;
    const std::array<bool, 3> mask{
        ctx->needs_input_grad(0), ctx->needs_input_grad(1) || ctx->needs_input_grad(2),
        d["has_bias"].toBool() && (ctx->needs_input_grad(3) || ctx->needs_input_grad(4))};
    auto [grad_x, gw_re, gw_im, gb_re, gb_im] = call_backward_op(
        conv_backward_op(), grads[0], saved[0], saved[1], saved[2], int_list(d["stride"]), int_list(d["padding"]),
        int_list(d["dilation"]), d["transposed"].toBool(), int_list(d["output_padding"]), d["groups"].toInt(),
        d["algorithm"].toStringRef(), mask, d["operand_dtype"].toOptional<at::ScalarType>(), optional_of(saved[3]));
    variable_list out{grad_x, gw_re, gw_im, gb_re, gb_im};
    out.resize(14);  // no gradients for the geometry, the algorithm, the precision and the mask
    return out;
  }
};

class ConvBackward : public torch::autograd::Function<ConvBackward> {
 public:
  static variable_list forward(AutogradContext*, const at::Tensor& grad, const at::Tensor& x,
                               const at::Tensor& weight_re, const at::Tensor& weight_im, IntList stride,
                               IntList padding, IntList dilation, bool transposed, IntList output_padding,
                               int64_t groups, c10::string_view algorithm, std::array<bool, 3> output_mask,
                               OptDtype operand_dtype, const OptTensor& weight_mask) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    const auto [a, b, c, d, e] =
        conv_backward_op().call(grad, x, weight_re, weight_im, stride, padding, dilation, transposed, output_padding,
                                groups, algorithm, output_mask, operand_dtype, weight_mask);
    return defined_only<5>({a, b, c, d, e});
  }

  static variable_list backward(AutogradContext*, variable_list) { refuse_double_backward("conv_backward"); }
};

// The complex-weight variant: the same, with one complex weight and bias and their gradients.
class ConvComplex : public torch::autograd::Function<ConvComplex> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight, const OptTensor& bias,
                            IntList stride, IntList padding, IntList dilation, bool transposed, IntList output_padding,
                            int64_t groups, c10::string_view algorithm, OptDtype operand_dtype) {
    ctx->save_for_backward({x, weight});
    save_geometry(ctx, stride, padding, dilation, transposed, output_padding, groups, algorithm, operand_dtype);
    ctx->saved_data["has_bias"] = bias.has_value() && bias->defined();
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return conv_complex_op().call(x, weight, bias, stride, padding, dilation, transposed, output_padding, groups,
                                  algorithm, operand_dtype);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    auto& d = ctx->saved_data;
    const std::array<bool, 3> mask{ctx->needs_input_grad(0), ctx->needs_input_grad(1),
                                   d["has_bias"].toBool() && ctx->needs_input_grad(2)};
    auto [grad_x, grad_w, grad_b] = call_backward_op(
        conv_complex_backward_op(), grads[0], saved[0], saved[1], int_list(d["stride"]), int_list(d["padding"]),
        int_list(d["dilation"]), d["transposed"].toBool(), int_list(d["output_padding"]), d["groups"].toInt(),
        d["algorithm"].toStringRef(), mask, d["operand_dtype"].toOptional<at::ScalarType>());
    variable_list out{grad_x, grad_w, grad_b};
    out.resize(11);  // no gradients for the geometry, the algorithm and the precision
    return out;
  }
};

class ConvComplexBackward : public torch::autograd::Function<ConvComplexBackward> {
 public:
  static variable_list forward(AutogradContext*, const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight,
                               IntList stride, IntList padding, IntList dilation, bool transposed,
                               IntList output_padding, int64_t groups, c10::string_view algorithm,
                               std::array<bool, 3> output_mask, OptDtype operand_dtype) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    const auto [a, b, c] = conv_complex_backward_op().call(grad, x, weight, stride, padding, dilation, transposed,
                                                           output_padding, groups, algorithm, output_mask, operand_dtype);
    return defined_only<3>({a, b, c});
  }

  static variable_list backward(AutogradContext*, variable_list) { refuse_double_backward("conv_complex_backward"); }
};

at::Tensor conv_autograd(const at::Tensor& x, const at::Tensor& weight_re, const at::Tensor& weight_im,
                         const OptTensor& bias_re, const OptTensor& bias_im, IntList stride, IntList padding,
                         IntList dilation, bool transposed, IntList output_padding, int64_t groups,
                         c10::string_view algorithm, OptDtype operand_dtype, const OptTensor& weight_mask) {
  check_mask_constant("conv", weight_mask);  // here: a Function's forward runs with grad mode off
  return Conv::apply(x, weight_re, weight_im, bias_re, bias_im, stride, padding, dilation, transposed, output_padding,
                     groups, algorithm, operand_dtype, weight_mask);
}

Grads conv_backward_autograd(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight_re,
                             const at::Tensor& weight_im, IntList stride, IntList padding, IntList dilation,
                             bool transposed, IntList output_padding, int64_t groups, c10::string_view algorithm,
                             std::array<bool, 3> output_mask, OptDtype operand_dtype, const OptTensor& weight_mask) {
  check_mask_constant("conv_backward", weight_mask);
  const auto out = in_places<5>(
      ConvBackward::apply(grad, x, weight_re, weight_im, stride, padding, dilation, transposed, output_padding, groups,
                          algorithm, output_mask, operand_dtype, weight_mask),
      {output_mask[0], output_mask[1], output_mask[1], output_mask[2], output_mask[2]});
  return {out[0], out[1], out[2], out[3], out[4]};
}

at::Tensor conv_complex_autograd(const at::Tensor& x, const at::Tensor& weight, const OptTensor& bias, IntList stride,
                                 IntList padding, IntList dilation, bool transposed, IntList output_padding,
                                 int64_t groups, c10::string_view algorithm, OptDtype operand_dtype) {
  return ConvComplex::apply(x, weight, bias, stride, padding, dilation, transposed, output_padding, groups, algorithm, operand_dtype);
}

ComplexGrads conv_complex_backward_autograd(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight,
                                            IntList stride, IntList padding, IntList dilation, bool transposed,
                                            IntList output_padding, int64_t groups, c10::string_view algorithm,
                                            std::array<bool, 3> output_mask, OptDtype operand_dtype) {
  const auto out = in_places<3>(ConvComplexBackward::apply(grad, x, weight, stride, padding, dilation, transposed,
                                                           output_padding, groups, algorithm, output_mask, operand_dtype),
                                output_mask);
  return {out[0], out[1], out[2]};
}

}  // namespace

TORCH_LIBRARY_IMPL(cplxfast, Autograd, m) {
  m.impl("conv", &conv_autograd);
  m.impl("conv_backward", &conv_backward_autograd);
  m.impl("conv_complex", &conv_complex_autograd);
  m.impl("conv_complex_backward", &conv_complex_backward_autograd);
}

}  // namespace cplxfast::autograd
