// CPU kernels for the two memory-bound passes of the fused 3M GEMM (see common/gemm3m.h).
#pragma once
#include <ATen/core/Tensor.h>

namespace cplxfast::cpu {

void split_planes(const at::Tensor& s, bool conj, const at::Tensor& planes);
void combine_planes(const at::Tensor& products, const at::Tensor& bias, const at::Tensor& out);

}  // namespace cplxfast::cpu
