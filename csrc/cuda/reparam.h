// CUDA kernels of the fused Gaussian layers' noise (see common/reparam.h).
#pragma once
#include "common/reparam.h"

namespace cplxfast::cuda {

const NoiseKernels& noise_kernels();

}  // namespace cplxfast::cuda
