// The float instantiation of the native LSTM kernels (see lstm.h).
#include "lstm.h"

namespace rnnkit_native {
RNNKIT_INSTANTIATE(, float)
}  // namespace rnnkit_native
