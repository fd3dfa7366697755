// lenet_fast: the one C++ API header. Every forward/backward kernel of LeNet-5.
//
// Legend of letters used in every shape comment below:
//   N  batch                       C  input maps          K  output maps
//   H, W  input height, width      R, S  kernel height, width
//   Ho = H - R + 1, Wo = W - S + 1 (valid cross-correlation, stride 1)
//   T  number of connected (input, output) pairs of a sparse table
//   I, O  inputs, outputs of a full connection
//   J  RBF input size, M  number of RBF centres
//
// Conventions: float32, C-contiguous, NCHW. Outputs come first, then inputs, then sizes.
// Gradients are named dx, dw, db: the gradients of sum(y * dy). Every output array is
// written in full (no need to zero it). The functions touch no global state except the
// read-only ISA table and the thread count (dispatch.h), so they are safe to call from
// many threads at once. Inputs are validated by the bindings; here they are trusted.
#pragma once

#include <cstdint>

namespace lenet_fast {

// Sizes of a 2-D valid convolution. Ho() and Wo() are the output sizes.
struct ConvShape {
    int64_t N, C, H, W;  // input x is (N,C,H,W)
    int64_t K, R, S;     // weights are (K,C,R,S) (dense) or (T,R,S) (sparse)
    int64_t Ho() const { return H - R + 1; }
    int64_t Wo() const { return W - S + 1; }
};

// --- dense 5x5 (any RxS) convolution: C1, C5 ---------------------------------------
// y (N,K,Ho,Wo) = b + correlation of x (N,C,H,W) with w (K,C,R,S); b is (K,)
void conv2d_forward(float* y, const float* x, const float* w, const float* b, const ConvShape& s);
// dx (N,C,H,W), dw (K,C,R,S), db (K,) from x (N,C,H,W), w (K,C,R,S), dy (N,K,Ho,Wo)
void conv2d_backward(float* dx, float* dw, float* db, const float* x, const float* w,
                     const float* dy, const ConvShape& s);

// --- sparse convolution driven by a connection table: C3 ------------------------------
// table is (C,K), nonzero = connected; w is (T,R,S), one kernel per connected pair,
// ordered by output map k, then input map c ascending; b is (K,).
// y (N,K,Ho,Wo)[:,k] = b[k] + sum over connected c of correlation(x[:,c], w[t(c,k)])
void sparse_conv2d_forward(float* y, const float* x, const float* w, const float* b,
                           const uint8_t* table, const ConvShape& s);
// dx (N,C,H,W), dw (T,R,S), db (K,) from x, w (T,R,S), dy (N,K,Ho,Wo), table (C,K)
void sparse_conv2d_backward(float* dx, float* dw, float* db, const float* x, const float* w,
                            const float* dy, const uint8_t* table, const ConvShape& s);

// --- trainable 2x2 subsampling: S2, S4 ------------------------------------------------
// y (N,C,H/2,W/2) = coef[c] * (sum of the 2x2 block of x (N,C,H,W)) + bias[c]; H, W even
void subsample_forward(float* y, const float* x, const float* coef, const float* bias, int64_t N,
                       int64_t C, int64_t H, int64_t W);
// dx (N,C,H,W), dcoef (C,), dbias (C,) from x (N,C,H,W), coef (C,), dy (N,C,H/2,W/2)
void subsample_backward(float* dx, float* dcoef, float* dbias, const float* x, const float* coef,
                        const float* dy, int64_t N, int64_t C, int64_t H, int64_t W);

// --- full connection: F6 (and C5 when its input is 5x5) ------------------------------
// y (N,O) = x (N,I) @ w (O,I)^T + b (O,)
void linear_forward(float* y, const float* x, const float* w, const float* b, int64_t N, int64_t I,
                    int64_t O);
// dx (N,I), dw (O,I), db (O,) from x (N,I), w (O,I), dy (N,O)
void linear_backward(float* dx, float* dw, float* db, const float* x, const float* w,
                     const float* dy, int64_t N, int64_t I, int64_t O);

// --- scaled tanh f(a) = A tanh(S a), A = 1.7159, S = 2/3 (paper Eq. 6) -----------------
constexpr float kSquashA = 1.7159f;
constexpr float kSquashS = 2.0f / 3.0f;
// y (n) = f(a (n))
void squash_forward(float* y, const float* a, int64_t n);
// da (n) = dy * f'(a), with f'(a) = (S/A) (A^2 - y^2) computed from y = f(a) (n)
void squash_backward(float* da, const float* y, const float* dy, int64_t n);

// --- Euclidean RBF output ---------------------------------------------------------------
// y (N,M)[n,i] = sum_j (x[n,j] - c[i,j])^2 for x (N,J), c (M,J)
void rbf_forward(float* y, const float* x, const float* c, int64_t N, int64_t M, int64_t J);
// dx (N,J), dc (M,J) from x (N,J), c (M,J), dy (N,M)
void rbf_backward(float* dx, float* dc, const float* x, const float* c, const float* dy, int64_t N,
                  int64_t M, int64_t J);

// --- a raw digit into MNIST's 28x28 format (paper III-A; QMNIST's reconstruction) -----
// One grey image of any size H x W >= 1 x 1, C-contiguous, of one of four pixel types.
enum class PixelType : int { kU8 = 0, kU16 = 1, kF32 = 2, kF64 = 3 };
struct GreyImage {
    const void* data;  // (H,W) pixels of `type`
    PixelType type;
    int64_t H, W;
    double pixel_max;  // the value of full white (> 0)
};
// Polarity: -1 decides from the border (its lower median above pixel_max / 2: dark ink on
// light paper, inverted), 0 never inverts, 1 always inverts.
constexpr int kInvertAuto = -1;
// Ink is |pixel - background| (the background: the border's lower median) where it is at
// least this fraction of pixel_max, and 0 elsewhere: half of one of MNIST's 255 grey levels.
constexpr double kInkThreshold = 0.5 / 255.0;
// ...or kNoiseFactor times the border's spread (lower median of |border - level|), if more:
// 8 spreads are about 5.4 standard deviations of Gaussian noise.
constexpr double kNoiseFactor = 8.0;
// What normalize_digit found.
enum class DigitStatus : int8_t { kInk = 0, kNoInk = 1, kNotFinite = 2, kOutOfRange = 3 };
// out (28,28) uint8 = img as MNIST made its digits: ink bounding box, square crop of side
// max(h, w, 10), doubled while under 20 px, area-coverage resampling to 20x20, darkest ink
// 255, centre of mass at pixel 14. Anything but kInk leaves out all zero.
DigitStatus normalize_digit(uint8_t* out, const GreyImage& img, int invert);
// out (N,28,28), status (N,) for the N images imgs[0..N): parallel over the images.
void normalize_digits(uint8_t* out, DigitStatus* status, const GreyImage* imgs, int64_t N,
                      int invert);

}  // namespace lenet_fast
