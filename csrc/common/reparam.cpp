// Host-side checks and layout of the reparametrisation ops (see reparam.h).
#include "common/reparam.h"

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <c10/util/accumulate.h>
#include <torch/library.h>

#include "common/checks.h"
#include "common/layout.h"

namespace cplxfast {
namespace {

// s2 in the layout that orders the noise: s2 itself when it is dense (non-overlapping, no gaps),
// else a contiguous copy. Decided from s2 alone, so the backward finds the forward's order when it
// gets the same s2 (autograd saves it); an s2 of another layout would pair elements with other
// noise. No lazy neg bit reaches here: the dispatcher's Negative fallback materialises such views
// first (keeping their strides), as tests/test_reparam.py checks.
at::Tensor noise_order(const at::Tensor& s2) { return s2.is_non_overlapping_and_dense() ? s2 : s2.contiguous(); }

}  // namespace

ReparamOperands plan_reparam(const char* op, const char* z_name, const at::Tensor& z, const at::Tensor& s2) {
  check_complex(op, z_name, z);
  check_real_part(op, "s2", s2, z);
  TORCH_CHECK(s2.sizes() == z.sizes(), op, ": s2 has shape ", s2.sizes(), " but ", z_name, " has shape ", z.sizes());
  const at::Tensor s = noise_order(s2);
  // Complex strides count complex elements: the same numbers as s's strides count reals.
  return {with_layout_of(z, s), s, s.numel()};
}

void check_log_sigma2(const char* op, const at::Tensor& log_sigma2, const at::Tensor& weight_re, const at::Tensor& x) {
  check_real_part(op, "log_sigma2", log_sigma2, x);
  TORCH_CHECK(log_sigma2.sizes() == weight_re.sizes(), op, ": log_sigma2 has shape ", log_sigma2.sizes(),
              " but the weight has shape ", weight_re.sizes());
}

// re^2 + im^2 in two passes (measured 0.75 ms for 1M complex64 elements on the development CPU,
// against 2.9 ms for view_as_real(x).square().sum(-1), whose reduction over the pair is slow).
at::Tensor modulus_squared(const at::Tensor& x) {
  const at::Tensor re = at::real(x), im = at::imag(x);  // conj only flips im's sign: no effect here
  return at::mul(re, re).addcmul_(im, im);
}

std::tuple<at::Tensor, at::Tensor> gaussian_reparam_op(const at::Tensor& mu, const at::Tensor& s2) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("cplxfast::gaussian_reparam", "")
                             .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&)>();
  at::AutoDispatchBelowADInplaceOrView below_autograd;  // called from inside an op's kernel
  return op.call(mu, s2);
}

void check_rng_state(const char* op, const at::Tensor& rng, const at::Tensor& like) {
  TORCH_CHECK(rng.defined() && rng.scalar_type() == at::kLong && rng.numel() == 2 && rng.is_contiguous(), op,
              ": rng must be the int64 [2] generator state that gaussian_reparam returned");
  TORCH_CHECK(rng.device() == like.device(), op, ": rng is on ", rng.device(), " but s2 is on ", like.device());
}

}  // namespace cplxfast

// ---- the fused Gaussian layers' backward, one device-agnostic kernel per op: the layer's own
// backward op for mu's gradients, gaussian_reparam_backward for s2's, and the variance's real
// product (a GEMM or convolution of grad_s2) through ATen.
namespace cplxfast {
namespace {

using OptTensor = std::optional<at::Tensor>;
using GaussianGrads = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
using Grads5 = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

at::Tensor reparam_backward_call(const at::Tensor& grad, const at::Tensor& s2, const at::Tensor& rng) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("cplxfast::gaussian_reparam_backward", "")
                             .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&)>();
  return op.call(grad, s2, rng);
}

Grads5 linear_backward_call(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight_re,
                            const at::Tensor& weight_im, c10::string_view algorithm, std::array<bool, 3> mask) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("cplxfast::linear_backward", "")
          .typed<Grads5(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, c10::string_view,
                        std::array<bool, 3>, std::optional<at::ScalarType>, const OptTensor&)>();
  return op.call(grad, x, weight_re, weight_im, algorithm, mask, std::nullopt, std::nullopt);
}

Grads5 conv_backward_call(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight_re,
                          const at::Tensor& weight_im, at::IntArrayRef stride, at::IntArrayRef padding,
                          at::IntArrayRef dilation, int64_t groups, c10::string_view algorithm,
                          std::array<bool, 3> mask) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("cplxfast::conv_backward", "")
          .typed<Grads5(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, at::IntArrayRef,
                        at::IntArrayRef, at::IntArrayRef, bool, at::IntArrayRef, int64_t, c10::string_view,
                        std::array<bool, 3>, std::optional<at::ScalarType>, const OptTensor&)>();
  const std::vector<int64_t> no_output_padding(stride.size(), 0);
  return op.call(grad, x, weight_re, weight_im, stride, padding, dilation, false, no_output_padding, groups, algorithm,
                 mask, std::nullopt, std::nullopt);
}

// grad_x of mu's path plus that of s2's: d|x|^2 is 2 x (conjugate-Wirtinger) times grad |x|^2,
// added on the parts in one pass (no complex copy of the real gradient).
at::Tensor add_modulus_grad(const at::Tensor& grad_x, const at::Tensor& x, const at::Tensor& grad_modulus) {
  at::view_as_real(grad_x).addcmul_(at::view_as_real(x.resolve_conj()), grad_modulus.unsqueeze(-1), 2);
  return grad_x;
}

GaussianGrads linear_gaussian_backward(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight_re,
                                       const at::Tensor& weight_im, const at::Tensor& log_sigma2, const at::Tensor& s2,
                                       const at::Tensor& rng, c10::string_view algorithm,
                                       std::array<bool, 4> output_mask) {
  const char* op = "cplxfast.linear_gaussian_backward";
  check_log_sigma2(op, log_sigma2, weight_re, x);
  const bool need_x = output_mask[0], need_s = output_mask[3];
  auto [grad_x, gw_re, gw_im, gb_re, gb_im] =
      linear_backward_call(grad, x, weight_re, weight_im, algorithm, {need_x, output_mask[1], output_mask[2]});
  at::Tensor grad_ls2;
  if (need_x || need_s) {
    // Explicit row count: reshape cannot infer it for N == 0 or K == 0.
    const int64_t N = weight_re.size(0), K = weight_re.size(1);
    const int64_t M = c10::multiply_integers(x.sizes().begin(), x.sizes().end() - 1);
    const at::Tensor gs2 = reparam_backward_call(grad, s2, rng).reshape({M, N});
    const at::Tensor sigma2 = log_sigma2.exp();
    if (need_x) grad_x = add_modulus_grad(grad_x, x, at::mm(gs2, sigma2).view(x.sizes()));
    if (need_s) grad_ls2 = at::mm(gs2.t(), modulus_squared(x).reshape({M, K})).mul_(sigma2);
  }
  return {grad_x, gw_re, gw_im, gb_re, gb_im, grad_ls2};
}

GaussianGrads conv_gaussian_backward(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight_re,
                                     const at::Tensor& weight_im, const at::Tensor& log_sigma2, const at::Tensor& s2,
                                     const at::Tensor& rng, at::IntArrayRef stride, at::IntArrayRef padding,
                                     at::IntArrayRef dilation, int64_t groups, c10::string_view algorithm,
                                     std::array<bool, 4> output_mask) {
  const char* op = "cplxfast.conv_gaussian_backward";
  check_log_sigma2(op, log_sigma2, weight_re, x);
  const bool need_x = output_mask[0], need_s = output_mask[3];
  auto [grad_x, gw_re, gw_im, gb_re, gb_im] = conv_backward_call(
      grad, x, weight_re, weight_im, stride, padding, dilation, groups, algorithm,
      {need_x, output_mask[1], output_mask[2]});
  at::Tensor grad_ls2;
  if ((need_x || need_s) && x.numel() > 0 && s2.numel() > 0) {
    const at::Tensor gs2 = reparam_backward_call(grad, s2, rng);
    const at::Tensor sigma2 = log_sigma2.exp();
    const at::Tensor modulus = modulus_squared(x);
    const std::vector<int64_t> no_output_padding(stride.size(), 0);
    auto [g_modulus, g_sigma2, unused] =
        at::convolution_backward(gs2, modulus, sigma2, std::nullopt, stride, padding, dilation, false,
                                 no_output_padding, groups, {need_x, need_s, false});
    if (need_x) grad_x = add_modulus_grad(grad_x, x, g_modulus);
    if (need_s) grad_ls2 = g_sigma2.mul_(sigma2).contiguous();  // the backend may return another format
  } else if (need_s) {
    grad_ls2 = at::zeros_like(log_sigma2);
  }
  return {grad_x, gw_re, gw_im, gb_re, gb_im, grad_ls2};
}

}  // namespace

TORCH_LIBRARY_IMPL(cplxfast, CompositeExplicitAutograd, m) {
  m.impl("linear_gaussian_backward", &linear_gaussian_backward);
  m.impl("conv_gaussian_backward", &conv_gaussian_backward);
}

}  // namespace cplxfast
