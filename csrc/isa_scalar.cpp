// Portable scalar micro-kernels: plain loops a reader can check against the maths.
// They are the fallback on every CPU (x86 without AVX2, ARM, ...) and the behaviour the
// SIMD files must reproduce. Compiled with the baseline flags only.
#include <algorithm>
#include <cmath>

#include "isa.h"
#include "kernels.h"

namespace lenet_fast {
namespace scalar {
namespace {

void conv_plane(float* y, const PlaneArgs& a) {
    const int64_t Ho = a.H - a.R + 1, Wo = a.W - a.S + 1;
    for (int64_t i = 0; i < Ho * Wo; ++i) y[i] = a.bias;
    for (int64_t p = 0; p < a.npairs; ++p) {
        const float* x = a.x + a.cidx[p] * a.H * a.W;
        const float* w = a.w + a.widx[p] * a.R * a.S;
        for (int64_t i = 0; i < Ho; ++i)
            for (int64_t r = 0; r < a.R; ++r)
                for (int64_t s = 0; s < a.S; ++s) {
                    const float wv = w[r * a.S + s];
                    const float* xr = x + (i + r) * a.W + s;
                    float* yr = y + i * Wo;
                    for (int64_t j = 0; j < Wo; ++j) yr[j] += wv * xr[j];
                }
    }
}

void conv_acc_flat(float* const* y, const float* const* w, int64_t K, const float* x, int64_t W,
                   int64_t L, int64_t R, int64_t S, const float* bias) {
    if (bias != nullptr)
        for (int64_t k = 0; k < K; ++k)
            for (int64_t f = 0; f < L; ++f) y[k][f] = bias[k];
    for (int64_t k = 0; k < K; ++k)
        for (int64_t r = 0; r < R; ++r)
            for (int64_t s = 0; s < S; ++s) {
                const float wv = w[k][r * S + s];
                const float* xr = x + r * W + s;
                float* yk = y[k];
                for (int64_t f = 0; f < L; ++f) yk[f] += wv * xr[f];
            }
}

void conv_dw_plane(float* dw, const float* x, int64_t x_stride, const float* dy, int64_t dy_stride,
                   int64_t N, int64_t H, int64_t W, int64_t R, int64_t S) {
    const int64_t Ho = H - R + 1, Wo = W - S + 1;
    for (int64_t r = 0; r < R; ++r)
        for (int64_t s = 0; s < S; ++s) {
            double total = 0.0;  // float within an image, double across the batch
            for (int64_t n = 0; n < N; ++n) {
                const float* xn = x + n * x_stride;
                const float* dyn = dy + n * dy_stride;
                float acc = 0.0f;
                for (int64_t i = 0; i < Ho; ++i)
                    for (int64_t j = 0; j < Wo; ++j)
                        acc += dyn[i * Wo + j] * xn[(i + r) * W + j + s];
                total += acc;
            }
            dw[r * S + s] += static_cast<float>(total);
        }
}

void linear_rows(float* y, const float* x, const float* w, const float* b, int64_t N, int64_t I,
                 int64_t O) {
    for (int64_t n = 0; n < N; ++n)
        for (int64_t o = 0; o < O; ++o) {
            float acc = 0.0f;
            for (int64_t i = 0; i < I; ++i) acc += x[n * I + i] * w[o * I + i];
            y[n * O + o] = acc + (b ? b[o] : 0.0f);
        }
}

void axpy(float* y, float alpha, const float* x, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

void axpy_diff(float* y, float alpha, const float* a, const float* b, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] += alpha * (a[i] - b[i]);
}

void subsample_plane(float* y, const float* x, float coef, float bias, int64_t H, int64_t W) {
    const int64_t Ho = H / 2, Wo = W / 2;
    for (int64_t i = 0; i < Ho; ++i)
        for (int64_t j = 0; j < Wo; ++j) {
            const float* p = x + 2 * i * W + 2 * j;
            y[i * Wo + j] = coef * ((p[0] + p[1]) + (p[W] + p[W + 1])) + bias;
        }
}

float subsample_backward_plane(float* dx, const float* x, const float* dy, float coef, int64_t H,
                               int64_t W) {
    const int64_t Ho = H / 2, Wo = W / 2;
    float dcoef = 0.0f;
    for (int64_t i = 0; i < Ho; ++i)
        for (int64_t j = 0; j < Wo; ++j) {
            const int64_t o = 2 * i * W + 2 * j;
            const float g = dy[i * Wo + j];
            dcoef += g * ((x[o] + x[o + 1]) + (x[o + W] + x[o + W + 1]));
            dx[o] = dx[o + 1] = dx[o + W] = dx[o + W + 1] = coef * g;
        }
    return dcoef;
}

// tanh as a [13/6] rational function on [-7.9053, 7.9053] (the coefficients Eigen uses for
// float tanh; a few float32 ulp from the true value), x itself below 4e-4. The same formula
// as the AVX2 path, and 5-10x faster than std::tanh per element. NaN propagates.
float tanh_rational(float a) {
    // Branch-free (selects, not jumps) so that compilers vectorise the loop below. A NaN
    // fails both comparisons and passes through.
    const float c = 7.90531110763549805f;
    const float x = a < -c ? -c : (a > c ? c : a);
    const float x2 = x * x;
    float p = x2 * -2.76076847742355e-16f + 2.00018790482477e-13f;
    p = x2 * p + -8.60467152213735e-11f;
    p = x2 * p + 5.12229709037114e-08f;
    p = x2 * p + 1.48572235717979e-05f;
    p = x2 * p + 6.37261928875436e-04f;
    p = x2 * p + 4.89352455891786e-03f;
    float q = x2 * 1.19825839466702e-06f + 1.18534705686654e-04f;
    q = x2 * q + 2.26843463243900e-03f;
    q = x2 * q + 4.89352518554385e-03f;
    const float r = x * p / q;
    return (a < 0.0004f && a > -0.0004f) ? a : r;
}

void squash(float* y, const float* a, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = kSquashA * tanh_rational(kSquashS * a[i]);
}

void squash_backward(float* da, const float* y, const float* dy, int64_t n) {
    constexpr float k = kSquashS / kSquashA, A2 = kSquashA * kSquashA;
    for (int64_t i = 0; i < n; ++i) da[i] = dy[i] * (k * (A2 - y[i] * y[i]));
}

void rbf_rows(float* y, const float* x, const float* c, int64_t N, int64_t M, int64_t J) {
    for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < M; ++i) {
            float acc = 0.0f;
            for (int64_t j = 0; j < J; ++j) {
                const float d = x[n * J + j] - c[i * J + j];
                acc += d * d;
            }
            y[n * M + i] = acc;
        }
}

void outer_update(float* w, const float* step, const float* x, float d, int64_t n) {
    for (int64_t i = 0; i < n; ++i) w[i] -= step[i] * (d * x[i]);
}

void conv_dw_flat(float* const* dw, const float* const* dy, int64_t K, const float* x, int64_t W,
                  int64_t L, int64_t R, int64_t S) {
    for (int64_t k = 0; k < K; ++k)
        for (int64_t r = 0; r < R; ++r)
            for (int64_t s = 0; s < S; ++s) {
                const float* xr = x + r * W + s;
                float acc = 0.0f;
                for (int64_t f = 0; f < L; ++f) acc += dy[k][f] * xr[f];
                dw[k][r * S + s] = acc;
            }
}

void conv_acc_rows(float* const* y, const float* const* w, int64_t K, const float* x, int64_t W,
                   int64_t Ho, int64_t Wo, int64_t R, int64_t S, int64_t z0, int64_t z1) {
    for (int64_t k = 0; k < K; ++k)
        for (int64_t p = 0; p < Ho; ++p) {
            const int64_t lo = std::max<int64_t>(0, z0 - p), hi = std::min<int64_t>(R - 1, z1 - p);
            float* yp = y[k] + p * W;
            for (int64_t r = lo; r <= hi; ++r)
                for (int64_t s = 0; s < S; ++s) {
                    const float wv = w[k][r * S + s];
                    const float* xr = x + (p + r) * W + s;
                    for (int64_t j = 0; j < Wo; ++j) yp[j] += wv * xr[j];
                }
        }
}

// Eight interleaved chains: one would wait on the add latency at every element.
double sum_floats(const float* a, int64_t n) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0, tail = 0;
    const int64_t full = n / 8 * 8;
    for (int64_t i = 0; i < full; i += 8) {
        s0 += a[i];
        s1 += a[i + 1];
        s2 += a[i + 2];
        s3 += a[i + 3];
        s4 += a[i + 4];
        s5 += a[i + 5];
        s6 += a[i + 6];
        s7 += a[i + 7];
    }
    for (int64_t i = full; i < n; ++i) tail += a[i];
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)) + tail;
}

void matmul(float* y, const float* a, int64_t lda_n, int64_t lda_k, const float* b, int64_t N,
            int64_t Kd, int64_t I) {
    for (int64_t n = 0; n < N; ++n) {
        float* yn = y + n * I;
        for (int64_t i = 0; i < I; ++i) yn[i] = 0.0f;
        for (int64_t k = 0; k < Kd; ++k) {
            const float av = a[n * lda_n + k * lda_k];
            const float* bk = b + k * I;
            for (int64_t i = 0; i < I; ++i) yn[i] += av * bk[i];
        }
    }
}

// The FMA probe on the scalar path: one float per chain, each multiply-add a multiply and
// an add (this path never contracts them into an FMA, CMakeLists.txt's floating-point
// policy), so it gives the rate of the scalar kernels' arithmetic, not a vector peak. The
// empty asm says each chain lives in a register of its own, so the compiler cannot pack
// the 12 chains into SSE vectors (that would measure a 4-wide rate) nor drop them.
// m < 1: every chain settles at c / (1 - m), no overflow and no denormals.
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define LENET_FAST_OWN_REGISTER(v) __asm__ volatile("" : "+x"(v))
#elif defined(__GNUC__) && defined(__aarch64__)
#define LENET_FAST_OWN_REGISTER(v) __asm__ volatile("" : "+w"(v))
#else
#define LENET_FAST_OWN_REGISTER(v) (void)(v)
#endif

int64_t fma_chains(int64_t rounds, double* sink) {
    static_assert(kFmaChains == 12, "one variable per chain below");
    const float m = 0.999f, c = 0.001f;
    // named variables, not an array: the compiler keeps each in a register
    float a0 = 0, a1 = 1, a2 = 2, a3 = 3, a4 = 4, a5 = 5, a6 = 6, a7 = 7, a8 = 8, a9 = 9, a10 = 10,
          a11 = 11;
#define LENET_FAST_STEP(a) \
    a = a * m + c;         \
    LENET_FAST_OWN_REGISTER(a)
    for (int64_t i = 0; i < rounds; ++i) {
        LENET_FAST_STEP(a0);
        LENET_FAST_STEP(a1);
        LENET_FAST_STEP(a2);
        LENET_FAST_STEP(a3);
        LENET_FAST_STEP(a4);
        LENET_FAST_STEP(a5);
        LENET_FAST_STEP(a6);
        LENET_FAST_STEP(a7);
        LENET_FAST_STEP(a8);
        LENET_FAST_STEP(a9);
        LENET_FAST_STEP(a10);
        LENET_FAST_STEP(a11);
    }
#undef LENET_FAST_STEP
    *sink = double(a0) + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;
    return rounds * kFmaChains;
}
#undef LENET_FAST_OWN_REGISTER

}  // namespace

const KernelTable kTable = {
    "scalar",      conv_plane,      conv_dw_plane,   linear_rows,
    axpy,          axpy_diff,       subsample_plane, subsample_backward_plane,
    squash,        squash_backward, rbf_rows,        outer_update,
    conv_acc_flat, conv_dw_flat,    conv_acc_rows,   matmul,
    sum_floats,    nullptr,         nullptr,         nullptr,
    fma_chains,
};

}  // namespace scalar
}  // namespace lenet_fast
