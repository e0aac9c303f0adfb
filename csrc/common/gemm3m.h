// The fused Gauss 3M complex GEMM, device-agnostic.
//
// A complex product C = A B is computed from three real products of "operand planes":
//   P0 = Ar Br,  P1 = Ai Bi,  P2 = (Ar + Ai)(Br + Bi);   Re C = P0 - P1,  Im C = P2 - P0 - P1.
// Conjugating an operand only flips the sign of its imaginary plane, so conj(B) costs nothing:
// its planes are (Br, -Bi, Br - Bi) and the recombination stays the same.
//
// The driver (gemm3m.cpp) owns the algorithm: validation, chunking, the real GEMMs through ATen
// (MKL on CPU, cuBLAS on CUDA). The memory-bound passes around the GEMMs (common/planes.h) are
// backend kernels, passed in with the Gemm3mBackend.
#pragma once
#include <array>
#include <optional>
#include <tuple>

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include "common/planes.h"

namespace cplxfast {

struct NoiseKernels;  // common/reparam.h

struct Gemm3mBackend {
  PlaneKernels planes;
  // Rows of the long operand processed per step: bounds the plane buffers so that they stay
  // in cache-friendly, reused memory (0: no chunking).
  int64_t chunk_rows;
  // Run the three real products as one batched GEMM instead of three.
  bool batched;
  // "auto": does 3M pay for an [M, K] x [K, N] complex product on this backend?
  bool (*prefer_3m)(int64_t M, int64_t N, int64_t K, at::ScalarType dtype);
  // Mixed precision: P (= or +=) A B for real matrices A [rows, K] and B [K, cols] of a 16-bit
  // float dtype (bfloat16, float16; any strides with one unit stride) and a float32 P [rows,
  // cols] with column stride 1: the products are accumulated and returned in float32.
  void (*mixed_mm)(const at::Tensor& P, const at::Tensor& A, const at::Tensor& B, bool accumulate);
};

// Mixed precision (the ops' operand_dtype, set under torch.autocast): the real products take
// their operands rounded to bfloat16 or float16 and return float32, for complex64 inputs.
// "4m" (and "auto") is then the real block form, one GEMM of the interleaved matrices:
//   [x_re x_im interleaved] [M, 2K]  x  B [2K, 2N]  ->  [y_re y_im interleaved] [M, 2N],
// written straight into the complex64 output; its parts are sums of products that never
// cancel, so each keeps bf16's relative accuracy. "3m" rounds the sum planes Re + Im to 16 bits,
// which loses the imaginary part of nearly real products (SEMANTICS.md, "Mixed precision").
// nullopt or the input's own real dtype: full precision.

// Two variants of each op, one driver: the weight and bias as real parts (a layer's real and
// imaginary Parameters, cplxmodule's layout; their gradients come back as real parts), or as
// complex tensors (native complex parameters; complex gradients). Either way the weight is
// read in place: no complex copy when the parts are views of one interleaved buffer.
//
// weight_mask (parts variant; a masked layer's mask, real [N, K] like weight_re): the op computes
// with W * mask and returns grad_W * mask, the mask applied in the passes that already read the
// weight (3M planes, the 4M complex operand or block matrix) and write its gradient: no masked
// copy of W per call.

// y [*, N] = x [*, K] W^T + b, W = weight_re + i weight_im [N, K], b = bias_re + i bias_im [N].
at::Tensor linear_forward(
    const at::Tensor& x, const at::Tensor& weight_re, const at::Tensor& weight_im,
    const c10::optional<at::Tensor>& bias_re, const c10::optional<at::Tensor>& bias_im,
    c10::string_view algorithm, std::optional<at::ScalarType> operand_dtype,
    const c10::optional<at::Tensor>& weight_mask, const Gemm3mBackend& backend);

// (grad_x, grad_weight_re, grad_weight_im, grad_bias_re, grad_bias_im) from
// grad_x = g conj(W), grad_W = g^T conj(x), grad_b = sum g, each where output_mask
// (x, weight, bias) says; the others are undefined.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> linear_backward(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight_re,
    const at::Tensor& weight_im, c10::string_view algorithm, std::array<bool, 3> output_mask,
    std::optional<at::ScalarType> operand_dtype, const c10::optional<at::Tensor>& weight_mask,
    const Gemm3mBackend& backend);

// The Gaussian (variational dropout) layer's training forward (common/reparam.h), fused:
// (out, s2, rng) with mu = x W^T + b, s2 = |x|^2 exp(log_sigma2)^T (log_sigma2 real [N, K]) and
// out = mu + e sqrt(max(s2, 1e-8)), e drawn from the state rng (int64 [2] on x's device), which
// gaussian_reparam_backward(grad, s2, rng) draws again. On the 3M path |x|^2 is a fourth plane of
// the split pass and the noise is added in the recombination (mu is never stored); elsewhere
// (4M: small problems, "4m") the plain layer and then the noise pass.
std::tuple<at::Tensor, at::Tensor, at::Tensor> linear_gaussian_forward(
    const at::Tensor& x, const at::Tensor& weight_re, const at::Tensor& weight_im,
    const c10::optional<at::Tensor>& bias_re, const c10::optional<at::Tensor>& bias_im, const at::Tensor& log_sigma2,
    c10::string_view algorithm, const Gemm3mBackend& backend, const NoiseKernels& noise);

// The same with complex W [N, K] and b [N].
at::Tensor linear_complex_forward(
    const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
    c10::string_view algorithm, std::optional<at::ScalarType> operand_dtype, const Gemm3mBackend& backend);

// (grad_x, grad_weight, grad_bias), complex, each where output_mask (x, weight, bias) says.
std::tuple<at::Tensor, at::Tensor, at::Tensor> linear_complex_backward(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight, c10::string_view algorithm,
    std::array<bool, 3> output_mask, std::optional<at::ScalarType> operand_dtype, const Gemm3mBackend& backend);

}  // namespace cplxfast
