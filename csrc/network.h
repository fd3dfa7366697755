// The whole LeNet-5 in one C++ call: one pass of stochastic diagonal Levenberg-Marquardt
// (SDLM, the paper's Appendix C), one pattern per update. Python orchestrates passes (the
// Hessian estimate, the steps eps_k, the order); this runs the per-pattern loop, which in
// Python costs ~200 us of call overhead and temporaries per pattern.
//
// Per pattern, exactly as python/lenet_fast/model.py and train.py's _sdlm_pass do it with
// the fast backend, through the same kernel drivers at batch 1 (so the same bits):
//   forward  C1 -> f -> S2 -> f -> C3 -> f -> S4 -> f -> C5 -> f -> F6 -> f -> RBF: y (10,)
//   error    argmin(y) != label (the first minimum, a NaN counts as the minimum, as numpy)
//   loss     LeNet5.loss_gradient at batch 1: E and dE/dy
//   backward LeNet5._backward (C1 without its input gradient)
//   update   p -= step * grad, every parameter (F6 and C5 during the backward, once their
//            input gradient is computed; the others after it: the same result)
//
// Shapes (float32, C-contiguous):
//   c1.w (6,1,5,5)  c1.b (6,)   s2.coef (6,)   s2.bias (6,)   c3.w (T,5,5)   c3.b (16,)
//   s4.coef (16,)   s4.bias (16,)  c5.w (120,16,5,5)  c5.b (120,)  f6.w (84,120)  f6.b (84,)
//   rbf.c (10,84)   x (N,1,32,32)  labels (N,) in 0..9  order (P,) in [0,N)
//   table (6,16), nonzero = connected, T nonzero entries (60 for the paper's Table I)
#pragma once

#include <cstdint>

namespace lenet_fast {

// The trainable arrays, in model.PARAM_SHAPES order, then the RBF centres.
enum LeNetParam : int {
    kC1W, kC1B, kS2Coef, kS2Bias, kC3W, kC3B, kS4Coef, kS4Bias,
    kC5W, kC5B, kF6W, kF6B, kRbfC,
    kNumLeNetParams
};

// Element count of each array; c3.w's depends on the table: T*25.
int64_t lenet_param_size(int param, int64_t c3_pairs);

struct SdlmOptions {
    bool map_loss = false;        // false: Eq. 8, E = s y_label; true: Eq. 9 with map_j
    double loss_scale = 1.0;      // s: multiplies E and dE/dy
    double map_j = 10.0;          // Eq. 9's j > 0
    bool subsample_mean = false;  // S2/S4 multiply 0.25 coef (the mean) instead of coef (the sum)
};

struct SdlmNet {
    // Updated in place. p[kRbfC] is the RBF centres: trained when step[kRbfC] is not null,
    // else only read.
    float* p[kNumLeNetParams] = {};
    // eps_k, one per element of p (same shapes).
    const float* step[kNumLeNetParams] = {};
};

struct SdlmResult {
    double loss_sum = 0.0;  // sum over the patterns of E (each accumulated in double)
    int64_t errors = 0;     // patterns whose argmin(y) != label, before their update
};

// One SDLM pass over x[order[0]], x[order[1]], ..., x[order[P-1]]. All arguments are
// trusted (the binding validates them). Allocates its workspace once, before the loop.
// Runs on the calling thread alone, whatever num_threads() says (a SerialScope): the
// kernels are too small at batch 1 for a parallel region to pay, and one costs
// milliseconds when another process holds the other cores. Passes over different models
// may run on different threads at once.
SdlmResult sdlm_pass(const SdlmNet& net, const float* x, const int64_t* labels,
                     const int64_t* order, int64_t P, const uint8_t* table,
                     const SdlmOptions& opt);

}  // namespace lenet_fast

namespace lenet_fast {

// --- inference: the whole forward pass in one call --------------------------------------
// y (N,10) = the RBF penalties of x (N,1,32,32), exactly LeNet5._forward's with the fast
// backend: the same micro-kernels in the same order on each image, so the same bits as the
// layer-by-layer kernel calls (kernels.h) at any batch size. p[q] as SdlmNet's (read only;
// p[kRbfC] the centres). Image by image, every activation in one per-thread workspace
// (~24 KB: stays in L1), threads over the images (parallel_for: each image is computed by
// one thread, so the result does not depend on the thread count). No allocation per image.
struct ForwardOptions {
    bool subsample_mean = false;  // S2/S4 multiply 0.25 coef (the mean) instead of coef
};

void network_forward(float* y, const float* const* p, const float* x, int64_t N,
                     const uint8_t* table, const ForwardOptions& opt);

}  // namespace lenet_fast
