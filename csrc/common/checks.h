// Input checks shared by every op. Messages name the op and say what was wrong.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace cplxfast {

inline void check_complex(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK(t.defined(), op, ": ", name, " is undefined");
  TORCH_CHECK(
      t.scalar_type() == at::kComplexFloat || t.scalar_type() == at::kComplexDouble, op, ": ",
      name, " must be a complex64 or complex128 tensor, got ", t.scalar_type(),
      " (wrap real data with torch.complex(re, im))");
}

inline void check_same_dtype_device(
    const char* op, const char* name, const at::Tensor& t, const at::Tensor& like) {
  TORCH_CHECK(
      t.scalar_type() == like.scalar_type(), op, ": ", name, " has dtype ", t.scalar_type(),
      " but the input has dtype ", like.scalar_type(), "; cast them to the same complex dtype");
  TORCH_CHECK(
      t.device() == like.device(), op, ": ", name, " is on ", t.device(),
      " but the input is on ", like.device(), "; move them to the same device");
}

// The upstream gradient of an op's output that has the input's shape: complex, with the input's
// dtype and device (a CPU tensor handed to a CUDA kernel would be a host pointer there: an
// illegal-address error that kills the process's CUDA context), and the input's shape.
inline void check_grad_like_input(const char* op, const at::Tensor& grad, const at::Tensor& input) {
  check_complex(op, "grad", grad);
  check_same_dtype_device(op, "grad", grad, input);
  TORCH_CHECK(grad.sizes() == input.sizes(), op, ": grad has shape ", grad.sizes(), " but the input has shape ",
              input.sizes());
}

// A real tensor holding the real or imaginary part of a complex operand `like`.
inline void check_real_part(const char* op, const char* name, const at::Tensor& t, const at::Tensor& like) {
  TORCH_CHECK(t.defined(), op, ": ", name, " is undefined");
  const auto want = c10::toRealValueType(like.scalar_type());
  TORCH_CHECK(
      t.scalar_type() == want, op, ": ", name, " must be a real ", want, " tensor (the ",
      "real/imaginary part of a ", like.scalar_type(), " operand), got ", t.scalar_type(),
      "; cast the layer or the input to matching precision");
  TORCH_CHECK(
      t.device() == like.device(), op, ": ", name, " is on ", t.device(),
      " but the input is on ", like.device(), "; move them to the same device");
}

// A masked layer's weight mask: real, of the weight parts' dtype, device and shape. Not
// differentiated (a buffer; the autograd kernels refuse one that requires grad).
inline void check_weight_mask(const char* op, const at::Tensor& mask, const at::Tensor& weight_re,
                              const at::Tensor& x) {
  check_real_part(op, "weight_mask", mask, x);
  TORCH_CHECK(mask.sizes() == weight_re.sizes(), op, ": weight_mask must have the weight's shape ",
              weight_re.sizes(), ", got ", mask.sizes());
}

// The complex weight and bias (nullptr: none) of a complex-weight op variant, against its input;
// messages about "weight"/"bias" rather than their parts.
inline void check_complex_params(const char* op, const at::Tensor& x, const at::Tensor& weight, const at::Tensor* bias) {
  check_complex(op, "input", x);
  check_complex(op, "weight", weight);
  check_same_dtype_device(op, "weight", weight, x);
  if (bias != nullptr) {
    check_complex(op, "bias", *bias);
    check_same_dtype_device(op, "bias", *bias, x);
  }
}

// The tensor of an optional argument, or nullptr when it is absent or undefined.
inline const at::Tensor* present(const c10::optional<at::Tensor>& t) {
  return t.has_value() && t->defined() ? &*t : nullptr;
}

}  // namespace cplxfast
