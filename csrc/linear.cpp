// Full connection (F6, and C5 on a 5x5 input). Forward: rows of the batch in blocks of 8,
// one task each. Backward as two race-free loops: dx parallel over the batch, dw and db
// parallel over the outputs, each summing over the batch in a fixed order.
#include <algorithm>

#include "dispatch.h"
#include "kernels.h"

namespace lenet_fast {

void linear_forward(float* y, const float* x, const float* w, const float* b, int64_t N, int64_t I,
                    int64_t O) {
    const KernelTable& kt = active_kernels();
    constexpr int64_t kRows = 8;
    parallel_for((N + kRows - 1) / kRows, kRows * I * O, [&](int64_t blk) {
        const int64_t n0 = blk * kRows, rows = std::min(kRows, N - n0);
        kt.linear_rows(y + n0 * O, x + n0 * I, w, b, rows, I, O);
    });
}

void linear_backward(float* dx, float* dw, float* db, const float* x, const float* w,
                     const float* dy, int64_t N, int64_t I, int64_t O) {
    const KernelTable& kt = active_kernels();
    parallel_for(N, I * O, [&](int64_t n) {
        float* dxn = dx + n * I;
        std::fill(dxn, dxn + I, 0.0f);
        for (int64_t o = 0; o < O; ++o) kt.axpy(dxn, dy[n * O + o], w + o * I, I);
    });
    parallel_for(O, N * I, [&](int64_t o) {
        float* dwo = dw + o * I;
        std::fill(dwo, dwo + I, 0.0f);
        double acc = 0.0;
        for (int64_t n = 0; n < N; ++n) {
            kt.axpy(dwo, dy[n * O + o], x + n * I, I);
            acc += dy[n * O + o];
        }
        db[o] = static_cast<float>(acc);
    });
}

}  // namespace lenet_fast
