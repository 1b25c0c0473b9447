// Training-mode batch norm fused with ReLU (and the residual add) on channels-last tensors.
//
// In a ResNet step on a CPU, after the oneDNN convolutions, Paddle's batch norm, ReLU and
// add kernels are what is left (docs/BENCHMARKS.md 3.4): each is a separate pass over a
// large activation, forward and backward.  This file computes
//
//     y = relu(scale * (x - mean) / sqrt(var + eps) + bias [+ z])
//
// for an NHWC tensor x (seen as M = N*H*W rows of C channels), its statistics, the running
// mean and variance update, and the gradients of x, scale, bias (and z), in two passes each
// way.  oneDNN's own NHWC batch norm was tried first and gave wrong input gradients with 2
// threads (a barrier inside its parallel region); these loops have no barrier: every
// parallel loop writes disjoint memory, and the per-channel sums are reduced by one thread.
//
// Deterministic whatever the thread count: the rows are cut into fixed chunks (a function
// of M and C only), each (chunk, channel block) tile sums its rows into its own slot in
// double precision, and the slots are added in chunk order.
//
// Threads: OpenMP, linked to Paddle's Intel OpenMP runtime (libiomp5) like its oneDNN.

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "paddle/extension.h"

namespace {

constexpr int64_t kRowsPerChunk = 256;
constexpr int64_t kChannelBlock = 64;

struct Tiles {
  int64_t rows, channels, chunks, blocks;
  Tiles(int64_t m, int64_t c)
      : rows(m), channels(c), chunks((m + kRowsPerChunk - 1) / kRowsPerChunk),
        blocks((c + kChannelBlock - 1) / kChannelBlock) {}
  int64_t count() const { return chunks * blocks; }
  void bounds(int64_t tile, int64_t* r0, int64_t* r1, int64_t* c0, int64_t* c1) const {
    const int64_t chunk = tile / blocks, block = tile % blocks;
    *r0 = chunk * kRowsPerChunk;
    *r1 = std::min(rows, *r0 + kRowsPerChunk);
    *c0 = block * kChannelBlock;
    *c1 = std::min(channels, *c0 + kChannelBlock);
  }
};

void check_input(const paddle::Tensor& t, const char* what) {
  PD_CHECK(t.is_cpu(), "palm_batch_norm: the ", what, " must be on the CPU");
  PD_CHECK(t.dtype() == paddle::DataType::FLOAT32, "palm_batch_norm: the ", what, " must be float32");
}

int64_t channels_of(const paddle::Tensor& x) {
  PD_CHECK(x.shape().size() >= 2, "palm_batch_norm: expects an N...C (channels-last) input");
  return x.shape().back();
}

// Per-channel sums of f(row pointer, channel) over all rows, in double, deterministic.
// `accumulate(r, c0, c1, a, b)` adds row r's contributions for channels [c0, c1) to a[], b[].
template <typename Accumulate>
void channel_sums(const Tiles& t, Accumulate accumulate, std::vector<double>* sum_a,
                  std::vector<double>* sum_b) {
  std::vector<double> part_a(t.chunks * t.channels), part_b(t.chunks * t.channels);
#pragma omp parallel for schedule(static)
  for (int64_t tile = 0; tile < t.count(); ++tile) {
    int64_t r0, r1, c0, c1;
    t.bounds(tile, &r0, &r1, &c0, &c1);
    double a[kChannelBlock] = {0}, b[kChannelBlock] = {0};
    for (int64_t r = r0; r < r1; ++r) accumulate(r, c0, c1, a, b);
    const int64_t chunk = tile / t.blocks;
    for (int64_t c = c0; c < c1; ++c) {
      part_a[chunk * t.channels + c] = a[c - c0];
      part_b[chunk * t.channels + c] = b[c - c0];
    }
  }
  sum_a->assign(t.channels, 0.0);
  sum_b->assign(t.channels, 0.0);
  for (int64_t chunk = 0; chunk < t.chunks; ++chunk) {
    for (int64_t c = 0; c < t.channels; ++c) {
      (*sum_a)[c] += part_a[chunk * t.channels + c];
      (*sum_b)[c] += part_b[chunk * t.channels + c];
    }
  }
}

std::vector<paddle::Tensor> Forward(const paddle::Tensor& x, const paddle::Tensor& scale,
                                    const paddle::Tensor& bias, const paddle::Tensor& mean,
                                    const paddle::Tensor& variance, const paddle::Tensor* residual,
                                    float momentum, float epsilon, bool relu) {
  check_input(x, "input");
  check_input(scale, "scale");
  check_input(bias, "bias");
  check_input(mean, "running mean");
  check_input(variance, "running variance");
  const int64_t C = channels_of(x);
  const int64_t M = x.numel() / C;
  PD_CHECK(M > 0, "palm_batch_norm: empty input");
  PD_CHECK(scale.numel() == C && bias.numel() == C && mean.numel() == C && variance.numel() == C,
           "palm_batch_norm: scale, bias, mean and variance must have ", C, " values (the input's last axis)");
  if (residual) {
    check_input(*residual, "residual");
    PD_CHECK(residual->shape() == x.shape(), "palm_batch_norm: the residual must have the input's shape");
  }
  const Tiles t(M, C);
  const float* X = x.data<float>();
  std::vector<double> sum, sum_sq;
  channel_sums(
      t,
      [&](int64_t r, int64_t c0, int64_t c1, double* a, double* b) {
        const float* row = X + r * C;
        for (int64_t c = c0; c < c1; ++c) {
          const double v = row[c];
          a[c - c0] += v;
          b[c - c0] += v * v;
        }
      },
      &sum, &sum_sq);

  auto y = paddle::empty(x.shape(), paddle::DataType::FLOAT32, paddle::CPUPlace());
  auto saved_mean = paddle::empty({C}, paddle::DataType::FLOAT32, paddle::CPUPlace());
  auto saved_inv_std = paddle::empty({C}, paddle::DataType::FLOAT32, paddle::CPUPlace());
  std::vector<float> a(C), b(C);
  // The running statistics are updated in place, as Paddle's batch_norm does (they are
  // buffers: no gradient flows through them).
  float* running_mean = const_cast<float*>(mean.data<float>());
  float* running_var = const_cast<float*>(variance.data<float>());
  const float* S = scale.data<float>();
  const float* B = bias.data<float>();
  for (int64_t c = 0; c < C; ++c) {
    const double mu = sum[c] / M;
    const double var = std::max(0.0, sum_sq[c] / M - mu * mu);  // biased, as Paddle's
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
      for (int64_t c = 0; c < C; ++c) {
        const float v = xr[c] * A[c] + Bv[c] + zr[c];
        yr[c] = relu ? std::max(v, 0.0f) : v;
      }
    } else {
      for (int64_t c = 0; c < C; ++c) {
        const float v = xr[c] * A[c] + Bv[c];
        yr[c] = relu ? std::max(v, 0.0f) : v;
      }
    }
  }
  return {y, saved_mean, saved_inv_std};
}

std::vector<paddle::Tensor> Backward(const paddle::Tensor& x, const paddle::Tensor& scale,
                                     const paddle::Tensor& y, const paddle::Tensor& saved_mean,
                                     const paddle::Tensor& saved_inv_std, const paddle::Tensor& dy,
                                     bool relu, bool with_residual) {
  check_input(dy, "output gradient");
  const int64_t C = channels_of(x);
  const int64_t M = x.numel() / C;
  const Tiles t(M, C);
  const float* X = x.data<float>();
  const float* Y = y.data<float>();
  const float* DY = dy.data<float>();
  const float* MU = saved_mean.data<float>();
  // g = dy where the ReLU passed (y > 0), dy everywhere without ReLU.
  std::vector<double> sum_g, sum_gx;
  channel_sums(
      t,
      [&](int64_t r, int64_t c0, int64_t c1, double* a, double* b) {
        const float* xr = X + r * C;
        const float* yr = Y + r * C;
        const float* dr = DY + r * C;
        for (int64_t c = c0; c < c1; ++c) {
          const float g = (!relu || yr[c] > 0.0f) ? dr[c] : 0.0f;
          a[c - c0] += g;
          b[c - c0] += static_cast<double>(g) * (xr[c] - MU[c]);
        }
      },
      &sum_g, &sum_gx);

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
    const float* xr = X + r * C;
    const float* yr = Y + r * C;
    const float* dr = DY + r * C;
    float* out = DX + r * C;
    for (int64_t c = 0; c < C; ++c) {
      const float g = (!relu || yr[c] > 0.0f) ? dr[c] : 0.0f;
      out[c] = K1[c] * g + K2[c] * xr[c] + K3[c];
    }
    if (DZ) {
      float* zr = DZ + r * C;
      for (int64_t c = 0; c < C; ++c) zr[c] = (!relu || yr[c] > 0.0f) ? dr[c] : 0.0f;
    }
  }
  if (with_residual) return {dx, dscale, dbias, dz};
  return {dx, dscale, dbias};
}

}  // namespace

std::vector<paddle::Tensor> PalmBatchNormForward(const paddle::Tensor& x, const paddle::Tensor& scale,
                                                 const paddle::Tensor& bias, const paddle::Tensor& mean,
                                                 const paddle::Tensor& variance, float momentum,
                                                 float epsilon, bool relu) {
  return Forward(x, scale, bias, mean, variance, nullptr, momentum, epsilon, relu);
}

std::vector<paddle::Tensor> PalmBatchNormBackward(const paddle::Tensor& x, const paddle::Tensor& scale,
                                                  const paddle::Tensor& y, const paddle::Tensor& saved_mean,
                                                  const paddle::Tensor& saved_inv_std,
                                                  const paddle::Tensor& dy, float momentum, float epsilon,
                                                  bool relu) {
  (void)momentum;
  (void)epsilon;
  return Backward(x, scale, y, saved_mean, saved_inv_std, dy, relu, false);
}

std::vector<paddle::Tensor> PalmBatchNormAddForward(const paddle::Tensor& x, const paddle::Tensor& scale,
                                                    const paddle::Tensor& bias, const paddle::Tensor& mean,
                                                    const paddle::Tensor& variance, const paddle::Tensor& z,
                                                    float momentum, float epsilon, bool relu) {
  return Forward(x, scale, bias, mean, variance, &z, momentum, epsilon, relu);
}

std::vector<paddle::Tensor> PalmBatchNormAddBackward(const paddle::Tensor& x, const paddle::Tensor& scale,
                                                     const paddle::Tensor& y,
                                                     const paddle::Tensor& saved_mean,
                                                     const paddle::Tensor& saved_inv_std,
                                                     const paddle::Tensor& dy, float momentum,
                                                     float epsilon, bool relu) {
  (void)momentum;
  (void)epsilon;
  return Backward(x, scale, y, saved_mean, saved_inv_std, dy, relu, true);
}

PD_BUILD_OP(palm_batch_norm)
    .Inputs({"X", "Scale", "Bias", "Mean", "Variance"})
    .Outputs({"Y", "SavedMean", "SavedInvStd"})
    .Attrs({"momentum: float", "epsilon: float", "relu: bool"})
    .SetKernelFn(PD_KERNEL(PalmBatchNormForward));

PD_BUILD_GRAD_OP(palm_batch_norm)
    .Inputs({"X", "Scale", "Y", "SavedMean", "SavedInvStd", paddle::Grad("Y")})
    .Outputs({paddle::Grad("X"), paddle::Grad("Scale"), paddle::Grad("Bias")})
    .Attrs({"momentum: float", "epsilon: float", "relu: bool"})
    .SetKernelFn(PD_KERNEL(PalmBatchNormBackward));

PD_BUILD_OP(palm_batch_norm_add)
    .Inputs({"X", "Scale", "Bias", "Mean", "Variance", "Z"})
    .Outputs({"Y", "SavedMean", "SavedInvStd"})
    .Attrs({"momentum: float", "epsilon: float", "relu: bool"})
    .SetKernelFn(PD_KERNEL(PalmBatchNormAddForward));

PD_BUILD_GRAD_OP(palm_batch_norm_add)
    .Inputs({"X", "Scale", "Y", "SavedMean", "SavedInvStd", paddle::Grad("Y")})
    .Outputs({paddle::Grad("X"), paddle::Grad("Scale"), paddle::Grad("Bias"), paddle::Grad("Z")})
    .Attrs({"momentum: float", "epsilon: float", "relu: bool"})
    .SetKernelFn(PD_KERNEL(PalmBatchNormAddBackward));
