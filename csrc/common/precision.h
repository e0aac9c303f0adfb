// The precision of the real products of the linear and conv ops (their operand_dtype argument).
#pragma once
#include <optional>

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace cplxfast {

// Operands of dtype `operands`; mixed when that is a 16-bit float whose products are accumulated
// and returned in float32 (bf16 x bf16 and fp16 x fp16 products are exact in float32).
struct Precision {
  at::ScalarType operands;
  bool mixed;
};

// operand_dtype: nullopt or the input's real dtype (full precision), or bfloat16 / float16 for a
// complex64 input.
inline Precision resolve_precision(const char* op, const at::Tensor& x, std::optional<at::ScalarType> operand_dtype) {
  const at::ScalarType real = c10::toRealValueType(x.scalar_type());
  if (!operand_dtype.has_value() || *operand_dtype == real) return {real, false};
  const at::ScalarType dtype = *operand_dtype;
  TORCH_CHECK(dtype == at::kBFloat16 || dtype == at::kHalf, op,
              ": operand_dtype must be None, the input's real dtype, torch.bfloat16 or torch.float16, got ", dtype);
  TORCH_CHECK(real == at::kFloat, op, ": operand_dtype ", dtype,
              " (16-bit operands, float32 products) needs a complex64 input, got ", x.scalar_type());
  return {dtype, true};
}

}  // namespace cplxfast
