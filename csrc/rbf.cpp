// Euclidean RBF output: y[n,i] = sum_j (x[n,j] - c[i,j])^2 (paper Eq. 7).
// Backward as two race-free loops: dx parallel over the batch, dc over the centres.
#include <algorithm>

#include "backprop.h"
#include "dispatch.h"
#include "kernels.h"

namespace lenet_fast {

void rbf_forward(float* y, const float* x, const float* c, int64_t N, int64_t M, int64_t J) {
    const KernelTable& kt = active_kernels();
    constexpr int64_t kRows = 8;
    parallel_for((N + kRows - 1) / kRows, kRows * M * J, [&](int64_t blk) {
        const int64_t n0 = blk * kRows, rows = std::min(kRows, N - n0);
        kt.rbf_rows(y + n0 * M, x + n0 * J, c, rows, M, J);
    });
}

void rbf_backward(float* dx, float* dc, const float* x, const float* c, const float* dy, int64_t N,
                  int64_t M, int64_t J) {
    const KernelTable& kt = active_kernels();
    // dy/dx[n,j] = 2 sum_i dy[n,i] (x[n,j] - c[i,j]);  dy/dc[i,j] = -2 sum_n dy[n,i] (...)
    parallel_for(N, M * J, [&](int64_t n) {
        rbf_input_gradient(dx + n * J, dy + n * M, x + n * J, c, M, J, kt);
    });
    parallel_for(M, N * J, [&](int64_t i) {
        rbf_centre_gradient(dc + i * J, dy, x, c + i * J, i, N, M, J, kt);
    });
}

}  // namespace lenet_fast
