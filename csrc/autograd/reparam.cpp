// Autograd of the Gaussian reparametrisation (see csrc/autograd/linear.cpp for why not Python):
// d out / d mu is the identity, d out / d s2 is the backward op, which draws the forward's noise
// again from the saved generator state; only s2 and that 16-byte state are saved.
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

}  // namespace

TORCH_LIBRARY_IMPL(cplxfast, Autograd, m) {
  m.impl("gaussian_reparam", &reparam_autograd);
  m.impl("gaussian_reparam_backward", &reparam_backward_autograd);
}

}  // namespace cplxfast::autograd
