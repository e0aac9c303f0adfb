// Complex linear on CUDA: the fused 3M driver (common/gemm3m.cpp) with CUDA plane kernels and
// cuBLAS GEMMs, or cuBLAS's complex GEMM for "4m" and small problems.
#include <algorithm>

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/gemm3m.h"
#include "cuda/kernel_utils.cuh"
#include "cuda/planes.h"
#include "cuda/reparam.h"

namespace cplxfast::cuda {
namespace {

// Not yet measured on a GPU: bench/gpu_check.sh runs bench_linear.py --crossover there. Until
// a GPU run says otherwise, the CPU's measured rule (csrc/cpu/linear.cpp). Never 3M for complex64
// while torch allows TF32 matmuls (torch.backends.cuda.matmul.allow_tf32): the real products are
// then rounded to 10-bit mantissas, and 3M's imaginary part, P2 - P0 - P1, cancels products as
// large as the real part (README: TF32).
bool prefer_3m(int64_t M, int64_t N, int64_t K, at::ScalarType dtype) {
  if (dtype == at::kComplexFloat && at::globalContext().allowTF32CuBLAS()) return false;
  const int64_t features = std::min(N, K);
  return dtype == at::kComplexFloat ? (M >= 512 && features >= 512) || (M >= 4096 && features >= 128)
                                     : M >= 256 && features >= 1024;
}

// Mixed precision: cuBLAS through ATen's out_dtype GEMMs (aten::mm.dtype / addmm.dtype: bf16 or
// fp16 operands on the tensor cores, float32 accumulation and result).
void mixed_mm(const at::Tensor& P, const at::Tensor& A, const at::Tensor& B, bool accumulate) {
  at::Tensor out = P;
  if (accumulate) {
    at::addmm_out(out, P, A, B, at::kFloat);
  } else {
    at::mm_out(out, A, B, at::kFloat);
  }
}

const Gemm3mBackend& backend() {
  // Rows in chunks of 8192: the 3M scratch (operand planes and products of a chunk) stays bounded
  // (M = 32k, K = N = 4096 fp32: ~1 GB instead of ~3.4 GB for full-size planes, beyond what
  // cgemm needs) while each GEMM keeps 8192 rows, tall enough for cuBLAS's large tiles. One
  // strided-batched GEMM for the three products: one launch instead of three.
  static const Gemm3mBackend b{plane_kernels(), /*chunk_rows=*/8192,
                               /*batched=*/true, &prefer_3m, &mixed_mm};
  return b;
}

at::Tensor linear(const at::Tensor& x, const at::Tensor& weight_re, const at::Tensor& weight_im,
                  const c10::optional<at::Tensor>& bias_re, const c10::optional<at::Tensor>& bias_im,
                  c10::string_view algorithm, std::optional<at::ScalarType> operand_dtype,
                  const c10::optional<at::Tensor>& weight_mask) {
  const auto guard = device_guard("cplxfast.linear", x);
  return linear_forward(x, weight_re, weight_im, bias_re, bias_im, algorithm, operand_dtype, weight_mask, backend());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> linear_backward(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight_re,
    const at::Tensor& weight_im, c10::string_view algorithm, std::array<bool, 3> output_mask,
    std::optional<at::ScalarType> operand_dtype, const c10::optional<at::Tensor>& weight_mask) {
  const auto guard = device_guard("cplxfast.linear_backward", x);
  return cplxfast::linear_backward(grad, x, weight_re, weight_im, algorithm, output_mask, operand_dtype, weight_mask,
                                   backend());
}

at::Tensor linear_complex(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                          c10::string_view algorithm, std::optional<at::ScalarType> operand_dtype) {
  const auto guard = device_guard("cplxfast.linear_complex", x);
  return linear_complex_forward(x, weight, bias, algorithm, operand_dtype, backend());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> linear_complex_backward(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight, c10::string_view algorithm,
    std::array<bool, 3> output_mask, std::optional<at::ScalarType> operand_dtype) {
  const auto guard = device_guard("cplxfast.linear_complex_backward", x);
  return cplxfast::linear_complex_backward(grad, x, weight, algorithm, output_mask, operand_dtype, backend());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> linear_gaussian(
    const at::Tensor& x, const at::Tensor& weight_re, const at::Tensor& weight_im,
    const c10::optional<at::Tensor>& bias_re, const c10::optional<at::Tensor>& bias_im, const at::Tensor& log_sigma2,
    c10::string_view algorithm) {
  const auto guard = device_guard("cplxfast.linear_gaussian", x);
  return linear_gaussian_forward(x, weight_re, weight_im, bias_re, bias_im, log_sigma2, algorithm, backend(),
                                 noise_kernels());
}

}  // namespace

TORCH_LIBRARY_IMPL(cplxfast, CUDA, m) {
  m.impl("linear", &linear);
  m.impl("linear_backward", &linear_backward);
  m.impl("linear_complex", &linear_complex);
  m.impl("linear_complex_backward", &linear_complex_backward);
  m.impl("linear_gaussian", &linear_gaussian);
}

}  // namespace cplxfast::cuda
