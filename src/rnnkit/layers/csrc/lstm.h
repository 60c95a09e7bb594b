// rnnkit's native LSTM scan on CPU: the time loop of one layer and direction, forward and BPTT, in C++.
// This header holds the kernels; lstm_float.cpp and lstm_double.cpp instantiate them (two translation units,
// so the build runs on two cores), lstm_ops.cpp registers the torch ops.
//
// It computes exactly what rnnkit/layers/scan.py computes (the Python scan stays as the fallback and the
// readable version): per step one GEMM through ATen (MKL/oneDNN) and one pass over the batch rows that
// does everything elementwise — bias, per-gate layer norm, activations, cell update, masks — so a step
// costs two calls instead of the ~30 torch ops of the Python loop.
//
// Layouts (contiguous, batch-major like the layer's tensors unless said; B batch, T steps, H hidden, G = 4H):
//   gx (B, T, G) input projections W_ih x_t + b_ih     w (G, H) W_hh     b, gains, shifts (G,) or absent
//   drop (B, H) recurrent-dropout mask or absent       active (B, T) uint8 live-step mask or absent
//   A (B, T, G) gate activations i, f, g, o            Hp, Cp (B, T, H) the state entering each step
//   TC (B, T, H) act(c_t)                              Hr (B, T, H) h_{t-1} ⊙ drop (Hp without dropout)
//   Z (T, B, G) W_hh h + b_hh, time-major, kept with layer norm
//   S (B, T, 2, 8) layer-norm (mean, 1/std) of each gate block: [0] of Z, [1] of gx
// Activation codes follow scan.py's names: 0 tanh, 1 sigmoid, 2 relu, 3 identity, 4 hard_sigmoid
// (torch's relu6(x + 3) / 6), 5 hard_sigmoid_keras2 (clip(0.2 x + 0.5, 0, 1)).
#pragma once
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <type_traits>
#include <vector>

namespace rnnkit_native {

using at::Tensor;
constexpr double kEps = 1e-5;  // rnnkit.layers.cell.LN_EPS
constexpr int64_t kGrain = 4096;  // gate entries per thread below which a step's row pass stays on one thread

// ---------------------------------------------------------------------------------------------- math
// exp for float in a form the compiler vectorises: x = n ln2 + r, exp(r) by a degree-6 polynomial
// (Cephes' coefficients, about 1 ulp), 2^n built in the exponent bits. Inputs are clamped to +-87 so that
// neither the result nor 1/(1 + result) is denormal.
inline float exp_f(float x) {
  x = std::min(std::max(x, -87.0f), 87.0f);
  const float fx = x * 1.44269504088896341f;
  const float fn = std::floor(fx + 0.5f);
  const int n = static_cast<int>(fn);
  float r = x - fn * 0.693359375f;
  r = r - fn * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int bits = (n + 127) << 23;
  return p * __builtin_bit_cast(float, bits);
}

inline float sigmoid_v(float x) { return 1.0f / (1.0f + exp_f(-x)); }
inline double sigmoid_v(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// tanh for float: an odd polynomial near 0 (Cephes' tanhf), (1 - e) / (1 + e) with e = exp(-2|x|) elsewhere.
inline float tanh_v(float x) {
  const float ax = std::abs(x);
  const float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float small = p * z * x + x;
  const float e = exp_f(-2.0f * ax);
  const float big = (1.0f - e) / (1.0f + e);
  return ax < 0.625f ? small : (x < 0.0f ? -big : big);
}
inline double tanh_v(double x) { return std::tanh(x); }

template <typename T>
constexpr T sixth() {
  return static_cast<T>(static_cast<float>(1.0 / 6.0));  // torch's hardsigmoid backward uses float32 1/6
}

// Activation codes as template arguments, so that a row's whole step is one vectorised loop.
template <int K, typename T>
inline T act_v(T x) {
  if constexpr (K == 0) return tanh_v(x);
  if constexpr (K == 1) return sigmoid_v(x);
  if constexpr (K == 2) return x > T(0) ? x : T(0);
  if constexpr (K == 3) return x;
  if constexpr (K == 4) return std::min(std::max(x + T(3), T(0)), T(6)) / T(6);
  if constexpr (K == 5) return std::min(std::max(x * T(0.2) + T(0.5), T(0)), T(1));
}

// act'(x) written in terms of the output y = act(x), as torch's backward kernels take it.
template <int K, typename T>
inline T dact_v(T y) {
  if constexpr (K == 0) return T(1) - y * y;
  if constexpr (K == 1) return (T(1) - y) * y;
  if constexpr (K == 2) return y > T(0) ? T(1) : T(0);
  if constexpr (K == 3) return T(1);
  if constexpr (K == 4) return (y > T(0) && y < T(1)) ? sixth<T>() : T(0);
  if constexpr (K == 5) return (y > T(0) && y < T(1)) ? T(0.2) : T(0);
}

// f(std::integral_constant<int, act>) for a runtime activation code.
template <typename F>
void with_act(int64_t code, F&& f) {
  switch (code) {
    case 0: return f(std::integral_constant<int, 0>{});
    case 1: return f(std::integral_constant<int, 1>{});
    case 2: return f(std::integral_constant<int, 2>{});
    case 3: return f(std::integral_constant<int, 3>{});
    case 4: return f(std::integral_constant<int, 4>{});
    case 5: return f(std::integral_constant<int, 5>{});
    default: TORCH_CHECK(false, "rnnkit native lstm: unknown activation code ", code);
  }
}

// Mean and 1/std (biased variance, as torch's layer norm) of each of the 4 H-blocks of v, into st[8] as
// (mean, rstd) pairs. Two passes, the four blocks together.
template <typename T>
inline void ln_stats4(const T* v, int64_t H, T* st) {
  T s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
  for (int64_t j = 0; j < H; ++j) {
    s0 += v[j];
    s1 += v[H + j];
    s2 += v[2 * H + j];
    s3 += v[3 * H + j];
  }
  const T n = static_cast<T>(H), m0 = s0 / n, m1 = s1 / n, m2 = s2 / n, m3 = s3 / n;
  T v0 = 0, v1 = 0, v2 = 0, v3 = 0;
#pragma omp simd reduction(+ : v0, v1, v2, v3)
  for (int64_t j = 0; j < H; ++j) {
    v0 += (v[j] - m0) * (v[j] - m0);
    v1 += (v[H + j] - m1) * (v[H + j] - m1);
    v2 += (v[2 * H + j] - m2) * (v[2 * H + j] - m2);
    v3 += (v[3 * H + j] - m3) * (v[3 * H + j] - m3);
  }
  const T eps = static_cast<T>(kEps);
  st[0] = m0, st[2] = m1, st[4] = m2, st[6] = m3;
  st[1] = T(1) / std::sqrt(v0 / n + eps), st[3] = T(1) / std::sqrt(v1 / n + eps);
  st[5] = T(1) / std::sqrt(v2 / n + eps), st[7] = T(1) / std::sqrt(v3 / n + eps);
}

// a (+)= shift + x̂ ⊙ gain, x̂ = (v - mean) * rstd per block (cell.gate_norm): add=false writes, add=true adds.
template <typename T>
inline void ln_apply4(const T* v, const T* st, const T* gain, const T* shift, T* a, int64_t H, bool add) {
  for (int64_t k = 0; k < 4; ++k) {
    const T m = st[2 * k], rs = st[2 * k + 1];
    const T *vk = v + k * H, *gk = gain + k * H, *sk = shift + k * H;
    T* ak = a + k * H;
    if (add) {
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) ak[j] = ak[j] + (sk[j] + ((vk[j] - m) * rs) * gk[j]);
    } else {
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) ak[j] = sk[j] + ((vk[j] - m) * rs) * gk[j];
    }
  }
}

// Layer-norm backward of one row: dv = rstd (dx̂ - mean(dx̂) - x̂ mean(dx̂ ⊙ x̂)) per block with dx̂ = da ⊙ gain;
// adds da ⊙ x̂ to acc_gain (the gain's gradient).
template <typename T>
inline void ln_backward4(const T* da, const T* v, const T* st, const T* gain, T* dv, T* acc_gain, int64_t H) {
  const T inv_h = T(1) / static_cast<T>(H);
  for (int64_t k = 0; k < 4; ++k) {
    const T m = st[2 * k], rs = st[2 * k + 1];
    const T *vk = v + k * H, *gk = gain + k * H, *dak = da + k * H;
    T s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
    for (int64_t j = 0; j < H; ++j) {
      const T dy = dak[j] * gk[j];
      s1 += dy;
      s2 += dy * ((vk[j] - m) * rs);
    }
    s1 *= inv_h;
    s2 *= inv_h;
    T *dvk = dv + k * H, *agk = acc_gain + k * H;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      const T xh = (vk[j] - m) * rs;
      dvk[j] = rs * (dak[j] * gk[j] - s1 - xh * s2);
      agk[j] += dak[j] * xh;
    }
  }
}

// ------------------------------------------------------------------------------------------- buffers
// A small cache of the kernel's large buffers. A fresh multi-megabyte tensor comes from mmap, and the
// kernel's first write to each of its pages is a page fault: on the benchmark machine that took ~40% of a
// forward pass. Buffers that nobody else holds any more (the autograd graph that saved them is gone) are
// handed out again for the same number of elements; free buffers of other sizes are released when a new one
// is needed, so the cache holds at most the peak of one training step. rnnkit.layers.native.empty_cache()
// releases everything.
struct BufferCache {
  std::mutex mutex;
  std::vector<Tensor> items;
};

inline BufferCache& buffer_cache() {
  static BufferCache cache;
  return cache;
}

inline bool is_free(const Tensor& t) { return t.use_count() == 1 && t.storage().use_count() == 1; }

constexpr int64_t kCacheMin = 1 << 16;  // elements below which buffers are not cached (cheap to allocate)

inline Tensor buffer(at::IntArrayRef shape, const at::TensorOptions& opts) {
  const int64_t n = c10::multiply_integers(shape);
  if (n < kCacheMin) return at::empty(shape, opts);
  BufferCache& cache = buffer_cache();
  std::lock_guard<std::mutex> lock(cache.mutex);
  for (const Tensor& t : cache.items)
    if (t.numel() == n && t.dtype() == opts.dtype() && is_free(t)) return t.view(shape);
  cache.items.erase(std::remove_if(cache.items.begin(), cache.items.end(), is_free), cache.items.end());
  Tensor t = at::empty({n}, opts);
  cache.items.push_back(t);
  return t.view(shape);
}

inline int64_t empty_cache() {
  BufferCache& cache = buffer_cache();
  std::lock_guard<std::mutex> lock(cache.mutex);
  int64_t bytes = 0;
  for (const Tensor& t : cache.items) bytes += t.nbytes();
  cache.items.clear();
  return bytes;
}

// The optional inputs of a scan, as raw pointers (nullptr when absent).
template <typename T>
struct Opt {
  const T *b, *gain_hh, *shift_hh, *gain_ih, *shift_ih, *drop;
  const uint8_t* live;
};

// ---------------------------------------------------------------------------------------------- forward
// gx (B, T, G): W_ih x_t + b_ih, before the input-side layer norm when gain_ih is given.
template <typename T, int ACT, int REC>
std::vector<Tensor> forward_impl(const Tensor& gx, const Tensor& w, const Opt<T>& op, const Tensor& h0,
                                 const Tensor& c0) {
  const int64_t B = gx.size(0), T_ = gx.size(1), G = gx.size(2), H = G / 4;
  const bool ln_hh = op.gain_hh != nullptr, ln_ih = op.gain_ih != nullptr;
  auto opts = gx.options();
  Tensor A = buffer({B, T_, G}, opts), Hp = buffer({B, T_, H}, opts), Cp = buffer({B, T_, H}, opts);
  Tensor TC = buffer({B, T_, H}, opts), out = buffer({B, T_, H}, opts);
  Tensor hT = at::empty({B, H}, opts), cT = at::empty({B, H}, opts);
  Tensor Hr = op.drop ? buffer({B, T_, H}, opts) : Hp;
  // Z: W_hh h + b_hh, kept time-major (T, B, G) with layer norm so that each step's GEMM writes one
  // contiguous block (a strided output costs the GEMM a page fault and TLB miss per row); else one step's.
  Tensor Z = ln_hh ? buffer({T_, B, G}, opts) : at::empty({B, G}, opts);
  Tensor S = buffer({B, T_, 2, 8}, opts);  // layer-norm stats: [0] of W_hh h + b_hh, [1] of gx
  Hp.select(1, 0).copy_(h0);
  Cp.select(1, 0).copy_(c0);
  const Tensor wt = w.t();
  const int64_t grain = std::max<int64_t>(1, kGrain / G);
  const T* X = gx.data_ptr<T>();
  T *pA = A.data_ptr<T>(), *pH = Hp.data_ptr<T>(), *pC = Cp.data_ptr<T>(), *pTC = TC.data_ptr<T>();
  T *pO = out.data_ptr<T>(), *phT = hT.data_ptr<T>(), *pcT = cT.data_ptr<T>(), *pHr = Hr.data_ptr<T>();
  T *pZ = Z.data_ptr<T>(), *pS = S.data_ptr<T>();

  for (int64_t t = 0; t < T_; ++t) {
    if (op.drop) {
      for (int64_t bb = 0; bb < B; ++bb) {
        const T *h = pH + (bb * T_ + t) * H, *m = op.drop + bb * H;
        T* hr = pHr + (bb * T_ + t) * H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) hr[j] = h[j] * m[j];
      }
    }
    Tensor zt = ln_hh ? Z.select(0, t) : Z;
    at::mm_out(zt, Hr.select(1, t), wt);  // W_hh h_{t-1} for every row
    T* z0 = ln_hh ? pZ + t * B * G : pZ;
    at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) {
      for (int64_t bb = b0; bb < b1; ++bb) {
        const int64_t r = bb * T_ + t;
        const T *hp = pH + r * H, *cp = pC + r * H, *x = X + r * G;
        T* hn = t + 1 < T_ ? pH + (r + 1) * H : phT + bb * H;
        T* cn = t + 1 < T_ ? pC + (r + 1) * H : pcT + bb * H;
        T *o = pO + r * H, *a = pA + r * G, *tc = pTC + r * H, *z = z0 + bb * G, *st = pS + r * 16;
        if (op.live && !op.live[r]) {  // finished sequence: the state carries over, the output is 0
          std::memcpy(hn, hp, H * sizeof(T));
          std::memcpy(cn, cp, H * sizeof(T));
          std::memset(o, 0, H * sizeof(T));
          std::memset(a, 0, G * sizeof(T));
          std::memcpy(tc, cp, H * sizeof(T));
          continue;
        }
        if (ln_ih) {  // a = LN(gx); else a = gx
          ln_stats4(x, H, st + 8);
          ln_apply4(x, st + 8, op.gain_ih, op.shift_ih, a, H, false);
        } else {
          std::memcpy(a, x, G * sizeof(T));
        }
        if (op.b) {
#pragma omp simd
          for (int64_t j = 0; j < G; ++j) z[j] += op.b[j];
        }
        if (ln_hh) {  // a += LN(W_hh h + b_hh); z is kept for the backward pass
          ln_stats4(z, H, st);
          ln_apply4(z, st, op.gain_hh, op.shift_hh, a, H, true);
        } else {
#pragma omp simd
          for (int64_t j = 0; j < G; ++j) a[j] += z[j];
        }
        T *ai = a, *af = a + H, *ag = a + 2 * H, *ao = a + 3 * H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {  // gates, c_t = f c_{t-1} + i g, h_t = o act(c_t)
          const T i = act_v<REC>(ai[j]), f = act_v<REC>(af[j]), g = act_v<ACT>(ag[j]), og = act_v<REC>(ao[j]);
          const T c = f * cp[j] + i * g;
          const T th = act_v<ACT>(c);
          ai[j] = i, af[j] = f, ag[j] = g, ao[j] = og;
          cn[j] = c;
          tc[j] = th;
          hn[j] = og * th;
          o[j] = og * th;
        }
      }
    });
  }
  return {out, hT, cT, A, Cp, TC, Hr, Z, S};
}

// --------------------------------------------------------------------------------------------- backward
// D (B, T, H): gradient wrt the outputs; dhT, dcT (B, H): wrt the final state. Returns dX (B, T, G) wrt gx,
// dZ (B, T, G) wrt W_hh h + b_hh (the same tensor without layer norm), dh0, dc0, and (G,) gradients of the
// recurrent and input layer-norm gains and of their shifts (one tensor: both shifts get the same sum);
// empty without layer norm. The weight and bias gradients are single matmuls/sums over dZ the caller takes.
template <typename T, int ACT, int REC>
std::vector<Tensor> backward_impl(const Tensor& D, const Tensor& dhT, const Tensor& dcT, const Tensor& w,
                                  const Opt<T>& op, const Tensor& gx, const Tensor& A, const Tensor& Cp,
                                  const Tensor& TC, const Tensor& Z, const Tensor& S, bool need_h0) {
  const int64_t B = A.size(0), T_ = A.size(1), G = A.size(2), H = G / 4;
  const bool ln_hh = op.gain_hh != nullptr, ln_ih = op.gain_ih != nullptr, ln = ln_hh || ln_ih;
  auto opts = A.options();
  Tensor dA = ln_hh && ln_ih ? Tensor() : buffer({B, T_, G}, opts);  // wrt the pre-activations
  Tensor dX = ln_ih ? buffer({B, T_, G}, opts) : dA, dZ = ln_hh ? buffer({B, T_, G}, opts) : dA;
  Tensor dh = dhT.clone(), dc = dcT.clone(), recb = at::empty({B, H}, opts);
  const int64_t nth = at::get_num_threads();
  Tensor part = at::zeros({nth, 3, ln ? G : 0}, opts);  // per thread: d gain_hh, d gain_ih, d shift
  const int64_t grain = std::max<int64_t>(1, kGrain / G);
  const T *pD = D.data_ptr<T>(), *pA = A.data_ptr<T>(), *pC = Cp.data_ptr<T>(), *pTC = TC.data_ptr<T>();
  const T *pZ = Z.data_ptr<T>(), *pS = S.data_ptr<T>(), *X = gx.data_ptr<T>();
  T *pdA = dA.defined() ? dA.data_ptr<T>() : nullptr, *pdX = dX.data_ptr<T>(), *pdZ = dZ.data_ptr<T>();
  T *pdh = dh.data_ptr<T>(), *pdc = dc.data_ptr<T>(), *ppart = part.data_ptr<T>();
  const T* prec = recb.data_ptr<T>();

  for (int64_t t = T_ - 1; t >= 0; --t) {
    at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) {
      std::vector<T> scratch(pdA ? 0 : G);
      T* acc = ppart + std::min<int64_t>(at::get_thread_num(), nth - 1) * 3 * G;
      for (int64_t bb = b0; bb < b1; ++bb) {
        const int64_t r = bb * T_ + t;
        T *dx = pdX + r * G, *dz = pdZ + r * G;
        if (op.live && !op.live[r]) {  // a finished step: nothing flows into its gates
          std::memset(dx, 0, G * sizeof(T));
          if (dz != dx) std::memset(dz, 0, G * sizeof(T));
          continue;
        }
        T* da = pdA ? pdA + r * G : scratch.data();
        const T *a = pA + r * G, *cp = pC + r * H, *tc = pTC + r * H, *d = pD + r * H, *st = pS + r * 16;
        const T *ai = a, *af = a + H, *ag = a + 2 * H, *ao = a + 3 * H;
        T *dhb = pdh + bb * H, *dcb = pdc + bb * H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const T i = ai[j], f = af[j], g = ag[j], o = ao[j], th = tc[j];
          const T gh = dhb[j] + d[j];
          const T gc = dcb[j] + (gh * o) * dact_v<ACT>(th);
          da[3 * H + j] = (gh * th) * dact_v<REC>(o);
          da[j] = (gc * g) * dact_v<REC>(i);
          da[H + j] = (gc * cp[j]) * dact_v<REC>(f);
          da[2 * H + j] = (gc * i) * dact_v<ACT>(g);
          dcb[j] = gc * f;
        }
        if (ln_hh) ln_backward4(da, pZ + (t * B + bb) * G, st, op.gain_hh, dz, acc, H);
        if (ln_ih) ln_backward4(da, X + r * G, st + 8, op.gain_ih, dx, acc + G, H);
        if (ln) {
          T* as = acc + 2 * G;
#pragma omp simd
          for (int64_t j = 0; j < G; ++j) as[j] += da[j];
        }
      }
    });
    if (t == 0 && !need_h0) break;
    at::mm_out(recb, dZ.select(1, t), w);  // wrt h_{t-1} as W_hh saw it
    for (int64_t bb = 0; bb < B; ++bb) {
      if (op.live && !op.live[bb * T_ + t]) continue;  // the gradient passes a finished step unchanged
      T* dhb = pdh + bb * H;
      const T* rc = prec + bb * H;
      if (op.drop) {
        const T* m = op.drop + bb * H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) dhb[j] = rc[j] * m[j];
      } else {
        std::memcpy(dhb, rc, H * sizeof(T));
      }
    }
  }
  Tensor sums = part.sum(0);  // (3, G)
  return {dX, dZ, dh, dc, sums};
}

template <typename T>
std::vector<Tensor> forward(const Tensor& gx, const Tensor& w, const Opt<T>& op, const Tensor& h0, const Tensor& c0,
                            int64_t act, int64_t rec) {
  std::vector<Tensor> res;
  with_act(act, [&](auto Ac) {
    with_act(rec, [&](auto R) { res = forward_impl<T, Ac.value, R.value>(gx, w, op, h0, c0); });
  });
  return res;
}

template <typename T>
std::vector<Tensor> backward(const Tensor& D, const Tensor& dhT, const Tensor& dcT, const Tensor& w, const Opt<T>& op,
                             const Tensor& gx, const Tensor& A, const Tensor& Cp, const Tensor& TC, const Tensor& Z,
                             const Tensor& S, int64_t act, int64_t rec, bool need_h0) {
  std::vector<Tensor> res;
  with_act(act, [&](auto Ac) {
    with_act(rec, [&](auto R) {
      res = backward_impl<T, Ac.value, R.value>(D, dhT, dcT, w, op, gx, A, Cp, TC, Z, S, need_h0);
    });
  });
  return res;
}

#define RNNKIT_INSTANTIATE(EXTERN, T)                                                                              \
  EXTERN template std::vector<Tensor> forward<T>(const Tensor&, const Tensor&, const Opt<T>&, const Tensor&,       \
                                                 const Tensor&, int64_t, int64_t);                                 \
  EXTERN template std::vector<Tensor> backward<T>(const Tensor&, const Tensor&, const Tensor&, const Tensor&,      \
                                                  const Opt<T>&, const Tensor&, const Tensor&, const Tensor&,      \
                                                  const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t, bool);

}  // namespace rnnkit_native
