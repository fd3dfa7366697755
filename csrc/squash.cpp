// The paper's squashing function f(a) = A tanh(S a) (Eq. 6), element-wise, in chunks of
// 4096 elements, one task each.
#include <algorithm>

#include "dispatch.h"
#include "kernels.h"

namespace lenet_fast {

namespace {
constexpr int64_t kChunk = 4096;
}

void squash_forward(float* y, const float* a, int64_t n) {
    const KernelTable& kt = active_kernels();
    parallel_for((n + kChunk - 1) / kChunk, 16 * kChunk, [&](int64_t t) {
        const int64_t i = t * kChunk;
        kt.squash(y + i, a + i, std::min(kChunk, n - i));
    });
}

void squash_backward(float* da, const float* y, const float* dy, int64_t n) {
    const KernelTable& kt = active_kernels();
    parallel_for((n + kChunk - 1) / kChunk, 2 * kChunk, [&](int64_t t) {
        const int64_t i = t * kChunk;
        kt.squash_backward(da + i, y + i, dy + i, std::min(kChunk, n - i));
    });
}

}  // namespace lenet_fast
