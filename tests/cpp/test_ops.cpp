// C++ (libtorch) users' check: the op library built with CMake registers the cplxfast ops, and
// calling them through the dispatcher gives the results of libtorch's own complex ops, forward
// and backward. Built and run by `make cpp-test` (tools/cpp_test.sh).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>

#include <ATen/autocast_mode.h>
#include <ATen/core/PhiloxRNGEngine.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/torch.h>

#include "common/reparam.h"

namespace {

int failures = 0;

void expect_close(const char* what, const at::Tensor& got, const at::Tensor& want, double tol = 1e-10) {
  const double err = (got - want).abs().max().item<double>();
  const double scale = want.abs().max().item<double>() + 1e-30;
  const bool ok = err <= tol * scale;
  std::printf("%-44s max error %.2e  %s\n", what, err / scale, ok ? "ok" : "FAILED");
  failures += !ok;
}

using Opt = std::optional<at::Tensor>;
using OptDtype = std::optional<at::ScalarType>;

const auto& linear_op() {
  static const auto op = c10::Dispatcher::singleton().findSchemaOrThrow("cplxfast::linear", "").typed<
      at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const Opt&, const Opt&, c10::string_view,
                 OptDtype, const Opt&)>();
  return op;
}

const auto& linear_complex_op() {
  static const auto op = c10::Dispatcher::singleton().findSchemaOrThrow("cplxfast::linear_complex", "").typed<
      at::Tensor(const at::Tensor&, const at::Tensor&, const Opt&, c10::string_view, OptDtype)>();
  return op;
}

const auto& conv_op() {
  static const auto op = c10::Dispatcher::singleton().findSchemaOrThrow("cplxfast::conv", "").typed<at::Tensor(
      const at::Tensor&, const at::Tensor&, const at::Tensor&, const Opt&, const Opt&, at::IntArrayRef, at::IntArrayRef,
      at::IntArrayRef, bool, at::IntArrayRef, int64_t, c10::string_view, OptDtype, const Opt&)>();
  return op;
}

const auto& reparam_op() {
  static const auto op = c10::Dispatcher::singleton().findSchemaOrThrow("cplxfast::gaussian_reparam", "").typed<
      std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&)>();
  return op;
}

void expect(const char* what, bool ok, double value) {
  std::printf("%-44s %.2e  %s\n", what, value, ok ? "ok" : "FAILED");
  failures += !ok;
}

// The noise's generator and transforms (common/reparam.h) against independent implementations:
// Philox-4x32-10 against ATen's philox_engine (the same bits), and the branch-free log, cos and sin
// against libm over their whole input ranges.
void check_noise_maths() {
  int mismatches = 0;
  for (uint64_t seed : {uint64_t{0}, uint64_t{67280421310721}, ~uint64_t{0}}) {
    for (uint64_t offset : {uint64_t{0}, uint64_t{4}, uint64_t{1} << 40}) {
      for (uint64_t pair : {uint64_t{0}, uint64_t{1}, uint64_t{123456789}, uint64_t{1} << 33}) {
        uint32_t ours[4];
        cplxfast::reparam_math::philox(seed, offset, pair, ours);
        at::philox_engine engine(seed, pair, offset);
        for (uint32_t v : ours) mismatches += v != engine();
      }
    }
  }
  expect("philox == ATen philox_engine (mismatches)", mismatches == 0, mismatches);
  double log_f = 0, log_d = 0, trig_f = 0, trig_d = 0;
  for (int k = 0; k <= 1 << 20; ++k) {
    const double u = std::ldexp(1.0 + k, -20) * (k % 7 == 0 ? std::ldexp(1.0, -(k % 24)) : 1.0);  // (0, 1]
    const double lf = cplxfast::reparam_math::log_positive(static_cast<float>(u));
    log_f = std::max(log_f, std::abs(lf - std::log(static_cast<double>(static_cast<float>(u)))) /
                                std::max(1.0, std::abs(std::log(u))));
    log_d = std::max(log_d, std::abs(cplxfast::reparam_math::log_positive(u) - std::log(u)) /
                                std::max(1.0, std::abs(std::log(u))));
    const double t = k * std::ldexp(1.0, -20) * (1 - 1e-12);  // [0, 1)
    float cf, sf;
    double cd, sd;
    cplxfast::reparam_math::cos_sin_turns(static_cast<float>(t), cf, sf);
    cplxfast::reparam_math::cos_sin_turns(t, cd, sd);
    const double a = 2 * M_PI * static_cast<float>(t), b = 2 * M_PI * t;
    trig_f = std::max({trig_f, std::abs(cf - std::cos(a)), std::abs(sf - std::sin(a))});
    trig_d = std::max({trig_d, std::abs(cd - std::cos(b)), std::abs(sd - std::sin(b))});
  }
  expect("noise log, float (max error)", log_f < 1e-6, log_f);
  expect("noise log, double", log_d < 1e-14, log_d);
  expect("noise cos/sin, float", trig_f < 1e-6, trig_f);
  expect("noise cos/sin, double", trig_d < 1e-14, trig_d);
}

const auto& modrelu_op() {
  static const auto op = c10::Dispatcher::singleton().findSchemaOrThrow("cplxfast::modrelu", "").typed<
      at::Tensor(const at::Tensor&, const at::Tensor&, double)>();
  return op;
}

}  // namespace

int main() {
  torch::manual_seed(0);
  const auto c128 = torch::TensorOptions().dtype(torch::kComplexDouble);

  // linear, 3m and 4m: against at::linear on complex tensors, with gradients
  for (const char* algorithm : {"3m", "4m"}) {
    at::Tensor x = torch::randn({37, 24}, c128).requires_grad_();
    at::Tensor w = torch::randn({16, 24}, c128), b = torch::randn({16}, c128);
    at::Tensor y =
        linear_op().call(x, at::real(w), at::imag(w), at::real(b), at::imag(b), algorithm, std::nullopt, std::nullopt);
    at::Tensor x2 = x.detach().clone().requires_grad_();
    at::Tensor want = at::linear(x2, w, b);
    expect_close((std::string("linear ") + algorithm + " forward").c_str(), y, want);
    y.abs().sum().backward();
    want.abs().sum().backward();
    expect_close((std::string("linear ") + algorithm + " grad_x").c_str(), x.grad(), x2.grad());
    // A weight mask: the product with W * mask
    const at::Tensor mask = torch::rand({16, 24}, torch::kDouble).gt(0.5).to(torch::kDouble);
    at::Tensor masked = linear_op().call(x.detach(), at::real(w), at::imag(w), at::real(b), at::imag(b), algorithm,
                                         std::nullopt, mask);
    expect_close((std::string("linear ") + algorithm + " weight_mask").c_str(), masked,
                 at::linear(x.detach(), w * mask, b));
  }

  // linear_complex (complex weight), 3m and 4m: forward and every gradient against at::linear
  for (const char* algorithm : {"3m", "4m"}) {
    at::Tensor x = torch::randn({29, 24}, c128).requires_grad_();
    at::Tensor w = torch::randn({16, 24}, c128).requires_grad_(), b = torch::randn({16}, c128).requires_grad_();
    at::Tensor y = linear_complex_op().call(x, w, b, algorithm, std::nullopt);
    at::Tensor x2 = x.detach().clone().requires_grad_(), w2 = w.detach().clone().requires_grad_();
    at::Tensor b2 = b.detach().clone().requires_grad_();
    at::Tensor want = at::linear(x2, w2, b2);
    const std::string name = std::string("linear_complex ") + algorithm;
    expect_close((name + " forward").c_str(), y, want);
    y.abs().sum().backward();
    want.abs().sum().backward();
    expect_close((name + " grad_x").c_str(), x.grad(), x2.grad());
    expect_close((name + " grad_weight").c_str(), w.grad(), w2.grad());
    expect_close((name + " grad_bias").c_str(), b.grad(), b2.grad());
  }

  // Mixed precision: bf16 operands (u = 2^-8) against the complex64 product, and torch.autocast's
  // C++ switch setting the same operand dtype through the ops' autocast kernels.
  {
    const auto c64 = torch::TensorOptions().dtype(torch::kComplexFloat);
    at::Tensor x = torch::randn({64, 48}, c64), w = torch::randn({32, 48}, c64) / 7, b = torch::randn({32}, c64);
    at::Tensor mixed = linear_complex_op().call(x, w, b, "auto", at::kBFloat16);
    expect_close("linear_complex bf16 operands", mixed, at::linear(x, w, b), 2e-2);
    at::autocast::set_autocast_enabled(at::kCPU, true);
    at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
    at::Tensor under_autocast = linear_complex_op().call(x, w, b, "auto", std::nullopt);
    at::autocast::set_autocast_enabled(at::kCPU, false);
    expect_close("linear_complex under autocast = bf16 operands", under_autocast, mixed, 0.0);
  }

  // conv2d (grouped, strided) and depthwise: against at::conv2d on complex tensors
  for (int64_t groups : {2, 8}) {
    at::Tensor x = torch::randn({2, 8, 9, 10}, c128).requires_grad_();
    at::Tensor w = torch::randn({8, 8 / groups, 3, 3}, c128);
    at::Tensor y = conv_op().call(x, at::real(w), at::imag(w), std::nullopt, std::nullopt, {2, 1}, {1, 1}, {1, 1}, false,
                                  {0, 0}, groups, "auto", std::nullopt, std::nullopt);
    at::Tensor x2 = x.detach().clone().requires_grad_();
    at::Tensor want = at::conv2d(x2, w, {}, {2, 1}, {1, 1}, {1, 1}, groups);
    const std::string name = groups == 8 ? "conv2d depthwise" : "conv2d grouped";
    expect_close((name + " forward").c_str(), y, want);
    y.abs().sum().backward();
    want.abs().sum().backward();
    expect_close((name + " grad_x").c_str(), x.grad(), x2.grad());
  }

  // modReLU: against its formula
  at::Tensor z = torch::randn({4, 3, 5}, c128);
  at::Tensor tau = torch::rand({3, 1}, torch::kDouble) * 0.5;
  at::Tensor want = z * at::relu(1 - tau / at::clamp_min(z.abs(), 1e-5));
  expect_close("modrelu forward", modrelu_op().call(z, tau, 1e-5), want);

  // gaussian_reparam: mean, variance and repeatability of the noise (mu = 0, s2 = 1)
  check_noise_maths();
  {
    const int64_t n = 200000;
    torch::manual_seed(3);
    auto [e, rng] = reparam_op().call(torch::zeros({n}, c128), torch::ones({n}, torch::kDouble));
    torch::manual_seed(3);
    auto [again, rng2] = reparam_op().call(torch::zeros({n}, c128), torch::ones({n}, torch::kDouble));
    expect("gaussian_reparam repeats with the seed", at::equal(e, again), 0.0);
    const double var_re = at::real(e).var().item<double>(), var_im = at::imag(e).var().item<double>();
    const double bound = 6 * std::sqrt(0.5 / n);  // 6 standard errors of a part's sample variance
    expect("gaussian_reparam Var(re), Var(im) = 1/2", std::abs(var_re - 0.5) < bound && std::abs(var_im - 0.5) < bound,
           std::max(std::abs(var_re - 0.5), std::abs(var_im - 0.5)));
  }

  if (failures) {
    std::printf("cplxfast C++ ops: %d FAILED\n", failures);
    return EXIT_FAILURE;
  }
  std::printf("cplxfast C++ ops: all ok\n");
  return EXIT_SUCCESS;
}
