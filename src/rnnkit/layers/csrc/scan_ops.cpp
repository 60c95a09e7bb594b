// The torch ops of rnnkit's native scan: argument checks and the float/double dispatch (see scan.h).
#include <torch/library.h>

#include "scan.h"

namespace rnnkit_native {
RNNKIT_INSTANTIATE(extern, float)
RNNKIT_INSTANTIATE(extern, double)

namespace {

using OptT = c10::optional<Tensor>;

template <typename T>
const T* ptr(const OptT& t) {
  return t.has_value() && t->defined() && t->numel() ? t->data_ptr<T>() : nullptr;
}

template <typename T>
Opt<T> options(const OptT& b, const OptT& gain_hh, const OptT& shift_hh, const OptT& gain_ih, const OptT& shift_ih,
               const OptT& drop, const OptT& active) {
  const uint8_t* live = active.has_value() && active->numel() ? active->data_ptr<uint8_t>() : nullptr;
  return {ptr<T>(b), ptr<T>(gain_hh), ptr<T>(shift_hh), ptr<T>(gain_ih), ptr<T>(shift_ih), ptr<T>(drop), live};
}

void check(int64_t kind, const Tensor& gx, const std::vector<OptT>& extra) {
  TORCH_CHECK(kind >= 0 && kind <= 3, "rnnkit native scan: unknown cell kind ", kind);
  TORCH_CHECK(gx.device().is_cpu() && gx.is_contiguous() && gx.dim() == 3 && gx.size(2) % num_gates(kind) == 0,
              "rnnkit native scan: gx must be a contiguous CPU tensor (B, T, G*H)");
  TORCH_CHECK(gx.scalar_type() == at::kFloat || gx.scalar_type() == at::kDouble,
              "rnnkit native scan: float32 or float64 only");
  for (const auto& t : extra)
    TORCH_CHECK(!t.has_value() || (t->is_contiguous() && (t->scalar_type() == gx.scalar_type() ||
                                                           t->scalar_type() == at::kByte)),
                "rnnkit native scan: optional inputs must be contiguous and of gx's dtype");
}

// w: gx's dtype, or bfloat16 with float32 gx (the mixed-precision mode: bf16 step GEMMs, float gates).
void check_weight(const Tensor& gx, const Tensor& w) {
  const bool mixed = w.scalar_type() == at::kBFloat16 && gx.scalar_type() == at::kFloat;
  TORCH_CHECK(w.scalar_type() == gx.scalar_type() || mixed,
              "rnnkit native scan: w must be of gx's dtype, or bfloat16 with float32 gx");
}

std::vector<Tensor> scan_forward(int64_t kind, const Tensor& gx, const Tensor& w, const OptT& b, const OptT& gain_hh,
                                 const OptT& shift_hh, const OptT& gain_ih, const OptT& shift_ih, const OptT& drop,
                                 const OptT& active, const Tensor& h0, const Tensor& c0, int64_t act, int64_t rec) {
  check(kind, gx, {b, gain_hh, shift_hh, gain_ih, shift_ih, drop, active});
  check_weight(gx, w);
  at::NoGradGuard no_grad;
  if (gx.scalar_type() == at::kDouble)
    return forward<double>(kind, gx, w, options<double>(b, gain_hh, shift_hh, gain_ih, shift_ih, drop, active), h0,
                           c0, act, rec);
  return forward<float>(kind, gx, w, options<float>(b, gain_hh, shift_hh, gain_ih, shift_ih, drop, active), h0, c0,
                        act, rec);
}

std::vector<Tensor> scan_backward(int64_t kind, const Tensor& D, const Tensor& dhT, const Tensor& dcT, const Tensor& w,
                                  const OptT& gain_hh, const OptT& gain_ih, const OptT& drop, const OptT& active,
                                  const Tensor& gx, const Tensor& A, const Tensor& Hp, const Tensor& Cp,
                                  const Tensor& X2, const Tensor& Z, const Tensor& S, int64_t act, int64_t rec,
                                  bool need_h0) {
  check(kind, A, {gain_hh, gain_ih, drop, active});
  check_weight(A, w);
  at::NoGradGuard no_grad;
  const OptT none;
  if (A.scalar_type() == at::kDouble)
    return backward<double>(kind, D, dhT, dcT, w, options<double>(none, gain_hh, none, gain_ih, none, drop, active),
                            gx, A, Hp, Cp, X2, Z, S, act, rec, need_h0);
  return backward<float>(kind, D, dhT, dcT, w, options<float>(none, gain_hh, none, gain_ih, none, drop, active), gx,
                         A, Hp, Cp, X2, Z, S, act, rec, need_h0);
}

}  // namespace
}  // namespace rnnkit_native

TORCH_LIBRARY(rnnkit_native, m) {
  m.def(
      "scan_forward(int kind, Tensor gx, Tensor w, Tensor? b, Tensor? gain_hh, Tensor? shift_hh, Tensor? gain_ih, "
      "Tensor? shift_ih, Tensor? drop, Tensor? active, Tensor h0, Tensor c0, int act, int rec) -> Tensor[]");
  m.def(
      "scan_backward(int kind, Tensor D, Tensor dhT, Tensor dcT, Tensor w, Tensor? gain_hh, Tensor? gain_ih, "
      "Tensor? drop, Tensor? active, Tensor gx, Tensor A, Tensor Hp, Tensor Cp, Tensor X2, Tensor Z, Tensor S, "
      "int act, int rec, bool need_h0) -> Tensor[]");
  m.def("empty_cache() -> int", &rnnkit_native::empty_cache);
  m.impl("scan_forward", c10::DispatchKey::CPU, TORCH_FN(rnnkit_native::scan_forward));
  m.impl("scan_backward", c10::DispatchKey::CPU, TORCH_FN(rnnkit_native::scan_backward));
}
