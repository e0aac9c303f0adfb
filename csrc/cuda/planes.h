// CUDA kernels of the memory-bound plane passes (split, combine, copy_parts; see common/planes.h).
#pragma once
#include "common/planes.h"

namespace cplxfast::cuda {

const PlaneKernels& plane_kernels();

}  // namespace cplxfast::cuda
