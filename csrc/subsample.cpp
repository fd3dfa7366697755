// Trainable 2x2 subsampling (S2, S4): y = coef * (sum of each 2x2 block) + bias, per map.
// Backward: one task per image writes dx and a partial sum per map; the partials are then
// added over the batch in a fixed order, so the result does not depend on the thread count.
#include <vector>

#include "dispatch.h"
#include "kernels.h"

namespace lenet_fast {

void subsample_forward(float* y, const float* x, const float* coef, const float* bias, int64_t N,
                       int64_t C, int64_t H, int64_t W) {
    const KernelTable& kt = active_kernels();
    const int64_t in_plane = H * W, out_plane = (H / 2) * (W / 2);
    parallel_for(N * C, in_plane, [&](int64_t nc) {
        const int64_t c = nc % C;
        kt.subsample_plane(y + nc * out_plane, x + nc * in_plane, coef[c], bias[c], H, W);
    });
}

void subsample_backward(float* dx, float* dcoef, float* dbias, const float* x, const float* coef,
                        const float* dy, int64_t N, int64_t C, int64_t H, int64_t W) {
    const KernelTable& kt = active_kernels();
    const int64_t in_plane = H * W, out_plane = (H / 2) * (W / 2);
    // One partial dcoef per (image, map), added over the batch below in a fixed order.
    std::vector<float> part(static_cast<size_t>(N * C));
    parallel_for(N, C * in_plane, [&](int64_t n) {
        for (int64_t c = 0; c < C; ++c) {
            const int64_t nc = n * C + c;
            part[nc] = kt.subsample_backward_plane(dx + nc * in_plane, x + nc * in_plane,
                                                   dy + nc * out_plane, coef[c], H, W);
        }
    });
    for (int64_t c = 0; c < C; ++c) {
        double dc = 0.0, dbsum = 0.0;
        for (int64_t n = 0; n < N; ++n) {
            dc += part[n * C + c];
            const float* g = dy + (n * C + c) * out_plane;
            for (int64_t i = 0; i < out_plane; ++i) dbsum += g[i];
        }
        dcoef[c] = static_cast<float>(dc);
        dbias[c] = static_cast<float>(dbsum);
    }
}

}  // namespace lenet_fast
