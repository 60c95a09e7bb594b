// rnnkit's native recurrent scan on CPU: the time loop of one layer and direction, forward and BPTT, in C++,
// for the LSTM, the GRU (reset_after=True) and the Elman RNN. This header holds the kernels;
// scan_float.cpp and scan_double.cpp instantiate them (two translation units, so the build uses two cores)
// and scan_ops.cpp registers the torch ops.
//
// It computes what rnnkit/layers/scan.py computes (the Python scan stays as the fallback and the readable
// version), but a step is one GEMM through ATen (MKL/oneDNN) plus one pass over the batch rows that does
// all the elementwise work (biases, per-gate layer norm of both projections, activations, state update,
// masks), instead of ~30 torch ops. The cell's own elementwise step is a small function templated on the
// activations (one vectorised loop per row); the driver around it is shared by the three cells.
//
// Layouts (contiguous, batch-major like the layer's tensors unless said; B batch, T steps, H hidden, G gate
// entries: 4H LSTM, 3H GRU, H RNN):
//   gx (B, T, G)  W_ih x_t + b_ih, before the input-side layer norm   w (G, H) W_hh
//   b, gains, shifts (G,) or absent    drop (B, H) recurrent-dropout mask or absent
//   active (B, T) uint8 live steps or absent
//   A (B, T, G)  gate activations (LSTM i f g o, GRU r z n, RNN h)    Hp (B, T, H) h entering each step
//   Cp (B, T, H) LSTM: c entering each step    X2 (B, T, H) LSTM: act(c_t); GRU: the n block of y
//   Hr (B, T, H) h_{t-1} ⊙ drop (Hp itself without dropout)
//   Z (T, B, G)  W_hh h + b_hh, time-major, kept with layer norm    S (B, T, 2, 8) layer-norm (mean, 1/std)
//   of each gate block: [0] of Z, [1] of gx
// y denotes the recurrent part as the gates see it: z + b without layer norm, LN(z + b) with it.
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
// kGRUrb: the GRU with reset_after=False, whose n gate reads W_hn (r ⊙ h): two GEMMs per step, its own driver.
enum Kind : int64_t { kLSTM = 0, kGRU = 1, kRNN = 2, kGRUrb = 3 };
constexpr int64_t num_gates(int64_t kind) { return kind == kLSTM ? 4 : kind == kRNN ? 1 : 3; }

// ---------------------------------------------------------------------------------------------- math
// exp for float in a form the compiler vectorises: x = n ln2 + r, exp(r) by a degree-6 polynomial
// (Cephes' coefficients, about 1 ulp), 2^n built in the exponent bits. Inputs are clamped to +-87 so that
// neither the result nor 1/(1 + result) is denormal.
[[gnu::always_inline]] inline float exp_f(float x) {
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

[[gnu::always_inline]] inline float sigmoid_v(float x) { return 1.0f / (1.0f + exp_f(-x)); }
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

// ------------------------------------------------------------------------------------------ layer norm
// Mean and 1/std (biased variance, as torch's layer norm) of each of the nb H-blocks of v, into st[2 nb].
template <typename T>
inline void ln_stats(const T* v, int64_t nb, int64_t H, T* st) {
  const T n = static_cast<T>(H), eps = static_cast<T>(kEps);
  for (int64_t k = 0; k < nb; ++k) {
    const T* vk = v + k * H;
    T s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < H; ++j) s += vk[j];
    const T m = s / n;
    T q = 0;
#pragma omp simd reduction(+ : q)
    for (int64_t j = 0; j < H; ++j) q += (vk[j] - m) * (vk[j] - m);
    st[2 * k] = m;
    st[2 * k + 1] = T(1) / std::sqrt(q / n + eps);
  }
}

// out = shift + x̂ ⊙ gain with x̂ = (v - mean) * rstd per block (cell.gate_norm).
template <typename T>
inline void ln_apply(const T* v, const T* st, const T* gain, const T* shift, T* out, int64_t nb, int64_t H) {
  for (int64_t k = 0; k < nb; ++k) {
    const T m = st[2 * k], rs = st[2 * k + 1];
    const T *vk = v + k * H, *gk = gain + k * H, *sk = shift + k * H;
    T* ok = out + k * H;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) ok[j] = sk[j] + ((vk[j] - m) * rs) * gk[j];
  }
}

// Backward of ln_apply for one row: dv = rstd (dx̂ - mean(dx̂) - x̂ mean(dx̂ ⊙ x̂)) per block, dx̂ = dout ⊙ gain;
// adds dout ⊙ x̂ to acc_gain and dout to acc_shift (the parameters' gradients).
template <typename T>
inline void ln_backward(const T* dout, const T* v, const T* st, const T* gain, T* dv, T* acc_gain, T* acc_shift,
                        int64_t nb, int64_t H) {
  const T inv_h = T(1) / static_cast<T>(H);
  for (int64_t k = 0; k < nb; ++k) {
    const T m = st[2 * k], rs = st[2 * k + 1];
    const T *vk = v + k * H, *gk = gain + k * H, *dk = dout + k * H;
    T s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
    for (int64_t j = 0; j < H; ++j) {
      const T dy = dk[j] * gk[j];
      s1 += dy;
      s2 += dy * ((vk[j] - m) * rs);
    }
    s1 *= inv_h;
    s2 *= inv_h;
    T *dvk = dv + k * H, *agk = acc_gain + k * H, *ask = acc_shift + k * H;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      const T xh = (vk[j] - m) * rs;
      dvk[j] = rs * (dk[j] * gk[j] - s1 - xh * s2);
      agk[j] += dk[j] * xh;
      ask[j] += dk[j];
    }
  }
}

// With both layer norms on the same gate pre-activations (LSTM, RNN): a = LN_ih(x) + LN_hh(z) in one pass.
template <typename T>
inline void ln_apply_sum(const T* x, const T* sx, const T* gx, const T* bx, const T* z, const T* sz, const T* gz,
                         const T* bz, T* a, int64_t nb, int64_t H) {
  for (int64_t k = 0; k < nb; ++k) {
    const T mx = sx[2 * k], rx = sx[2 * k + 1], mz = sz[2 * k], rz = sz[2 * k + 1];
    const T *xk = x + k * H, *gxk = gx + k * H, *bxk = bx + k * H;
    const T *zk = z + k * H, *gzk = gz + k * H, *bzk = bz + k * H;
    T* ak = a + k * H;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j)
      ak[j] = (bxk[j] + ((xk[j] - mx) * rx) * gxk[j]) + (bzk[j] + ((zk[j] - mz) * rz) * gzk[j]);
  }
}

// ln_backward for both layer norms of a row at once (one reduction and one output loop per block instead of
// two of each): dz from dy through LN_hh, dx from dxo through LN_ih; acc holds (gain_hh, shift_hh, gain_ih,
// shift_ih) sums, G apart.
template <typename T>
inline void ln_backward_pair(const T* dy, const T* z, const T* sz, const T* gz, T* dz, const T* dxo, const T* x,
                             const T* sx, const T* gx, T* dx, T* acc, int64_t nb, int64_t H) {
  const T inv_h = T(1) / static_cast<T>(H);
  const int64_t G = nb * H;
  for (int64_t k = 0; k < nb; ++k) {
    const T mz = sz[2 * k], rz = sz[2 * k + 1], mx = sx[2 * k], rx = sx[2 * k + 1];
    const T *zk = z + k * H, *gzk = gz + k * H, *dyk = dy + k * H;
    const T *xk = x + k * H, *gxk = gx + k * H, *dxok = dxo + k * H;
    T s1z = 0, s2z = 0, s1x = 0, s2x = 0;
#pragma omp simd reduction(+ : s1z, s2z, s1x, s2x)
    for (int64_t j = 0; j < H; ++j) {
      const T ey = dyk[j] * gzk[j], ex = dxok[j] * gxk[j];
      s1z += ey;
      s2z += ey * ((zk[j] - mz) * rz);
      s1x += ex;
      s2x += ex * ((xk[j] - mx) * rx);
    }
    s1z *= inv_h, s2z *= inv_h, s1x *= inv_h, s2x *= inv_h;
    T *dzk = dz + k * H, *dxk = dx + k * H, *a0 = acc + k * H, *a1 = acc + G + k * H, *a2 = acc + 2 * G + k * H,
      *a3 = acc + 3 * G + k * H;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      const T zh = (zk[j] - mz) * rz, xh = (xk[j] - mx) * rx;
      dzk[j] = rz * (dyk[j] * gzk[j] - s1z - zh * s2z);
      dxk[j] = rx * (dxok[j] * gxk[j] - s1x - xh * s2x);
      a0[j] += dyk[j] * zh;
      a1[j] += dyk[j];
      a2[j] += dxok[j] * xh;
      a3[j] += dxok[j];
    }
  }
}

// ------------------------------------------------------------------------------------ the step's GEMM
// c = a @ b, one step's recurrent product. With b (the recurrent weight) passed in bfloat16 - the mixed-
// precision mode, training.amp on a CPU with bf16 instructions - a is rounded into a bf16 scratch, the product
// taken by the bf16 GEMM (float accumulation, about 4x the float32 rate there) and widened into c. The state, the
// gates and every elementwise step stay in T either way.
class StepGemm {
 public:
  StepGemm(const Tensor& b, int64_t rows) : low_(b.scalar_type() == at::kBFloat16) {
    if (low_) {
      a_ = at::empty({rows, b.size(0)}, b.options());
      c_ = at::empty({rows, b.size(1)}, b.options());
    }
  }
  void operator()(Tensor c, const Tensor& a, const Tensor& b) {
    if (!low_) {
      at::mm_out(c, a, b);
      return;
    }
    a_.copy_(a);
    at::mm_out(c_, a_, b);
    c.copy_(c_);
  }

 private:
  bool low_;
  Tensor a_, c_;
};

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

// ------------------------------------------------------------------------------------------------ cells
// One row of one step. Forward: a (G) holds the input-side pre-activations (gx, layer-normed if asked) and
// gets the gate activations; y (G) is the recurrent part; hp/cp the state entering the step; the row writes
// the new state hn/cn, the output o and its extra saved values x2 (LSTM act(c_t), GRU y's n block).
// Backward: gh (H) is the gradient reaching h_t (from the output and from step t+1), dc (LSTM) the one
// reaching c_t, updated in place to reach c_{t-1}; the row writes dx (G) wrt a's pre-activations, dy (G) wrt
// y (the same values except in the GRU's n block; dx may equal dy), and leaves in gh the part of dh_{t-1}
// that bypasses W_hh (the GRU's z ⊙ dh; 0 for LSTM and RNN).
template <typename T>
struct Row {
  void (*fwd)(T* a, const T* y, const T* hp, const T* cp, T* hn, T* cn, T* o, T* x2, int64_t H);
  void (*bwd)(const T* a, const T* hp, const T* cp, const T* x2, T* gh, T* dc, T* dx, T* dy, int64_t H);
};

// LSTM: i, f, o = rec(.), g = act(.), c_t = f c_{t-1} + i g, h_t = o act(c_t).
template <typename T, int ACT, int REC>
void lstm_fwd(T* a, const T* y, const T*, const T* cp, T* hn, T* cn, T* o, T* x2, int64_t H) {
  T *ai = a, *af = a + H, *ag = a + 2 * H, *ao = a + 3 * H;
  const T *yi = y, *yf = y + H, *yg = y + 2 * H, *yo = y + 3 * H;
#pragma omp simd
  for (int64_t j = 0; j < H; ++j) {
    const T i = act_v<REC>(ai[j] + yi[j]), f = act_v<REC>(af[j] + yf[j]);
    const T g = act_v<ACT>(ag[j] + yg[j]), og = act_v<REC>(ao[j] + yo[j]);
    const T c = f * cp[j] + i * g;
    const T th = act_v<ACT>(c);
    ai[j] = i, af[j] = f, ag[j] = g, ao[j] = og;
    cn[j] = c;
    x2[j] = th;
    hn[j] = og * th;
    o[j] = og * th;
  }
}

template <typename T, int ACT, int REC>
void lstm_bwd(const T* a, const T*, const T* cp, const T* x2, T* gh, T* dc, T* dx, T* dy, int64_t H) {
  const T *ai = a, *af = a + H, *ag = a + 2 * H, *ao = a + 3 * H;
#pragma omp simd
  for (int64_t j = 0; j < H; ++j) {
    const T i = ai[j], f = af[j], g = ag[j], o = ao[j], th = x2[j], h = gh[j];
    const T gc = dc[j] + (h * o) * dact_v<ACT>(th);
    const T d_o = (h * th) * dact_v<REC>(o), d_i = (gc * g) * dact_v<REC>(i);
    const T d_f = (gc * cp[j]) * dact_v<REC>(f), d_g = (gc * i) * dact_v<ACT>(g);
    dx[j] = d_i, dx[H + j] = d_f, dx[2 * H + j] = d_g, dx[3 * H + j] = d_o;
    dy[j] = d_i, dy[H + j] = d_f, dy[2 * H + j] = d_g, dy[3 * H + j] = d_o;
    dc[j] = gc * f;
    gh[j] = T(0);
  }
}

// GRU, reset_after=True: r, z = rec(.), n = act(a_n + r y_n), h_t = n + z (h_{t-1} - n).
template <typename T, int ACT, int REC>
void gru_fwd(T* a, const T* y, const T* hp, const T*, T* hn, T*, T* o, T* x2, int64_t H) {
  T *ar = a, *az = a + H, *an = a + 2 * H;
  const T *yr = y, *yz = y + H, *yn = y + 2 * H;
#pragma omp simd
  for (int64_t j = 0; j < H; ++j) {
    const T r = act_v<REC>(ar[j] + yr[j]), z = act_v<REC>(az[j] + yz[j]);
    const T n = act_v<ACT>(an[j] + r * yn[j]);
    const T h = n + z * (hp[j] - n);
    ar[j] = r, az[j] = z, an[j] = n;
    x2[j] = yn[j];
    hn[j] = h;
    o[j] = h;
  }
}

template <typename T, int ACT, int REC>
void gru_bwd(const T* a, const T* hp, const T*, const T* x2, T* gh, T*, T* dx, T* dy, int64_t H) {
  const T *ar = a, *az = a + H, *an = a + 2 * H;
#pragma omp simd
  for (int64_t j = 0; j < H; ++j) {
    const T r = ar[j], z = az[j], n = an[j], h = gh[j];
    const T direct = h * z;
    const T dn = (h - direct) * dact_v<ACT>(n);
    const T dz = (h * (hp[j] - n)) * dact_v<REC>(z), dr = (dn * x2[j]) * dact_v<REC>(r);
    dx[j] = dr, dx[H + j] = dz, dx[2 * H + j] = dn;
    dy[j] = dr, dy[H + j] = dz, dy[2 * H + j] = dn * r;
    gh[j] = direct;
  }
}

// Elman RNN: h_t = act(a + y).
template <typename T, int ACT, int REC>
void rnn_fwd(T* a, const T* y, const T*, const T*, T* hn, T*, T* o, T*, int64_t H) {
#pragma omp simd
  for (int64_t j = 0; j < H; ++j) {
    const T h = act_v<ACT>(a[j] + y[j]);
    a[j] = h;
    hn[j] = h;
    o[j] = h;
  }
}

template <typename T, int ACT, int REC>
void rnn_bwd(const T* a, const T*, const T*, const T*, T* gh, T*, T* dx, T* dy, int64_t H) {
#pragma omp simd
  for (int64_t j = 0; j < H; ++j) {
    const T d = gh[j] * dact_v<ACT>(a[j]);
    dx[j] = d;
    dy[j] = d;
    gh[j] = T(0);
  }
}

template <typename T>
Row<T> row_for(int64_t kind, int64_t act, int64_t rec) {
  Row<T> row{};
  with_act(act, [&](auto Ac) {
    constexpr int A = decltype(Ac)::value;
    if (kind == kRNN) {
      row = {&rnn_fwd<T, A, 0>, &rnn_bwd<T, A, 0>};
      return;
    }
    with_act(rec, [&](auto Rc) {
      constexpr int R = decltype(Rc)::value;
      row = kind == kLSTM ? Row<T>{&lstm_fwd<T, A, R>, &lstm_bwd<T, A, R>} : Row<T>{&gru_fwd<T, A, R>, &gru_bwd<T, A, R>};
    });
  });
  return row;
}

// GRU, reset_after=False, in two halves around the second GEMM. fwd1: r, z = rec(a + y_rz), rh = r ⊙ h_rec.
// fwd2: n = act(a_n + y_n), h_t = n + z (h_{t-1} - n). bwd1 (from gh): dz, dn into dx; gh keeps z ⊙ gh.
// bwd2 (from drh = dn_z W_hn, the gradient wrt rh): dr into dx, dhr = drh ⊙ r (wrt h_rec through rh).
template <typename T>
struct RowRB {
  void (*fwd1)(T* a, const T* y, const T* hr, T* rh, int64_t H);
  void (*fwd2)(T* a, const T* y, const T* hp, T* hn, T* o, int64_t H);
  void (*bwd1)(const T* a, const T* hp, T* gh, T* dx, int64_t H);
  void (*bwd2)(const T* a, const T* hr, const T* drh, T* dx, T* dhr, int64_t H);
};

template <typename T, int ACT, int REC>
void gru_rb_fwd1(T* a, const T* y, const T* hr, T* rh, int64_t H) {
#pragma omp simd
  for (int64_t j = 0; j < H; ++j) {
    const T r = act_v<REC>(a[j] + y[j]), z = act_v<REC>(a[H + j] + y[H + j]);
    a[j] = r, a[H + j] = z;
    rh[j] = r * hr[j];
  }
}

template <typename T, int ACT, int REC>
void gru_rb_fwd2(T* a, const T* y, const T* hp, T* hn, T* o, int64_t H) {
  const T* az = a + H;
  T* an = a + 2 * H;
#pragma omp simd
  for (int64_t j = 0; j < H; ++j) {
    const T n = act_v<ACT>(an[j] + y[j]);
    const T h = n + az[j] * (hp[j] - n);
    an[j] = n;
    hn[j] = h;
    o[j] = h;
  }
}

template <typename T, int ACT, int REC>
void gru_rb_bwd1(const T* a, const T* hp, T* gh, T* dx, int64_t H) {
  const T *az = a + H, *an = a + 2 * H;
#pragma omp simd
  for (int64_t j = 0; j < H; ++j) {
    const T z = az[j], n = an[j], h = gh[j];
    const T direct = h * z;
    dx[2 * H + j] = (h - direct) * dact_v<ACT>(n);
    dx[H + j] = (h * (hp[j] - n)) * dact_v<REC>(z);
    gh[j] = direct;
  }
}

template <typename T, int ACT, int REC>
void gru_rb_bwd2(const T* a, const T* hr, const T* drh, T* dx, T* dhr, int64_t H) {
#pragma omp simd
  for (int64_t j = 0; j < H; ++j) {
    const T r = a[j];
    dx[j] = (drh[j] * hr[j]) * dact_v<REC>(r);
    dhr[j] = drh[j] * r;
  }
}

template <typename T>
RowRB<T> row_rb_for(int64_t act, int64_t rec) {
  RowRB<T> row{};
  with_act(act, [&](auto Ac) {
    with_act(rec, [&](auto Rc) {
      constexpr int A = decltype(Ac)::value, R = decltype(Rc)::value;
      row = {&gru_rb_fwd1<T, A, R>, &gru_rb_fwd2<T, A, R>, &gru_rb_bwd1<T, A, R>, &gru_rb_bwd2<T, A, R>};
    });
  });
  return row;
}

// The optional inputs of a scan, as raw pointers (nullptr when absent).
template <typename T>
struct Opt {
  const T *b, *gain_hh, *shift_hh, *gain_ih, *shift_ih, *drop;
  const uint8_t* live;
};

// Hr[:, t] = Hp[:, t] ⊙ drop: h_{t-1} as W_hh sees it under variational recurrent dropout (B, T, H buffers).
template <typename T>
inline void apply_dropout(const T* Hp, const T* drop, T* Hr, int64_t B, int64_t T_, int64_t H, int64_t t) {
  for (int64_t bb = 0; bb < B; ++bb) {
    const T *h = Hp + (bb * T_ + t) * H, *m = drop + bb * H;
    T* hr = Hr + (bb * T_ + t) * H;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) hr[j] = h[j] * m[j];
  }
}

// ----------------------------------------------------------------------- GRU reset_after=False driver
// As forward/backward above, with the GRU's n gate reading W_hn (r ⊙ h_rec): per step GEMM 1 (W_hrz h_rec),
// the r, z half of the rows, GEMM 2 (W_hn (r ⊙ h_rec)), the n half. Z (T, B, 3H) keeps W_hrz h + b_rz and
// W_hn (r ⊙ h) + b_n with layer norm; X2 (B, T, H) keeps r ⊙ h_rec (W_hn's input, for its gradient).
template <typename T>
std::vector<Tensor> forward_rb(const Tensor& gx, const Tensor& w, const Opt<T>& op, const Tensor& h0, int64_t act,
                               int64_t rec) {
  const int64_t B = gx.size(0), T_ = gx.size(1), G = gx.size(2), H = G / 3;
  const bool ln_hh = op.gain_hh != nullptr, ln_ih = op.gain_ih != nullptr;
  const RowRB<T> row = row_rb_for<T>(act, rec);
  auto opts = gx.options();
  Tensor A = buffer({B, T_, G}, opts), Hp = buffer({B, T_, H}, opts), out = buffer({B, T_, H}, opts);
  Tensor RH = buffer({B, T_, H}, opts), hT = at::empty({B, H}, opts);
  Tensor Hr = op.drop ? buffer({B, T_, H}, opts) : Hp;
  Tensor Z = ln_hh ? buffer({T_, B, G}, opts) : at::empty({1, B, G}, opts);
  Tensor S = buffer({B, T_, 2, 8}, opts);
  Hp.select(1, 0).copy_(h0);
  const Tensor w_rz = w.narrow(0, 0, 2 * H).t(), w_n = w.narrow(0, 2 * H, H).t();
  StepGemm gemm_rz(w_rz, B), gemm_n(w_n, B);
  const int64_t grain = std::max<int64_t>(1, kGrain / G);
  const T* X = gx.data_ptr<T>();
  T *pA = A.data_ptr<T>(), *pH = Hp.data_ptr<T>(), *pO = out.data_ptr<T>(), *pHr = Hr.data_ptr<T>();
  T *pRH = RH.data_ptr<T>(), *phT = hT.data_ptr<T>(), *pZ = Z.data_ptr<T>(), *pS = S.data_ptr<T>();
  const T *g_rz = op.gain_hh, *s_rz = op.shift_hh, *g_n = ln_hh ? op.gain_hh + 2 * H : nullptr;
  const T *s_n = ln_hh ? op.shift_hh + 2 * H : nullptr, *b_n = op.b ? op.b + 2 * H : nullptr;

  for (int64_t t = 0; t < T_; ++t) {
    if (op.drop) apply_dropout(pH, op.drop, pHr, B, T_, H, t);
    const Tensor zt = Z.select(0, ln_hh ? t : 0);
    Tensor z_rz = zt.narrow(1, 0, 2 * H), z_n = zt.narrow(1, 2 * H, H);
    T* z0 = pZ + (ln_hh ? t : 0) * B * G;
    gemm_rz(z_rz, Hr.select(1, t), w_rz);  // W_hrz h_rec
    at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) {
      std::vector<T> ybuf(ln_hh ? 2 * H : 0);
      for (int64_t bb = b0; bb < b1; ++bb) {
        const int64_t r = bb * T_ + t;
        T *a = pA + r * G, *z = z0 + bb * G, *st = pS + r * 16, *rh = pRH + r * H;
        if (op.live && !op.live[r]) {
          std::memset(a, 0, G * sizeof(T));
          std::memset(rh, 0, H * sizeof(T));
          continue;
        }
        const T* x = X + r * G;
        if (ln_ih) {
          ln_stats(x, 3, H, st + 8);
          ln_apply(x, st + 8, op.gain_ih, op.shift_ih, a, 3, H);
        } else {
          std::memcpy(a, x, G * sizeof(T));
        }
        if (op.b) {
#pragma omp simd
          for (int64_t j = 0; j < 2 * H; ++j) z[j] += op.b[j];
        }
        const T* y = z;
        if (ln_hh) {
          ln_stats(z, 2, H, st);
          ln_apply(z, st, g_rz, s_rz, ybuf.data(), 2, H);
          y = ybuf.data();
        }
        row.fwd1(a, y, pHr + r * H, rh, H);
      }
    });
    gemm_n(z_n, RH.select(1, t), w_n);  // W_hn (r ⊙ h_rec)
    at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) {
      std::vector<T> ybuf(ln_hh ? H : 0);
      for (int64_t bb = b0; bb < b1; ++bb) {
        const int64_t r = bb * T_ + t;
        const T* hp = pH + r * H;
        T* hn = t + 1 == T_ ? phT + bb * H : pH + (r + 1) * H;
        T *o = pO + r * H, *zn = z0 + bb * G + 2 * H, *st = pS + r * 16;
        if (op.live && !op.live[r]) {
          std::memcpy(hn, hp, H * sizeof(T));
          std::memset(o, 0, H * sizeof(T));
          continue;
        }
        if (b_n) {
#pragma omp simd
          for (int64_t j = 0; j < H; ++j) zn[j] += b_n[j];
        }
        const T* y = zn;
        if (ln_hh) {
          ln_stats(zn, 1, H, st + 4);
          ln_apply(zn, st + 4, g_n, s_n, ybuf.data(), 1, H);
          y = ybuf.data();
        }
        row.fwd2(pA + r * G, y, hp, hn, o, H);
      }
    });
  }
  return {out, hT, at::empty({0}, opts), A, Hp, at::empty({0}, opts), RH, Hr, Z, S};
}

template <typename T>
std::vector<Tensor> backward_rb(const Tensor& D, const Tensor& dhT, const Tensor& w, const Opt<T>& op,
                                const Tensor& gx, const Tensor& A, const Tensor& Hp, const Tensor& Hr, const Tensor& Z,
                                const Tensor& S, int64_t act, int64_t rec, bool need_h0) {
  const int64_t B = A.size(0), T_ = A.size(1), G = A.size(2), H = G / 3;
  const bool ln_hh = op.gain_hh != nullptr, ln_ih = op.gain_ih != nullptr;
  const RowRB<T> row = row_rb_for<T>(act, rec);
  auto opts = A.options();
  // dx: wrt the gate pre-activations (also wrt y: the reset acts before W_hn); dX wrt gx, dZ wrt the projections
  Tensor dA = ln_hh && ln_ih ? Tensor() : buffer({B, T_, G}, opts);
  Tensor dX = ln_ih ? buffer({B, T_, G}, opts) : dA, dZ = ln_hh ? buffer({B, T_, G}, opts) : dA;
  Tensor dh = dhT.clone(), drh = at::empty({B, H}, opts), dhr = at::empty({B, H}, opts), recb = at::empty({B, H}, opts);
  const int64_t nth = at::get_num_threads();
  Tensor part = at::zeros({nth, 4, ln_hh || ln_ih ? G : 0}, opts);
  Tensor scratch = ln_hh && ln_ih ? at::empty({B, G}, opts) : Tensor();  // this step's dx rows
  const Tensor w_n = w.narrow(0, 2 * H, H), w_rz = w.narrow(0, 0, 2 * H);
  StepGemm gemm_n(w_n, B), gemm_rz(w_rz, B);
  const int64_t grain = std::max<int64_t>(1, kGrain / G);
  const T *pD = D.data_ptr<T>(), *pA = A.data_ptr<T>(), *pH = Hp.data_ptr<T>(), *pHr = Hr.data_ptr<T>();
  const T *pZ = Z.data_ptr<T>(), *pS = S.data_ptr<T>(), *X = gx.data_ptr<T>();
  T *pdX = dX.data_ptr<T>(), *pdZ = dZ.data_ptr<T>(), *pdh = dh.data_ptr<T>(), *ppart = part.data_ptr<T>();
  T *pdrh = drh.data_ptr<T>(), *pdhr = dhr.data_ptr<T>(), *pdA = dA.defined() ? dA.data_ptr<T>() : nullptr;
  T* psc = scratch.defined() ? scratch.data_ptr<T>() : nullptr;
  const T* prec = recb.data_ptr<T>();
  const T *g_rz = op.gain_hh, *g_n = ln_hh ? op.gain_hh + 2 * H : nullptr;
  auto dx_row = [&](int64_t bb, int64_t r) { return pdA ? pdA + r * G : psc + bb * G; };
  auto live = [&](int64_t r) { return !op.live || op.live[r]; };

  for (int64_t t = T_ - 1; t >= 0; --t) {
    at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) {  // z and n halves, the n projection's LN
      T* acc = ppart + std::min<int64_t>(at::get_thread_num(), nth - 1) * 4 * G;
      for (int64_t bb = b0; bb < b1; ++bb) {
        const int64_t r = bb * T_ + t;
        T *dx = dx_row(bb, r), *dz = pdZ + r * G;
        if (!live(r)) {
          std::memset(dx, 0, G * sizeof(T));
          if (dz != dx) std::memset(dz, 0, G * sizeof(T));
          if (pdX != pdA && pdX + r * G != dx) std::memset(pdX + r * G, 0, G * sizeof(T));
          continue;
        }
        T* gh = pdh + bb * H;
        const T* d = pD + r * H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) gh[j] += d[j];
        row.bwd1(pA + r * G, pH + r * H, gh, dx, H);
        if (ln_hh)
          ln_backward(dx + 2 * H, pZ + (t * B + bb) * G + 2 * H, pS + r * 16 + 4, g_n, dz + 2 * H, acc + 2 * H,
                      acc + G + 2 * H, 1, H);
        else if (dz != dx)
          std::memcpy(dz + 2 * H, dx + 2 * H, H * sizeof(T));
      }
    });
    gemm_n(drh, dZ.select(1, t).narrow(1, 2 * H, H), w_n);  // wrt r ⊙ h_rec
    at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) {  // r half, the rz projection's and gx's LN
      T* acc = ppart + std::min<int64_t>(at::get_thread_num(), nth - 1) * 4 * G;
      for (int64_t bb = b0; bb < b1; ++bb) {
        const int64_t r = bb * T_ + t;
        if (!live(r)) continue;
        T *dx = dx_row(bb, r), *dz = pdZ + r * G;
        row.bwd2(pA + r * G, pHr + r * H, pdrh + bb * H, dx, pdhr + bb * H, H);
        if (ln_hh)
          ln_backward(dx, pZ + (t * B + bb) * G, pS + r * 16, g_rz, dz, acc, acc + G, 2, H);
        else if (dz != dx)
          std::memcpy(dz, dx, 2 * H * sizeof(T));
        if (ln_ih) ln_backward(dx, X + r * G, pS + r * 16 + 8, op.gain_ih, pdX + r * G, acc + 2 * G, acc + 3 * G, 3, H);
      }
    });
    if (t == 0 && !need_h0) break;
    gemm_rz(recb, dZ.select(1, t).narrow(1, 0, 2 * H), w_rz);  // wrt h_rec through r, z
    for (int64_t bb = 0; bb < B; ++bb) {
      if (!live(bb * T_ + t)) continue;
      T* gh = pdh + bb * H;
      const T *rc = prec + bb * H, *hx = pdhr + bb * H;
      if (op.drop) {
        const T* m = op.drop + bb * H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) gh[j] += (rc[j] + hx[j]) * m[j];
      } else {
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) gh[j] += rc[j] + hx[j];
      }
    }
  }
  return {dX, dZ, dh, at::empty({0}, opts), part.sum(0)};
}

// ---------------------------------------------------------------------------------------------- forward
template <typename T>
std::vector<Tensor> forward(int64_t kind, const Tensor& gx, const Tensor& w, const Opt<T>& op, const Tensor& h0,
                            const Tensor& c0, int64_t act, int64_t rec) {
  if (kind == kGRUrb) return forward_rb<T>(gx, w, op, h0, act, rec);
  const int64_t B = gx.size(0), T_ = gx.size(1), G = gx.size(2), nb = num_gates(kind), H = G / nb;
  const bool ln_hh = op.gain_hh != nullptr, ln_ih = op.gain_ih != nullptr, lstm = kind == kLSTM;
  const Row<T> row = row_for<T>(kind, act, rec);
  auto opts = gx.options();
  Tensor A = buffer({B, T_, G}, opts), Hp = buffer({B, T_, H}, opts), out = buffer({B, T_, H}, opts);
  Tensor Cp = lstm ? buffer({B, T_, H}, opts) : at::empty({0}, opts);
  Tensor X2 = kind == kRNN ? at::empty({0}, opts) : buffer({B, T_, H}, opts);
  Tensor hT = at::empty({B, H}, opts), cT = at::empty({lstm ? B : 0, H}, opts);
  Tensor Hr = op.drop ? buffer({B, T_, H}, opts) : Hp;
  // Z: W_hh h + b_hh, kept time-major (T, B, G) with layer norm so that each step's GEMM writes one
  // contiguous block (a strided output costs the GEMM a TLB miss per row); else one step's worth.
  Tensor Z = ln_hh ? buffer({T_, B, G}, opts) : at::empty({B, G}, opts);
  Tensor S = buffer({B, T_, 2, 8}, opts);
  Hp.select(1, 0).copy_(h0);
  if (lstm) Cp.select(1, 0).copy_(c0);
  const Tensor wt = w.t();
  StepGemm gemm(wt, B);
  const int64_t grain = std::max<int64_t>(1, kGrain / G);
  const std::vector<T> zeros(G, T(0));
  const T* X = gx.data_ptr<T>();
  T *pA = A.data_ptr<T>(), *pH = Hp.data_ptr<T>(), *pO = out.data_ptr<T>(), *pHr = Hr.data_ptr<T>();
  T *pC = lstm ? Cp.data_ptr<T>() : nullptr, *pX2 = X2.numel() ? X2.data_ptr<T>() : nullptr;
  T *phT = hT.data_ptr<T>(), *pcT = lstm ? cT.data_ptr<T>() : nullptr, *pZ = Z.data_ptr<T>(), *pS = S.data_ptr<T>();

  for (int64_t t = 0; t < T_; ++t) {
    if (op.drop) apply_dropout(pH, op.drop, pHr, B, T_, H, t);
    Tensor zt = ln_hh ? Z.select(0, t) : Z;
    gemm(zt, Hr.select(1, t), wt);  // W_hh h_{t-1} for every row
    T* z0 = ln_hh ? pZ + t * B * G : pZ;
    at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) {
      std::vector<T> ybuf(ln_hh ? G : 0);
      for (int64_t bb = b0; bb < b1; ++bb) {
        const int64_t r = bb * T_ + t;
        const bool last = t + 1 == T_;
        const T *hp = pH + r * H, *x = X + r * G, *cp = lstm ? pC + r * H : nullptr;
        T* hn = last ? phT + bb * H : pH + (r + 1) * H;
        T* cn = lstm ? (last ? pcT + bb * H : pC + (r + 1) * H) : nullptr;
        T *o = pO + r * H, *a = pA + r * G, *z = z0 + bb * G, *st = pS + r * 16;
        if (op.live && !op.live[r]) {  // finished sequence: the state carries over, the output is 0
          std::memcpy(hn, hp, H * sizeof(T));
          if (lstm) std::memcpy(cn, cp, H * sizeof(T));
          std::memset(o, 0, H * sizeof(T));
          std::memset(a, 0, G * sizeof(T));
          if (pX2) std::memset(pX2 + r * H, 0, H * sizeof(T));
          continue;
        }
        if (op.b) {
#pragma omp simd
          for (int64_t j = 0; j < G; ++j) z[j] += op.b[j];
        }
        const T* y = z;
        if (ln_ih) ln_stats(x, nb, H, st + 8);
        if (ln_hh) ln_stats(z, nb, H, st);  // z (with its bias) stays in Z for the backward pass
        if (ln_ih && ln_hh && kind != kGRU) {  // the gates add the two parts: a = LN(x) + LN(z), y = 0
          ln_apply_sum(x, st + 8, op.gain_ih, op.shift_ih, z, st, op.gain_hh, op.shift_hh, a, nb, H);
          y = zeros.data();
        } else {
          if (ln_ih)
            ln_apply(x, st + 8, op.gain_ih, op.shift_ih, a, nb, H);
          else
            std::memcpy(a, x, G * sizeof(T));
          if (ln_hh) {
            ln_apply(z, st, op.gain_hh, op.shift_hh, ybuf.data(), nb, H);
            y = ybuf.data();
          }
        }
        row.fwd(a, y, hp, cp, hn, cn, o, pX2 ? pX2 + r * H : nullptr, H);
      }
    });
  }
  return {out, hT, cT, A, Hp, Cp, X2, Hr, Z, S};
}

// --------------------------------------------------------------------------------------------- backward
// D (B, T, H): gradient wrt the outputs; dhT, dcT (B, H): wrt the final state. Returns dX (B, T, G) wrt gx,
// dZ (B, T, G) wrt W_hh h + b_hh (dX itself where they are equal), dh0, dc0, and sums (4, G): the gradients
// of the recurrent layer norm's gain and shift and of the input one's ((4, 0) without layer norm). The
// weight and bias gradients are single matmuls/sums over dZ that the caller takes.
template <typename T>
std::vector<Tensor> backward(int64_t kind, const Tensor& D, const Tensor& dhT, const Tensor& dcT, const Tensor& w,
                             const Opt<T>& op, const Tensor& gx, const Tensor& A, const Tensor& Hp, const Tensor& Cp,
                             const Tensor& X2, const Tensor& Z, const Tensor& S, int64_t act, int64_t rec,
                             bool need_h0) {
  if (kind == kGRUrb) return backward_rb<T>(D, dhT, w, op, gx, A, Hp, Cp /* Hr, for this kind */, Z, S, act, rec, need_h0);
  const int64_t B = A.size(0), T_ = A.size(1), G = A.size(2), nb = num_gates(kind), H = G / nb;
  const bool ln_hh = op.gain_hh != nullptr, ln_ih = op.gain_ih != nullptr, lstm = kind == kLSTM;
  const bool shared = kind != kGRU && !ln_hh && !ln_ih;  // dX and dZ are one tensor
  const Row<T> row = row_for<T>(kind, act, rec);
  auto opts = A.options();
  Tensor dX = buffer({B, T_, G}, opts), dZ = shared ? dX : buffer({B, T_, G}, opts);
  Tensor dh = dhT.clone(), dc = lstm ? dcT.clone() : at::empty({0}, opts), recb = at::empty({B, H}, opts);
  const int64_t nth = at::get_num_threads();
  Tensor part = at::zeros({nth, 4, ln_hh || ln_ih ? G : 0}, opts);  // per thread: LN gain/shift sums
  const int64_t grain = std::max<int64_t>(1, kGrain / G);
  const T *pD = D.data_ptr<T>(), *pA = A.data_ptr<T>(), *pH = Hp.data_ptr<T>(), *X = gx.data_ptr<T>();
  const T *pC = lstm ? Cp.data_ptr<T>() : nullptr, *pX2 = X2.numel() ? X2.data_ptr<T>() : nullptr;
  const T *pZ = Z.data_ptr<T>(), *pS = S.data_ptr<T>();
  T *pdX = dX.data_ptr<T>(), *pdZ = dZ.data_ptr<T>(), *pdh = dh.data_ptr<T>();
  T *pdc = lstm ? dc.data_ptr<T>() : nullptr, *ppart = part.data_ptr<T>();
  const T* prec = recb.data_ptr<T>();
  StepGemm gemm(w, B);

  for (int64_t t = T_ - 1; t >= 0; --t) {
    at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) {
      std::vector<T> xbuf(ln_ih ? G : 0), ybuf(ln_hh ? G : 0);
      T* acc = ppart + std::min<int64_t>(at::get_thread_num(), nth - 1) * 4 * G;
      for (int64_t bb = b0; bb < b1; ++bb) {
        const int64_t r = bb * T_ + t;
        T *dx = pdX + r * G, *dz = pdZ + r * G;
        if (op.live && !op.live[r]) {  // a finished step: nothing flows into its gates
          std::memset(dx, 0, G * sizeof(T));
          if (dz != dx) std::memset(dz, 0, G * sizeof(T));
          continue;
        }
        T* gh = pdh + bb * H;
        const T* d = pD + r * H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) gh[j] += d[j];
        T* px = ln_ih ? xbuf.data() : dx;
        T* py = ln_hh ? ybuf.data() : dz;
        row.bwd(pA + r * G, pH + r * H, lstm ? pC + r * H : nullptr, pX2 ? pX2 + r * H : nullptr, gh,
                lstm ? pdc + bb * H : nullptr, px, py, H);
        const T* st = pS + r * 16;
        if (ln_hh && ln_ih) {
          ln_backward_pair(py, pZ + (t * B + bb) * G, st, op.gain_hh, dz, px, X + r * G, st + 8, op.gain_ih, dx, acc,
                           nb, H);
        } else if (ln_hh) {
          ln_backward(py, pZ + (t * B + bb) * G, st, op.gain_hh, dz, acc, acc + G, nb, H);
        } else if (ln_ih) {
          ln_backward(px, X + r * G, st + 8, op.gain_ih, dx, acc + 2 * G, acc + 3 * G, nb, H);
        }
      }
    });
    if (t == 0 && !need_h0) break;
    gemm(recb, dZ.select(1, t), w);  // wrt h_{t-1} as W_hh saw it
    for (int64_t bb = 0; bb < B; ++bb) {
      if (op.live && !op.live[bb * T_ + t]) continue;  // the gradient passes a finished step unchanged
      T* gh = pdh + bb * H;
      const T* rc = prec + bb * H;
      if (op.drop) {
        const T* m = op.drop + bb * H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) gh[j] += rc[j] * m[j];
      } else {
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) gh[j] += rc[j];
      }
    }
  }
  return {dX, dZ, dh, dc, part.sum(0)};
}

#define RNNKIT_INSTANTIATE(EXTERN, T)                                                                             \
  EXTERN template std::vector<Tensor> forward<T>(int64_t, const Tensor&, const Tensor&, const Opt<T>&,            \
                                                 const Tensor&, const Tensor&, int64_t, int64_t);                 \
  EXTERN template std::vector<Tensor> backward<T>(int64_t, const Tensor&, const Tensor&, const Tensor&,           \
                                                  const Tensor&, const Opt<T>&, const Tensor&, const Tensor&,     \
                                                  const Tensor&, const Tensor&, const Tensor&, const Tensor&,     \
                                                  const Tensor&, int64_t, int64_t, bool);

}  // namespace rnnkit_native
