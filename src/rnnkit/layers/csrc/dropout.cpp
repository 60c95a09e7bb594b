// Dropout masks from a counter-based hash, so that drawing one costs a multiply-xorshift per pair of elements on
// every thread instead of torch's sequential Mersenne twister (bernoulli_ on the CPU: about 13 ns an element).
// Element i of a mask seeded s keeps its value when 32 bits of splitmix64(s + (i / 2 + 1) * golden) are at least
// p * 2^32; the mask holds 0 or 1 / (1 - p). The seed comes from torch's generator (native.py), so runs stay
// reproducible from torch.manual_seed and resume exactly from a saved generator state.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>

namespace rnnkit_native {
namespace {

using at::Tensor;

inline uint64_t splitmix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

template <typename T>
void fill_mask(T* out, int64_t n, double p, uint64_t seed) {
  const uint64_t cut = static_cast<uint64_t>(std::ldexp(p, 32));  // < 2^32, as p < 1
  const T keep = static_cast<T>(1.0 / (1.0 - p)), zero = static_cast<T>(0);
  const int64_t pairs = (n + 1) / 2;
  at::parallel_for(0, pairs, 8192, [&](int64_t a, int64_t b) {
    for (int64_t i = a; i < b; ++i) {
      const uint64_t h = splitmix64(seed + static_cast<uint64_t>(i + 1) * 0x9E3779B97F4A7C15ULL);
      out[2 * i] = (h & 0xFFFFFFFFULL) >= cut ? keep : zero;
      if (2 * i + 1 < n) out[2 * i + 1] = (h >> 32) >= cut ? keep : zero;
    }
  });
}

// A mask of x's shape and dtype (float32, float64 or bfloat16): 0 with probability p, else 1 / (1 - p).
Tensor dropout_mask(const Tensor& x, double p, int64_t seed) {
  TORCH_CHECK(x.device().is_cpu(), "rnnkit native dropout: CPU tensors only");
  TORCH_CHECK(p >= 0.0 && p < 1.0, "rnnkit native dropout: p must be in [0, 1), got ", p);
  Tensor mask = at::empty(x.sizes(), x.options().memory_format(at::MemoryFormat::Contiguous));
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, x.scalar_type(), "dropout_mask", [&] {
    fill_mask<scalar_t>(mask.data_ptr<scalar_t>(), mask.numel(), p, static_cast<uint64_t>(seed));
  });
  return mask;
}

}  // namespace
}  // namespace rnnkit_native

TORCH_LIBRARY_FRAGMENT(rnnkit_native, m) {
  m.def("dropout_mask(Tensor x, float p, int seed) -> Tensor");
  m.impl("dropout_mask", c10::DispatchKey::CPU, TORCH_FN(rnnkit_native::dropout_mask));
}
