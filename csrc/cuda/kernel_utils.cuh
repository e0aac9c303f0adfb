// Pieces every CUDA kernel file of cplxfast uses: the whole-complex access type, launch sizes that
// never make an empty grid, and the 32-bit index path of the element-wise kernels.
#pragma once
#include <algorithm>
#include <cstdint>
#include <limits>

#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

namespace cplxfast::cuda {

constexpr int kThreads = 256;

// A complex value (interleaved re, im) loaded and stored in one 8-byte (float) or 16-byte
// (double) access. Only for pointers known to be 2 * sizeof(T) aligned: the data of a complex
// tensor always is; a pair of real views is checked on the host (planes.cu).
template <typename T>
struct alignas(2 * sizeof(T)) Pair {
  T re, im;
};

// Blocks for a grid-stride loop over n elements: enough to fill the GPU (per_sm blocks per SM),
// never more than the elements need, and never 0 (an empty grid is a launch error).
inline int64_t grid_for(int64_t n, int64_t per_sm = 32) {
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  return std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, sms * per_sm));
}

// Calls f(I{}) with I = uint32_t when every index below n (plus one grid stride) fits in 32 bits,
// else I = int64_t. Element-wise kernels divide their flat index by sizes to find rows, channels
// or pixels; 64-bit division costs several times a 32-bit one on the GPU, and tensors above 2^31
// elements are rare.
template <typename F>
void with_index_type(int64_t n, F&& f) {
  if (n <= std::numeric_limits<int32_t>::max()) {
    f(uint32_t{});
  } else {
    f(int64_t{});
  }
}

// The device guard of an op's CUDA entry. The dispatcher routes a call here when any tensor
// argument is on a CUDA device, so the input itself may still be on the CPU: say so clearly
// (the other arguments are checked against the input's device by the op's validation).
inline c10::cuda::CUDAGuard device_guard(const char* op, const at::Tensor& input) {
  TORCH_CHECK(input.is_cuda(), op, ": the input is on ", input.device(),
              " but other arguments are on a CUDA device; move them to the same device");
  return c10::cuda::CUDAGuard(input.device());
}

}  // namespace cplxfast::cuda
