// 2-D max and average pooling on NCHW or NHWC float32 tensors, forward and backward.
//
// Paddle's CPU pooling kernels loop over one output at a time, and the backward of max
// pooling searches every window again for its maximum: in the recipe's training step the
// stem's 3x3 max pool took about 20 ms of ~430 (docs/BENCHMARKS.md 3.7).  Here the forward
// of max pooling records where each maximum was (an int32 index into its input plane), and
// the backward adds each output gradient at that place.  On NHWC tensors the channels are
// the inner, vectorised loop.
//
// Semantics are Paddle's (paddle.nn.functional.max_pool2d / avg_pool2d):
//   * output side = floor((H + pad_before + pad_after - k) / s) + 1, or ceil with ceil_mode;
//   * a window is clipped to the input (padding never wins a max, nor adds to a sum);
//   * the maximum is the first one in row-major window order (Paddle's backward gives the
//     gradient to that one);
//   * an average divides by the clipped window's size (exclusive) or by the size of the
//     window's part inside the padded input (k_h * k_w but at a ceil_mode edge).
//
// Deterministic whatever the thread count: every thread owns whole planes (NCHW) or whole
// images (NHWC), and the backward adds into them in a fixed order.

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "paddle/extension.h"

namespace {

struct Window {
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, pad_bottom, pad_right;
  int64_t in_h, in_w, out_h, out_w;
  // The clipped input range [begin, end) of output row `o` (or column).
  void rows(int64_t o, int64_t* begin, int64_t* end) const {
    const int64_t start = o * stride_h - pad_top;
    *begin = std::max<int64_t>(start, 0);
    *end = std::min<int64_t>(start + kernel_h, in_h);
  }
  void cols(int64_t o, int64_t* begin, int64_t* end) const {
    const int64_t start = o * stride_w - pad_left;
    *begin = std::max<int64_t>(start, 0);
    *end = std::min<int64_t>(start + kernel_w, in_w);
  }
  // An average's divisor: the clipped window's size (exclusive), or the window's size within
  // the padded input (a ceil_mode window that runs past the padding counts only the part
  // inside it), for output (oh, ow) whose clipped window is [h0, h1) x [w0, w1).
  float divisor(int64_t oh, int64_t ow, int64_t h0, int64_t h1, int64_t w0, int64_t w1, bool exclusive) const {
    if (exclusive) return static_cast<float>((h1 - h0) * (w1 - w0));
    const int64_t top = oh * stride_h - pad_top, left = ow * stride_w - pad_left;
    const int64_t bottom = std::min(top + kernel_h, in_h + pad_bottom);
    const int64_t right = std::min(left + kernel_w, in_w + pad_right);
    return static_cast<float>((bottom - top) * (right - left));
  }
};

int64_t out_side(int64_t in, int64_t kernel, int64_t stride, int64_t pad, bool ceil_mode) {
  const int64_t span = in + pad - kernel;
  return (ceil_mode ? (span + stride - 1) / stride : span / stride) + 1;
}

// Shape checks and the window geometry; `pads` is [top, bottom, left, right].
Window geometry(const paddle::Tensor& x, const std::vector<int>& kernel, const std::vector<int>& strides,
                const std::vector<int>& pads, bool ceil_mode, bool channels_last) {
  PD_CHECK(x.is_cpu() && x.dtype() == paddle::DataType::FLOAT32, "palm_pool2d: the input must be a float32 CPU tensor");
  PD_CHECK(x.shape().size() == 4, "palm_pool2d: the input must be 4-D, got ", x.shape().size(), "-D");
  PD_CHECK(kernel.size() == 2 && strides.size() == 2 && pads.size() == 4, "palm_pool2d: bad attributes");
  PD_CHECK(kernel[0] > 0 && kernel[1] > 0 && strides[0] > 0 && strides[1] > 0,
           "palm_pool2d: kernel and stride must be positive");
  const auto& s = x.shape();
  Window w{kernel[0], kernel[1], strides[0], strides[1], pads[0], pads[2], pads[1], pads[3],
           channels_last ? s[1] : s[2], channels_last ? s[2] : s[3], 0, 0};
  w.out_h = out_side(w.in_h, w.kernel_h, w.stride_h, pads[0] + pads[1], ceil_mode);
  w.out_w = out_side(w.in_w, w.kernel_w, w.stride_w, pads[2] + pads[3], ceil_mode);
  PD_CHECK(w.out_h > 0 && w.out_w > 0, "palm_pool2d: the ", w.in_h, "x", w.in_w, " input is smaller than the ",
           w.kernel_h, "x", w.kernel_w, " window");
  return w;
}

std::vector<int64_t> out_shape(const std::vector<int64_t>& in, const Window& w, bool channels_last) {
  return channels_last ? std::vector<int64_t>{in[0], w.out_h, w.out_w, in[3]}
                       : std::vector<int64_t>{in[0], in[1], w.out_h, w.out_w};
}

// Calls visit(oh, ow, h0, h1, w0, w1) for every output of one plane (or image), with the
// clipped input window [h0, h1) x [w0, w1) of output (oh, ow), in row-major order.
template <typename Visit>
void each_window(const Window& w, Visit visit) {
  for (int64_t oh = 0; oh < w.out_h; ++oh) {
    int64_t h0, h1;
    w.rows(oh, &h0, &h1);
    for (int64_t ow = 0; ow < w.out_w; ++ow) {
      int64_t w0, w1;
      w.cols(ow, &w0, &w1);
      visit(oh, ow, h0, h1, w0, w1);
    }
  }
}

// ---------------------------------------------------------------------------- NCHW
// One thread per (image, channel) plane at a time.

void max_nchw(const float* x, float* y, int32_t* index, int64_t planes, const Window& w) {
  const int64_t in_plane = w.in_h * w.in_w, out_plane = w.out_h * w.out_w;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < planes; ++p) {
    const float* src = x + p * in_plane;
    float* dst = y + p * out_plane;
    int32_t* at = index + p * out_plane;
    each_window(w, [&](int64_t oh, int64_t ow, int64_t h0, int64_t h1, int64_t w0, int64_t w1) {
      float best = -std::numeric_limits<float>::max();
      int32_t where = -1;
      for (int64_t h = h0; h < h1; ++h) {
        for (int64_t c = w0; c < w1; ++c) {
          const float v = src[h * w.in_w + c];
          if (where < 0 || v > best) {
            best = v;
            where = static_cast<int32_t>(h * w.in_w + c);
          }
        }
      }
      dst[oh * w.out_w + ow] = best;
      at[oh * w.out_w + ow] = where;
    });
  }
}

void max_nchw_grad(const float* dy, const int32_t* index, float* dx, int64_t planes, const Window& w) {
  const int64_t in_plane = w.in_h * w.in_w, out_plane = w.out_h * w.out_w;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < planes; ++p) {
    float* grad = dx + p * in_plane;
    std::fill(grad, grad + in_plane, 0.0f);
    const float* g = dy + p * out_plane;
    const int32_t* at = index + p * out_plane;
    for (int64_t o = 0; o < out_plane; ++o) {
      if (at[o] >= 0) grad[at[o]] += g[o];
    }
  }
}

void avg_nchw(const float* x, float* y, int64_t planes, const Window& w, bool exclusive) {
  const int64_t in_plane = w.in_h * w.in_w, out_plane = w.out_h * w.out_w;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < planes; ++p) {
    const float* src = x + p * in_plane;
    float* dst = y + p * out_plane;
    each_window(w, [&](int64_t oh, int64_t ow, int64_t h0, int64_t h1, int64_t w0, int64_t w1) {
      float sum = 0.0f;
      for (int64_t h = h0; h < h1; ++h) {
        const float* row = src + h * w.in_w;
#pragma omp simd reduction(+ : sum)
        for (int64_t c = w0; c < w1; ++c) sum += row[c];
      }
      dst[oh * w.out_w + ow] = sum / w.divisor(oh, ow, h0, h1, w0, w1, exclusive);
    });
  }
}

void avg_nchw_grad(const float* dy, float* dx, int64_t planes, const Window& w, bool exclusive) {
  const int64_t in_plane = w.in_h * w.in_w, out_plane = w.out_h * w.out_w;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < planes; ++p) {
    float* grad = dx + p * in_plane;
    std::fill(grad, grad + in_plane, 0.0f);
    const float* g = dy + p * out_plane;
    each_window(w, [&](int64_t oh, int64_t ow, int64_t h0, int64_t h1, int64_t w0, int64_t w1) {
      const float share = g[oh * w.out_w + ow] / w.divisor(oh, ow, h0, h1, w0, w1, exclusive);
      for (int64_t h = h0; h < h1; ++h) {
        float* row = grad + h * w.in_w;
#pragma omp simd
        for (int64_t c = w0; c < w1; ++c) row[c] += share;
      }
    });
  }
}

// ---------------------------------------------------------------------------- NHWC
// One thread per image at a time; the channels are the inner, vectorised loop.

void max_nhwc(const float* x, float* y, int32_t* index, int64_t images, int64_t channels, const Window& w) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < images; ++n) {
    const float* src = x + n * w.in_h * w.in_w * channels;
    each_window(w, [&](int64_t oh, int64_t ow, int64_t h0, int64_t h1, int64_t w0, int64_t w1) {
      const int64_t out = ((n * w.out_h + oh) * w.out_w + ow) * channels;
      float* __restrict best = y + out;
      int32_t* __restrict where = index + out;
      if (h0 >= h1 || w0 >= w1) {
        std::fill(best, best + channels, -std::numeric_limits<float>::max());
        std::fill(where, where + channels, -1);
        return;
      }
      const int32_t first = static_cast<int32_t>(h0 * w.in_w + w0);
      const float* __restrict v0 = src + first * channels;
#pragma omp simd
      for (int64_t c = 0; c < channels; ++c) {
        best[c] = v0[c];
        where[c] = first;
      }
      for (int64_t h = h0; h < h1; ++h) {
        for (int64_t col = (h == h0 ? w0 + 1 : w0); col < w1; ++col) {
          const int32_t at = static_cast<int32_t>(h * w.in_w + col);
          const float* __restrict v = src + at * channels;
#pragma omp simd
          for (int64_t c = 0; c < channels; ++c) {
            const bool more = v[c] > best[c];
            best[c] = more ? v[c] : best[c];
            where[c] = more ? at : where[c];
          }
        }
      }
    });
  }
}

void max_nhwc_grad(const float* dy, const int32_t* index, float* dx, int64_t images, int64_t channels,
                   const Window& w) {
  const int64_t in_image = w.in_h * w.in_w * channels, out_pixels = w.out_h * w.out_w;
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < images; ++n) {
    float* grad = dx + n * in_image;
    std::fill(grad, grad + in_image, 0.0f);
    const float* g = dy + n * out_pixels * channels;
    const int32_t* at = index + n * out_pixels * channels;
    for (int64_t o = 0; o < out_pixels; ++o) {
      const float* go = g + o * channels;
      const int32_t* ao = at + o * channels;
      for (int64_t c = 0; c < channels; ++c) {
        if (ao[c] >= 0) grad[ao[c] * channels + c] += go[c];
      }
    }
  }
}

void avg_nhwc(const float* x, float* y, int64_t images, int64_t channels, const Window& w, bool exclusive) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < images; ++n) {
    const float* src = x + n * w.in_h * w.in_w * channels;
    each_window(w, [&](int64_t oh, int64_t ow, int64_t h0, int64_t h1, int64_t w0, int64_t w1) {
      float* __restrict sum = y + ((n * w.out_h + oh) * w.out_w + ow) * channels;
      std::fill(sum, sum + channels, 0.0f);
      for (int64_t h = h0; h < h1; ++h) {
        for (int64_t col = w0; col < w1; ++col) {
          const float* __restrict v = src + (h * w.in_w + col) * channels;
#pragma omp simd
          for (int64_t c = 0; c < channels; ++c) sum[c] += v[c];
        }
      }
      const float inv = 1.0f / w.divisor(oh, ow, h0, h1, w0, w1, exclusive);
#pragma omp simd
      for (int64_t c = 0; c < channels; ++c) sum[c] *= inv;
    });
  }
}

void avg_nhwc_grad(const float* dy, float* dx, int64_t images, int64_t channels, const Window& w,
                   bool exclusive) {
  const int64_t in_image = w.in_h * w.in_w * channels;
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < images; ++n) {
    float* grad = dx + n * in_image;
    std::fill(grad, grad + in_image, 0.0f);
    each_window(w, [&](int64_t oh, int64_t ow, int64_t h0, int64_t h1, int64_t w0, int64_t w1) {
      const float* __restrict g = dy + ((n * w.out_h + oh) * w.out_w + ow) * channels;
      const float inv = 1.0f / w.divisor(oh, ow, h0, h1, w0, w1, exclusive);
      for (int64_t h = h0; h < h1; ++h) {
        for (int64_t col = w0; col < w1; ++col) {
          float* __restrict d = grad + (h * w.in_w + col) * channels;
#pragma omp simd
          for (int64_t c = 0; c < channels; ++c) d[c] += g[c] * inv;
        }
      }
    });
  }
}

}  // namespace

std::vector<paddle::Tensor> PalmPool2dForward(const paddle::Tensor& x, const std::vector<int>& kernel,
                                              const std::vector<int>& strides, const std::vector<int>& pads,
                                              bool ceil_mode, bool max, bool exclusive, bool channels_last) {
  const Window w = geometry(x, kernel, strides, pads, ceil_mode, channels_last);
  const auto& s = x.shape();
  const auto shape = out_shape(s, w, channels_last);
  auto y = paddle::empty(shape, paddle::DataType::FLOAT32, paddle::CPUPlace());
  // The max's positions; average pooling needs none (a one-element placeholder).
  auto index = paddle::empty(max ? shape : std::vector<int64_t>{1}, paddle::DataType::INT32, paddle::CPUPlace());
  const float* X = x.data<float>();
  float* Y = y.data<float>();
  if (channels_last) {
    if (max) {
      max_nhwc(X, Y, index.data<int32_t>(), s[0], s[3], w);
    } else {
      avg_nhwc(X, Y, s[0], s[3], w, exclusive);
    }
  } else if (max) {
    max_nchw(X, Y, index.data<int32_t>(), s[0] * s[1], w);
  } else {
    avg_nchw(X, Y, s[0] * s[1], w, exclusive);
  }
  return {y, index};
}

std::vector<paddle::Tensor> PalmPool2dBackward(const paddle::Tensor& x, const paddle::Tensor& index,
                                               const paddle::Tensor& dy, const std::vector<int>& kernel,
                                               const std::vector<int>& strides, const std::vector<int>& pads,
                                               bool ceil_mode, bool max, bool exclusive, bool channels_last) {
  const Window w = geometry(x, kernel, strides, pads, ceil_mode, channels_last);
  const auto& s = x.shape();
  PD_CHECK(dy.shape() == out_shape(s, w, channels_last), "palm_pool2d: the output gradient has the wrong shape");
  auto dx = paddle::empty(s, paddle::DataType::FLOAT32, paddle::CPUPlace());
  const float* DY = dy.data<float>();
  float* DX = dx.data<float>();
  if (channels_last) {
    if (max) {
      max_nhwc_grad(DY, index.data<int32_t>(), DX, s[0], s[3], w);
    } else {
      avg_nhwc_grad(DY, DX, s[0], s[3], w, exclusive);
    }
  } else if (max) {
    max_nchw_grad(DY, index.data<int32_t>(), DX, s[0] * s[1], w);
  } else {
    avg_nchw_grad(DY, DX, s[0] * s[1], w, exclusive);
  }
  return {dx};
}

PD_BUILD_OP(palm_pool2d)
    .Inputs({"X"})
    .Outputs({"Out", "Index"})
    .Attrs({"kernel: std::vector<int>", "strides: std::vector<int>", "paddings: std::vector<int>",
            "ceil_mode: bool", "max: bool", "exclusive: bool", "channels_last: bool"})
    .SetKernelFn(PD_KERNEL(PalmPool2dForward));

PD_BUILD_GRAD_OP(palm_pool2d)
    .Inputs({"X", "Index", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X")})
    .Attrs({"kernel: std::vector<int>", "strides: std::vector<int>", "paddings: std::vector<int>",
            "ceil_mode: bool", "max: bool", "exclusive: bool", "channels_last: bool"})
    .SetKernelFn(PD_KERNEL(PalmPool2dBackward));
