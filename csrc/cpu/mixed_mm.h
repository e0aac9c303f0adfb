// Mixed-precision real GEMM on CPU: 16-bit float operands, float32 accumulation and result.
#pragma once
#include <ATen/core/Tensor.h>

namespace cplxfast::cpu {

// P (= or +=) A B: A [rows, K], B [K, cols] bfloat16 or float16 (the same), P float32 [rows, cols]
// (Gemm3mBackend::mixed_mm).
void mixed_mm(const at::Tensor& P, const at::Tensor& A, const at::Tensor& B, bool accumulate);

}  // namespace cplxfast::cpu
