// rnnkit's native kernels for the diagonal recurrences, whose state update is elementwise (no W_hh matrix):
//   minGRU   h_t = (1 - z_t) h_{t-1} + z_t g(v_t)                    z_t = σ(k_t)           gx = [k | v]
//   minLSTM  h_t = (f_t h_{t-1} + i_t g(v_t)) / (f_t + i_t)         f_t, i_t = σ(·)        gx = [f | i | v]
//   IndRNN   h_t = act(gx_t + u ⊙ (h_{t-1} ⊙ drop) + b_hh)
// with g(v) = v + 1/2 for v >= 0, σ(v) below (minimal.py). Forward and backward each make one pass over the
// pre-activations: the gate math, the update and (backward) the chain rule through the gates are fused into the
// time loop, so a training step touches each (B, T, G*H) element twice instead of once per torch op.
//
// Work is split over (batch row, block of kBlock hidden channels) pairs: every pair is an independent recurrence,
// run in time order with its carry in registers, kBlock lanes wide (vectorised). The minGRU/minLSTM update is a
// convex combination of h_{t-1} and g(v_t) (the weights 1 - z, z or f/(f+i), i/(f+i) are in [0, 1] and sum to 1),
// so |h_t| <= max(|h_0|, max_s g(v_s)) at any T: the direct recurrence is as stable as the log-space scan, with
// no exp/log per element beyond the gates'. Nothing is split along time: with B x H / kBlock pairs there is
// parallel work for every core already, and a time-chunked scan would do its work twice.
//
// Layouts (contiguous, batch-major): gx (B, T, G*H), h0 (B, H), active (B, T) uint8 or absent (a padded step
// keeps the state), Hs (B, T, H) the state after every step (what the layer outputs before masking).
#include <torch/library.h>

#include "scan.h"

namespace rnnkit_native {
namespace {

using OptT = c10::optional<Tensor>;
constexpr int64_t kBlock = 512;  // the most hidden channels per work item (its carries live on the stack)
constexpr int64_t kMinBlock = 64;  // the fewest, when there are few rows to share between the threads
enum Minimal : int64_t { kMinGRU = 0, kMinLSTM = 1 };

// g(v) and g'(v) from v and s = σ(v), without branches (so that the loops vectorise): σ(v) > v + 1/2 exactly
// when v < 0, and σ'(v) = s (1 - s) <= 1/4 < 1.
template <typename T>
inline T g_pos(T v, T s) { return std::max(v + T(0.5), s); }
template <typename T>
inline T dg_pos(T v, T s) { return std::max(s * (T(1) - s), T(v >= T(0))); }

// Run f(b, j0, n) for every (batch row, channel block); n <= kBlock channels from j0. Blocks are as wide as
// possible (long contiguous runs per step, which the prefetcher follows) while every thread still gets work.
template <typename F>
void for_blocks(int64_t B, int64_t H, F&& f) {
  int64_t blk = std::min(H, kBlock);
  while (blk > kMinBlock && B * ((H + blk - 1) / blk) < 4 * at::get_num_threads()) blk = (blk + 1) / 2;
  const int64_t nblk = (H + blk - 1) / blk;
  at::parallel_for(0, B * nblk, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t item = lo; item < hi; ++item) {
      const int64_t b = item / nblk, j0 = (item % nblk) * blk;
      f(b, j0, std::min(blk, H - j0));
    }
  });
}

const uint8_t* live_ptr(const OptT& active) {
  return active.has_value() && active->numel() ? active->data_ptr<uint8_t>() : nullptr;
}

inline bool present(const OptT& t) { return t.has_value() && t->defined() && t->numel(); }

template <typename T>
const T* opt_ptr(const OptT& t) {
  return present(t) ? t->data_ptr<T>() : nullptr;
}

// ------------------------------------------------------------------------------------------- minGRU / minLSTM
template <typename T>
void minimal_forward_impl(int64_t kind, const Tensor& gx, const Tensor& h0, const uint8_t* live, Tensor& Hs) {
  const int64_t B = gx.size(0), Tn = gx.size(1), G = gx.size(2), H = h0.size(1);
  const T* X = gx.data_ptr<T>();
  const T* S0 = h0.data_ptr<T>();
  T* Y = Hs.data_ptr<T>();
  for_blocks(B, H, [&](int64_t b, int64_t j0, int64_t n) {
    T h[kBlock];
    for (int64_t j = 0; j < n; ++j) h[j] = S0[b * H + j0 + j];
    for (int64_t t = 0; t < Tn; ++t) {
      const T* __restrict x = X + (b * Tn + t) * G + j0;
      T* __restrict y = Y + (b * Tn + t) * H + j0;
      if (live && !live[b * Tn + t]) {
        std::memcpy(y, h, n * sizeof(T));
        continue;
      }
      if (kind == kMinGRU) {
        for (int64_t j = 0; j < n; ++j) {
          const T z = sigmoid_v(x[j]), v = x[H + j];
          const T gv = g_pos(v, sigmoid_v(v));
          h[j] += z * (gv - h[j]);
          y[j] = h[j];
        }
      } else {
        for (int64_t j = 0; j < n; ++j) {
          const T f = sigmoid_v(x[j]), i = sigmoid_v(x[H + j]), v = x[2 * H + j];
          const T gv = g_pos(v, sigmoid_v(v));
          h[j] = (f * h[j] + i * gv) / (f + i);
          y[j] = h[j];
        }
      }
    }
  });
}

template <typename T>
void minimal_backward_impl(int64_t kind, const OptT& dH, const Tensor& dhT, const Tensor& gx, const Tensor& Hs,
                           const Tensor& h0, const uint8_t* live, Tensor& dgx, Tensor& dh0) {
  const int64_t B = gx.size(0), Tn = gx.size(1), G = gx.size(2), H = h0.size(1);
  const T *D = opt_ptr<T>(dH), *DT = dhT.data_ptr<T>(), *X = gx.data_ptr<T>(), *Y = Hs.data_ptr<T>();
  const T* S0 = h0.data_ptr<T>();
  T *DX = dgx.data_ptr<T>(), *D0 = dh0.data_ptr<T>();
  for_blocks(B, H, [&](int64_t b, int64_t j0, int64_t n) {
    T c[kBlock], zeros[kBlock];  // dL/dh_t from later steps and the final state; no output gradient
    for (int64_t j = 0; j < n; ++j) c[j] = DT[b * H + j0 + j], zeros[j] = T(0);
    for (int64_t t = Tn - 1; t >= 0; --t) {
      const T* __restrict x = X + (b * Tn + t) * G + j0;
      T* __restrict dx = DX + (b * Tn + t) * G + j0;
      const T* __restrict d = D ? D + (b * Tn + t) * H + j0 : zeros;  // dL/dh_t through the output
      const T* __restrict hp = t > 0 ? Y + (b * Tn + t - 1) * H + j0 : S0 + b * H + j0;  // h_{t-1}
      if (live && !live[b * Tn + t]) {  // the state passed through unchanged
        for (int64_t k = 0; k < (kind == kMinGRU ? 2 : 3); ++k) std::memset(dx + k * H, 0, n * sizeof(T));
        for (int64_t j = 0; j < n; ++j) c[j] += d[j];
        continue;
      }
      if (kind == kMinGRU) {
        for (int64_t j = 0; j < n; ++j) {
          const T g = d[j] + c[j];
          const T z = sigmoid_v(x[j]), v = x[H + j], sv = sigmoid_v(v);
          dx[j] = g * (g_pos(v, sv) - hp[j]) * z * (T(1) - z);
          dx[H + j] = g * z * dg_pos(v, sv);
          c[j] = g * (T(1) - z);
        }
      } else {
#pragma omp simd
        for (int64_t j = 0; j < n; ++j) {
          const T g = d[j] + c[j];
          const T f = sigmoid_v(x[j]), i = sigmoid_v(x[H + j]), v = x[2 * H + j], sv = sigmoid_v(v);
          const T r = T(1) / (f + i);
          const T diff = (g_pos(v, sv) - hp[j]) * r * r * g;  // ∂h/∂i = f (g - h_{t-1}) / s², ∂h/∂f = -i (...)
          dx[j] = -i * diff * f * (T(1) - f);
          dx[H + j] = f * diff * i * (T(1) - i);
          dx[2 * H + j] = g * i * r * dg_pos(v, sv);
          c[j] = g * f * r;
        }
      }
    }
    for (int64_t j = 0; j < n; ++j) D0[b * H + j0 + j] = c[j];
  });
}

void check(const Tensor& gx, const Tensor& h0, int64_t G) {
  TORCH_CHECK(gx.device().is_cpu() && gx.is_contiguous() && gx.dim() == 3 && h0.dim() == 2 &&
                  gx.size(2) == G * h0.size(1) && h0.size(0) == gx.size(0) && h0.is_contiguous(),
              "rnnkit diagonal scan: gx (B, T, G*H) and h0 (B, H) must be contiguous CPU tensors");
  TORCH_CHECK((gx.scalar_type() == at::kFloat || gx.scalar_type() == at::kDouble) &&
                  h0.scalar_type() == gx.scalar_type(),
              "rnnkit diagonal scan: float32 or float64 only, the same for every input");
}

Tensor minimal_forward(int64_t kind, const Tensor& gx, const Tensor& h0, const OptT& active) {
  TORCH_CHECK(kind == kMinGRU || kind == kMinLSTM, "rnnkit minimal scan: unknown kind ", kind);
  check(gx, h0, kind == kMinGRU ? 2 : 3);
  at::NoGradGuard no_grad;
  Tensor Hs = buffer({gx.size(0), gx.size(1), h0.size(1)}, gx.options());
  if (gx.scalar_type() == at::kDouble)
    minimal_forward_impl<double>(kind, gx, h0, live_ptr(active), Hs);
  else
    minimal_forward_impl<float>(kind, gx, h0, live_ptr(active), Hs);
  return Hs;
}

std::vector<Tensor> minimal_backward(int64_t kind, const OptT& dH, const Tensor& dhT, const Tensor& gx,
                                     const Tensor& Hs, const Tensor& h0, const OptT& active) {
  check(gx, h0, kind == kMinGRU ? 2 : 3);
  TORCH_CHECK((!present(dH) || (dH->is_contiguous() && dH->sizes() == Hs.sizes() &&
                                           dH->scalar_type() == Hs.scalar_type())) &&
                  dhT.is_contiguous() && dhT.sizes() == h0.sizes(),
              "rnnkit minimal scan: gradients must be contiguous and shaped as the outputs");
  at::NoGradGuard no_grad;
  Tensor dgx = buffer(gx.sizes(), gx.options());
  Tensor dh0 = at::empty_like(h0);
  if (gx.scalar_type() == at::kDouble)
    minimal_backward_impl<double>(kind, dH, dhT, gx, Hs, h0, live_ptr(active), dgx, dh0);
  else
    minimal_backward_impl<float>(kind, dH, dhT, gx, Hs, h0, live_ptr(active), dgx, dh0);
  return {dgx, dh0};
}

// ------------------------------------------------------------------------------------------------- IndRNN
template <typename T>
void indrnn_forward_impl(int64_t act, const Tensor& gx, const Tensor& u, const T* bias, const T* drop,
                         const Tensor& h0, const uint8_t* live, Tensor& Hs) {
  const int64_t B = gx.size(0), Tn = gx.size(1), H = h0.size(1);
  const T *X = gx.data_ptr<T>(), *U = u.data_ptr<T>(), *S0 = h0.data_ptr<T>();
  T* Y = Hs.data_ptr<T>();
  with_act(act, [&](auto A) {
    constexpr int K = decltype(A)::value;
    for_blocks(B, H, [&](int64_t b, int64_t j0, int64_t n) {
      T h[kBlock], w[kBlock], c[kBlock];  // state, u ⊙ drop, b_hh
      for (int64_t j = 0; j < n; ++j) {
        h[j] = S0[b * H + j0 + j];
        w[j] = U[j0 + j] * (drop ? drop[b * H + j0 + j] : T(1));
        c[j] = bias ? bias[j0 + j] : T(0);
      }
      for (int64_t t = 0; t < Tn; ++t) {
        const T* __restrict x = X + (b * Tn + t) * H + j0;
        T* __restrict y = Y + (b * Tn + t) * H + j0;
        if (live && !live[b * Tn + t]) {
          std::memcpy(y, h, n * sizeof(T));
          continue;
        }
        for (int64_t j = 0; j < n; ++j) {
          h[j] = act_v<K, T>(x[j] + w[j] * h[j] + c[j]);
          y[j] = h[j];
        }
      }
    });
  });
}

template <typename T>
void indrnn_backward_impl(int64_t act, const OptT& dH, const Tensor& dhT, const Tensor& u, const T* drop,
                          const Tensor& Hs, const Tensor& h0, const uint8_t* live, Tensor& dA, Tensor& dU,
                          Tensor& dh0) {
  const int64_t B = Hs.size(0), Tn = Hs.size(1), H = h0.size(1);
  const T *D = opt_ptr<T>(dH), *DT = dhT.data_ptr<T>(), *U = u.data_ptr<T>(), *Y = Hs.data_ptr<T>();
  const T* S0 = h0.data_ptr<T>();
  T *DA = dA.data_ptr<T>(), *DU = dU.data_ptr<T>(), *D0 = dh0.data_ptr<T>();
  with_act(act, [&](auto A) {
    constexpr int K = decltype(A)::value;
    for_blocks(B, H, [&](int64_t b, int64_t j0, int64_t n) {
      T c[kBlock], w[kBlock], m[kBlock], du[kBlock], zeros[kBlock];
      for (int64_t j = 0; j < n; ++j) {
        zeros[j] = T(0);
        c[j] = DT[b * H + j0 + j];
        m[j] = drop ? drop[b * H + j0 + j] : T(1);
        w[j] = U[j0 + j] * m[j];
        du[j] = T(0);
      }
      for (int64_t t = Tn - 1; t >= 0; --t) {
        const T* __restrict d = D ? D + (b * Tn + t) * H + j0 : zeros;
        const T* __restrict y = Y + (b * Tn + t) * H + j0;
        const T* __restrict hp = t > 0 ? Y + (b * Tn + t - 1) * H + j0 : S0 + b * H + j0;
        T* __restrict da = DA + (b * Tn + t) * H + j0;
        if (live && !live[b * Tn + t]) {
          std::memset(da, 0, n * sizeof(T));
          for (int64_t j = 0; j < n; ++j) c[j] += d[j];
          continue;
        }
        for (int64_t j = 0; j < n; ++j) {
          const T g = (d[j] + c[j]) * dact_v<K, T>(y[j]);
          da[j] = g;
          du[j] += g * hp[j] * m[j];
          c[j] = g * w[j];
        }
      }
      for (int64_t j = 0; j < n; ++j) {
        D0[b * H + j0 + j] = c[j];
        DU[b * H + j0 + j] = du[j];
      }
    });
  });
}

std::vector<Tensor> indrnn_forward(int64_t act, const Tensor& gx, const Tensor& u, const OptT& bias,
                                   const OptT& drop, const OptT& active, const Tensor& h0) {
  check(gx, h0, 1);
  TORCH_CHECK(act >= 0 && act <= 5, "rnnkit IndRNN kernel: unknown activation code ", act);
  TORCH_CHECK(u.is_contiguous() && u.numel() == h0.size(1) && u.scalar_type() == gx.scalar_type(),
              "rnnkit IndRNN kernel: u must be a contiguous (H,) tensor of gx's dtype");
  at::NoGradGuard no_grad;
  Tensor Hs = buffer(gx.sizes(), gx.options());
  if (gx.scalar_type() == at::kDouble)
    indrnn_forward_impl<double>(act, gx, u, opt_ptr<double>(bias), opt_ptr<double>(drop), h0, live_ptr(active), Hs);
  else
    indrnn_forward_impl<float>(act, gx, u, opt_ptr<float>(bias), opt_ptr<float>(drop), h0, live_ptr(active), Hs);
  return {Hs};
}

// Returns dA (B, T, H), the gradient of the pre-activation (= of gx and, summed, of b_hh), dU (B, H) per batch row
// (summed over rows by the caller) and dh0 (B, H).
std::vector<Tensor> indrnn_backward(int64_t act, const OptT& dH, const Tensor& dhT, const Tensor& u,
                                    const OptT& drop, const OptT& active, const Tensor& Hs, const Tensor& h0) {
  check(Hs, h0, 1);
  TORCH_CHECK((!present(dH) || (dH->is_contiguous() && dH->sizes() == Hs.sizes() &&
                                           dH->scalar_type() == Hs.scalar_type())) &&
                  dhT.is_contiguous() && dhT.sizes() == h0.sizes(),
              "rnnkit IndRNN kernel: gradients must be contiguous and shaped as the outputs");
  at::NoGradGuard no_grad;
  Tensor dA = buffer(Hs.sizes(), Hs.options());
  Tensor dU = at::empty_like(h0), dh0 = at::empty_like(h0);
  if (Hs.scalar_type() == at::kDouble)
    indrnn_backward_impl<double>(act, dH, dhT, u, opt_ptr<double>(drop), Hs, h0, live_ptr(active), dA, dU, dh0);
  else
    indrnn_backward_impl<float>(act, dH, dhT, u, opt_ptr<float>(drop), Hs, h0, live_ptr(active), dA, dU, dh0);
  return {dA, dU, dh0};
}

}  // namespace
}  // namespace rnnkit_native

TORCH_LIBRARY_FRAGMENT(rnnkit_native, m) {
  m.def("minimal_forward(int kind, Tensor gx, Tensor h0, Tensor? active) -> Tensor");
  m.def("minimal_backward(int kind, Tensor? dH, Tensor dhT, Tensor gx, Tensor Hs, Tensor h0, Tensor? active) -> "
        "Tensor[]");
  m.def("indrnn_forward(int act, Tensor gx, Tensor u, Tensor? bias, Tensor? drop, Tensor? active, Tensor h0) -> "
        "Tensor[]");
  m.def("indrnn_backward(int act, Tensor? dH, Tensor dhT, Tensor u, Tensor? drop, Tensor? active, Tensor Hs, "
        "Tensor h0) -> Tensor[]");
  m.impl("minimal_forward", c10::DispatchKey::CPU, TORCH_FN(rnnkit_native::minimal_forward));
  m.impl("minimal_backward", c10::DispatchKey::CPU, TORCH_FN(rnnkit_native::minimal_backward));
  m.impl("indrnn_forward", c10::DispatchKey::CPU, TORCH_FN(rnnkit_native::indrnn_forward));
  m.impl("indrnn_backward", c10::DispatchKey::CPU, TORCH_FN(rnnkit_native::indrnn_backward));
}
