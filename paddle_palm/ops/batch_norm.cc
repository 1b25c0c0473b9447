// Training-mode batch norm fused with ReLU (and the residual add), channels-last or NCHW.
//
// In a ResNet step on a CPU, after the oneDNN convolutions, Paddle's batch norm, ReLU and
// add kernels are what is left (docs/BENCHMARKS.md 3.4): each is a separate pass over a
// large activation, forward and backward.  This file computes
//
//     y = relu(scale * (x - mean) / sqrt(var + eps) + bias [+ z])
//
// for an NHWC tensor x (seen as M = N*H*W rows of C channels; NCHW below), its statistics, the running
// mean and variance update, and the gradients of x, scale, bias (and z), in two passes each
// way.  oneDNN's own NHWC batch norm was tried first and gave wrong input gradients with 2
// threads (a barrier inside its parallel region); these loops have no barrier: every
// parallel loop writes disjoint memory, and the per-channel sums are reduced by one thread.
//
// Deterministic whatever the thread count: the rows are cut into fixed chunks of 64 (a
// function of M only), each chunk sums its rows into its own slot, and the slots are added
// in chunk order in double precision.
//
// Threads: OpenMP, linked to Paddle's Intel OpenMP runtime (libiomp5) like its oneDNN.

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "paddle/extension.h"

namespace {

constexpr int64_t kRowsPerChunk = 64;

// The rows cut into fixed chunks (a function of the row count only, never of the threads).
struct Tiles {
  int64_t rows, channels, chunks;
  Tiles(int64_t m, int64_t c) : rows(m), channels(c), chunks((m + kRowsPerChunk - 1) / kRowsPerChunk) {}
};

void check_input(const paddle::Tensor& t, const char* what) {
  PD_CHECK(t.is_cpu(), "palm_batch_norm: the ", what, " must be on the CPU");
  PD_CHECK(t.dtype() == paddle::DataType::FLOAT32, "palm_batch_norm: the ", what, " must be float32");
}

int64_t channels_of(const paddle::Tensor& x) {
  PD_CHECK(x.shape().size() >= 2, "palm_batch_norm: expects an N...C (channels-last) input");
  return x.shape().back();
}

// Per-channel sums over all rows, deterministic: each chunk of 64 rows sums its rows into
// its own slot in float (vectorised; a relative error of about 1e-7 per chunk), and the
// slots are added in chunk order in double.  `Sums::add(r, a, b)` adds row r's
// contributions to a[C], b[C].
template <typename Sums>
void channel_sums(const Tiles& t, const Sums& sums, std::vector<double>* sum_a, std::vector<double>* sum_b) {
  std::vector<float> part_a(t.chunks * t.channels, 0.0f), part_b(t.chunks * t.channels, 0.0f);
#pragma omp parallel for schedule(static)
  for (int64_t chunk = 0; chunk < t.chunks; ++chunk) {
    float* a = part_a.data() + chunk * t.channels;
    float* b = part_b.data() + chunk * t.channels;
    const int64_t r1 = std::min(t.rows, (chunk + 1) * kRowsPerChunk);
    for (int64_t r = chunk * kRowsPerChunk; r < r1; ++r) sums.add(r, a, b);
  }
  sum_a->assign(t.channels, 0.0);
  sum_b->assign(t.channels, 0.0);
  for (int64_t chunk = 0; chunk < t.chunks; ++chunk) {
    const float* a = part_a.data() + chunk * t.channels;
    const float* b = part_b.data() + chunk * t.channels;
    for (int64_t c = 0; c < t.channels; ++c) {
      (*sum_a)[c] += a[c];
      (*sum_b)[c] += b[c];
    }
  }
}

// Forward statistics: sums of (x - shift) and its square, shift = the first row (so that
// the variance keeps its precision when the mean is large compared to the spread).
struct MomentSums {
  const float* x;
  const float* shift;
  int64_t channels;
  void add(int64_t r, float* __restrict a, float* __restrict b) const {
    const int64_t n = channels;
    const float* __restrict row = x + r * channels;
    const float* __restrict s = shift;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      const float v = row[i] - s[i];
      a[i] += v;
      b[i] += v * v;
    }
  }
};

// Backward statistics: sums of g and g * (x - mean), g = dy where the ReLU passed.
template <bool kRelu>
struct GradientSums {
  const float* x;
  const float* y;
  const float* dy;
  const float* mean;
  int64_t channels;
  void add(int64_t r, float* __restrict a, float* __restrict b) const {
    const int64_t n = channels;
    const int64_t offset = r * channels;
    const float* __restrict xr = x + offset;
    const float* __restrict yr = y + offset;
    const float* __restrict dr = dy + offset;
    const float* __restrict mu = mean;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      const float g = (!kRelu || yr[i] > 0.0f) ? dr[i] : 0.0f;
      a[i] += g;
      b[i] += g * (xr[i] - mu[i]);
    }
  }
};

// ---------------------------------------------------------------------------- NCHW
//
// x is N images of C planes of P = H*W values.  Each thread owns whole channels: it sums a
// channel's planes (in float within a plane, in double across planes, always in the same
// order, so the result does not depend on the thread count), then normalises or
// back-propagates that channel while its planes are still in cache.

struct Planes {
  int64_t images, channels, pixels;
  explicit Planes(const paddle::Tensor& x)
      : images(x.shape()[0]), channels(x.shape()[1]), pixels(x.numel() / (x.shape()[0] * x.shape()[1])) {}
  int64_t offset(int64_t n, int64_t c) const { return (n * channels + c) * pixels; }
};

void ForwardNchw(const paddle::Tensor& x, const float* S, const float* B, float* running_mean,
                 float* running_var, const float* Z, float momentum, float epsilon, bool relu, float* Y,
                 float* saved_mean, float* saved_inv_std) {
  const Planes pl(x);
  const float* X = x.data<float>();
  const double count = static_cast<double>(pl.images * pl.pixels);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < pl.channels; ++c) {
    const float shift = X[pl.offset(0, c)];  // keeps the variance precise when |mean| >> spread
    double sum = 0.0, sum_sq = 0.0;
    for (int64_t n = 0; n < pl.images; ++n) {
      const float* __restrict xp = X + pl.offset(n, c);
      float a = 0.0f, b = 0.0f;
#pragma omp simd reduction(+ : a, b)
      for (int64_t i = 0; i < pl.pixels; ++i) {
        const float v = xp[i] - shift;
        a += v;
        b += v * v;
      }
      sum += a;
      sum_sq += b;
    }
    const double shifted_mean = sum / count;
    const double mu = shift + shifted_mean;
    const double var = std::max(0.0, sum_sq / count - shifted_mean * shifted_mean);  // biased, as Paddle's
    const double inv_std = 1.0 / std::sqrt(var + static_cast<double>(epsilon));
    saved_mean[c] = static_cast<float>(mu);
    saved_inv_std[c] = static_cast<float>(inv_std);
    running_mean[c] = static_cast<float>(momentum * running_mean[c] + (1.0 - momentum) * mu);
    running_var[c] = static_cast<float>(momentum * running_var[c] + (1.0 - momentum) * var);
    const float a = static_cast<float>(S[c] * inv_std);
    const float b = static_cast<float>(B[c] - mu * S[c] * inv_std);
    for (int64_t n = 0; n < pl.images; ++n) {
      const int64_t o = pl.offset(n, c);
      const float* __restrict xp = X + o;
      const float* __restrict zp = Z ? Z + o : nullptr;
      float* __restrict yp = Y + o;
      if (zp) {
#pragma omp simd
        for (int64_t i = 0; i < pl.pixels; ++i) {
          const float v = xp[i] * a + b + zp[i];
          yp[i] = (relu && !(v > 0.0f)) ? 0.0f : v;
        }
      } else {
#pragma omp simd
        for (int64_t i = 0; i < pl.pixels; ++i) {
          const float v = xp[i] * a + b;
          yp[i] = (relu && !(v > 0.0f)) ? 0.0f : v;
        }
      }
    }
  }
}

void BackwardNchw(const paddle::Tensor& x, const float* S, const float* Y, const float* MU, const float* IS,
                  const float* DY, bool relu, float* DX, float* DZ, float* dscale, float* dbias) {
  const Planes pl(x);
  const float* X = x.data<float>();
  const double count = static_cast<double>(pl.images * pl.pixels);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < pl.channels; ++c) {
    const float mu = MU[c];
    double sum_g = 0.0, sum_gx = 0.0;
    for (int64_t n = 0; n < pl.images; ++n) {
      const int64_t o = pl.offset(n, c);
      const float* __restrict xp = X + o;
      const float* __restrict yp = Y + o;
      const float* __restrict dp = DY + o;
      float a = 0.0f, b = 0.0f;
#pragma omp simd reduction(+ : a, b)
      for (int64_t i = 0; i < pl.pixels; ++i) {
        const float g = (relu && !(yp[i] > 0.0f)) ? 0.0f : dp[i];
        a += g;
        b += g * (xp[i] - mu);
      }
      sum_g += a;
      sum_gx += b;
    }
    // dx = scale * inv_std * (g - mean(g) - xhat * mean(g * xhat)) = k1 * g + k2 * x + k3.
    const double inv_std = IS[c];
    const double d_scale = sum_gx * inv_std;
    dscale[c] = static_cast<float>(d_scale);
    dbias[c] = static_cast<float>(sum_g);
    const double k = S[c] * inv_std;
    const double slope = -k * inv_std * d_scale / count;
    const float k1 = static_cast<float>(k);
    const float k2 = static_cast<float>(slope);
    const float k3 = static_cast<float>(-k * sum_g / count - slope * mu);
    for (int64_t n = 0; n < pl.images; ++n) {
      const int64_t o = pl.offset(n, c);
      const float* __restrict xp = X + o;
      const float* __restrict yp = Y + o;
      const float* __restrict dp = DY + o;
      float* __restrict out = DX + o;
      float* __restrict zp = DZ ? DZ + o : nullptr;
#pragma omp simd
      for (int64_t i = 0; i < pl.pixels; ++i) {
        const float g = (relu && !(yp[i] > 0.0f)) ? 0.0f : dp[i];
        out[i] = k1 * g + k2 * xp[i] + k3;
      }
      if (zp) {
#pragma omp simd
        for (int64_t i = 0; i < pl.pixels; ++i) zp[i] = (relu && !(yp[i] > 0.0f)) ? 0.0f : dp[i];
      }
    }
  }
}

std::vector<paddle::Tensor> Forward(const paddle::Tensor& x, const paddle::Tensor& scale,
                                    const paddle::Tensor& bias, const paddle::Tensor& mean,
                                    const paddle::Tensor& variance, const paddle::Tensor* residual,
                                    float momentum, float epsilon, bool relu, bool channels_last) {
  check_input(x, "input");
  check_input(scale, "scale");
  check_input(bias, "bias");
  check_input(mean, "running mean");
  check_input(variance, "running variance");
  PD_CHECK(channels_last || x.shape().size() >= 3, "palm_batch_norm: expects an NC... (channels-first) input");
  const int64_t C = channels_last ? channels_of(x) : x.shape()[1];
  const int64_t M = x.numel() / C;
  PD_CHECK(M > 0, "palm_batch_norm: empty input");
  PD_CHECK(scale.numel() == C && bias.numel() == C && mean.numel() == C && variance.numel() == C,
           "palm_batch_norm: scale, bias, mean and variance must have ", C, " values (the input's last axis)");
  if (residual) {
    check_input(*residual, "residual");
    PD_CHECK(residual->shape() == x.shape(), "palm_batch_norm: the residual must have the input's shape");
  }
  auto y = paddle::empty(x.shape(), paddle::DataType::FLOAT32, paddle::CPUPlace());
  auto saved_mean = paddle::empty({C}, paddle::DataType::FLOAT32, paddle::CPUPlace());
  auto saved_inv_std = paddle::empty({C}, paddle::DataType::FLOAT32, paddle::CPUPlace());
  // The running statistics are updated in place, as Paddle's batch_norm does (they are
  // buffers: no gradient flows through them).
  float* running_mean = const_cast<float*>(mean.data<float>());
  float* running_var = const_cast<float*>(variance.data<float>());
  const float* S = scale.data<float>();
  const float* B = bias.data<float>();
  if (!channels_last) {
    ForwardNchw(x, S, B, running_mean, running_var, residual ? residual->data<float>() : nullptr, momentum,
                epsilon, relu, y.data<float>(), saved_mean.data<float>(), saved_inv_std.data<float>());
    return {y, saved_mean, saved_inv_std};
  }
  const Tiles t(M, C);
  const float* X = x.data<float>();
  std::vector<double> sum, sum_sq;
  channel_sums(t, MomentSums{X, X, C}, &sum, &sum_sq);
  std::vector<float> a(C), b(C);
  for (int64_t c = 0; c < C; ++c) {
    const double shifted_mean = sum[c] / M;
    const double mu = X[c] + shifted_mean;
    const double var = std::max(0.0, sum_sq[c] / M - shifted_mean * shifted_mean);  // biased, as Paddle's
    const double inv_std = 1.0 / std::sqrt(var + static_cast<double>(epsilon));
    saved_mean.data<float>()[c] = static_cast<float>(mu);
    saved_inv_std.data<float>()[c] = static_cast<float>(inv_std);
    running_mean[c] = static_cast<float>(momentum * running_mean[c] + (1.0 - momentum) * mu);
    running_var[c] = static_cast<float>(momentum * running_var[c] + (1.0 - momentum) * var);
    a[c] = static_cast<float>(S[c] * inv_std);
    b[c] = static_cast<float>(B[c] - mu * S[c] * inv_std);
  }
  float* Y = y.data<float>();
  const float* Z = residual ? residual->data<float>() : nullptr;
  const float* A = a.data();
  const float* Bv = b.data();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < M; ++r) {
    const float* xr = X + r * C;
    float* yr = Y + r * C;
    if (Z) {
      const float* zr = Z + r * C;
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) {
        const float v = xr[c] * A[c] + Bv[c] + zr[c];
        yr[c] = (relu && !(v > 0.0f)) ? 0.0f : v;
      }
    } else {
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) {
        const float v = xr[c] * A[c] + Bv[c];
        yr[c] = (relu && !(v > 0.0f)) ? 0.0f : v;
      }
    }
  }
  return {y, saved_mean, saved_inv_std};
}

std::vector<paddle::Tensor> Backward(const paddle::Tensor& x, const paddle::Tensor& scale,
                                     const paddle::Tensor& y, const paddle::Tensor& saved_mean,
                                     const paddle::Tensor& saved_inv_std, const paddle::Tensor& dy,
                                     bool relu, bool with_residual, bool channels_last) {
  check_input(dy, "output gradient");
  const int64_t C = channels_last ? channels_of(x) : x.shape()[1];
  const int64_t M = x.numel() / C;
  if (!channels_last) {
    auto dx = paddle::empty(x.shape(), paddle::DataType::FLOAT32, paddle::CPUPlace());
    auto dscale = paddle::empty({C}, paddle::DataType::FLOAT32, paddle::CPUPlace());
    auto dbias = paddle::empty({C}, paddle::DataType::FLOAT32, paddle::CPUPlace());
    paddle::Tensor dz;
    if (with_residual) dz = paddle::empty(x.shape(), paddle::DataType::FLOAT32, paddle::CPUPlace());
    BackwardNchw(x, scale.data<float>(), y.data<float>(), saved_mean.data<float>(), saved_inv_std.data<float>(),
                 dy.data<float>(), relu, dx.data<float>(), with_residual ? dz.data<float>() : nullptr,
                 dscale.data<float>(), dbias.data<float>());
    if (with_residual) return {dx, dscale, dbias, dz};
    return {dx, dscale, dbias};
  }
  const Tiles t(M, C);
  const float* X = x.data<float>();
  const float* Y = y.data<float>();
  const float* DY = dy.data<float>();
  const float* MU = saved_mean.data<float>();
  // g = dy where the ReLU passed (y > 0), dy everywhere without ReLU.
  std::vector<double> sum_g, sum_gx;
  if (relu) {
    channel_sums(t, GradientSums<true>{X, Y, DY, MU, C}, &sum_g, &sum_gx);
  } else {
    channel_sums(t, GradientSums<false>{X, Y, DY, MU, C}, &sum_g, &sum_gx);
  }

  auto dx = paddle::empty(x.shape(), paddle::DataType::FLOAT32, paddle::CPUPlace());
  auto dscale = paddle::empty({C}, paddle::DataType::FLOAT32, paddle::CPUPlace());
  auto dbias = paddle::empty({C}, paddle::DataType::FLOAT32, paddle::CPUPlace());
  paddle::Tensor dz;
  if (with_residual) dz = paddle::empty(x.shape(), paddle::DataType::FLOAT32, paddle::CPUPlace());
  // dx = scale * inv_std * (g - mean(g) - xhat * mean(g * xhat)) = k1 * g + k2 * x + k3.
  std::vector<float> k1(C), k2(C), k3(C);
  const float* S = scale.data<float>();
  const float* IS = saved_inv_std.data<float>();
  for (int64_t c = 0; c < C; ++c) {
    const double inv_std = IS[c];
    const double d_scale = sum_gx[c] * inv_std;
    dscale.data<float>()[c] = static_cast<float>(d_scale);
    dbias.data<float>()[c] = static_cast<float>(sum_g[c]);
    const double s = S[c] * inv_std;
    const double slope = -s * inv_std * d_scale / M;
    k1[c] = static_cast<float>(s);
    k2[c] = static_cast<float>(slope);
    k3[c] = static_cast<float>(-s * sum_g[c] / M - slope * MU[c]);
  }
  float* DX = dx.data<float>();
  float* DZ = with_residual ? dz.data<float>() : nullptr;
  const float* K1 = k1.data();
  const float* K2 = k2.data();
  const float* K3 = k3.data();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < M; ++r) {
    const float* __restrict xr = X + r * C;
    const float* __restrict yr = Y + r * C;
    const float* __restrict dr = DY + r * C;
    float* __restrict out = DX + r * C;
    float* __restrict zr = DZ ? DZ + r * C : nullptr;
    if (relu) {
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) {
        const float g = yr[c] > 0.0f ? dr[c] : 0.0f;
        out[c] = K1[c] * g + K2[c] * xr[c] + K3[c];
      }
      if (zr) {
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) zr[c] = yr[c] > 0.0f ? dr[c] : 0.0f;
      }
    } else {
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) out[c] = K1[c] * dr[c] + K2[c] * xr[c] + K3[c];
      if (zr) std::copy(dr, dr + C, zr);
    }
  }
  if (with_residual) return {dx, dscale, dbias, dz};
  return {dx, dscale, dbias};
}

}  // namespace

std::vector<paddle::Tensor> PalmBatchNormForward(const paddle::Tensor& x, const paddle::Tensor& scale,
                                                 const paddle::Tensor& bias, const paddle::Tensor& mean,
                                                 const paddle::Tensor& variance, float momentum,
                                                 float epsilon, bool relu, bool channels_last) {
  return Forward(x, scale, bias, mean, variance, nullptr, momentum, epsilon, relu, channels_last);
}

std::vector<paddle::Tensor> PalmBatchNormBackward(const paddle::Tensor& x, const paddle::Tensor& scale,
                                                  const paddle::Tensor& y, const paddle::Tensor& saved_mean,
                                                  const paddle::Tensor& saved_inv_std,
                                                  const paddle::Tensor& dy, float momentum, float epsilon,
                                                  bool relu, bool channels_last) {
  (void)momentum;
  (void)epsilon;
  return Backward(x, scale, y, saved_mean, saved_inv_std, dy, relu, false, channels_last);
}

std::vector<paddle::Tensor> PalmBatchNormAddForward(const paddle::Tensor& x, const paddle::Tensor& scale,
                                                    const paddle::Tensor& bias, const paddle::Tensor& mean,
                                                    const paddle::Tensor& variance, const paddle::Tensor& z,
                                                    float momentum, float epsilon, bool relu,
                                                    bool channels_last) {
  return Forward(x, scale, bias, mean, variance, &z, momentum, epsilon, relu, channels_last);
}

std::vector<paddle::Tensor> PalmBatchNormAddBackward(const paddle::Tensor& x, const paddle::Tensor& scale,
                                                     const paddle::Tensor& y,
                                                     const paddle::Tensor& saved_mean,
                                                     const paddle::Tensor& saved_inv_std,
                                                     const paddle::Tensor& dy, float momentum,
                                                     float epsilon, bool relu, bool channels_last) {
  (void)momentum;
  (void)epsilon;
  return Backward(x, scale, y, saved_mean, saved_inv_std, dy, relu, true, channels_last);
}

PD_BUILD_OP(palm_batch_norm)
    .Inputs({"X", "Scale", "Bias", "Mean", "Variance"})
    .Outputs({"Y", "SavedMean", "SavedInvStd"})
    .Attrs({"momentum: float", "epsilon: float", "relu: bool", "channels_last: bool"})
    .SetKernelFn(PD_KERNEL(PalmBatchNormForward));

PD_BUILD_GRAD_OP(palm_batch_norm)
    .Inputs({"X", "Scale", "Y", "SavedMean", "SavedInvStd", paddle::Grad("Y")})
    .Outputs({paddle::Grad("X"), paddle::Grad("Scale"), paddle::Grad("Bias")})
    .Attrs({"momentum: float", "epsilon: float", "relu: bool", "channels_last: bool"})
    .SetKernelFn(PD_KERNEL(PalmBatchNormBackward));

PD_BUILD_OP(palm_batch_norm_add)
    .Inputs({"X", "Scale", "Bias", "Mean", "Variance", "Z"})
    .Outputs({"Y", "SavedMean", "SavedInvStd"})
    .Attrs({"momentum: float", "epsilon: float", "relu: bool", "channels_last: bool"})
    .SetKernelFn(PD_KERNEL(PalmBatchNormAddForward));

PD_BUILD_GRAD_OP(palm_batch_norm_add)
    .Inputs({"X", "Scale", "Y", "SavedMean", "SavedInvStd", paddle::Grad("Y")})
    .Outputs({paddle::Grad("X"), paddle::Grad("Scale"), paddle::Grad("Bias"), paddle::Grad("Z")})
    .Attrs({"momentum: float", "epsilon: float", "relu: bool", "channels_last: bool"})
    .SetKernelFn(PD_KERNEL(PalmBatchNormAddBackward));
