// The double instantiation of the native scan kernels (see scan.h).
#include "scan.h"

namespace rnnkit_native {
RNNKIT_INSTANTIATE(, double)
}  // namespace rnnkit_native
