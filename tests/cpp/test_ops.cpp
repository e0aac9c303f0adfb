// C++ (libtorch) users' check: the op library built with CMake registers the cplxfast ops, and
// calling them through the dispatcher gives the results of libtorch's own complex ops, forward
// and backward. Built and run by `make cpp-test` (tools/cpp_test.sh).
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/torch.h>

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

const auto& linear_op() {
  static const auto op = c10::Dispatcher::singleton().findSchemaOrThrow("cplxfast::linear", "").typed<
      at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const Opt&, const Opt&, c10::string_view)>();
  return op;
}

const auto& linear_complex_op() {
  static const auto op = c10::Dispatcher::singleton().findSchemaOrThrow("cplxfast::linear_complex", "").typed<
      at::Tensor(const at::Tensor&, const at::Tensor&, const Opt&, c10::string_view)>();
  return op;
}

const auto& conv_op() {
  static const auto op = c10::Dispatcher::singleton().findSchemaOrThrow("cplxfast::conv", "").typed<at::Tensor(
      const at::Tensor&, const at::Tensor&, const at::Tensor&, const Opt&, const Opt&, at::IntArrayRef, at::IntArrayRef,
      at::IntArrayRef, bool, at::IntArrayRef, int64_t, c10::string_view)>();
  return op;
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
    at::Tensor y = linear_op().call(x, at::real(w), at::imag(w), at::real(b), at::imag(b), algorithm);
    at::Tensor x2 = x.detach().clone().requires_grad_();
    at::Tensor want = at::linear(x2, w, b);
    expect_close((std::string("linear ") + algorithm + " forward").c_str(), y, want);
    y.abs().sum().backward();
    want.abs().sum().backward();
    expect_close((std::string("linear ") + algorithm + " grad_x").c_str(), x.grad(), x2.grad());
  }

  // linear_complex (complex weight), 3m and 4m: forward and every gradient against at::linear
  for (const char* algorithm : {"3m", "4m"}) {
    at::Tensor x = torch::randn({29, 24}, c128).requires_grad_();
    at::Tensor w = torch::randn({16, 24}, c128).requires_grad_(), b = torch::randn({16}, c128).requires_grad_();
    at::Tensor y = linear_complex_op().call(x, w, b, algorithm);
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

  // conv2d (grouped, strided) and depthwise: against at::conv2d on complex tensors
  for (int64_t groups : {2, 8}) {
    at::Tensor x = torch::randn({2, 8, 9, 10}, c128).requires_grad_();
    at::Tensor w = torch::randn({8, 8 / groups, 3, 3}, c128);
    at::Tensor y = conv_op().call(x, at::real(w), at::imag(w), std::nullopt, std::nullopt, {2, 1}, {1, 1}, {1, 1}, false,
                                  {0, 0}, groups, "auto");
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

  if (failures) {
    std::printf("cplxfast C++ ops: %d FAILED\n", failures);
    return EXIT_FAILURE;
  }
  std::printf("cplxfast C++ ops: all ok\n");
  return EXIT_SUCCESS;
}
