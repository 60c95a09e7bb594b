// The torch ops of rnnkit's native LSTM kernel: argument checks and the float/double dispatch (see lstm.h).
#include <torch/library.h>

#include "lstm.h"

namespace rnnkit_native {
RNNKIT_INSTANTIATE(extern, float)
RNNKIT_INSTANTIATE(extern, double)

namespace {

Tensor opt(const c10::optional<Tensor>& t) { return t.has_value() ? t.value() : Tensor(); }

template <typename T>
const T* ptr(const c10::optional<Tensor>& t) {
  return t.has_value() && t->defined() && t->numel() ? t->data_ptr<T>() : nullptr;
}

template <typename T>
Opt<T> options(const c10::optional<Tensor>& b, const c10::optional<Tensor>& gain_hh,
               const c10::optional<Tensor>& shift_hh, const c10::optional<Tensor>& gain_ih,
               const c10::optional<Tensor>& shift_ih, const c10::optional<Tensor>& drop,
               const c10::optional<Tensor>& active) {
  const uint8_t* live = active.has_value() && active->numel() ? active->data_ptr<uint8_t>() : nullptr;
  return {ptr<T>(b), ptr<T>(gain_hh), ptr<T>(shift_hh), ptr<T>(gain_ih), ptr<T>(shift_ih), ptr<T>(drop), live};
}

void check(const Tensor& gx, const std::vector<c10::optional<Tensor>>& extra) {
  TORCH_CHECK(gx.device().is_cpu() && gx.is_contiguous() && gx.dim() == 3 && gx.size(2) % 4 == 0,
              "rnnkit native lstm: gx must be a contiguous CPU tensor (B, T, 4H)");
  TORCH_CHECK(gx.scalar_type() == at::kFloat || gx.scalar_type() == at::kDouble,
              "rnnkit native lstm: float32 or float64 only");
  for (const auto& t : extra)
    TORCH_CHECK(!t.has_value() || (t->is_contiguous() && (t->scalar_type() == gx.scalar_type() ||
                                                           t->scalar_type() == at::kByte)),
                "rnnkit native lstm: optional inputs must be contiguous and of gx's dtype");
}

std::vector<Tensor> lstm_forward(const Tensor& gx, const Tensor& w, const c10::optional<Tensor>& b,
                                 const c10::optional<Tensor>& gain_hh, const c10::optional<Tensor>& shift_hh,
                                 const c10::optional<Tensor>& gain_ih, const c10::optional<Tensor>& shift_ih,
                                 const c10::optional<Tensor>& drop, const c10::optional<Tensor>& active,
                                 const Tensor& h0, const Tensor& c0, int64_t act, int64_t rec) {
  check(gx, {b, gain_hh, shift_hh, gain_ih, shift_ih, drop, active});
  at::NoGradGuard no_grad;
  if (gx.scalar_type() == at::kDouble)
    return forward<double>(gx, w, options<double>(b, gain_hh, shift_hh, gain_ih, shift_ih, drop, active), h0, c0,
                           act, rec);
  return forward<float>(gx, w, options<float>(b, gain_hh, shift_hh, gain_ih, shift_ih, drop, active), h0, c0, act,
                        rec);
}

std::vector<Tensor> lstm_backward(const Tensor& D, const Tensor& dhT, const Tensor& dcT, const Tensor& w,
                                  const c10::optional<Tensor>& gain_hh, const c10::optional<Tensor>& gain_ih,
                                  const c10::optional<Tensor>& drop, const c10::optional<Tensor>& active,
                                  const Tensor& gx, const Tensor& A, const Tensor& Cp, const Tensor& TC, const Tensor& Z,
                                  const Tensor& S, int64_t act, int64_t rec, bool need_h0) {
  check(A, {gain_hh, gain_ih, drop, active});
  at::NoGradGuard no_grad;
  const c10::optional<Tensor> none;
  if (A.scalar_type() == at::kDouble)
    return backward<double>(D, dhT, dcT, w, options<double>(none, gain_hh, none, gain_ih, none, drop, active), gx, A,
                            Cp, TC, Z, S, act, rec, need_h0);
  return backward<float>(D, dhT, dcT, w, options<float>(none, gain_hh, none, gain_ih, none, drop, active), gx, A, Cp,
                         TC, Z, S, act, rec, need_h0);
}

}  // namespace
}  // namespace rnnkit_native

TORCH_LIBRARY(rnnkit_native, m) {
  m.def(
      "lstm_forward(Tensor gx, Tensor w, Tensor? b, Tensor? gain_hh, Tensor? shift_hh, Tensor? gain_ih, "
      "Tensor? shift_ih, Tensor? drop, Tensor? active, Tensor h0, Tensor c0, int act, int rec) -> Tensor[]");
  m.def(
      "lstm_backward(Tensor D, Tensor dhT, Tensor dcT, Tensor w, Tensor? gain_hh, Tensor? gain_ih, Tensor? drop, "
      "Tensor? active, Tensor gx, Tensor A, Tensor Cp, Tensor TC, Tensor Z, Tensor S, int act, int rec, "
      "bool need_h0) -> Tensor[]");
  m.def("empty_cache() -> int", &rnnkit_native::empty_cache);
  m.impl("lstm_forward", c10::DispatchKey::CPU, TORCH_FN(rnnkit_native::lstm_forward));
  m.impl("lstm_backward", c10::DispatchKey::CPU, TORCH_FN(rnnkit_native::lstm_backward));
}
