// Autograd of the Gaussian reparametrisation (see csrc/autograd/linear.cpp for why not Python):
// d out / d mu is the identity, d out / d s2 is the backward op, which draws the forward's noise
// again from the saved generator state; only s2 and that 16-byte state are saved.
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
using ReparamSig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&);
using ReparamBackwardSig = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&);

const c10::TypedOperatorHandle<ReparamSig>& reparam_op() {
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("cplxfast::gaussian_reparam", "").typed<ReparamSig>();
  return op;
}

const c10::TypedOperatorHandle<ReparamBackwardSig>& reparam_backward_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("cplxfast::gaussian_reparam_backward", "")
                             .typed<ReparamBackwardSig>();
  return op;
}

class GaussianReparam : public torch::autograd::Function<GaussianReparam> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& mu, const at::Tensor& s2) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [out, rng] = reparam_op().call(mu, s2);
    ctx->save_for_backward({s2, rng});
    ctx->mark_non_differentiable({rng});
    return {out, rng};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    at::Tensor grad_s2;
    if (ctx->needs_input_grad(1)) {
      const variable_list saved = ctx->get_saved_variables();
      grad_s2 = call_backward_op(reparam_backward_op(), grads[0], saved[0], saved[1]);
    }
    return {ctx->needs_input_grad(0) ? grads[0] : at::Tensor(), grad_s2};
  }
};

class GaussianReparamBackward : public torch::autograd::Function<GaussianReparamBackward> {
 public:
  static at::Tensor forward(AutogradContext*, const at::Tensor& grad, const at::Tensor& s2, const at::Tensor& rng) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return reparam_backward_op().call(grad, s2, rng);
  }

  static variable_list backward(AutogradContext*, variable_list) { refuse_double_backward("gaussian_reparam_backward"); }
};

std::tuple<at::Tensor, at::Tensor> reparam_autograd(const at::Tensor& mu, const at::Tensor& s2) {
  const variable_list out = GaussianReparam::apply(mu, s2);
  return {out[0], out[1]};
}

at::Tensor reparam_backward_autograd(const at::Tensor& grad, const at::Tensor& s2, const at::Tensor& rng) {
  return GaussianReparamBackward::apply(grad, s2, rng);
}

// ---- the fused Gaussian layers (linear_gaussian, conv_gaussian): only out is differentiable;
// s2 and rng are saved for the backward op, which takes them as they were.
using OptTensor = std::optional<at::Tensor>;
using GaussianOut = std::tuple<at::Tensor, at::Tensor, at::Tensor>;
using GaussianGrads = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
using LinearGaussianSig = GaussianOut(const at::Tensor&, const at::Tensor&, const at::Tensor&, const OptTensor&,
                                      const OptTensor&, const at::Tensor&, c10::string_view);
using LinearGaussianBackwardSig = GaussianGrads(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                const at::Tensor&, c10::string_view, std::array<bool, 4>);
using ConvGaussianSig = GaussianOut(const at::Tensor&, const at::Tensor&, const at::Tensor&, const OptTensor&,
                                    const OptTensor&, const at::Tensor&, at::IntArrayRef, at::IntArrayRef,
                                    at::IntArrayRef, int64_t, c10::string_view);
using ConvGaussianBackwardSig = GaussianGrads(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                              const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                              const at::Tensor&, at::IntArrayRef, at::IntArrayRef, at::IntArrayRef,
                                              int64_t, c10::string_view, std::array<bool, 4>);

template <typename Sig>
c10::TypedOperatorHandle<Sig> find_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Sig>();
}

const c10::TypedOperatorHandle<LinearGaussianSig>& linear_gaussian_op() {
  static const auto op = find_op<LinearGaussianSig>("cplxfast::linear_gaussian");
  return op;
}
const c10::TypedOperatorHandle<LinearGaussianBackwardSig>& linear_gaussian_backward_op() {
  static const auto op = find_op<LinearGaussianBackwardSig>("cplxfast::linear_gaussian_backward");
  return op;
}
const c10::TypedOperatorHandle<ConvGaussianSig>& conv_gaussian_op() {
  static const auto op = find_op<ConvGaussianSig>("cplxfast::conv_gaussian");
  return op;
}
const c10::TypedOperatorHandle<ConvGaussianBackwardSig>& conv_gaussian_backward_op() {
  static const auto op = find_op<ConvGaussianBackwardSig>("cplxfast::conv_gaussian_backward");
  return op;
}

// (x, weight, bias, log_sigma2) from the needs of the op's inputs (x, weight_re, weight_im,
// bias_re, bias_im, log_sigma2, ...); needs_input_grad counts the tensors given, so log_sigma2 is
// input 3 when there is no bias.
std::array<bool, 4> gaussian_mask(AutogradContext* ctx) {
  const bool has_bias = ctx->saved_data["has_bias"].toBool();
  return {ctx->needs_input_grad(0), ctx->needs_input_grad(1) || ctx->needs_input_grad(2),
          has_bias && (ctx->needs_input_grad(3) || ctx->needs_input_grad(4)), ctx->needs_input_grad(has_bias ? 5 : 3)};
}

void save_gaussian(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight_re, const at::Tensor& weight_im,
                   const OptTensor& bias_re, const at::Tensor& log_sigma2, c10::string_view algorithm,
                   const GaussianOut& out) {
  ctx->save_for_backward({x, weight_re, weight_im, log_sigma2, std::get<1>(out), std::get<2>(out)});
  ctx->mark_non_differentiable({std::get<1>(out), std::get<2>(out)});
  ctx->saved_data["algorithm"] = std::string(algorithm);
  ctx->saved_data["has_bias"] = bias_re.has_value() && bias_re->defined();
}

variable_list gaussian_grads(const GaussianGrads& g, size_t extra_inputs) {
  variable_list out{std::get<0>(g), std::get<1>(g), std::get<2>(g), std::get<3>(g), std::get<4>(g), std::get<5>(g)};
  out.resize(out.size() + extra_inputs);
  return out;
}

class LinearGaussian : public torch::autograd::Function<LinearGaussian> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight_re,
                               const at::Tensor& weight_im, const OptTensor& bias_re, const OptTensor& bias_im,
                               const at::Tensor& log_sigma2, c10::string_view algorithm) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    const GaussianOut out = linear_gaussian_op().call(x, weight_re, weight_im, bias_re, bias_im, log_sigma2, algorithm);
    save_gaussian(ctx, x, weight_re, weight_im, bias_re, log_sigma2, algorithm, out);
    return {std::get<0>(out), std::get<1>(out), std::get<2>(out)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list s = ctx->get_saved_variables();
    return gaussian_grads(call_backward_op(linear_gaussian_backward_op(), grads[0], s[0], s[1], s[2], s[3], s[4], s[5],
                                           ctx->saved_data["algorithm"].toStringRef(), gaussian_mask(ctx)),
                          1);
  }
};

class ConvGaussian : public torch::autograd::Function<ConvGaussian> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight_re,
                               const at::Tensor& weight_im, const OptTensor& bias_re, const OptTensor& bias_im,
                               const at::Tensor& log_sigma2, at::IntArrayRef stride, at::IntArrayRef padding,
                               at::IntArrayRef dilation, int64_t groups, c10::string_view algorithm) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    const GaussianOut out = conv_gaussian_op().call(x, weight_re, weight_im, bias_re, bias_im, log_sigma2, stride,
                                                    padding, dilation, groups, algorithm);
    save_gaussian(ctx, x, weight_re, weight_im, bias_re, log_sigma2, algorithm, out);
    ctx->saved_data["stride"] = stride.vec();
    ctx->saved_data["padding"] = padding.vec();
    ctx->saved_data["dilation"] = dilation.vec();
    ctx->saved_data["groups"] = groups;
    return {std::get<0>(out), std::get<1>(out), std::get<2>(out)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list s = ctx->get_saved_variables();
    const auto& d = ctx->saved_data;
    return gaussian_grads(
        call_backward_op(conv_gaussian_backward_op(), grads[0], s[0], s[1], s[2], s[3], s[4], s[5],
                         d.at("stride").toIntVector(), d.at("padding").toIntVector(), d.at("dilation").toIntVector(),
                         d.at("groups").toInt(), d.at("algorithm").toStringRef(), gaussian_mask(ctx)),
        5);
  }
};

// The backward ops: fused kernels whose outputs refuse a double backward (autograd/backward_ops.h).
constexpr std::array<bool, 6> computed_of(std::array<bool, 4> m) { return {m[0], m[1], m[1], m[2], m[2], m[3]}; }

GaussianGrads gaussian_grads_of(const variable_list& defined, std::array<bool, 4> mask) {
  const auto g = in_places<6>(defined, computed_of(mask));
  return {g[0], g[1], g[2], g[3], g[4], g[5]};
}

class LinearGaussianBackward : public torch::autograd::Function<LinearGaussianBackward> {
 public:
  static variable_list forward(AutogradContext*, const at::Tensor& grad, const at::Tensor& x,
                               const at::Tensor& weight_re, const at::Tensor& weight_im, const at::Tensor& log_sigma2,
                               const at::Tensor& s2, const at::Tensor& rng, c10::string_view algorithm,
                               std::array<bool, 4> mask) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    const auto [a, b, c, d, e, f] =
        linear_gaussian_backward_op().call(grad, x, weight_re, weight_im, log_sigma2, s2, rng, algorithm, mask);
    return defined_only<6>({a, b, c, d, e, f});
  }

  static variable_list backward(AutogradContext*, variable_list) { refuse_double_backward("linear_gaussian_backward"); }
};

class ConvGaussianBackward : public torch::autograd::Function<ConvGaussianBackward> {
 public:
  static variable_list forward(AutogradContext*, const at::Tensor& grad, const at::Tensor& x,
                               const at::Tensor& weight_re, const at::Tensor& weight_im, const at::Tensor& log_sigma2,
                               const at::Tensor& s2, const at::Tensor& rng, at::IntArrayRef stride,
                               at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                               c10::string_view algorithm, std::array<bool, 4> mask) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    const auto [a, b, c, d, e, f] = conv_gaussian_backward_op().call(
        grad, x, weight_re, weight_im, log_sigma2, s2, rng, stride, padding, dilation, groups, algorithm, mask);
    return defined_only<6>({a, b, c, d, e, f});
  }

  static variable_list backward(AutogradContext*, variable_list) { refuse_double_backward("conv_gaussian_backward"); }
};

GaussianOut linear_gaussian_autograd(const at::Tensor& x, const at::Tensor& weight_re, const at::Tensor& weight_im,
                                     const OptTensor& bias_re, const OptTensor& bias_im, const at::Tensor& log_sigma2,
                                     c10::string_view algorithm) {
  const variable_list out = LinearGaussian::apply(x, weight_re, weight_im, bias_re, bias_im, log_sigma2, algorithm);
  return {out[0], out[1], out[2]};
}

GaussianGrads linear_gaussian_backward_autograd(const at::Tensor& grad, const at::Tensor& x,
                                                const at::Tensor& weight_re, const at::Tensor& weight_im,
                                                const at::Tensor& log_sigma2, const at::Tensor& s2,
                                                const at::Tensor& rng, c10::string_view algorithm,
                                                std::array<bool, 4> mask) {
  return gaussian_grads_of(
      LinearGaussianBackward::apply(grad, x, weight_re, weight_im, log_sigma2, s2, rng, algorithm, mask), mask);
}

GaussianOut conv_gaussian_autograd(const at::Tensor& x, const at::Tensor& weight_re, const at::Tensor& weight_im,
                                   const OptTensor& bias_re, const OptTensor& bias_im, const at::Tensor& log_sigma2,
                                   at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                   int64_t groups, c10::string_view algorithm) {
  const variable_list out = ConvGaussian::apply(x, weight_re, weight_im, bias_re, bias_im, log_sigma2, stride, padding,
                                                dilation, groups, algorithm);
  return {out[0], out[1], out[2]};
}

GaussianGrads conv_gaussian_backward_autograd(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight_re,
                                              const at::Tensor& weight_im, const at::Tensor& log_sigma2,
                                              const at::Tensor& s2, const at::Tensor& rng, at::IntArrayRef stride,
                                              at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                                              c10::string_view algorithm, std::array<bool, 4> mask) {
  return gaussian_grads_of(ConvGaussianBackward::apply(grad, x, weight_re, weight_im, log_sigma2, s2, rng, stride,
                                                       padding, dilation, groups, algorithm, mask),
                           mask);
}

}  // namespace

TORCH_LIBRARY_IMPL(cplxfast, Autograd, m) {
  m.impl("gaussian_reparam", &reparam_autograd);
  m.impl("gaussian_reparam_backward", &reparam_backward_autograd);
  m.impl("linear_gaussian", &linear_gaussian_autograd);
  m.impl("linear_gaussian_backward", &linear_gaussian_backward_autograd);
  m.impl("conv_gaussian", &conv_gaussian_autograd);
  m.impl("conv_gaussian_backward", &conv_gaussian_backward_autograd);
}

}  // namespace cplxfast::autograd
