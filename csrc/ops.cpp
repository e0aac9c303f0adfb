// All cplxfast op schemas, in one place. Kernels are registered per dispatch key next to their
// implementations: csrc/cpu/<family>.cpp (CPU), csrc/cuda/<family>.cu (CUDA) and
// csrc/autograd/<family>.cpp (Autograd); fake kernels are registered from Python (cplxfast/ops.py).
#ifndef CPLXFAST_NO_PYTHON
#include <Python.h>  // first, as Python asks
#endif
#include <ATen/core/enum_tag.h>
#include <torch/library.h>

#ifndef CPLXFAST_NO_PYTHON
extern "C" {
// The library is loaded by `import cplxfast._C`; the module itself is empty (no pybind11):
// importing it runs the static TORCH_LIBRARY registrations below. Builds for C++ users
// (CMakeLists.txt) define CPLXFAST_NO_PYTHON and link the library instead.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}
#endif

TORCH_LIBRARY(cplxfast, m) {
  // ---- linear: y = x W^T + b with complex x and W = weight_re + i weight_im, b = bias_re +
  // i bias_im given as real parts (a layer's Parameters, or .real/.imag views of a complex
  // tensor: no copy either way). algorithm: "3m" (Gauss), "4m" (backend complex GEMM) or
  // "auto" (3m where it measured faster). Backward: grad_x = g conj(W), grad_W = g^T conj(x),
  // grad_b = sum g, returned as real parts; output_mask (x, weight, bias) selects them.
  // operand_dtype (mixed precision; set by the ops' autocast kernels, csrc/autocast/): the real
  // products take their operands rounded to bfloat16 or float16 and accumulate and return float32,
  // so the recombination runs in float32 (complex64 x only). None: the input's own precision.
  // weight_mask (masked layers): a real tensor of weight_re's shape, not differentiated; the op
  // computes with W * weight_mask and returns grad_W * weight_mask, the mask applied in the passes
  // that read W and write its gradient (no masked copy of W).
  m.def(
      "linear(Tensor x, Tensor weight_re, Tensor weight_im, Tensor? bias_re, Tensor? bias_im,"
      " str algorithm, ScalarType? operand_dtype=None, Tensor? weight_mask=None) -> Tensor");
  m.def(
      "linear_backward(Tensor grad, Tensor x, Tensor weight_re, Tensor weight_im, str algorithm,"
      " bool[3] output_mask, ScalarType? operand_dtype=None, Tensor? weight_mask=None)"
      " -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  // The same with a complex weight and bias (native complex parameters), complex gradients.
  m.def(
      "linear_complex(Tensor x, Tensor weight, Tensor? bias, str algorithm, ScalarType? operand_dtype=None)"
      " -> Tensor");
  m.def(
      "linear_complex_backward(Tensor grad, Tensor x, Tensor weight, str algorithm, bool[3] output_mask,"
      " ScalarType? operand_dtype=None) -> (Tensor, Tensor, Tensor)");

  // ---- convolution (1d/2d/3d, transposed): torch's conv semantics on complex x [B, C_in, *S]
  // with W = weight_re + i weight_im ([C_out, C_in / groups, *k], or [C_in, C_out / groups, *k]
  // when transposed) and b = bias_re + i bias_im [C_out], as real parts. padding is symmetric
  // zero padding (other modes and "same" are applied by the Python layer). algorithm: "3m"
  // (Gauss: three real convolutions of the operand planes), "4m" (real block form, one real
  // convolution of twice the channels; depthwise layers: the fused direct kernel) or "auto". Backward:
  // grad_x = conv's input gradient of (g, conj W), grad_W = its weight gradient of (g, conj x),
  // grad_b = sum of g over batch and space; output_mask (x, weight, bias). operand_dtype: 16-bit
  // operands as for linear, float32 accumulation; where the backend convolves in 16 bits natively
  // (cuDNN; CPUs with bf16/fp16 units) the results come back rounded to the operand dtype, so fp16
  // has fp16's range (65504), as torch's own fp16 convolutions (common/conv.h). weight_mask: as
  // for linear.
  m.def(
      "conv(Tensor x, Tensor weight_re, Tensor weight_im, Tensor? bias_re, Tensor? bias_im, int[] stride,"
      " int[] padding, int[] dilation, bool transposed, int[] output_padding, int groups, str algorithm,"
      " ScalarType? operand_dtype=None, Tensor? weight_mask=None) -> Tensor");
  m.def(
      "conv_backward(Tensor grad, Tensor x, Tensor weight_re, Tensor weight_im, int[] stride, int[] padding,"
      " int[] dilation, bool transposed, int[] output_padding, int groups, str algorithm, bool[3] output_mask,"
      " ScalarType? operand_dtype=None, Tensor? weight_mask=None) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  // The same with a complex weight and bias (native complex parameters), complex gradients.
  m.def(
      "conv_complex(Tensor x, Tensor weight, Tensor? bias, int[] stride, int[] padding, int[] dilation,"
      " bool transposed, int[] output_padding, int groups, str algorithm, ScalarType? operand_dtype=None)"
      " -> Tensor");
  m.def(
      "conv_complex_backward(Tensor grad, Tensor x, Tensor weight, int[] stride, int[] padding, int[] dilation,"
      " bool transposed, int[] output_padding, int groups, str algorithm, bool[3] output_mask,"
      " ScalarType? operand_dtype=None) -> (Tensor, Tensor, Tensor)");

  // ---- modReLU: out = z * relu(1 - tau / max(|z|, eps)), threshold tau real, broadcast against
  // z's trailing dims; eps is the modulus floor (cplxmodule 1e-5, complextorch 1e-12), and eps = 0
  // is torchcvnn's polar form relu(|z| - tau) z/|z|, relu(-tau) at z = 0 (SEMANTICS.md). Backward:
  // grad_input (conjugate-Wirtinger) and grad_threshold summed over the broadcast dims;
  // output_mask (input, threshold).
  m.def("modrelu(Tensor input, Tensor threshold, float eps=1e-05) -> Tensor");
  m.def(
      "modrelu_backward(Tensor grad, Tensor input, Tensor threshold, bool[2] output_mask, float eps=1e-05)"
      " -> (Tensor, Tensor)");

  // ---- complex batch norm with 2x2 whitening (cplxmodule's maths). Training: batch statistics,
  // returned as (mean [2, C], covariance [2, 2, C] with eps on the diagonal) for the module's
  // running-statistics update; eval: running_mean/running_var as they are (statistics outputs
  // empty). Backward takes the statistics the forward used; output_mask (input, weight, bias).
  m.def(
      "batch_norm(Tensor input, Tensor? weight, Tensor? bias, Tensor? running_mean, Tensor? running_var,"
      " bool training, float eps) -> (Tensor, Tensor, Tensor)");
  m.def(
      "batch_norm_backward(Tensor grad, Tensor input, Tensor? weight, Tensor mean, Tensor covariance,"
      " bool training, bool[3] output_mask, Tensor? grad_sums=None, int count=-1) -> (Tensor, Tensor, Tensor)");
  // Pieces for a batch norm whose statistics span processes (CplxSyncBatchNorm): the local
  // per-channel mean [2, C] and biased covariance [2, 2, C] (no eps), and the local gradient
  // sums [6, C] (sum g re, sum g im, sum g x'^T with x' = input - mean), all float64. Passing
  // all-reduced grad_sums and their element count to batch_norm_backward gives the gradient
  // through statistics over all processes. Not differentiable: their outputs are constants.
  m.def("batch_norm_stats(Tensor input) -> (Tensor, Tensor)");
  m.def("batch_norm_grad_sums(Tensor grad, Tensor input, Tensor mean) -> Tensor");

  // ---- Gaussian local reparametrisation (variational dropout layers, cplxmodule's maths):
  // out = mu + e sqrt(max(s2, 1e-8)) with mu complex, s2 real of mu's shape, and e complex
  // standard normal (each part N(0, 1/2)) drawn in the kernel from torch's default generator of
  // the device (torch.manual_seed repeats it). Also returns rng, the generator state it used
  // (int64 [2] on mu's device), from which the backward draws the same noise again: grad_s2 =
  // Re(conj(g) e) / (2 sqrt(s2)) where s2 > 1e-8, else 0 (grad_mu is g).
  // Tagged random so that torch.compile neither merges nor reorders two calls.
  m.def("gaussian_reparam(Tensor mu, Tensor s2) -> (Tensor, Tensor)", {at::Tag::nondeterministic_seeded});
  // The backward must get the forward's s2 as it was (its layout orders the noise).
  m.def("gaussian_reparam_backward(Tensor grad, Tensor s2, Tensor rng) -> Tensor");

  // ---- the Gaussian layers' training forward, fused (variational dropout, cplxmodule's maths):
  // out = mu + e sqrt(max(s2, 1e-8)) with mu = linear(x, W, b) (or conv), s2 = linear(|x|^2,
  // exp(log_sigma2)) (or conv, no bias), log_sigma2 real of the weight's shape; returns (out, s2,
  // rng), s2 and rng as gaussian_reparam's (the noise is that of gaussian_reparam(mu, s2) from the
  // same generator state). On the 3M path |x|^2 is a fourth plane of the pass that splits x and
  // the noise is added where the products are recombined. Backward: grad_mu = g to linear's
  // backward, grad_s2 from gaussian_reparam_backward, grad_x += 2 x (grad_s2 exp(log_sigma2)),
  // grad_log_sigma2 = exp(log_sigma2) * (grad_s2^T |x|^2); output_mask (x, weight, bias,
  // log_sigma2). conv_gaussian: a convolution (not transposed), zero padding.
  m.def(
      "linear_gaussian(Tensor x, Tensor weight_re, Tensor weight_im, Tensor? bias_re, Tensor? bias_im,"
      " Tensor log_sigma2, str algorithm) -> (Tensor, Tensor, Tensor)",
      {at::Tag::nondeterministic_seeded});
  m.def(
      "linear_gaussian_backward(Tensor grad, Tensor x, Tensor weight_re, Tensor weight_im, Tensor log_sigma2,"
      " Tensor s2, Tensor rng, str algorithm, bool[4] output_mask)"
      " -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "conv_gaussian(Tensor x, Tensor weight_re, Tensor weight_im, Tensor? bias_re, Tensor? bias_im,"
      " Tensor log_sigma2, int[] stride, int[] padding, int[] dilation, int groups, str algorithm)"
      " -> (Tensor, Tensor, Tensor)",
      {at::Tag::nondeterministic_seeded});
  m.def(
      "conv_gaussian_backward(Tensor grad, Tensor x, Tensor weight_re, Tensor weight_im, Tensor log_sigma2,"
      " Tensor s2, Tensor rng, int[] stride, int[] padding, int[] dilation, int groups, str algorithm,"
      " bool[4] output_mask) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
}
