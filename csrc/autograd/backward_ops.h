// Helpers for the autograd kernels of backward ops. Backward ops are fused kernels, not built
// from differentiable ops: their autograd.Function runs them below autograd and gives their
// outputs a grad_fn that refuses a double backward with a clear error (never a silent zero).
#pragma once
#include <array>

#include <utility>

#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/grad_mode.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <c10/util/Exception.h>
#include <torch/csrc/autograd/custom_function.h>

namespace cplxfast::autograd {

[[noreturn]] inline void refuse_double_backward(const char* op) {
  TORCH_CHECK(false, "cplxfast.", op,
              ": double backward is not supported (the backward is a fused kernel, not built from "
              "differentiable ops); use the pure-PyTorch reference in cplxfast._reference for "
              "higher-order derivatives");
}

// Runs a backward op from the backward() of its forward op. Without create_graph (grad mode off,
// the usual case) nothing will differentiate its outputs, so it runs below autograd and skips
// the autograd.Function that would refuse a double backward: measured ~5 us per call on the
// 2-core CPU, a visible share of a small layer's step. With create_graph it goes through it.
template <typename Sig, typename... Args>
auto call_backward_op(const c10::TypedOperatorHandle<Sig>& op, Args&&... args) {
  if (at::GradMode::is_enabled()) return op.call(std::forward<Args>(args)...);
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  return op.call(std::forward<Args>(args)...);
}

// A saved optional tensor back as an optional (saved undefined: none).
inline std::optional<at::Tensor> optional_of(const at::Tensor& t) {
  return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt;
}

// A weight mask (linear and conv ops) is a constant of the layer, not differentiated: one that
// requires grad would silently get none, so it is refused where a graph is recorded.
inline void check_mask_constant(const char* op, const std::optional<at::Tensor>& mask) {
  TORCH_CHECK(!(at::GradMode::is_enabled() && mask.has_value() && mask->defined() && mask->requires_grad()),
              "cplxfast.", op,
              ": weight_mask is not differentiated; pass a tensor that does not require grad (e.g. mask.detach())");
}

// autograd.Function outputs must be defined: pass only the computed ones through it...
template <size_t N>
torch::autograd::variable_list defined_only(const std::array<at::Tensor, N>& all) {
  torch::autograd::variable_list out;
  for (const auto& t : all) {
    if (t.defined()) out.push_back(t);
  }
  return out;
}

// ...and put them back in their places (computed[i] says whether output i was computed).
template <size_t N>
std::array<at::Tensor, N> in_places(const torch::autograd::variable_list& defined, const std::array<bool, N>& computed) {
  std::array<at::Tensor, N> out;
  for (size_t i = 0, j = 0; i < N; ++i) {
    if (computed[i]) out[i] = defined[j++];
  }
  return out;
}

}  // namespace cplxfast::autograd
