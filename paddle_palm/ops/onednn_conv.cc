// 2-D convolution for Paddle's dynamic graph on the CPU, computed by oneDNN.
//
// Paddle 3.3's dygraph convolution on a CPU is im2col + an MKL matrix product per
// image; the oneDNN library that ships inside the Paddle wheel (paddle/libs/
// libdnnl.so.3) has much faster direct convolutions (AVX2 / AVX-512 JIT kernels)
// but dynamic mode never calls them.  This file defines one custom operator,
// `palm_conv2d` (float32, NCHW or NHWC, like paddle.nn.functional.conv2d without bias),
// with its gradient, on top of that library.  paddle_palm/ops/__init__.py builds
// and loads it; docs/BENCHMARKS.md has the measurements.
//
// Layout: Paddle tensors stay plain NCHW (or NHWC) / OIHW.  For NCHW, oneDNN picks
// its preferred (blocked) layouts ("any"); inputs are reordered into them and the
// result is reordered back, in reusable scratch buffers; the reordered input and weights
// are kept (extra outputs) for the backward.  NHWC ("channels last")
// tensors are used as they are: no reorders but the weights'.  Primitives are cached
// by shape.  Threads: oneDNN runs on the OpenMP runtime Paddle loads (Intel OpenMP),
// so paddle.base.core.set_num_threads sets them.
//
// bf16 (the `bf16` attribute, for CPUs with AVX-512 BF16 or AMX): the input, the weights
// and the output gradient are rounded to bfloat16 on their way in (in the same reorders),
// the products accumulate in float32 and every result (output, input and weight
// gradients) is float32: the network, its master weights and the optimizer stay float32.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "paddle/extension.h"

namespace {

using dnnl::memory;
using Tag = dnnl::memory::format_tag;
using DType = dnnl::memory::data_type;

constexpr size_t kMaxCachedShapes = 512;

std::mutex& op_mutex() {
  static std::mutex mutex;
  return mutex;
}

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// A growable scratch buffer; the operator uses a few of them in turn.
struct Scratch {
  std::unique_ptr<char[]> data;
  size_t size = 0;
  void* get(size_t bytes) {
    if (bytes > size) {
      data.reset(new char[bytes + 64]);
      size = bytes;
    }
    return data.get();
  }
};

enum Slot { kSrc, kWeights, kDst, kScratchpad, kSrc2, kDiffDst2, kDiffWeights, kSlots };

void* scratch(Slot slot, size_t bytes) {
  static Scratch buffers[kSlots];
  return buffers[slot].get(bytes);
}

struct Geometry {
  memory::dims src, weights, dst, strides, dilates, pad_before, pad_after;
  int groups = 1;
  bool channels_last = false;  // tensors are NHWC (the dims above stay N, C, H, W)
  DType low = DType::f32;      // what the input, weights and output gradient are computed in
  std::string key;
};

Geometry make_geometry(std::vector<int64_t> x, const std::vector<int64_t>& w,
                       const std::vector<int>& strides, const std::vector<int>& paddings,
                       const std::vector<int>& dilations, int groups, bool channels_last, bool bf16) {
  PD_CHECK(x.size() == 4 && w.size() == 4, "palm_conv2d expects a 4-D input and a 4-D weight");
  if (channels_last) x = {x[0], x[3], x[1], x[2]};  // NHWC shape -> N, C, H, W
  PD_CHECK(strides.size() == 2 && dilations.size() == 2 && paddings.size() == 4,
           "palm_conv2d expects 2 strides, 2 dilations and 4 paddings (top, bottom, left, right)");
  PD_CHECK(groups >= 1, "palm_conv2d: groups must be at least 1, got ", groups);
  PD_CHECK(w[0] % groups == 0, "palm_conv2d: ", w[0], " output channels do not divide into ", groups,
           " groups");
  PD_CHECK(x[1] == w[1] * groups, "palm_conv2d: input channels ", x[1], " do not match the weight ",
           w[0], "x", w[1], " with groups=", groups, " (expected ", w[1] * groups, ")");
  Geometry g;
  g.groups = groups;
  g.channels_last = channels_last;
  g.low = bf16 ? DType::bf16 : DType::f32;
  g.src = {x[0], x[1], x[2], x[3]};
  g.weights = groups == 1 ? memory::dims{w[0], w[1], w[2], w[3]}
                          : memory::dims{groups, w[0] / groups, w[1], w[2], w[3]};
  g.strides = {strides[0], strides[1]};
  g.dilates = {dilations[0] - 1, dilations[1] - 1};  // oneDNN counts the gaps
  g.pad_before = {paddings[0], paddings[2]};
  g.pad_after = {paddings[1], paddings[3]};
  const int64_t oh =
      (x[2] + paddings[0] + paddings[1] - (dilations[0] * (w[2] - 1) + 1)) / strides[0] + 1;
  const int64_t ow =
      (x[3] + paddings[2] + paddings[3] - (dilations[1] * (w[3] - 1) + 1)) / strides[1] + 1;
  PD_CHECK(oh > 0 && ow > 0, "palm_conv2d: the kernel is larger than the padded input");
  g.dst = {x[0], w[0], oh, ow};
  std::ostringstream key;
  for (auto v : x) key << v << ',';
  for (auto v : w) key << v << ',';
  for (auto v : strides) key << v << ',';
  for (auto v : paddings) key << v << ',';
  for (auto v : dilations) key << v << ',';
  key << groups << (channels_last ? "nhwc" : "nchw") << (bf16 ? "bf16" : "f32");
  g.key = key.str();
  return g;
}

memory::desc any_layout(const memory::dims& dims, DType type = DType::f32) {
  return memory::desc(dims, type, Tag::any);
}
Tag activation_tag(const Geometry& g) { return g.channels_last ? Tag::nhwc : Tag::nchw; }
memory::desc plain_src(const Geometry& g) { return memory::desc(g.src, DType::f32, activation_tag(g)); }
memory::desc plain_dst(const Geometry& g) { return memory::desc(g.dst, DType::f32, activation_tag(g)); }
// NCHW tensors: oneDNN picks its blocked layout and the data is reordered in and out.
// NHWC tensors: computed in place in that layout (oneDNN's brgemm kernels), no reorders.
// `type`: the data type the primitive computes that tensor in (g.low for its inputs).
memory::desc activation_layout(const Geometry& g, const memory::dims& dims, DType type = DType::f32) {
  return g.channels_last ? memory::desc(dims, type, Tag::nhwc) : any_layout(dims, type);
}
memory::desc plain_weights(const Geometry& g) {
  return memory::desc(g.weights, DType::f32, g.groups == 1 ? Tag::oihw : Tag::goihw);
}

struct Primitives {
  dnnl::convolution_forward::primitive_desc forward_pd;
  dnnl::convolution_forward forward;
  // The backward primitives are made on first use (evaluation never needs them).
  std::unique_ptr<dnnl::convolution_backward_data::primitive_desc> data_pd;
  dnnl::convolution_backward_data data;
  std::unique_ptr<dnnl::convolution_backward_weights::primitive_desc> weights_pd;
  dnnl::convolution_backward_weights weights;
};

// Scratch memory from this file's buffers; results identical from run to run (a seeded
// training resumed from a checkpoint must repeat the uninterrupted one bit for bit).
dnnl::primitive_attr attributes() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  attr.set_deterministic(true);
  return attr;
}

Primitives& primitives(const Geometry& g, bool backward) {
  static std::map<std::string, std::unique_ptr<Primitives>> cache;
  auto found = cache.find(g.key);
  if (found == cache.end()) {
    if (cache.size() >= kMaxCachedShapes) cache.clear();
    auto made = std::make_unique<Primitives>();
    made->forward_pd = dnnl::convolution_forward::primitive_desc(
        cpu_engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
        activation_layout(g, g.src, g.low), any_layout(g.weights, g.low), activation_layout(g, g.dst), g.strides,
        g.dilates, g.pad_before, g.pad_after, attributes());
    made->forward = dnnl::convolution_forward(made->forward_pd);
    found = cache.emplace(g.key, std::move(made)).first;
  }
  Primitives& p = *found->second;
  if (backward && !p.data_pd) {
    p.data_pd = std::make_unique<dnnl::convolution_backward_data::primitive_desc>(
        cpu_engine(), dnnl::algorithm::convolution_direct, activation_layout(g, g.src),
        any_layout(g.weights, g.low), activation_layout(g, g.dst, g.low), g.strides, g.dilates, g.pad_before,
        g.pad_after, p.forward_pd, attributes());
    p.data = dnnl::convolution_backward_data(*p.data_pd);
    p.weights_pd = std::make_unique<dnnl::convolution_backward_weights::primitive_desc>(
        cpu_engine(), dnnl::algorithm::convolution_direct, activation_layout(g, g.src, g.low),
        any_layout(g.weights), activation_layout(g, g.dst, g.low), g.strides, g.dilates, g.pad_before,
        g.pad_after, p.forward_pd, attributes());
    p.weights = dnnl::convolution_backward_weights(*p.weights_pd);
  }
  return p;
}

// The data at `ptr` (layout `user`) in layout `want`: the user memory itself when the
// layouts agree, else a reordered copy in a scratch buffer (or in `into`, when given).
memory in_layout(dnnl::stream& stream, const memory::desc& user, const void* ptr,
                 const memory::desc& want, Slot slot, void* into = nullptr) {
  memory plain(user, cpu_engine(), const_cast<void*>(ptr));
  if (want == user) return plain;
  memory converted(want, cpu_engine(), into ? into : scratch(slot, want.get_size()));
  dnnl::reorder(plain, converted).execute(stream, plain, converted);
  return converted;
}

// The forward's reordered input and weights are outputs of the operator ("kept"), inputs of
// its gradient: the backward then does not reorder the same data again.  A tensor of the
// layout's bytes when the forward reorders, else one byte (nothing kept).
paddle::Tensor kept_buffer(const memory::desc& user, const memory::desc& want) {
  const int64_t bytes = want == user ? 1 : static_cast<int64_t>(want.get_size());
  return paddle::empty({bytes}, paddle::DataType::UINT8, paddle::CPUPlace());
}

// The kept copy as oneDNN memory of layout `want`, or the data reordered afresh.
memory reuse_or_reorder(dnnl::stream& stream, const paddle::Tensor& kept, const memory::desc& kept_desc,
                        const memory::desc& user, const void* ptr, const memory::desc& want, Slot slot) {
  if (want != user && want == kept_desc && kept.numel() == static_cast<int64_t>(want.get_size())) {
    return memory(want, cpu_engine(), const_cast<uint8_t*>(kept.data<uint8_t>()));
  }
  return in_layout(stream, user, ptr, want, slot);
}

// Where a primitive writes a result whose final home is `ptr` (layout `user`).
memory out_layout(const memory::desc& user, void* ptr, const memory::desc& want, Slot slot) {
  if (want == user) return memory(user, cpu_engine(), ptr);
  return memory(want, cpu_engine(), scratch(slot, want.get_size()));
}

void copy_back(dnnl::stream& stream, memory result, const memory::desc& user, void* ptr) {
  if (result.get_data_handle() == ptr) return;
  memory plain(user, cpu_engine(), ptr);
  dnnl::reorder(result, plain).execute(stream, result, plain);
}

memory scratchpad(const dnnl::primitive_desc_base& pd) {
  auto desc = pd.scratchpad_desc();
  return memory(desc, cpu_engine(), scratch(kScratchpad, desc.get_size()));
}

void check_tensor(const paddle::Tensor& t, const char* what) {
  PD_CHECK(t.is_cpu(), "palm_conv2d: the ", what, " must be on the CPU");
  PD_CHECK(t.dtype() == paddle::DataType::FLOAT32, "palm_conv2d: the ", what, " must be float32");
  PD_CHECK(t.shape().size() == 4, "palm_conv2d: the ", what, " must be 4-D (NCHW or NHWC / OIHW)");
}

}  // namespace

std::vector<paddle::Tensor> PalmConv2dForward(const paddle::Tensor& x, const paddle::Tensor& w,
                                              const std::vector<int>& strides,
                                              const std::vector<int>& paddings,
                                              const std::vector<int>& dilations, int groups,
                                              bool input_grad, bool channels_last, bool bf16) {
  (void)input_grad;
  check_tensor(x, "input");
  check_tensor(w, "weight");
  std::lock_guard<std::mutex> lock(op_mutex());
  const Geometry g = make_geometry(x.shape(), w.shape(), strides, paddings, dilations, groups, channels_last, bf16);
  Primitives& p = primitives(g, false);
  std::vector<int64_t> out_shape = {g.dst[0], g.dst[1], g.dst[2], g.dst[3]};
  if (channels_last) out_shape = {g.dst[0], g.dst[2], g.dst[3], g.dst[1]};
  auto out = paddle::empty(out_shape, paddle::DataType::FLOAT32, paddle::CPUPlace());
  auto src_kept = kept_buffer(plain_src(g), p.forward_pd.src_desc());
  auto weights_kept = kept_buffer(plain_weights(g), p.forward_pd.weights_desc());
  dnnl::stream stream(cpu_engine());
  memory src = in_layout(stream, plain_src(g), x.data<float>(), p.forward_pd.src_desc(), kSrc,
                         src_kept.numel() > 1 ? src_kept.data<uint8_t>() : nullptr);
  memory weights = in_layout(stream, plain_weights(g), w.data<float>(), p.forward_pd.weights_desc(), kWeights,
                             weights_kept.numel() > 1 ? weights_kept.data<uint8_t>() : nullptr);
  memory dst = out_layout(plain_dst(g), out.data<float>(), p.forward_pd.dst_desc(), kDst);
  p.forward.execute(stream, {{DNNL_ARG_SRC, src},
                             {DNNL_ARG_WEIGHTS, weights},
                             {DNNL_ARG_DST, dst},
                             {DNNL_ARG_SCRATCHPAD, scratchpad(p.forward_pd)}});
  copy_back(stream, dst, plain_dst(g), out.data<float>());
  stream.wait();
  return {out, src_kept, weights_kept};
}

std::vector<paddle::Tensor> PalmConv2dBackward(const paddle::Tensor& x, const paddle::Tensor& w,
                                               const paddle::Tensor& dy, const paddle::Tensor& src_kept,
                                               const paddle::Tensor& weights_kept,
                                               const std::vector<int>& strides,
                                               const std::vector<int>& paddings,
                                               const std::vector<int>& dilations, int groups,
                                               bool input_grad, bool channels_last, bool bf16) {
  check_tensor(x, "input");
  check_tensor(w, "weight");
  check_tensor(dy, "output gradient");
  std::lock_guard<std::mutex> lock(op_mutex());
  const Geometry g = make_geometry(x.shape(), w.shape(), strides, paddings, dilations, groups, channels_last, bf16);
  Primitives& p = primitives(g, true);
  auto dx = paddle::empty(x.shape(), paddle::DataType::FLOAT32, paddle::CPUPlace());
  auto dw = paddle::empty(w.shape(), paddle::DataType::FLOAT32, paddle::CPUPlace());
  dnnl::stream stream(cpu_engine());

  // Gradient of the input: diff_dst (*) weights; skipped (dx left unset) when the
  // input needs no gradient, e.g. the images entering the first convolution.
  memory diff_dst =
      in_layout(stream, plain_dst(g), dy.data<float>(), p.data_pd->diff_dst_desc(), kDst);
  if (input_grad) {
    memory weights = reuse_or_reorder(stream, weights_kept, p.forward_pd.weights_desc(), plain_weights(g),
                                      w.data<float>(), p.data_pd->weights_desc(), kWeights);
    memory diff_src =
        out_layout(plain_src(g), dx.data<float>(), p.data_pd->diff_src_desc(), kSrc);
    p.data.execute(stream, {{DNNL_ARG_DIFF_DST, diff_dst},
                            {DNNL_ARG_WEIGHTS, weights},
                            {DNNL_ARG_DIFF_SRC, diff_src},
                            {DNNL_ARG_SCRATCHPAD, scratchpad(*p.data_pd)}});
    copy_back(stream, diff_src, plain_src(g), dx.data<float>());
  }

  // Gradient of the weights: src (*) diff_dst (the reordered diff_dst is reused when
  // both primitives want the same layout).
  memory diff_dst_w = p.weights_pd->diff_dst_desc() == p.data_pd->diff_dst_desc()
                          ? diff_dst
                          : in_layout(stream, plain_dst(g), dy.data<float>(),
                                      p.weights_pd->diff_dst_desc(), kDiffDst2);
  memory src = reuse_or_reorder(stream, src_kept, p.forward_pd.src_desc(), plain_src(g), x.data<float>(),
                                p.weights_pd->src_desc(), kSrc2);
  memory diff_weights = out_layout(plain_weights(g), dw.data<float>(),
                                   p.weights_pd->diff_weights_desc(), kDiffWeights);
  p.weights.execute(stream, {{DNNL_ARG_SRC, src},
                             {DNNL_ARG_DIFF_DST, diff_dst_w},
                             {DNNL_ARG_DIFF_WEIGHTS, diff_weights},
                             {DNNL_ARG_SCRATCHPAD, scratchpad(*p.weights_pd)}});
  copy_back(stream, diff_weights, plain_weights(g), dw.data<float>());
  stream.wait();
  return {dx, dw};
}

PD_BUILD_OP(palm_conv2d)
    .Inputs({"X", "W"})
    .Outputs({"Out", "SrcKept", "WeightsKept"})
    .Attrs({"strides: std::vector<int>", "paddings: std::vector<int>",
            "dilations: std::vector<int>", "groups: int", "input_grad: bool", "channels_last: bool",
            "bf16: bool"})
    .SetKernelFn(PD_KERNEL(PalmConv2dForward));

PD_BUILD_GRAD_OP(palm_conv2d)
    .Inputs({"X", "W", paddle::Grad("Out"), "SrcKept", "WeightsKept"})
    .Outputs({paddle::Grad("X"), paddle::Grad("W")})
    .Attrs({"strides: std::vector<int>", "paddings: std::vector<int>",
            "dilations: std::vector<int>", "groups: int", "input_grad: bool", "channels_last: bool",
            "bf16: bool"})
    .SetKernelFn(PD_KERNEL(PalmConv2dBackward));
