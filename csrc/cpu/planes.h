// CPU kernels for the two memory-bound passes of the fused 3M GEMM (see common/gemm3m.h).
#pragma once
#include "common/gemm3m.h"

namespace cplxfast::cpu {

void split_planes(const ComplexPair& s, bool conj, const at::Tensor& planes);
void copy_parts(const ComplexPair& src, const ComplexPair& dst);
void combine_planes(const at::Tensor& products, const ComplexPair& bias, const ComplexPair& out);

}  // namespace cplxfast::cpu
