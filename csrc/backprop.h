// Steps of the backward pass that the per-layer drivers (conv2d.cpp, rbf.cpp) and the
// fused network (csrc/network/) both take, written once so the two paths cannot drift apart:
// they give the same bits because they run the same loops.
#pragma once

#include <algorithm>
#include <cstdint>

#include "isa.h"

namespace lenet_fast {

// wr (T,R*S) = each of the T kernels w (T,R*S) rotated by 180 degrees: the kernels of the
// input gradient of a valid correlation (a full correlation of dy with them).
inline void rotate_kernels(float* wr, const float* w, int64_t T, int64_t RS) {
    for (int64_t t = 0; t < T; ++t)
        for (int64_t q = 0; q < RS; ++q) wr[t * RS + q] = w[t * RS + (RS - 1 - q)];
}

// Copies the plane dy (Ho,Wo) into the interior of dyp (row stride Wp), at row R-1 and
// column S-1: with dyp's border zero, dyp is dy zero-padded by (R-1, S-1) on every side,
// the input of the full correlation. Only the interior is written.
inline void pad_plane(float* dyp, int64_t Wp, const float* dy, int64_t Ho, int64_t Wo, int64_t R,
                      int64_t S) {
    for (int64_t i = 0; i < Ho; ++i)
        std::copy(dy + i * Wo, dy + (i + 1) * Wo, dyp + (i + R - 1) * Wp + (S - 1));
}

// The Euclidean RBF y_i = sum_j (x_j - c_ij)^2 back-propagated for one input row:
// dx (J) = 2 sum_i dy_i (x - c_i), over the M centres c (M,J) in order (overwrites dx).
inline void rbf_input_gradient(float* dx, const float* dy, const float* x, const float* c,
                               int64_t M, int64_t J, const KernelTable& kt) {
    std::fill(dx, dx + J, 0.0f);
    for (int64_t i = 0; i < M; ++i) kt.axpy_diff(dx, 2.0f * dy[i], x, c + i * J, J);
}

// ... and for centre i over a batch: dc_i (J) = -2 sum_n dy[n,i] (x_n - c_i), over the N
// rows x (N,J), dy (N,M) in order (overwrites dci).
inline void rbf_centre_gradient(float* dci, const float* dy, const float* x, const float* ci,
                                int64_t i, int64_t N, int64_t M, int64_t J, const KernelTable& kt) {
    std::fill(dci, dci + J, 0.0f);
    for (int64_t n = 0; n < N; ++n) kt.axpy_diff(dci, -2.0f * dy[n * M + i], x + n * J, ci, J);
}

}  // namespace lenet_fast
