// The float instantiation of the native scan kernels (see scan.h).
#include "scan.h"

namespace rnnkit_native {
RNNKIT_INSTANTIATE(, float)
}  // namespace rnnkit_native
