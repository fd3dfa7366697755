// The whole LeNet-5 in one C++ call each: inference (network_forward), the gradients of a
// batch (network_gradients) and one pass of stochastic diagonal Levenberg-Marquardt (SDLM,
// the paper's Appendix C, one pattern per update: sdlm_pass). Python orchestrates passes
// (the Hessian estimate, the steps eps_k, the order).
//
// Shapes (float32, C-contiguous):
//   c1.w (6,1,5,5)  c1.b (6,)   s2.coef (6,)   s2.bias (6,)   c3.w (T,5,5)   c3.b (16,)
//   s4.coef (16,)   s4.bias (16,)  c5.w (120,16,5,5)  c5.b (120,)  f6.w (84,120)  f6.b (84,)
//   rbf.c (10,84)   x (N,1,32,32)  labels (N,) in 0..9  order (P,) in [0,N)
//   table (6,16), nonzero = connected, T nonzero entries (60 for the paper's Table I)
// All arguments are trusted (the bindings, bind_network.cpp, validate them).
#pragma once

#include <cstdint>

namespace lenet_fast {

// The trainable arrays, in layout.PARAM_SHAPES order, then the RBF centres.
enum LeNetParam : int {
    kC1W,
    kC1B,
    kS2Coef,
    kS2Bias,
    kC3W,
    kC3B,
    kS4Coef,
    kS4Bias,
    kC5W,
    kC5B,
    kF6W,
    kF6B,
    kRbfC,
    kNumLeNetParams
};

// Element count of each array; c3.w's depends on the table: T*25.
int64_t lenet_param_size(int param, int64_t c3_pairs);

// --- inference ----------------------------------------------------------------------------
// y (N,10) = the RBF penalties of x (N,1,32,32), exactly LeNet5._forward's with the fast
// backend: the layer kernels' micro-kernels in the same order on each image, so the same
// bits as the layer-by-layer kernel calls (kernels.h) at any batch size. p[q] the
// parameters (read only; p[kRbfC] the centres). Blocks of 8 images, threads over the
// blocks (each image is computed by one thread: the result does not depend on the thread
// count): C1 .. S4 with the block's images in the lanes of each vector when the ISA has
// KernelTable::convs8 and the block has at least 5 images, else image by image, every
// activation in a per-thread workspace; then C5, F6 and the RBF on the block. No
// allocation per image.
struct ForwardOptions {
    bool subsample_mean = false;  // S2/S4 multiply 0.25 coef (the mean) instead of coef
};

void network_forward(float* y, const float* const* p, const float* x, int64_t N,
                     const uint8_t* table, const ForwardOptions& opt);

// --- training -----------------------------------------------------------------------------
struct LossOptions {
    bool map_loss = false;        // false: Eq. 8, E = s y_label; true: Eq. 9 with map_j
    double loss_scale = 1.0;      // s: multiplies E and dE/dy
    double map_j = 10.0;          // Eq. 9's j > 0
    bool subsample_mean = false;  // S2/S4 multiply 0.25 coef (the mean) instead of coef (the sum)
};

struct GradResult {
    double loss_sum = 0.0;  // sum over the patterns of s E (each in double)
    int64_t errors = 0;     // patterns whose argmin(y) != label (before any update)
};

// The gradients g[q] (shapes of p[q], overwritten) of the batch-mean loss of x and labels,
// and the penalties y (N,10) (may be null). g[kRbfC] null: the centres are not trained.
// The forward pass is network_forward's (the same y bits). Threads over fixed blocks of 8
// images; every sum over the batch runs in image or block order, so the result does not
// depend on the thread count. Up to S4 the gradients are summed per image in float, then
// over the images in double; C5's and F6's weight gradients are float sums over the
// batch, in image order.
GradResult network_gradients(float* const* g, float* y, const float* const* p, const float* x,
                             const int64_t* labels, int64_t N, const uint8_t* table,
                             const LossOptions& opt);

struct SdlmNet {
    // Updated in place. p[kRbfC] is the RBF centres: trained when step[kRbfC] is not null,
    // else only read.
    float* p[kNumLeNetParams] = {};
    // eps_k, one per element of p (same shapes).
    const float* step[kNumLeNetParams] = {};
};

using SdlmResult = GradResult;

// One SDLM pass over x[order[0]], x[order[1]], ..., x[order[P-1]]: per pattern,
// network_gradients on it alone (its error counted before its update), then
// p -= step * g for every trained array, a multiply rounded to float then a subtraction:
// the bits of train.py's Python loop (model.gradients, then params -= steps * grads).
// Allocates its workspace once, before the loop. Runs on the calling thread alone,
// whatever num_threads() says (a SerialScope): one pattern is too little work for a thread
// team, which costs milliseconds when another process holds the other cores. Passes over
// different models may run on different threads at once.
SdlmResult sdlm_pass(const SdlmNet& net, const float* x, const int64_t* labels,
                     const int64_t* order, int64_t P, const uint8_t* table, const LossOptions& opt);

}  // namespace lenet_fast
