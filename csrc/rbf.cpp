// Euclidean RBF output: y[n,i] = sum_j (x[n,j] - c[i,j])^2 (paper Eq. 7).
// Backward as two race-free loops: dx parallel over the batch, dc over the centres.
#include <algorithm>

#include "dispatch.h"
#include "kernels.h"

namespace lenet_fast {

void rbf_forward(float* y, const float* x, const float* c, int64_t N, int64_t M, int64_t J) {
    const Isa& isa = active_isa();
    constexpr int64_t kRows = 8;
    parallel_for((N + kRows - 1) / kRows, kRows * M * J, [&](int64_t blk) {
        const int64_t n0 = blk * kRows, rows = std::min(kRows, N - n0);
        isa.rbf_rows(y + n0 * M, x + n0 * J, c, rows, M, J);
    });
}

void rbf_backward(float* dx, float* dc, const float* x, const float* c, const float* dy,
                  int64_t N, int64_t M, int64_t J) {
    const Isa& isa = active_isa();
    // dy/dx[n,j] = 2 sum_i dy[n,i] (x[n,j] - c[i,j]);  dy/dc[i,j] = -2 sum_n dy[n,i] (...)
    parallel_for(N, M * J, [&](int64_t n) {
        float* dxn = dx + n * J;
        std::fill(dxn, dxn + J, 0.0f);
        for (int64_t i = 0; i < M; ++i) isa.axpy_diff(dxn, 2.0f * dy[n * M + i], x + n * J, c + i * J, J);
    });
    parallel_for(M, N * J, [&](int64_t i) {
        float* dci = dc + i * J;
        std::fill(dci, dci + J, 0.0f);
        for (int64_t n = 0; n < N; ++n)
            isa.axpy_diff(dci, -2.0f * dy[n * M + i], x + n * J, c + i * J, J);
    });
}

}  // namespace lenet_fast
