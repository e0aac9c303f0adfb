// The fused Gauss 3M complex GEMM, device-agnostic.
//
// A complex product C = A B is computed from three real products of "operand planes":
//   P0 = Ar Br,  P1 = Ai Bi,  P2 = (Ar + Ai)(Br + Bi);   Re C = P0 - P1,  Im C = P2 - P0 - P1.
// Conjugating an operand only flips the sign of its imaginary plane, so conj(B) costs nothing:
// its planes are (Br, -Bi, Br - Bi) and the recombination stays the same.
//
// The driver (gemm3m.cpp) owns the algorithm: validation, chunking, the real GEMMs through ATen
// (MKL on CPU, cuBLAS on CUDA). The two memory-bound passes around the GEMMs (split a complex
// operand into its three planes; recombine the three products, add the bias and write the
// interleaved complex result) are backend kernels, passed in as a Gemm3mBackend.
#pragma once
#include <array>
#include <tuple>

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

namespace cplxfast {

struct Gemm3mBackend {
  // planes [3, rows, cols] (real, contiguous) <- Re s, sgn Im s, Re s + sgn Im s where s is a
  // complex [rows, cols] tensor with any strides, and sgn = -1 if conj else +1.
  // s's conj bit is NOT looked at: the driver folds it into `conj`.
  void (*split)(const at::Tensor& s, bool conj, const at::Tensor& planes);
  // out [rows, cols] (complex, any strides) <- (P0 - P1) + i (P2 - P0 - P1) + bias[col], where
  // products is a real contiguous [3, rows, cols] tensor and bias (complex [cols]) may be
  // undefined.
  void (*combine)(const at::Tensor& products, const at::Tensor& bias, const at::Tensor& out);
  // Rows of the long operand processed per step: bounds the plane buffers so that they stay
  // in cache-friendly, reused memory (0: no chunking).
  int64_t chunk_rows;
  // Run the three real products as one batched GEMM instead of three.
  bool batched;
  // "auto": does 3M pay for an [M, K] x [K, N] complex product on this backend?
  bool (*prefer_3m)(int64_t M, int64_t N, int64_t K, at::ScalarType dtype);
};

// y [*, N] = x [*, K] W^T + b, W [N, K], b [N] (optional).
at::Tensor linear_forward(
    const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
    c10::string_view algorithm, const Gemm3mBackend& backend);

// (grad_x, grad_W, grad_b) = (g conj(W), g^T conj(x), sum g); each only where output_mask says.
std::tuple<at::Tensor, at::Tensor, at::Tensor> linear_backward(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight,
    c10::string_view algorithm, std::array<bool, 3> output_mask, const Gemm3mBackend& backend);

}  // namespace cplxfast
