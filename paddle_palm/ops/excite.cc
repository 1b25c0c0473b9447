// The end of a squeeze-and-excitation residual block in one pass: y = act(x * w + z).
//
// x and z are [N, C, H, W] (or [N, H, W, C] with channels_last), w holds one weight per
// image and channel ([N, C, 1, 1] or [N, 1, 1, C]), act is ReLU or nothing.  In Paddle this
// is a broadcast multiply, an add and a ReLU, three passes over the map forward and three
// backward, and the multiply's backward reduces over the map once more for w's gradient.
// Here the forward is one pass and the backward one pass (dx, dz and the sums of dw).
//
// Deterministic whatever the thread count: each thread owns whole (image, channel) planes
// (NCHW) or whole images (NHWC), and sums w's gradient in a fixed order.

#include <omp.h>

#include <cstdint>
#include <vector>

#include "paddle/extension.h"

namespace {

struct Shape {
  int64_t images, channels, pixels;
};

Shape check(const paddle::Tensor& x, const paddle::Tensor& w, const paddle::Tensor* z, bool channels_last) {
  for (const paddle::Tensor* t : {&x, &w}) {
    PD_CHECK(t->is_cpu() && t->dtype() == paddle::DataType::FLOAT32, "palm_scale_add: expects float32 CPU tensors");
  }
  PD_CHECK(x.shape().size() == 4, "palm_scale_add: x must be 4-D");
  const auto& s = x.shape();
  const Shape shape{s[0], channels_last ? s[3] : s[1], channels_last ? s[1] * s[2] : s[2] * s[3]};
  PD_CHECK(w.numel() == shape.images * shape.channels, "palm_scale_add: w must have one value per image and channel");
  if (z) {
    PD_CHECK(z->is_cpu() && z->dtype() == paddle::DataType::FLOAT32 && z->shape() == s,
             "palm_scale_add: z must be a float32 CPU tensor of x's shape");
  }
  return shape;
}

}  // namespace

std::vector<paddle::Tensor> PalmScaleAddForward(const paddle::Tensor& x, const paddle::Tensor& w,
                                                const paddle::Tensor& z, bool relu, bool channels_last) {
  const Shape sh = check(x, w, &z, channels_last);
  auto y = paddle::empty(x.shape(), paddle::DataType::FLOAT32, paddle::CPUPlace());
  const float* X = x.data<float>();
  const float* W = w.data<float>();
  const float* Z = z.data<float>();
  float* Y = y.data<float>();
  if (channels_last) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < sh.images * sh.pixels; ++r) {
      const int64_t offset = r * sh.channels;
      const float* __restrict xr = X + offset;
      const float* __restrict zr = Z + offset;
      const float* __restrict wr = W + (r / sh.pixels) * sh.channels;
      float* __restrict yr = Y + offset;
#pragma omp simd
      for (int64_t c = 0; c < sh.channels; ++c) {
        const float v = xr[c] * wr[c] + zr[c];
        yr[c] = (relu && !(v > 0.0f)) ? 0.0f : v;
      }
    }
  } else {
#pragma omp parallel for schedule(static)
    for (int64_t p = 0; p < sh.images * sh.channels; ++p) {
      const int64_t offset = p * sh.pixels;
      const float* __restrict xr = X + offset;
      const float* __restrict zr = Z + offset;
      float* __restrict yr = Y + offset;
      const float scale = W[p];
#pragma omp simd
      for (int64_t i = 0; i < sh.pixels; ++i) {
        const float v = xr[i] * scale + zr[i];
        yr[i] = (relu && !(v > 0.0f)) ? 0.0f : v;
      }
    }
  }
  return {y};
}

std::vector<paddle::Tensor> PalmScaleAddBackward(const paddle::Tensor& x, const paddle::Tensor& w,
                                                 const paddle::Tensor& y, const paddle::Tensor& dy, bool relu,
                                                 bool channels_last) {
  const Shape sh = check(x, w, nullptr, channels_last);
  PD_CHECK(dy.shape() == x.shape() && y.shape() == x.shape(), "palm_scale_add: the gradient has the wrong shape");
  auto dx = paddle::empty(x.shape(), paddle::DataType::FLOAT32, paddle::CPUPlace());
  auto dz = paddle::empty(x.shape(), paddle::DataType::FLOAT32, paddle::CPUPlace());
  auto dw = paddle::empty(w.shape(), paddle::DataType::FLOAT32, paddle::CPUPlace());
  const float* X = x.data<float>();
  const float* W = w.data<float>();
  const float* Y = y.data<float>();
  const float* DY = dy.data<float>();
  float* DX = dx.data<float>();
  float* DZ = dz.data<float>();
  float* DW = dw.data<float>();
  if (channels_last) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < sh.images; ++n) {
      const float* __restrict wr = W + n * sh.channels;
      std::vector<float> sums(sh.channels, 0.0f);
      float* __restrict acc = sums.data();
      for (int64_t i = 0; i < sh.pixels; ++i) {
        const int64_t offset = (n * sh.pixels + i) * sh.channels;
        const float* __restrict xr = X + offset;
        const float* __restrict yr = Y + offset;
        const float* __restrict dr = DY + offset;
        float* __restrict dxr = DX + offset;
        float* __restrict dzr = DZ + offset;
#pragma omp simd
        for (int64_t c = 0; c < sh.channels; ++c) {
          const float g = (relu && !(yr[c] > 0.0f)) ? 0.0f : dr[c];
          dzr[c] = g;
          dxr[c] = g * wr[c];
          acc[c] += g * xr[c];
        }
      }
      std::copy(sums.begin(), sums.end(), DW + n * sh.channels);
    }
  } else {
#pragma omp parallel for schedule(static)
    for (int64_t p = 0; p < sh.images * sh.channels; ++p) {
      const int64_t offset = p * sh.pixels;
      const float* __restrict xr = X + offset;
      const float* __restrict yr = Y + offset;
      const float* __restrict dr = DY + offset;
      float* __restrict dxr = DX + offset;
      float* __restrict dzr = DZ + offset;
      const float scale = W[p];
      float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
      for (int64_t i = 0; i < sh.pixels; ++i) {
        const float g = (relu && !(yr[i] > 0.0f)) ? 0.0f : dr[i];
        dzr[i] = g;
        dxr[i] = g * scale;
        sum += g * xr[i];
      }
      DW[p] = sum;
    }
  }
  return {dx, dw, dz};
}

PD_BUILD_OP(palm_scale_add)
    .Inputs({"X", "W", "Z"})
    .Outputs({"Out"})
    .Attrs({"relu: bool", "channels_last: bool"})
    .SetKernelFn(PD_KERNEL(PalmScaleAddForward));

PD_BUILD_GRAD_OP(palm_scale_add)
    .Inputs({"X", "W", "Out", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X"), paddle::Grad("W"), paddle::Grad("Z")})
    .Attrs({"relu: bool", "channels_last: bool"})
    .SetKernelFn(PD_KERNEL(PalmScaleAddBackward));
