// Mixed-precision real GEMM on CPU (cpu/mixed_mm.h).
//
// ATen has no CPU kernel for a 16-bit GEMM with a float32 result (aten::mm.dtype is CUDA-only,
// and at::native::cpublas's bf16 -> fp32 gemm is not exported), so this calls MKL's
// cblas_gemm_bf16bf16f32 / cblas_gemm_f16f16f32, which libtorch_cpu links and exports (x86-64
// wheels; MKL uses the AVX512-BF16/AMX units where the CPU has them, and converts to fp32
// inside its kernel where it has not). The symbols are declared weak: with a torch built without
// MKL they are null, and the product falls back to converting the operands to float32 and
// ATen's float32 GEMM (the same result: 16-bit x 16-bit products are exact in float32).
#include "cpu/mixed_mm.h"

#include <cstdint>
#include <limits>

#include <ATen/ATen.h>

extern "C" {
// MKL's prototypes (mkl_cblas.h) with its LP64 integers; the enums are passed as their values.
void cblas_gemm_bf16bf16f32(int layout, int transa, int transb, int m, int n, int k, float alpha, const uint16_t* a,
                            int lda, const uint16_t* b, int ldb, float beta, float* c, int ldc) __attribute__((weak));
void cblas_gemm_f16f16f32(int layout, int transa, int transb, int m, int n, int k, float alpha, const uint16_t* a,
                          int lda, const uint16_t* b, int ldb, float beta, float* c, int ldc) __attribute__((weak));
}

namespace cplxfast::cpu {
namespace {

constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;

bool fits_int(int64_t v) { return v <= std::numeric_limits<int>::max(); }

// A row-major operand: the matrix itself (unit column stride) or the transpose of one (unit row
// stride), with its leading dimension; other layouts are copied.
struct Operand {
  at::Tensor t;
  int trans;
  int64_t ld;
};

Operand operand_of(const at::Tensor& a) {
  const int64_t rows = a.size(0), cols = a.size(1);
  if (a.stride(1) == 1 && a.stride(0) >= std::max<int64_t>(cols, 1)) return {a, kNoTrans, a.stride(0)};
  if (a.stride(0) == 1 && a.stride(1) >= std::max<int64_t>(rows, 1)) return {a, kTrans, a.stride(1)};
  const at::Tensor c = a.contiguous();
  return {c, kNoTrans, std::max<int64_t>(cols, 1)};
}

}  // namespace

void mixed_mm(const at::Tensor& P, const at::Tensor& A, const at::Tensor& B, bool accumulate) {
  TORCH_INTERNAL_ASSERT(P.scalar_type() == at::kFloat && A.scalar_type() == B.scalar_type());
  TORCH_INTERNAL_ASSERT(A.scalar_type() == at::kBFloat16 || A.scalar_type() == at::kHalf);
  const int64_t M = P.size(0), N = P.size(1), K = A.size(1);
  TORCH_INTERNAL_ASSERT(P.stride(1) == 1 || N <= 1);
  if (M == 0 || N == 0) return;
  const auto gemm = A.scalar_type() == at::kBFloat16 ? &cblas_gemm_bf16bf16f32 : &cblas_gemm_f16f16f32;
  const int64_t ldc = std::max<int64_t>(P.stride(0), std::max<int64_t>(N, 1));
  if (gemm == nullptr || K == 0 || !fits_int(M) || !fits_int(N) || !fits_int(K) || !fits_int(ldc) ||
      !fits_int(A.stride(0)) || !fits_int(A.stride(1)) || !fits_int(B.stride(0)) || !fits_int(B.stride(1))) {
    at::Tensor out = P;
    if (accumulate) {
      out.addmm_(A.to(at::kFloat), B.to(at::kFloat));
    } else {
      at::mm_out(out, A.to(at::kFloat), B.to(at::kFloat));
    }
    return;
  }
  const Operand a = operand_of(A), b = operand_of(B);
  gemm(kRowMajor, a.trans, b.trans, static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), 1.0f,
       static_cast<const uint16_t*>(a.t.data_ptr()), static_cast<int>(a.ld),
       static_cast<const uint16_t*>(b.t.data_ptr()), static_cast<int>(b.ld), accumulate ? 1.0f : 0.0f,
       P.data_ptr<float>(), static_cast<int>(ldc));
}

}  // namespace cplxfast::cpu
