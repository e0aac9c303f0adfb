// Complex linear on CPU: the fused 3M driver (common/gemm3m.cpp) with CPU plane kernels and
// MKL GEMMs, or MKL's complex GEMM for "4m" and small problems.
#include <algorithm>

#include <ATen/ATen.h>
#include <torch/library.h>

#include "common/gemm3m.h"
#include "cpu/mixed_mm.h"
#include "cpu/planes.h"
#include "cpu/reparam.h"

namespace cplxfast::cpu {
namespace {

// The crossover measured on the 2-core development CPU (bench/bench_linear.py --crossover:
// CplxLinear fwd+bwd with bias, MKL; two runs in bench/RESULTS.md). MKL's cgemm runs at ~3.6x
// one sgemm, not 4x, so 3M gains at most ~1.2x, and only where the three GEMMs are big enough
// to outweigh the plane passes. The shared VM's noise moved the break-even between runs:
// complex64 at M = 256 won 5-10% in one run and lost 2-17% in the other, while M, N, K >= 512
// won 7-21% in both; complex128 won only from N, K >= 1024 (M >= 256: 1-15% in both runs).
// Tall problems win from narrower features: complex64 M = 4096 with N = K = 128/256 won 9%/14%
// in the crossover run, and bench_linear's 8192x256->256 won 15-20% in every run.
bool prefer_3m(int64_t M, int64_t N, int64_t K, at::ScalarType dtype) {
  const int64_t features = std::min(N, K);
  return dtype == at::kComplexFloat ? (M >= 512 && features >= 512) || (M >= 4096 && features >= 128)
                                     : M >= 256 && features >= 1024;
}

const Gemm3mBackend& backend() {
  // Measured with CplxLinear 3m fwd+bwd against 4m (2048x1024->1024, 512x512->512,
  // 8192x256->256): 1024-row chunks gave 1.14-1.20x, 512 rows 1.06-1.18x, 2048 rows
  // 0.98-1.15x; MKL wants tall panels, and small buffers are reused instead of page-faulting
  // fresh memory on every call. One batched bmm of the three products ran at 0.75-0.90x of 4m,
  // against 1.13-1.17x for three mm calls.
  static const Gemm3mBackend b{plane_kernels(), /*chunk_rows=*/1024,
                               /*batched=*/false, &prefer_3m, &mixed_mm};
  return b;
}

at::Tensor linear(const at::Tensor& x, const at::Tensor& weight_re, const at::Tensor& weight_im,
                  const c10::optional<at::Tensor>& bias_re, const c10::optional<at::Tensor>& bias_im,
                  c10::string_view algorithm, std::optional<at::ScalarType> operand_dtype,
                  const c10::optional<at::Tensor>& weight_mask) {
  return linear_forward(x, weight_re, weight_im, bias_re, bias_im, algorithm, operand_dtype, weight_mask, backend());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> linear_backward(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight_re,
    const at::Tensor& weight_im, c10::string_view algorithm, std::array<bool, 3> output_mask,
    std::optional<at::ScalarType> operand_dtype, const c10::optional<at::Tensor>& weight_mask) {
  return cplxfast::linear_backward(grad, x, weight_re, weight_im, algorithm, output_mask, operand_dtype, weight_mask,
                                   backend());
}

at::Tensor linear_complex(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                          c10::string_view algorithm, std::optional<at::ScalarType> operand_dtype) {
  return linear_complex_forward(x, weight, bias, algorithm, operand_dtype, backend());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> linear_complex_backward(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight, c10::string_view algorithm,
    std::array<bool, 3> output_mask, std::optional<at::ScalarType> operand_dtype) {
  return cplxfast::linear_complex_backward(grad, x, weight, algorithm, output_mask, operand_dtype, backend());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> linear_gaussian(
    const at::Tensor& x, const at::Tensor& weight_re, const at::Tensor& weight_im,
    const c10::optional<at::Tensor>& bias_re, const c10::optional<at::Tensor>& bias_im, const at::Tensor& log_sigma2,
    c10::string_view algorithm) {
  return linear_gaussian_forward(x, weight_re, weight_im, bias_re, bias_im, log_sigma2, algorithm, backend(),
                                 noise_kernels());
}

}  // namespace

TORCH_LIBRARY_IMPL(cplxfast, CPU, m) {
  m.impl("linear", &linear);
  m.impl("linear_backward", &linear_backward);
  m.impl("linear_complex", &linear_complex);
  m.impl("linear_complex_backward", &linear_complex_backward);
  m.impl("linear_gaussian", &linear_gaussian);
}

}  // namespace cplxfast::cpu
