// The double instantiation of the native LSTM kernels (see lstm.h).
#include "lstm.h"

namespace rnnkit_native {
RNNKIT_INSTANTIATE(, double)
}  // namespace rnnkit_native
