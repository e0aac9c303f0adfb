// CPU kernels of the memory-bound plane passes (split, combine, copy_parts; see common/planes.h).
#pragma once
#include "common/planes.h"

namespace cplxfast::cpu {

const PlaneKernels& plane_kernels();

}  // namespace cplxfast::cpu
