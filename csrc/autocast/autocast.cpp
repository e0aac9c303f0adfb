// Autocast kernels (TORCH_LIBRARY_IMPL(cplxfast, AutocastCPU / AutocastCUDA)): mixed precision
// for the ops with real products, under torch.autocast.
//
// torch.autocast only casts floating-point tensors, so complex layers would run at full precision.
// The real products of the 3M and block forms can take 16-bit operands, though, and these ops have
// an operand_dtype argument for it (16-bit operands, float32 accumulation and result; ops.cpp).
// Under autocast on the input's device this kernel sets operand_dtype to the autocast dtype for a
// complex64 input (torch's policy casts float32 only, so complex128 stays as it is) and calls the
// op again below autocast, as torch's own autocast kernels do. Autograd, the fake kernels and
// torch.compile then see an ordinary call with operand_dtype set; the backward ops need no autocast
// kernel, since the autograd kernels hand them the forward's operand_dtype. An operand_dtype given
// explicitly is kept. One boxed kernel serves every such op: it finds the argument by name.
#include <ATen/autocast_mode.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/library.h>

namespace cplxfast::autocast {
namespace {

template <c10::DispatchKey kKey, c10::DeviceType kDevice>
void mixed_precision(const c10::OperatorHandle& op, c10::DispatchKeySet, torch::jit::Stack* stack) {
  const auto& args = op.schema().arguments();
  const auto first = static_cast<int64_t>(stack->size() - args.size());
  const auto slot = op.schema().argumentIndexWithName("operand_dtype");
  TORCH_INTERNAL_ASSERT(slot.has_value() && args[0].type()->kind() == c10::TypeKind::TensorType);
  c10::IValue& operand_dtype = (*stack)[first + *slot];
  const at::Tensor& x = (*stack)[first].toTensor();
  if (operand_dtype.isNone() && x.scalar_type() == at::kComplexFloat) {
    operand_dtype = c10::IValue(static_cast<int64_t>(at::autocast::get_autocast_dtype(kDevice)));
  }
  const c10::impl::ExcludeDispatchKeyGuard no_autocast(kKey);
  op.callBoxed(stack);
}

// The ops with an operand_dtype argument that autocast sets.
constexpr const char* kMixedPrecisionOps[] = {"linear", "linear_complex", "conv", "conv_complex"};

template <c10::DispatchKey kKey, c10::DeviceType kDevice>
void register_autocast(torch::Library& m) {
  for (const char* name : kMixedPrecisionOps) {
    m.impl(name, torch::CppFunction::makeFromBoxedFunction<&mixed_precision<kKey, kDevice>>());
  }
}

}  // namespace

TORCH_LIBRARY_IMPL(cplxfast, AutocastCPU, m) { register_autocast<c10::DispatchKey::AutocastCPU, c10::kCPU>(m); }
TORCH_LIBRARY_IMPL(cplxfast, AutocastCUDA, m) { register_autocast<c10::DispatchKey::AutocastCUDA, c10::kCUDA>(m); }

}  // namespace cplxfast::autocast
